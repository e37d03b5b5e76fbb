"""The compliance report (``id1 report``): what runs, why, what is exposed, who decided what.

``compliance_report`` gathers it as JSON-ready data; ``render_markdown`` prints it for people.
"""

from __future__ import annotations

from typing import Any

from agent import __version__
from agent.planning import Manifest


def compliance_report(service) -> dict[str, Any]:
    latest = service.store.revisions.latest()
    manifest = Manifest.model_validate(latest.manifest) if latest else None
    policy = service.planning_policy(windowed=False)
    plan = service.plan
    verification = service.audit.verify()
    return {
        "instance_id": service.instance_id,
        "generated_at": service.clock().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "agent_version": __version__,
        "revision": latest.number if latest else None,
        "platform": manifest.platform if manifest else None,
        "feed_serial": service.catalog.serial if service.catalog else None,
        "policy": {"channel": policy.channel, "suites": {s: p.channel for s, p in policy.suites.items()},
                   "enforce_severity": policy.enforce_severity, "maintenance_window": policy.maintenance_window},
        "capabilities": [{"capability": ref, "version": entry.version, "source": entry.source, "overrides": entry.overrides}
                         for ref, entry in sorted((manifest.capabilities() if manifest else {}).items())],
        "pins": [{"level": p.level, "name": p.name, "version": p.version, "reason": p.reason} for p in service.pins()],
        "changes": [change.to_json() for change in (plan.changes if plan else ())],
        "problems": [problem.to_json() for problem in (plan.problems if plan else ())],
        "policy_compliance_ratio": service.compliance(),
        "pending_approval": (lambda a: a.id if a else None)(service.store.approvals.pending()),
        "blocked": [item.model_dump(mode="json") for item in service.store.blocked.list()],
        "recent_deployments": [{"id": d.id, "status": d.status.value, "completed_at": d.completed_at.isoformat() if d.completed_at else None,
                                "error": d.error} for d in service.store.deployments.recent(10)],
        "rollbacks": [{"id": r.id, "status": r.status.value, "from_revision": r.from_revision, "to_revision": r.to_revision,
                       "actor": r.actor, "reason": r.reason} for r in service.store.rollbacks.list(10)],
        "audit": {"ok": verification.ok, "entries": verification.checked,
                  "problems": [str(problem) for problem in verification.problems]},
    }


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# ID-1 compliance report: {report['instance_id']}",
        "",
        f"Generated {report['generated_at']} by id1-agent {report['agent_version']}.",
        "",
        f"- Revision: {report['revision'] or 'none deployed'}; platform {report['platform'] or '—'}; feed serial {report['feed_serial'] or '—'}",
        f"- Channel: {report['policy']['channel']}" + "".join(f"; {s}: {c}" for s, c in report["policy"]["suites"].items()),
        f"- Security fixes enforced from severity {report['policy']['enforce_severity']}",
        f"- Maintenance window: {', '.join(report['policy']['maintenance_window']) or 'none (any time)'}",
        f"- Policy compliance: {report['policy_compliance_ratio']:.0%}",
        f"- Audit log: {'intact' if report['audit']['ok'] else 'DAMAGED'} ({report['audit']['entries']} entries)",
        "",
        "## Running",
        "",
        "| Capability | Version | Why |",
        "|---|---|---|",
        *[f"| {c['capability']} | {c['version']} | {c['source']}{' (overrides ' + c['overrides'] + ')' if c['overrides'] else ''} |"
          for c in report["capabilities"]],
        "",
        "## Pending changes",
        "",
        *([f"- {c['capability']}: {c['from'] or '(none)'} → {c['to'] or '(removed)'} [{c['source']}] {c['action']}" for c in report["changes"]]
          or ["None."]),
        "",
        "## Problems",
        "",
        *([f"- {p['code']}: {p['detail']}" for p in report["problems"]] or ["None."]),
        "",
        "## Pins",
        "",
        *([f"- {p['level']} {p['name']} {p['version']}" + (f" ({p['reason']})" if p["reason"] else "") for p in report["pins"]] or ["None."]),
        "",
        "## Blocked versions",
        "",
        *([f"- {b['ref']}: {b['reason']}" for b in report["blocked"]] or ["None."]),
        "",
        "## Recent deployments",
        "",
        *([f"- {d['id']} {d['status']} {d['completed_at'] or ''}" + (f": {d['error']}" if d["error"] else "") for d in report["recent_deployments"]]
          or ["None."]),
        "",
        "## Rollbacks",
        "",
        *([f"- {r['id']} revision {r['from_revision']} → {r['to_revision']} by {r['actor']} ({r['status']}): {r['reason']}" for r in report["rollbacks"]]
          or ["None."]),
    ]
    if report["audit"]["problems"]:
        lines += ["", "## Audit problems", "", *[f"- {p}" for p in report["audit"]["problems"]]]
    return "\n".join(lines) + "\n"

"""A fake agent for the dashboard's tests: the API's JSON shapes (agent/api/schemas.py) over a
small, realistic host whose state changes when you approve, reject, roll back, pin or change
the channel, with the API's role checks and messages, server-sent events, and a switch that
makes it unreachable.

    fake = FakeClient(role="approver")
    fake.down = True            # every call raises AgentUnreachable, the event stream breaks
    fake.refuse("approve", ApiError(403, "forbidden", "..."))   # the next approve is refused

Times come from a fake clock that moves one minute per change: the screens render the same
text on every run (snapshot tests).

Every answer goes through the response model the real route declares (``@answers(Status)``:
agent/api/schemas.py, the store's models it returns) and comes out as the API would send it;
an answer that does not fit, or that the model would send differently (a field the API does not
have or lacks, another type), fails the test with the differences, so the fake cannot drift from
the API unnoticed. Manifests in answers must be what the planner's ``Manifest.to_json()`` writes.
"""

from __future__ import annotations

import copy
import functools
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version
from pydantic import TypeAdapter, ValidationError

from agent.api.schemas import (
    Advisory,
    Approval,
    AuditEntry,
    CheckResult,
    Decision,
    EffectivePolicy,
    FleetOutcome,
    FleetState,
    PinView,
    Revision,
    RevisionView,
    RollbackOutcome,
    RollbackPreview,
    Status,
    UpdatePolicy,
    Updates,
    Versions,
)
from agent.client import AgentUnreachable, ApiError
from agent.planning import Manifest

START = datetime(2026, 11, 21, 8, 0, tzinfo=timezone.utc)
SOCKET = "/run/id1/agent.sock"
DOWN = (f"the agent is not running: no socket at {SOCKET} (start it with `systemctl start id1-agent`, "
        "or point --socket / $ID1_SOCKET at it)")
ROLE_RANK = {"viewer": 1, "approver": 2, "admin": 3}
ROLE_GROUPS = {"viewer": ["id1-viewer"], "approver": ["id1-approver"], "admin": ["id1-admin"]}  # the config's defaults
GROUPS = {"approver": "group id1-approver or id1-admin", "admin": "group id1-admin"}


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _capability(suite: str, name: str, version: str, source: str = "latest", overrides: str | None = None) -> dict:
    return {
        "version": version, "source": source,
        "artifact": {"url": f"artifacts/{suite}-{name}-{version}.tar.gz", "sha256": "0" * 64, "size": 40960},
        "units": [f"id1-{suite}-{name}.service"],
        "health": {"http": None, "command": None, "timeout_s": 60.0},
        "requires": None, "overrides": overrides,
    }


def _manifest(platform: str, suites: dict[str, tuple[str, dict[str, tuple]]]) -> dict:
    return {"platform": platform, "suites": {
        suite: {"version": version, "capabilities": {name: _capability(suite, name, *spec) for name, spec in caps.items()}}
        for suite, (version, caps) in suites.items()
    }}


MANIFESTS = {
    1: _manifest("2.4.0", {
        "core": ("1.1.0", {"auth": ("0.9.0",), "api": ("2.0.0",), "web": ("2.9.0",)}),
        "analytics": ("0.9.0", {"ingest": ("1.3.0",), "reports": ("0.9.0",)}),
    }),
    2: _manifest("2.4.1", {
        "core": ("1.1.1", {"auth": ("0.9.2",), "api": ("2.0.1",), "web": ("2.9.0",)}),
        "analytics": ("0.9.0", {"ingest": ("1.3.0",), "reports": ("0.9.0",)}),
        "search": ("0.9.0", {"indexer": ("0.9.0",)}),
    }),
    3: _manifest("2.5.0", {
        "core": ("1.2.0", {"auth": ("1.0.0", "pin:suite"), "api": ("2.1.0", "pin:suite"), "web": ("3.0.0", "pin:suite")}),
        "analytics": ("1.0.0", {"ingest": ("1.4.0", "pin:capability"), "reports": ("1.0.0",)}),
        "search": ("0.9.0", {"indexer": ("0.9.0",)}),
    }),
    4: _manifest("2.5.0", {
        "core": ("1.2.0", {"auth": ("1.0.1", "security:ID1-SA-2026-0001", "pin:suite"), "api": ("2.1.0", "pin:suite"),
                           "web": ("3.0.0", "pin:suite")}),
        "analytics": ("1.0.0", {"ingest": ("1.4.0", "pin:capability"), "reports": ("1.0.0",)}),
        "search": ("0.9.0", {"indexer": ("0.9.0",)}),
    }),
}
TARGET = _manifest("2.6.0", {
    "core": ("1.2.1", {"auth": ("1.0.1", "security:ID1-SA-2026-0001", "pin:suite"), "api": ("2.2.0", "pin:suite"),
                       "web": ("3.1.0", "pin:suite")}),
    "analytics": ("1.0.0", {"ingest": ("1.4.0", "pin:capability"), "reports": ("1.1.0",)}),
    "search": ("1.0.0", {"indexer": ("1.0.0",)}),
})
AVAILABLE = {
    "platform": ["2.6.0", "2.5.0", "2.4.1", "2.4.0"],
    "analytics/ingest": ["1.4.0", "1.3.0"],
    "analytics/reports": ["1.1.0", "1.0.0", "0.9.0"],
    "core/api": ["2.2.0", "2.1.0", "2.0.1", "2.0.0"],
    "core/auth": ["1.0.1", "1.0.0", "0.9.2", "0.9.0"],
    "core/web": ["3.1.0", "3.0.0", "2.9.0"],
    "search/indexer": ["1.0.0", "0.9.0"],
}
ADVISORIES = [
    # id, severity, capability, affected, summary, published, a fixed version exists
    ("ID1-SA-2026-0001", "critical", "core/auth", ">=1.0.0,<1.0.1",
     "Session tokens accepted after logout", "2026-11-18T09:00:00Z", True),
    ("ID1-SA-2026-0002", "high", "analytics/ingest", "<1.5.0",
     "Ingest accepts unsigned batches from any tenant", "2026-11-20T16:30:00Z", False),
    ("ID1-SA-2026-0003", "medium", "core/api", "<2.2.0",
     "Rate limits bypassed with chunked requests", "2026-11-19T10:00:00Z", True),
    ("ID1-SA-2026-0004", "low", "core/auth", "<1.1.0",
     "Login timing reveals whether a user name exists", "2026-11-10T12:00:00Z", True),
    ("ID1-SA-2026-0005", "critical", "billing/invoices", "<4.2.1",
     "Invoice export readable by other tenants", "2026-11-15T08:00:00Z", True),
]
SEVERITY = {"low": 1, "medium": 2, "high": 3, "critical": 4}
# The fleet group of host-01 (DESIGN.md §12, etcd): host-02 deploys, host-03 waits behind it and
# host-04, which holds the other slot and publishes no state (it is gone); core/api 2.2.1 came in
# a feed host-01 has not fetched yet and failed on host-04 and host-05, so the group halted it.
FLEET_HOSTS = [
    # host, platform, revision, state, state since, last seen
    ("host-01", "2.5.0", 4, "idle", "2026-11-21T08:00:05Z", "2026-11-21T08:04:41Z"),
    ("host-02", "2.6.0", 9, "deploying", "2026-11-21T08:03:12Z", "2026-11-21T08:04:52Z"),
    ("host-03", "2.5.0", 4, "waiting for a fleet slot (group prod: 2/2 held by host-02, host-04)",
     "2026-11-21T08:03:30Z", "2026-11-21T08:04:37Z"),
]
FLEET_HOLDERS = [("host-02", 0, "2026-11-21T08:03:10Z"), ("host-04", 1, "2026-11-21T06:12:00Z")]
FLEET_FAILURES = [("core/api@2.2.1", ["host-04", "host-05"], True), ("search/indexer@1.0.1", ["host-05"], False)]
NOTES = ("ID-1 2.6.0: faster search indexing (about 3x on large tenants) and API rate limits per tenant. "
         "core/api restarts: expect about 5 s without API.")


@functools.cache
def _adapter(model: Any) -> TypeAdapter:
    return TypeAdapter(model)


def as_the_api_sends(model: Any, value: Any, *, exclude_unset: bool = False) -> Any:
    """``value`` as the API's JSON for the route's ``response_model``; AssertionError if it differs.

    The real route validates its answer into ``model`` and sends ``model_dump(mode="json",
    by_alias=True)`` (``exclude_unset`` where the route says so), so the fake's answer must be
    exactly that, and every manifest in it exactly what ``Manifest.to_json()`` writes.
    """
    name = getattr(model, "__name__", None) or repr(model)
    adapter = _adapter(model)
    try:
        sent = adapter.dump_python(adapter.validate_python(value), mode="json", by_alias=True, exclude_unset=exclude_unset)
    except ValidationError as error:
        raise AssertionError(f"the fake agent's answer is not a {name}: {error}") from None
    problems = _differences(value, sent, "")
    for where, manifest in _manifests(sent, ""):
        try:
            problems += _differences(manifest, Manifest.model_validate(manifest).to_json(), where)
        except ValidationError as error:
            problems.append(f"{where}: not a manifest: {error}")
    if problems:
        raise AssertionError(f"the fake agent's {name} differs from what the API sends: " + "; ".join(problems[:10]))
    return sent


def _differences(fake: Any, api: Any, where: str) -> list[str]:
    if isinstance(fake, dict) and isinstance(api, dict):
        found = [f"{where}.{key}: the API has no such field" for key in fake.keys() - api.keys()]
        found += [f"{where}.{key}: missing (the API sends {api[key]!r})" for key in api.keys() - fake.keys()]
        return found + [problem for key in fake.keys() & api.keys()
                        for problem in _differences(fake[key], api[key], f"{where}.{key}")]
    if isinstance(fake, list) and isinstance(api, list) and len(fake) == len(api):
        return [problem for index, (a, b) in enumerate(zip(fake, api)) for problem in _differences(a, b, f"{where}[{index}]")]
    if fake != api or type(fake) is not type(api):
        return [f"{where or 'the answer'}: {fake!r} where the API sends {api!r}"]
    return []


def _manifests(value: Any, where: str) -> Iterator[tuple[str, dict]]:
    """The manifests in an answer: a revision's ``manifest``, an approval's ``target``."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield from _manifests(item, f"{where}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if key in ("manifest", "target") and isinstance(item, dict):
                yield f"{where}.{key}", item
            else:
                yield from _manifests(item, f"{where}.{key}")


def answers(model: Any, *, exclude_unset: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The method answers as the route with ``response_model=model`` does (see ``as_the_api_sends``)."""
    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def answer(*args: Any, **kwargs: Any) -> Any:
            return as_the_api_sends(model, method(*args, **kwargs), exclude_unset=exclude_unset)
        answer.response_model = (model, exclude_unset)  # type: ignore[attr-defined]
        return answer
    return decorate


def versions_of(manifest: dict) -> dict[str, str]:
    return {f"{suite}/{name}": cap["version"]
            for suite, body in manifest["suites"].items() for name, cap in body["capabilities"].items()}


class FakeClient:
    """Satisfies tui.client.DashboardClient; thread-safe (the dashboard calls from its threads)."""

    def __init__(self, *, role: str | None = "approver", user: str = "alice", down: bool = False,
                 pending: bool = True, deploy_on_approve: bool = True) -> None:
        self.role = role
        self.user = user
        self.down = down
        self.deploy_on_approve = deploy_on_approve
        self.calls: list[tuple[str, tuple, dict]] = []
        self.now = START + timedelta(minutes=5)
        self._lock = threading.RLock()
        self._refusals: dict[str, Exception] = {}
        self._subscribers: list[queue.Queue] = []
        self._closed = threading.Event()
        self.activity = "idle"
        self.rollbacks_done = 0
        self.revisions_kept = {
            number: {"number": number, "manifest": {**copy.deepcopy(MANIFESTS[number]), "revision": number},
                     "manifest_sha256": f"{number:064x}", "feed_serial": serial, "created_at": created,
                     "deployment_id": f"dep-{number}"}
            for number, serial, created in (
                (1, 38, "2026-10-02T02:14:09Z"), (2, 40, "2026-10-17T02:11:43Z"),
                (3, 41, "2026-11-07T02:09:31Z"), (4, 42, "2026-11-18T09:12:02Z"))
        }
        self.running = 4
        self.pins = [
            {"id": None, "level": "suite", "name": "core", "version": "~=1.2.0", "reason": "certified stack",
             "origin": "config", "created_at": None, "updated_at": None},
            {"id": "pin-1", "level": "capability", "name": "analytics/ingest", "version": "1.4.0",
             "reason": "vendor ticket 4711", "origin": "api", "created_at": "2026-11-07T10:00:00Z",
             "updated_at": "2026-11-07T10:00:00Z"},
        ]
        self.policy_state = {"channel": "manual-approval", "suites": {"analytics": "auto-update"},
                             "enforce_severity": "high", "maintenance_window": ["Sat 02:00-05:00"],
                             "timezone": "UTC", "allow_prerelease": False, "policies": []}
        self.approvals_kept = [
            self._approval(1, "rejected", "2026-10-30T08:00:00Z", decided_by="alice",
                           decided_at="2026-10-30T09:30:00Z", reason="waiting for the vendor's hotfix 2.5.0"),
            self._approval(2, "deployed", "2026-11-06T08:00:00Z", decided_by="bob", decided_at="2026-11-06T15:02:00Z",
                           comment="certified stack 2.5.0", target=MANIFESTS[3], base=MANIFESTS[2]),
        ]
        if pending:
            self.approvals_kept.append(self._approval(3, "pending", "2026-11-21T08:00:00Z", notes=NOTES,
                                                      advisories=["ID1-SA-2026-0003"]))
        self.fleet_backend = "etcd"  # or "fleetlock", "none": what GET /fleet then answers
        self.fleet_hosts = [{"host_id": host, "instance_id": host, "platform": platform, "revision": revision,
                             "agent_state": state, "updated_at": since, "last_seen": seen}
                            for host, platform, revision, state, since, seen in FLEET_HOSTS]
        self.fleet_holders = [{"host_id": host, "since": since, "slot": slot, "instance_id": host if host != "host-04" else None}
                              for host, slot, since in FLEET_HOLDERS]
        self.fleet_failures = [{"ref": ref, "hosts": list(hosts), "halted": halted} for ref, hosts, halted in FLEET_FAILURES]
        self.audit_log: list[dict[str, Any]] = []
        for at, actor, action, what, why in (
            ("2026-11-06T15:02:00Z", "bob", "approve", "approval approval-2", "certified stack 2.5.0"),
            ("2026-11-07T02:09:31Z", "agent", "deployed", "revision 3: approval-2 (platform 2.5.0)", ""),
            ("2026-11-07T10:00:00Z", "root", "pin", "capability analytics/ingest ==1.4.0", "vendor ticket 4711"),
            ("2026-11-18T09:10:00Z", "agent", "forced-patch", "core/auth 1.0.0 -> 1.0.1",
             "ID1-SA-2026-0001 (critical) overrides pin:suite"),
            ("2026-11-18T09:12:02Z", "agent", "deployed", "revision 4: security fix ID1-SA-2026-0001", ""),
            ("2026-11-20T11:00:00Z", "root", "policy", "suite analytics: auto-update", "analytics may update itself"),
            ("2026-11-21T08:00:00Z", "agent", "approval-proposed", "approval approval-3 (platform 2.6.0)", ""),
        ):
            self._audit(actor, action, what, why, at=at)

    # --- switches for tests -------------------------------------------------------------------

    def refuse(self, method: str, error: Exception) -> None:
        """The next call of ``method`` raises ``error`` (the API refusing what the role allows)."""
        self._refusals[method] = error

    def close(self) -> None:
        """End every event stream (tests call it when the app is done)."""
        self._closed.set()

    def publish(self, kind: str, data: dict[str, Any] | None = None) -> None:
        for subscriber in list(self._subscribers):
            subscriber.put((kind, {**(data or {}), "at": iso(self.now)}))

    def set_activity(self, text: str) -> None:
        with self._lock:
            self.activity = text
        self.publish("status", {"activity": text})

    # --- plumbing -----------------------------------------------------------------------------

    def _enter(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))
        if self.down:
            raise AgentUnreachable(DOWN)
        refusal = self._refusals.pop(method, None)
        if refusal is not None:
            raise refusal

    def _require(self, needed: str, action: str) -> None:
        if ROLE_RANK.get(self.role or "", 0) < ROLE_RANK[needed]:
            raise ApiError(403, "forbidden", f"{self.user} may not {action}: that needs the {needed} role ({GROUPS[needed]})")

    def _tick(self) -> str:
        self.now += timedelta(minutes=1)
        return iso(self.now)

    def _audit(self, actor: str, action: str, what: str, why: str = "", *, at: str | None = None) -> None:
        seq = len(self.audit_log) + 1
        self.audit_log.append({"seq": seq, "at": at or iso(self.now), "actor": actor, "action": action, "what": what,
                               "why": why, "details": {}, "prev": f"{seq - 1:064x}", "hash": f"{seq:064x}"})

    def _approval(self, number: int, status: str, created_at: str, *, target: dict | None = None,
                  base: dict | None = None, **fields: Any) -> dict[str, Any]:
        target, base = target or TARGET, base or MANIFESTS[4]
        return {
            "id": f"approval-{number}", "target_hash": f"{number:x}" * 64 if number < 16 else "f" * 64,
            "status": status, "created_at": created_at, "updated_at": fields.get("decided_at", created_at),
            "decided_at": fields.get("decided_at"), "decided_by": fields.get("decided_by"),
            "comment": fields.get("comment"), "reason": fields.get("reason"), "feed_serial": 43 if number == 3 else 40 + number,
            "advisories": fields.get("advisories", []), "deployment_id": None, "target": target,
            "changes": self._changes(base, target, "await-approval"), "notes": fields.get("notes"),
        }

    @staticmethod
    def _changes(base: dict, target: dict, action: str, *, skip: tuple[str, ...] = ("analytics",)) -> list[dict]:
        before, after = versions_of(base), versions_of(target)
        sources = {f"{s}/{n}": c for s, body in target["suites"].items() for n, c in body["capabilities"].items()}
        return [{"capability": ref, "from": before.get(ref), "to": after.get(ref), "source": sources[ref]["source"],
                 "action": action, "overrides": sources[ref].get("overrides")}
                for ref in sorted(set(before) | set(after))
                if before.get(ref) != after.get(ref) and ref.partition("/")[0] not in skip]

    def _pending(self) -> dict[str, Any] | None:
        return next((a for a in self.approvals_kept if a["status"] == "pending"), None)

    def _manifest(self) -> dict:
        return self.revisions_kept[self.running]["manifest"]

    def _plan_changes(self) -> list[dict[str, Any]]:
        pending = self._pending()
        changes = list(pending["changes"]) if pending else []
        if versions_of(self._manifest()).get("analytics/reports") == "1.0.0":  # analytics: auto-update, waits for the window
            changes.append({"capability": "analytics/reports", "from": "1.0.0", "to": "1.1.0", "source": "latest",
                            "action": "apply", "overrides": None})
        return changes

    def _advisories(self) -> list[dict[str, Any]]:
        installed = versions_of(self._manifest())
        planned = {change["capability"] for change in self._plan_changes()}
        threshold = SEVERITY[self.policy_state["enforce_severity"]]
        found = []
        for advisory_id, severity, capability, affected, summary, published, fixable in ADVISORIES:
            version = installed.get(capability)
            enforced = SEVERITY[severity] >= threshold
            if version is None:
                status = "not-installed"
            elif Version(version) not in SpecifierSet(affected):
                status = "not-affected"
            elif enforced and not fixable:
                status = "exposed"
            elif capability in planned:
                status = "fix-pending"
            else:
                status = "affected"
            found.append({"id": advisory_id, "severity": severity, "capability": capability, "affected": affected,
                          "summary": summary, "published_at": published, "enforced": enforced, "status": status,
                          "installed_version": version})
        return sorted(found, key=lambda a: (a["status"] in ("not-installed", "not-affected"), a["id"]))

    def _problems(self) -> list[dict[str, str]]:
        return [{"code": "exposed", "detail": f"{a['capability']} {a['installed_version']} is affected by {a['id']} "
                                              f"({a['severity']}) and the feed has no fixed version"}
                for a in self._advisories() if a["status"] == "exposed"]

    def _deploy(self, manifest: dict, what: str, actor: str) -> int:
        number = max(self.revisions_kept) + 1
        at = self._tick()
        self.revisions_kept[number] = {"number": number, "manifest": {**copy.deepcopy(manifest), "revision": number},
                                       "manifest_sha256": f"{number:064x}", "feed_serial": 43, "created_at": at,
                                       "deployment_id": f"dep-{number}"}
        self.running = number
        self._audit(actor, "deployed", f"revision {number}: {what}")
        return number

    # --- reading ------------------------------------------------------------------------------

    @answers(Status)
    def status(self) -> dict[str, Any]:
        self._enter("status")
        with self._lock:
            manifest = self._manifest()
            pending = self._pending()
            exposed = [a for a in self._advisories() if a["status"] == "exposed"]
            capabilities = [
                {"capability": f"{suite}/{name}", "version": cap["version"], "source": cap["source"],
                 "overrides": cap.get("overrides"), "units": cap["units"], "live_colour": None, "public_port": None}
                for suite, body in sorted(manifest["suites"].items()) for name, cap in sorted(body["capabilities"].items())
            ]
            return {
                "instance_id": "host-01", "agent_version": "0.1.0", "activity": self.activity,
                "activity_since": "2026-11-21T08:00:05Z", "user": self.user, "role": self.role,
                "role_groups": copy.deepcopy(ROLE_GROUPS),
                "channel": self.policy_state["channel"], "suites": dict(self.policy_state["suites"]),
                "maintenance_window": list(self.policy_state["maintenance_window"]), "timezone": "UTC",
                "in_window": False, "next_window": "2026-11-28T02:00:00Z", "revision": self.running,
                "platform": manifest["platform"], "capabilities": capabilities,
                "feed_url": "https://releases.example.com/id1/stable/feed.json", "feed_serial": 43,
                "last_check": "2026-11-21T08:00:00Z", "last_success": "2026-11-21T08:00:00Z",
                "next_check": "2026-11-21T08:15:00Z",
                "pending_approval": {"id": pending["id"], "status": "pending", "created_at": pending["created_at"],
                                     "changes": len(pending["changes"])} if pending else None,
                "changes": self._plan_changes(),
                "problems": self._problems(),
                "exposed_advisories": len(exposed), "blocked_versions": 0, "deployment": None,
                "last_error": None, "warnings": [],
            }

    @answers(Updates)
    def updates(self) -> dict[str, Any]:
        self._enter("updates")
        with self._lock:
            pending = self._pending()
            return {"target_hash": pending["target_hash"] if pending else None, "changes": self._plan_changes(),
                    "problems": self._problems(),
                    "approval": copy.deepcopy(pending), "next_window": "2026-11-28T02:00:00Z"}

    @answers(list[Approval])
    def approvals(self, limit: int = 50) -> list[dict[str, Any]]:
        self._enter("approvals", limit)
        with self._lock:
            return copy.deepcopy(sorted(self.approvals_kept, key=lambda a: a["created_at"], reverse=True)[:limit])

    @answers(Approval)
    def approval(self, approval_id: str) -> dict[str, Any]:
        self._enter("approval", approval_id)
        with self._lock:
            for approval in self.approvals_kept:
                if approval["id"] == approval_id:
                    return copy.deepcopy(approval)
        raise ApiError(404, "not-found", f"there is no approval {approval_id}")

    @answers(list[RevisionView], exclude_unset=True)
    def revisions(self, *, manifests: bool = False) -> list[dict[str, Any]]:
        self._enter("revisions", manifests=manifests)
        with self._lock:
            result = []
            for number in sorted(self.revisions_kept, reverse=True):
                data = copy.deepcopy(self.revisions_kept[number])
                data["platform"] = data["manifest"]["platform"]
                if not manifests:
                    del data["manifest"]
                result.append(data)
            return result

    @answers(Revision)
    def revision(self, number: int) -> dict[str, Any]:
        self._enter("revision", number)
        with self._lock:
            if number not in self.revisions_kept:
                raise ApiError(404, "not-found", f"revision {number} is not kept")
            return copy.deepcopy(self.revisions_kept[number])

    @answers(RollbackPreview)
    def rollback_check(self, to_revision: int | None = None) -> dict[str, Any]:
        self._enter("rollback_check", to_revision)
        with self._lock:
            to_revision = to_revision or max(n for n in self.revisions_kept if n < self.running)
            if to_revision not in self.revisions_kept:
                raise ApiError(404, "not-found", f"revision {to_revision} is not kept")
            before, after = versions_of(self._manifest()), versions_of(self.revisions_kept[to_revision]["manifest"])
            changes = [{"capability": ref, "from_version": before.get(ref), "to_version": after.get(ref)}
                       for ref in sorted(set(before) | set(after)) if before.get(ref) != after.get(ref)]
            problems = (["core/api 2.0.0: the artifact is neither on this host nor in the feed any more"]
                        if to_revision == 1 else [])
            advisories = sorted(a[0] for a in ADVISORIES if a[2] in after and SEVERITY[a[1]] >= SEVERITY[self.policy_state["enforce_severity"]]
                                and a[6] and Version(after[a[2]]) in SpecifierSet(a[3]))
            return {"to_revision": to_revision, "from_revision": self.running, "changes": changes, "problems": problems,
                    "advisories": advisories, "allowed": not problems and not advisories,
                    "needs_force": bool(advisories) and not problems}

    @answers(Versions)
    def versions(self) -> dict[str, Any]:
        self._enter("versions")
        with self._lock:
            return {"pins": copy.deepcopy(self.pins), "installed": versions_of(self._manifest()),
                    "available": copy.deepcopy(AVAILABLE), "blocked": []}

    @answers(EffectivePolicy)
    def policy(self) -> dict[str, Any]:
        self._enter("policy")
        with self._lock:
            return copy.deepcopy(self.policy_state)

    @answers(list[UpdatePolicy])
    def policies(self) -> list[dict[str, Any]]:
        self._enter("policies")
        return []

    @answers(list[Advisory])
    def advisories(self) -> list[dict[str, Any]]:
        self._enter("advisories")
        with self._lock:
            return self._advisories()

    @answers(list[AuditEntry])
    def audit(self, *, actor: str | None = None, action: str | None = None, limit: int = 100,
              before_seq: int | None = None) -> list[dict[str, Any]]:
        self._enter("audit", actor=actor, action=action, limit=limit, before_seq=before_seq)
        with self._lock:
            found = [copy.deepcopy(e) for e in reversed(self.audit_log)
                     if (actor is None or e["actor"] == actor) and (action is None or e["action"] == action)
                     and (before_seq is None or e["seq"] < before_seq)]
            return found[:limit]

    @answers(FleetState)
    def fleet(self) -> dict[str, Any]:
        self._enter("fleet")
        with self._lock:
            empty = {"slots": None, "halt_after": None, "hosts": [], "holders": [], "waiting": [], "waiting_total": 0,
                     "failures": [], "slot_wait": None}
            if self.fleet_backend == "none":
                return {**empty, "backend": "none", "group": "default", "this_host": "host-01",
                        "note": "fleet coordination is off (fleet.backend = none)"}
            if self.fleet_backend == "fleetlock":
                return {**empty, "backend": "fleetlock", "group": "prod", "this_host": "host-01",
                        "note": "FleetLock gives slots only: no view of the other hosts, no halt"}
            hosts = copy.deepcopy(self.fleet_hosts)
            for host in hosts:
                if host["host_id"] == "host-01":  # what this host publishes is its activity
                    host["agent_state"] = self.activity
            full = len(self.fleet_holders) >= 2
            return {
                "backend": "etcd", "group": "prod", "this_host": "host-01", "slots": 2, "halt_after": 2,
                "hosts": hosts, "holders": copy.deepcopy(self.fleet_holders),
                "waiting": ["host-03"] if full else [], "waiting_total": 1 if full else 0,
                "failures": copy.deepcopy(self.fleet_failures), "note": None, "slot_wait": None,
            }

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        self._enter("events")
        subscriber: queue.Queue = queue.Queue()
        self._subscribers.append(subscriber)
        try:
            while not self._closed.is_set():
                if self.down:
                    raise AgentUnreachable(DOWN)
                try:
                    yield subscriber.get(timeout=0.05)
                except queue.Empty:
                    continue
        finally:
            self._subscribers.remove(subscriber)

    # --- deciding -----------------------------------------------------------------------------

    @answers(CheckResult)
    def check(self) -> dict[str, Any]:
        self._enter("check")
        self._require("approver", "check the feed now")
        self.publish("feed", {"serial": 43})
        return {"message": "feed serial 43 is current (not modified)"}

    @answers(Decision)
    def approve(self, approval_id: str, comment: str | None = None) -> dict[str, Any]:
        self._enter("approve", approval_id, comment)
        self._require("approver", "approve or reject updates")
        with self._lock:
            approval = self._decide(approval_id)
            approval.update(status="approved", decided_by=self.user, decided_at=self._tick(), comment=comment)
            self._audit(self.user, "approve", f"approval {approval_id}", comment or "")
            result = copy.deepcopy(approval)
            if self.deploy_on_approve:
                self._deploy(approval["target"], f"{approval_id} (platform {approval['target']['platform']})", self.user)
                approval.update(status="deployed", deployment_id=f"dep-{self.running}")
        self.publish("approval", {"id": approval_id})
        self.publish("audit", {"seq": len(self.audit_log), "action": "approve"})
        if self.deploy_on_approve:
            self.publish("deployment", {"state": "succeeded", "revision": self.running})
            self.publish("revision", {"revision": self.running})
        return {"approval": result, "message": f"{approval_id} approved by {self.user}; deploying now"}

    @answers(Decision)
    def reject(self, approval_id: str, reason: str) -> dict[str, Any]:
        self._enter("reject", approval_id, reason)
        self._require("approver", "approve or reject updates")
        if not reason:
            raise ApiError(422, "invalid", "reason: a reason is required")
        with self._lock:
            approval = self._decide(approval_id)
            approval.update(status="rejected", decided_by=self.user, decided_at=self._tick(), reason=reason)
            self._audit(self.user, "reject", f"approval {approval_id}", reason)
            result = copy.deepcopy(approval)
        self.publish("approval", {"id": approval_id})
        self.publish("audit", {"seq": len(self.audit_log), "action": "reject"})
        return {"approval": result, "message": f"{approval_id} rejected by {self.user}"}

    def _decide(self, approval_id: str) -> dict[str, Any]:
        for approval in self.approvals_kept:
            if approval["id"] == approval_id:
                if approval["status"] != "pending":
                    raise ApiError(409, "conflict", f"{approval_id} is {approval['status']}, not pending")
                return approval
        raise ApiError(404, "not-found", f"there is no approval {approval_id}")

    @answers(RollbackOutcome)
    def rollback(self, to_revision: int | None = None, *, reason: str = "", force: bool = False) -> dict[str, Any]:
        self._enter("rollback", to_revision, reason=reason, force=force)
        self._require("admin", "deploy or roll back")
        check = self._check_quietly(to_revision)
        if check["problems"]:
            raise ApiError(409, "refused", "cannot roll back: " + "; ".join(check["problems"]))
        if check["needs_force"] and not force:
            raise ApiError(409, "refused", f"revision {check['to_revision']} is affected by "
                                           f"{', '.join(check['advisories'])}: roll back with force to allow it")
        with self._lock:
            origin, target = self.running, check["to_revision"]
            reason = reason or f"rollback by {self.user}"  # as the API words an empty reason
            self.rollbacks_done += 1
            started = iso(self.now)
            self._audit(self.user, "rollback", f"revision {origin} -> {target} (succeeded)", reason)
            number = self._deploy(self.revisions_kept[target]["manifest"], f"rollback to revision {target}", self.user)
            operation = {"id": f"rb-{self.rollbacks_done}", "instance_id": "host-01",
                         "from_version": self.revisions_kept[origin]["manifest"]["platform"],
                         "to_version": self.revisions_kept[target]["manifest"]["platform"], "status": "succeeded",
                         "created_at": started, "completed_at": iso(self.now), "reason": reason,
                         "from_revision": origin, "to_revision": target, "actor": self.user}
        self.publish("deployment", {"state": "succeeded", "revision": number})
        self.publish("revision", {"revision": number})
        self.publish("audit", {"seq": len(self.audit_log), "action": "rollback"})
        return {"operation": operation, "deployment_status": "succeeded", "revision": number, "error": None}

    def _check_quietly(self, to_revision: int | None) -> dict[str, Any]:
        calls = len(self.calls)
        try:
            return self.rollback_check(to_revision)
        finally:
            del self.calls[calls:]

    @answers(PinView)
    def pin(self, level: str, name: str, version: str, reason: str | None = None) -> dict[str, Any]:
        self._enter("pin", level, name, version, reason)
        self._require("admin", "change pins, policies or blocked versions")
        with self._lock:
            if any(p["origin"] == "config" and p["level"] == level and p["name"] == name for p in self.pins):
                raise ApiError(409, "conflict", f"{level} {name} is pinned in the config file; change it there")
            at = self._tick()
            self.pins = [p for p in self.pins if not (p["level"] == level and p["name"] == name)]
            pin = {"id": f"pin-{len(self.pins) + 1}", "level": level, "name": name, "version": version, "reason": reason,
                   "origin": "api", "created_at": at, "updated_at": at}
            self.pins.append(pin)
            self._audit(self.user, "pin", f"{level} {name} {version}", reason or "")
        self.publish("audit", {"seq": len(self.audit_log), "action": "pin"})
        self.publish("feed", {"serial": 43})
        return copy.deepcopy(pin)

    @answers(PinView)
    def unpin(self, level: str, name: str, reason: str | None = None) -> dict[str, Any]:
        self._enter("unpin", level, name, reason)
        self._require("admin", "change pins, policies or blocked versions")
        with self._lock:
            for pin in self.pins:
                if pin["level"] == level and pin["name"] == name:
                    if pin["origin"] == "config":
                        raise ApiError(409, "conflict", f"{level} {name} is pinned in the config file; change it there")
                    self.pins.remove(pin)
                    self._tick()
                    self._audit(self.user, "unpin", f"{level} {name}", reason or "")
                    break
            else:
                raise ApiError(404, "not-found", f"there is no {level} pin of {name}")
        self.publish("audit", {"seq": len(self.audit_log), "action": "unpin"})
        return copy.deepcopy(pin)

    @answers(EffectivePolicy)
    def set_channel(self, channel: str, suite: str | None = None, reason: str | None = None) -> dict[str, Any]:
        self._enter("set_channel", channel, suite, reason)
        self._require("admin", "change pins, policies or blocked versions")
        with self._lock:
            if suite:
                self.policy_state["suites"][suite] = channel
            else:
                self.policy_state["channel"] = channel
            self._tick()
            self._audit(self.user, "policy", f"{'suite ' + suite if suite else 'instance'}: {channel}", reason or "")
            result = copy.deepcopy(self.policy_state)
        self.publish("audit", {"seq": len(self.audit_log), "action": "policy"})
        self.publish("status", {"activity": self.activity})
        return result

    @answers(FleetOutcome)
    def fleet_resume(self, ref: str, reason: str | None = None) -> dict[str, Any]:
        self._enter("fleet_resume", ref, reason)
        self._require("admin", "resume a halted change or free a fleet slot")
        with self._lock:
            failure = next((f for f in self.fleet_failures if f["ref"] == ref), None)
            if failure is None:
                raise ApiError(409, "conflict", f"{ref} is not halted for fleet group prod and no host recorded a failure of it")
            self.fleet_failures.remove(failure)
            self._tick()
            self._audit(self.user, "fleet-resume", ref, reason or "")
        self.publish("audit", {"seq": len(self.audit_log), "action": "fleet-resume"})
        return {"message": f"{ref} resumed for the group (it had failed on {', '.join(failure['hosts'])})"}

    @answers(FleetOutcome)
    def fleet_release(self, host_id: str, reason: str | None = None) -> dict[str, Any]:
        self._enter("fleet_release", host_id, reason)
        self._require("admin", "resume a halted change or free a fleet slot")
        with self._lock:
            if not any(holder["host_id"] == host_id for holder in self.fleet_holders):
                raise ApiError(409, "conflict", f"host {host_id} holds no slot of fleet group prod")
            self.fleet_holders = [holder for holder in self.fleet_holders if holder["host_id"] != host_id]
            self._tick()
            self._audit(self.user, "fleet-release", host_id, reason or "")
        self.publish("audit", {"seq": len(self.audit_log), "action": "fleet-release"})
        return {"message": f"the slot of {host_id} is free"}


def fake_with_history(count: int, *, role: str = "admin") -> FakeClient:
    """A fake agent holding ``count`` revisions (manifests cycling through the four above), the
    newest running: History with a long list (the scrolling benchmark, the fetch-on-rest test)."""
    fake = FakeClient(role=role)
    fake.revisions_kept = {
        number: {"number": number, "manifest": {**copy.deepcopy(MANIFESTS[(number - 1) % 4 + 1]), "revision": number},
                 "manifest_sha256": f"{number:064x}", "feed_serial": 38 + number,
                 "created_at": f"2026-{(number * 7) % 12 + 1:02d}-{number % 28 + 1:02d}T02:14:09Z",
                 "deployment_id": f"dep-{number}"}
        for number in range(1, count + 1)
    }
    fake.running = count
    return fake

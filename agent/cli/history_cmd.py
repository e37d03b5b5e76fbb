"""``id1 history`` (kept revisions, newest first, and how each came to be) and ``id1 rollback``.

``rollback`` without ``--yes`` shows the preview (what changes, what stands in the way, the
advisories that need ``--force``) and asks ``[y/N]``, as ``approve`` does.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.cli.render import (
    NotConfirmed,
    add_client_options,
    agent_client,
    block,
    confirm,
    emit,
    local_zone,
    moment,
    parse_time,
    print_json,
    say,
    table,
)
from agent.errors import Conflict

FAILED_SHOWN = 5


class RollbackNotAllowed(Conflict):
    exit_code = 5  # as the API's 409


def register(verbs: argparse._SubParsersAction) -> None:
    history = verbs.add_parser(
        "history",
        help="kept revisions, newest first, and rollbacks",
        description="List the kept revisions (newest first; * is running) with how each came to be "
        "(a deployment or a rollback), then recent failed deployments.",
    )
    history.add_argument("--limit", type=int, default=50, metavar="N", help="rollbacks and deployments to read (default 50)")
    add_client_options(history, json_help='print {"revisions": …, "rollbacks": …, "deployments": …} as the API gives them')
    history.set_defaults(run=run_history)

    rollback = verbs.add_parser(
        "rollback",
        help="go back to a kept revision (admin)",
        description="Deploy a kept revision again (default: the one before the running one). Shows what "
        "would change and asks [y/N] unless --yes. The versions left behind are blocked from automatic "
        "updates. Exit 0 rolled back, 1 not confirmed or the rollback failed (and was undone), 4 no such "
        "revision, 5 refused (see the reason; --force for an advisory), 77 your role does not allow it.",
    )
    rollback.add_argument("--to", type=int, metavar="REVISION", dest="to_revision", help="revision number (see id1 history)")
    rollback.add_argument("--yes", "-y", action="store_true", help="do not ask")
    rollback.add_argument("--reason", default="", metavar="TEXT", help="why (recorded in the audit log)")
    rollback.add_argument("--force", action="store_true",
                          help="roll back even to versions affected by an enforced security advisory (recorded)")
    add_client_options(rollback, json_help="print the API's answer as JSON (the preview goes to stderr)")
    rollback.set_defaults(run=run_rollback)


# --- history ---------------------------------------------------------------------------------

def run_history(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        revisions = client.revisions()
        rollbacks = client.rollback_history(args.limit)
        deployments = client.deployments(args.limit)
    if args.json:
        print_json({"revisions": revisions, "rollbacks": rollbacks, "deployments": deployments})
    else:
        emit(history_lines(revisions, rollbacks, deployments))
    return 0


def history_lines(revisions: list[dict[str, Any]], rollbacks: list[dict[str, Any]], deployments: list[dict[str, Any]]) -> list[str]:
    if not revisions:
        lines = ["No revision yet: nothing has been deployed."]
    else:
        running = max(revision["number"] for revision in revisions)
        origins = _origins(revisions, rollbacks)
        rows = [(f"{revision['number']}{'*' if revision['number'] == running else ''}", revision.get("platform") or "—",
                 moment(revision["created_at"], zone=False), revision.get("feed_serial") if revision.get("feed_serial") is not None else "—",
                 origins.get(revision["number"]) or (revision.get("deployment_id") or "—"))
                for revision in sorted(revisions, key=lambda r: r["number"], reverse=True)]
        lines = table(rows, ("REV", "PLATFORM", f"DEPLOYED ({local_zone()})", "FEED", "HOW"), indent=0)
        lines.append("(* running; roll back with: id1 rollback --to REVISION --reason TEXT)")
    failed = [d for d in deployments if d["status"] in FAILED_WORDS][:FAILED_SHOWN]
    if failed:
        lines.append("")
        lines.append("Failed deployments (newest first):")
        for deployment in failed:
            status = FAILED_WORDS[deployment["status"]]
            lines += block(f"  {deployment['id']}", f"{status} {moment(deployment.get('completed_at'))}: {deployment.get('error') or ''}")
    return lines


FAILED_WORDS = {"rolled_back": "rolled back", "failed": "failed", "undo_failed": "UNDO FAILED (the host may run a mix of versions)"}


def _origins(revisions: list[dict[str, Any]], rollbacks: list[dict[str, Any]]) -> dict[int, str]:
    """Revision number → "rollback to N by USER: why", for the revisions a rollback made."""
    origins: dict[int, str] = {}
    ordered = sorted(revisions, key=lambda r: r["number"])
    for operation in rollbacks:
        if operation["status"] != "succeeded":
            continue
        started = parse_time(operation["created_at"])
        made = next((r for r in ordered if r["number"] > (operation.get("from_revision") or 0)
                     and started is not None and (parse_time(r["created_at"]) or started) >= started), None)
        if made is not None and made["number"] not in origins:
            reason = operation["reason"] if operation["reason"] != f"rollback by {operation['actor']}" else ""  # the API's default
            origins[made["number"]] = f"rollback to {operation['to_revision']} by {operation['actor']}" + (f": {reason}" if reason else "")
    return origins


# --- rollback --------------------------------------------------------------------------------

def run_rollback(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        preview = client.rollback_check(args.to_revision)
        out = None
        if not args.yes or not _may_go(preview, args.force):
            out = sys.stderr if args.json else sys.stdout
            emit(rollback_preview(preview), out)
        if preview["problems"]:
            raise RollbackNotAllowed(f"cannot roll back to revision {preview['to_revision']}: {'; '.join(preview['problems'])}")
        if preview["advisories"] and not args.force:
            raise RollbackNotAllowed(f"revision {preview['to_revision']} runs versions affected by {', '.join(preview['advisories'])}; "
                                     "pass --force to roll back anyway (it is recorded)")
        if not args.yes and not confirm(f"Roll back to revision {preview['to_revision']}?", stream=out):
            raise NotConfirmed(f"not rolled back; revision {preview['from_revision']} keeps running")
        outcome = client.rollback(preview["to_revision"], reason=args.reason, force=args.force)
    if args.json:
        print_json(outcome)
    elif outcome["deployment_status"] == "succeeded":
        say(f"rolled back to revision {preview['to_revision']}: revision {outcome['revision']} is running "
            f"(left-behind versions are blocked from automatic updates; see id1 updates)")
    if outcome["deployment_status"] != "succeeded":
        raise _RollbackFailed(f"the rollback to revision {preview['to_revision']} failed and was undone: {outcome.get('error')}")
    return 0


class _RollbackFailed(Conflict):
    exit_code = 1


def _may_go(preview: dict[str, Any], force: bool) -> bool:
    return not preview["problems"] and (force or not preview["advisories"])


def rollback_preview(preview: dict[str, Any]) -> list[str]:
    frm = f"revision {preview['from_revision']}" if preview.get("from_revision") is not None else "nothing"
    lines = [f"Roll back from {frm} to revision {preview['to_revision']}:"]
    changes = preview.get("changes") or []
    if changes:
        lines += table([(c["capability"], c["from_version"] or "(none)", c["to_version"] or "(removed)") for c in changes],
                       ("CAPABILITY", "FROM", "TO"))
    else:
        lines.append("  no capability changes")
    if preview.get("problems"):
        lines += block("Problems", preview["problems"])
    if preview.get("advisories"):
        lines += block("Advisories", [f"{', '.join(preview['advisories'])}: the revision runs affected versions; "
                                      "only --force rolls back to it (recorded)"])
    return lines


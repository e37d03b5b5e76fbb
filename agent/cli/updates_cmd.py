"""``id1 updates`` (what would change and why), ``id1 approve [ID]`` and ``id1 reject [ID] --reason``.

``approve`` without ``--yes`` is the approval prompt of DESIGN.md §9: it shows the change (from →
to and source per capability, the release notes, the advisories it fixes) and asks
``Approve approval-N? [y/N]``; anything but y/yes, or no answer at all, approves nothing (exit 1).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from agent.cli.render import (
    answered,
    WIDTH,
    WRAPPED,
    NotConfirmed,
    NothingToDecide,
    action_words,
    add_client_options,
    agent_client,
    block,
    confirm,
    emit,
    indented,
    moment,
    opens_later,
    print_json,
    shown,
    table,
)
from agent.errors import ApiError

if TYPE_CHECKING:
    from agent.client import AgentClient


def register(verbs: argparse._SubParsersAction) -> None:
    updates = verbs.add_parser(
        "updates",
        help="what would change on this host, and what waits for approval",
        description="Show the changes between what runs and the target (from → to, source, action), the "
        "approval they wait for, pins, blocked versions and problems.",
    )
    add_client_options(updates)
    updates.set_defaults(run=run_updates)

    approve = verbs.add_parser(
        "approve",
        help="approve the pending update (approver)",
        description="Show the update waiting for approval and ask [y/N]; with --yes approve without asking. "
        "Exit 0 approved, 1 not approved, 4 nothing pending, 5 it cannot be approved now, 77 your role does not allow it.",
    )
    approve.add_argument("approval", nargs="?", metavar="ID", help="approval-N (default: the pending one)")
    approve.add_argument("--yes", "-y", action="store_true", help="do not ask")
    approve.add_argument("--comment", metavar="TEXT", help="recorded in the audit log with your name")
    add_client_options(approve, json_help="print the API's answer as JSON (the preview goes to stderr)")
    approve.set_defaults(run=run_approve)

    reject = verbs.add_parser(
        "reject",
        help="reject the pending update, saying why (approver)",
        description="Reject an update waiting for approval; the reason is recorded in the audit log. "
        "The same target is not proposed again; a newer one is.",
    )
    reject.add_argument("approval", nargs="?", metavar="ID", help="approval-N (default: the pending one)")
    reject.add_argument("--reason", required=True, metavar="TEXT", help="why (required; recorded)")
    add_client_options(reject)
    reject.set_defaults(run=run_reject)


# --- updates ---------------------------------------------------------------------------------

def run_updates(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        updates = client.updates()
        versions = None if args.json else client.versions()
    if args.json:
        print_json(updates)
    else:
        emit(updates_lines(updates, versions or {}))
    return 0


def updates_lines(updates: dict[str, Any], versions: dict[str, Any]) -> list[str]:
    changes = updates.get("changes") or []
    problems = updates.get("problems") or []
    target = updates.get("target_hash")
    if target is None and problems:
        # A plan was made and no target came of it (every candidate blocked, withdrawn, not
        # rolled out, a pin naming nothing): the feed is there, say what stands in the way.
        what = f"Nothing to deploy: {problems[0]['detail']}" if not changes else \
            f"No target: {problems[0]['detail']}; the changes below are made anyway"
        lines = textwrap.wrap(shown(what, keep=WRAPPED) + ("; more problems below" if len(problems) > 1 else ""), WIDTH,
                              subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)
    elif target is None and not changes:
        lines = ["No feed has been accepted yet: nothing to plan (id1 check polls it now)."]
    elif not changes:
        lines = ["Up to date: the host runs its target."]
    else:
        lines = [f"Target {(target or '(none)')[:12]}: {len(changes)} change{'s' if len(changes) != 1 else ''}"]
    if changes:
        rows = [(c["capability"], c["from"] or "(none)", c["to"] or "(removed)",
                 c["source"] + (f" (overrides {c['overrides']})" if c.get("overrides") else ""),
                 action_words(c, window_closed=opens_later(updates.get("next_window")))) for c in changes]
        lines += table(rows, ("CAPABILITY", "FROM", "TO", "SOURCE", "ACTION"))
    lines.append("")
    approval = updates.get("approval")
    if approval:
        lines += block("Approval", _approval_words(approval, updates))
    elif any(c["action"] == "await-approval" for c in changes):
        lines += block("Approval", "none yet (invalid target, or the agent has not proposed it)")
    held = [c for c in changes if c["action"] == "hold"]
    if held:
        lines += block("Held", "frozen by policy: `id1 policy set auto-update` or a suite override lets them through")
    pins = versions.get("pins") or []
    if pins:
        lines += block("Pins", [f"{p['level']} {p['name']} {p['version']} ({p['origin']})" + (f": {p['reason']}" if p.get("reason") else "")
                                for p in pins])
    blocked = versions.get("blocked") or []
    if blocked:
        lines += block("Blocked", [f"{b['ref']}: {b['reason']}" for b in blocked])
    lines += block("Problems", [f"{p['code']}: {p['detail']}" for p in problems] or ["none"])
    return lines


def _approval_words(approval: dict[str, Any], updates: dict[str, Any]) -> list[str]:
    if approval["status"] == "pending":
        return [f"{approval['id']} pending since {moment(approval['created_at'])}",
                f"approve: id1 approve {approval['id']}", f"reject:  id1 reject {approval['id']} --reason TEXT"]
    when = (f"deploys when the maintenance window opens ({moment(updates['next_window'])})" if opens_later(updates.get("next_window"))
            else "deploying")
    return [f"{approval['id']} {approval['status']} by {approval.get('decided_by') or '—'}; {when}"]


# --- approve and reject ----------------------------------------------------------------------

def run_approve(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        approval = client.approval(args.approval) if args.approval else _pending(client, "approve")
        if not args.yes and approval["status"] == "pending":
            out = sys.stderr if args.json else sys.stdout
            emit(approval_preview(approval, client), out)
            if not confirm(f"Approve {approval['id']}?", stream=out):
                raise NotConfirmed(f"{approval['id']} not approved; nothing was changed")
        decision = client.approve(approval["id"], args.comment)
    return answered(args, decision)


def run_reject(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        approval_id = args.approval or _pending(client, "reject")["id"]
        decision = client.reject(approval_id, args.reason)
    return answered(args, decision)


def _pending(client: AgentClient, verb: str) -> dict[str, Any]:
    pending = client.status().get("pending_approval")
    if not pending:
        raise NothingToDecide(f"nothing awaits approval, so there is nothing to {verb} (see `id1 updates`)")
    return client.approval(pending["id"])


def approval_preview(approval: dict[str, Any], client: AgentClient) -> list[str]:
    """What an approver reads before answering: each capability from → to and why, the release
    notes, and the advisories the change fixes."""
    target = approval.get("target") or {}
    changes = approval.get("changes") or []
    lines = [f"{approval['id']}: platform {target.get('platform') or '—'} (feed serial {approval.get('feed_serial') or '—'}, "
             f"proposed {moment(approval['created_at'])})"]
    lines += table([(c["capability"], c["from"] or "(none)", c["to"] or "(removed)", c["source"]) for c in changes],
                   ("CAPABILITY", "FROM", "TO", "SOURCE"))
    lines.append("")
    notes = (approval.get("notes") or "").strip()
    if notes:
        lines.append(f"Release notes (platform {target.get('platform') or '—'}):")
        lines += indented(notes)
    else:
        lines.append("Release notes: none in the feed.")
    fixed = _fixed_advisories(approval, changes, client)
    if fixed:
        lines.append("Fixes:")
        lines += indented("\n".join(fixed))
    else:
        lines.append("Fixes: no security advisories.")
    return lines


def _fixed_advisories(approval: dict[str, Any], changes: list[dict[str, Any]], client: AgentClient) -> list[str]:
    """The approval's advisories, and those affecting a version it replaces but not the new one."""
    try:
        advisories = client.advisories()
    except ApiError:
        advisories = []
    known = {a["id"]: a for a in advisories}
    ids = list(approval.get("advisories") or [])
    for advisory in advisories:
        for change in changes:
            if change["capability"] != advisory["capability"] or not change["from"] or advisory["id"] in ids:
                continue
            try:
                if _matches(advisory["affected"], change["from"]) and not (change["to"] and _matches(advisory["affected"], change["to"])):
                    ids.append(advisory["id"])
            except ValueError:
                continue
    lines = []
    for advisory_id in ids:
        advisory = known.get(advisory_id)
        lines.append(f"{advisory_id} ({advisory['severity']}, {advisory['capability']} {advisory['affected']}): {advisory['summary']}"
                     if advisory else advisory_id)
    return lines


def _matches(specifier: str, version: str) -> bool:
    from agent.versions import matches  # packaging: only when an approval is shown

    return matches(specifier, version)

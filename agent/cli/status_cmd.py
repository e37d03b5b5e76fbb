"""``id1 status`` (what runs here and what the agent is doing) and ``id1 check`` (poll the feed now)."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.render import (
    answered,
    LABEL,
    action_words,
    add_client_options,
    agent_client,
    arrow,
    block,
    emit,
    moment,
    moment_and_relative,
    plural,
    print_json,
    table,
)


def register(verbs: argparse._SubParsersAction) -> None:
    status = verbs.add_parser(
        "status",
        help="what runs on this host, what the agent is doing, what waits for you",
        description="Show the instance, the agent's activity, policy and maintenance window, the running "
        "revision and its capabilities, feed checks, a pending approval and how to act on it, and problems.",
    )
    add_client_options(status)
    status.set_defaults(run=run_status)

    check = verbs.add_parser(
        "check",
        help="poll the feed now and act on it (approver)",
        description="Ask the agent to fetch the feed now, plan, and deploy what the policy allows. "
        "Exit 0 done, 3 the feed was rejected, 77 your role does not allow it, 69 the agent is not running.",
    )
    add_client_options(check)
    check.set_defaults(run=run_check)


def run_status(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        status = client.status()
    if args.json:
        print_json(status)
    else:
        emit(status_lines(status))
    return 0


def run_check(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        result = client.check()
    return answered(args, result)


def status_lines(status: dict[str, Any]) -> list[str]:
    role = status.get("role") or "no role"
    lines = [f"{status['instance_id']} · id1-agent {status['agent_version']} · you: {status['user']} ({role})", ""]
    lines += block("Agent", f"{status['activity']} (since {moment(status['activity_since'])})")
    deployment = status.get("deployment")
    if deployment:
        lines += block("Deploying", f"{deployment['id']}: {deployment['state']} (started {moment(deployment['started_at'])})")
    lines += block("Policy", _policy_words(status))
    if status.get("revision") is None:
        lines += block("Running", "nothing deployed yet")
    else:
        lines += block("Running", f"revision {status['revision']}, platform {status.get('platform') or '—'}")
        rows = [(c["capability"], c["version"] + _colour_words(c), c["source"] + (f" (overrides {c['overrides']})" if c.get("overrides") else ""))
                for c in status["capabilities"]]
        lines += table(rows, ("CAPABILITY", "VERSION", "SOURCE"), indent=LABEL)
    feed = f"serial {status['feed_serial']}" if status.get("feed_serial") is not None else "no feed accepted yet"
    lines += block("Feed", [feed, f"last check {moment_and_relative(status.get('last_check'))}",
                            f"next check {moment_and_relative(status.get('next_check'))}"])
    lines += _pending_lines(status)
    lines += _attention_lines(status)
    return lines



def _colour_words(capability: dict[str, Any]) -> str:
    """`` (green live on :8080)`` for a blue-green capability, nothing for the others."""
    if capability.get("public_port") is None:
        return ""
    return f" ({capability.get('live_colour') or 'no colour'} live on :{capability['public_port']})"


def _policy_words(status: dict[str, Any]) -> list[str]:
    words = [status["channel"] + "".join(f"; {suite}: {channel}" for suite, channel in sorted(status.get("suites", {}).items()))]
    window = status.get("maintenance_window") or []
    if not window:
        words.append("maintenance window: none (any time)")
    else:
        state = "open now" if status.get("in_window") else f"next opens {moment(status.get('next_window'))}"
        words.append(f"maintenance window: {', '.join(window)} {status.get('timezone', '')} ({state})")
    return words


def _pending_lines(status: dict[str, Any]) -> list[str]:
    pending = status.get("pending_approval")
    changes = status.get("changes") or []
    lines: list[str] = []
    if pending:
        awaits = "awaits" if pending["changes"] == 1 else "await"
        lines += block("Pending", [
            f"{pending['id']}: {plural(pending['changes'], 'change')} {awaits} approval (since {moment(pending['created_at'])})",
            "review:  id1 updates",
            f"approve: id1 approve {pending['id']}",
            f"reject:  id1 reject {pending['id']} --reason TEXT",
        ])
    closed = bool(status.get("maintenance_window")) and not status.get("in_window")
    if changes:
        lines += block("Changes", [f"{c['capability']} {arrow(c['from'], c['to'])} [{c['source']}] "
                                   f"{action_words(c, window_closed=closed)}" for c in changes])
    elif status.get("feed_serial") is not None:
        lines += block("Changes", "none: the host runs its target")
    return lines


def _attention_lines(status: dict[str, Any]) -> list[str]:
    problems = [f"{p['code']}: {p['detail']}" for p in status.get("problems") or []]
    if status.get("blocked_versions"):
        problems.append(f"{plural(status['blocked_versions'], 'version')} blocked from automatic updates (id1 updates)")
    if status.get("last_error"):
        problems.append(f"last error: {status['last_error']}")
    problems += [f"warning: {warning}" for warning in status.get("warnings") or []]
    return block("Problems", problems or ["none"])


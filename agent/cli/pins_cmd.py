"""``id1 pin`` · ``id1 unpin`` (versions held by the API's pins) and ``id1 policy [show | set]`` (admin)."""

from __future__ import annotations

import argparse
from typing import Any

from agent.cli.render import (
    add_client_options,
    agent_client,
    block,
    emit,
    moment,
    print_json,
    say,
    table,
)

LEVELS = ("platform", "suite", "capability")
CHANNELS = ("auto-update", "manual-approval", "frozen")


def register(verbs: argparse._SubParsersAction) -> None:
    pin = verbs.add_parser(
        "pin",
        help="hold a platform, suite or capability at a version (admin)",
        description="Pin NAME at LEVEL to VERSION: an exact version or a PEP 440 specifier such as ~=1.2.0 "
        "(the highest matching release). NAME is `platform`, a suite, or suite/capability. Pins in the "
        "config file are changed there, not here. Exit 0 pinned, 2 invalid, 5 refused, 77 not allowed.",
    )
    pin.add_argument("level", choices=LEVELS, metavar="LEVEL", help="platform | suite | capability")
    pin.add_argument("name", metavar="NAME", help="platform, a suite (core) or a capability (core/auth)")
    pin.add_argument("version", metavar="VERSION", help="1.2.0 or a specifier such as ~=1.2.0")
    pin.add_argument("--reason", metavar="TEXT", help="why (shown with the pin, recorded in the audit log)")
    add_client_options(pin)
    pin.set_defaults(run=run_pin)

    unpin = verbs.add_parser(
        "unpin",
        help="remove a pin set with id1 pin (admin)",
        description="Remove the API pin of NAME at LEVEL; the plan follows policy again. Exit 4 if it is not pinned.",
    )
    unpin.add_argument("level", choices=LEVELS, metavar="LEVEL", help="platform | suite | capability")
    unpin.add_argument("name", metavar="NAME")
    unpin.add_argument("--reason", metavar="TEXT", help="why (recorded in the audit log)")
    add_client_options(unpin)
    unpin.set_defaults(run=run_unpin)

    policy = verbs.add_parser(
        "policy",
        help="show the update policy, or set a channel (admin)",
        description="`id1 policy` or `id1 policy show`: the policy in force (config file and API decisions). "
        "`id1 policy set CHANNEL [--suite S]`: auto-update, manual-approval or frozen, for the instance or one suite.",
    )
    add_client_options(policy)
    actions = policy.add_subparsers(dest="policy_verb", metavar="show | set", parser_class=type(policy))
    show = actions.add_parser("show", help="the policy in force")
    add_client_options(show, nested=True)
    show.set_defaults(run=run_policy_show)
    set_ = actions.add_parser("set", help="set the channel of the instance or of one suite (admin)",
                              description="Set the update channel. Critical security fixes are applied whatever the channel.")
    set_.add_argument("channel", choices=CHANNELS, metavar="CHANNEL", help="auto-update | manual-approval | frozen")
    set_.add_argument("--suite", metavar="S", help="only this suite (default: the whole instance)")
    set_.add_argument("--reason", metavar="TEXT", help="why (recorded in the audit log)")
    add_client_options(set_, nested=True)
    set_.set_defaults(run=run_policy_set)
    policy.set_defaults(run=run_policy_show)


def run_pin(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        pin = client.pin(args.level, args.name, args.version, args.reason)
    if args.json:
        print_json(pin)
    else:
        say(f"pinned {pin['level']} {pin['name']} to {pin['version']}; the plan follows it (see id1 updates)")
    return 0


def run_unpin(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        pin = client.unpin(args.level, args.name, args.reason)
    if args.json:
        print_json(pin)
    else:
        say(f"unpinned {pin['level']} {pin['name']} (was {pin['version']}); the plan follows policy again (see id1 updates)")
    return 0


def run_policy_show(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        policy = client.policy()
    if args.json:
        print_json(policy)
    else:
        emit(policy_lines(policy))
    return 0


def run_policy_set(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        policy = client.set_channel(args.channel, args.suite, args.reason)
    if args.json:
        print_json(policy)
    else:
        scope = f"suite {args.suite}" if args.suite else "the instance"
        say(f"channel of {scope} set to {args.channel}; the agent replans now (see id1 updates)")
    return 0


def policy_lines(policy: dict[str, Any]) -> list[str]:
    lines = block("Channel", policy["channel"])
    for suite, channel in sorted(policy.get("suites", {}).items()):
        lines += block(f"  {suite}", channel)
    lines += block("Security", f"fixes enforced from severity {policy['enforce_severity']}, whatever the channel")
    window = policy.get("maintenance_window") or []
    lines += block("Window", f"{', '.join(window)} ({policy.get('timezone')})" if window else "none: changes go at any time")
    lines += block("Prerelease", "allowed" if policy.get("allow_prerelease") else "not allowed")
    stored = policy.get("policies") or []
    if stored:
        lines += ["", "Set through the API (the newest wins over the config file):"]
        lines += table([(p["id"], p.get("suite") or "(instance)", p["channel"], "yes" if p["enabled"] else "no", moment(p["updated_at"]))
                        for p in stored], ("ID", "SCOPE", "CHANNEL", "ENABLED", "UPDATED"))
    return lines

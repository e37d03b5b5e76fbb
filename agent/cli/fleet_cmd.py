"""``id1 fleet`` (this host's fleet group: hosts, slot holders, the line, failed changes) and the
admin's two fleet verbs, ``id1 fleet resume REF@VERSION`` and ``id1 fleet release ID`` (DESIGN.md §12).

The two admin verbs name exactly what they act on, so they do not ask [y/N], as ``pin`` and
``unpin`` do not; ``--reason`` goes to the audit log. Exit 0 done, 2 invalid, 5 refused by the
agent's state (not halted, no slot held, a backend without halt or view), 77 not allowed.

Every field of ``GET /fleet`` may be what another host published (its instance id, its state
in its own words), so all of it is escaped for the terminal (``shown``, in ``block``/``table``).
"""

from __future__ import annotations

import argparse
import textwrap
from datetime import datetime, timezone
from typing import Any

from agent.cli.render import (
    answered,
    WIDTH,
    add_client_options,
    agent_client,
    block,
    emit,
    local_zone,
    moment,
    plural,
    print_json,
    relative,
    shown,
    table,
)

WAITING_SHOWN = 10
"""Hosts in line named by ``id1 fleet`` (the API lists up to 100, ``--json`` shows them)."""


def register(verbs: argparse._SubParsersAction) -> None:
    fleet = verbs.add_parser(
        "fleet",
        help="this host's fleet group: hosts, slot holders, halted changes",
        description="`id1 fleet`: the group seen from this host: its hosts (etcd), who holds the slots and who "
        "waits for one, changes that failed on hosts of the group and whether they are halted. "
        "`id1 fleet resume REF@VERSION` and `id1 fleet release ID` (admin) lift a halt and free the slot "
        "of a host that is gone. See docs/fleet.md.",
    )
    add_client_options(fleet)
    actions = fleet.add_subparsers(dest="fleet_verb", metavar="resume | release", parser_class=type(fleet))

    resume = actions.add_parser(
        "resume", help="lift the group's halt of a change (admin)",
        description="Lift the halt of a change that failed on hosts of the group (etcd): its failure records "
        "are removed and every host of the group may deploy it again. Exit 0 resumed, 2 not REF@VERSION, "
        "5 not halted (or not etcd), 77 your role does not allow it.",
    )
    resume.add_argument("ref", metavar="REF@VERSION", help="the halted change, as id1 fleet lists it (core/auth@2.0.1)")
    resume.add_argument("--reason", metavar="TEXT", help="why (recorded in the audit log)")
    add_client_options(resume, nested=True)
    resume.set_defaults(run=run_fleet_resume)

    release = actions.add_parser(
        "release", help="free the slot held by a host that is gone (admin)",
        description="Free the fleet slot held by host ID (etcd), which would otherwise stay held until its lease "
        "expires. Only for a host that is gone: a host still deploying would change its services outside "
        "its turn. Exit 0 freed, 2 not a fleet id, 5 that host holds no slot, 77 your role does not allow it.",
    )
    release.add_argument("host_id", metavar="ID", help="the host's fleet id, as id1 fleet lists the slot holders")
    release.add_argument("--reason", metavar="TEXT", help="why (recorded in the audit log)")
    add_client_options(release, nested=True)
    release.set_defaults(run=run_fleet_release)
    fleet.set_defaults(run=run_fleet)


def run_fleet(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        fleet = client.fleet()
    if args.json:
        print_json(fleet)
    else:
        emit(fleet_lines(fleet, now=datetime.now(timezone.utc)))
    return 0


def run_fleet_resume(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        outcome = client.fleet_resume(args.ref, args.reason)
    return answered(args, outcome)


def run_fleet_release(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        outcome = client.fleet_release(args.host_id, args.reason)
    return answered(args, outcome)


# --- the view --------------------------------------------------------------------------------

def fleet_lines(fleet: dict[str, Any], *, now: datetime) -> list[str]:
    """``GET /fleet`` for a person, in 80 columns; ``now`` dates "last seen" (no clock in here)."""
    backend = fleet["backend"]
    title = f"Fleet group {fleet['group']} ({backend}) · this host: {fleet.get('this_host') or '(no fleet id)'}"
    lines = [*_wrapped(title, indent=0), ""]
    if backend == "none":
        return lines + block("Note", fleet.get("note") or "fleet coordination is off: this host deploys on its own")
    if backend == "etcd" and fleet.get("note"):  # the lock service did not answer: nothing below would be true
        return lines + block("Note", fleet["note"]) + (block("This host", fleet["slot_wait"]) if fleet.get("slot_wait") else [])
    lines += block("Slots", _slot_words(fleet))
    if backend == "etcd":
        lines += _waiting_lines(fleet)
        if fleet.get("halt_after"):
            lines += block("Halt", f"a change is halted for the group once it failed on {plural(fleet['halt_after'], 'host')}")
    if fleet.get("slot_wait"):
        lines += block("This host", fleet["slot_wait"])
    if backend == "etcd":
        lines += _hosts_lines(fleet, now) + _holder_lines(fleet, now) + _failure_lines(fleet)
    if fleet.get("note"):
        lines += block("Note", fleet["note"])
    return lines


def _slot_words(fleet: dict[str, Any]) -> str:
    holders = fleet.get("holders") or []
    if fleet["backend"] != "etcd":  # FleetLock: only the lock server knows the other holders
        held = any(holder["host_id"] == fleet.get("this_host") for holder in holders)
        return "this host holds its slot" if held else "this host holds no slot"
    return f"{len(holders)} of {fleet.get('slots') or '?'} held"


def _waiting_lines(fleet: dict[str, Any]) -> list[str]:
    waiting = fleet.get("waiting") or []
    total = max(fleet.get("waiting_total") or 0, len(waiting))
    if not total:
        return block("Waiting", "no host waits for a slot")
    named = waiting[:WAITING_SHOWN]
    more = f" and {total - len(named)} more" if total > len(named) else ""
    return block("Waiting", f"{', '.join(named)}{more} (first in line first)")


def _hosts_lines(fleet: dict[str, Any], now: datetime) -> list[str]:
    hosts = fleet.get("hosts") or []
    if not hosts:
        return ["", *block("Hosts", "none has published its state yet")]
    this_host = fleet.get("this_host")
    rows = [(host["host_id"] + ("*" if host["host_id"] == this_host else ""), host.get("instance_id") or "—",
             host.get("platform") or "—", host["revision"] if host.get("revision") is not None else "—",
             relative(host.get("last_seen"), now) or "—", host.get("agent_state") or "—")
            for host in hosts]
    return ["", f"Hosts ({len(hosts)}; * this host):",
            *fitted(rows, ("HOST", "INSTANCE", "PLATFORM", "REV", "LAST SEEN", "STATE"),
                    ("instance", "platform", "revision", "seen"))]


def _holder_lines(fleet: dict[str, Any], now: datetime) -> list[str]:
    holders = fleet.get("holders") or []
    if not holders:
        return []
    seen = {host["host_id"]: relative(host.get("last_seen"), now) or "—" for host in fleet.get("hosts") or []}
    rows = [(holder["host_id"], holder["slot"] if holder.get("slot") is not None else "—",
             moment(holder.get("since"), zone=False) + (f" ({relative(holder['since'], now)})" if holder.get("since") else ""),
             seen.get(holder["host_id"], "no state")) for holder in holders]
    lines = ["", "Slot holders:",
             *fitted(rows, ("HOST", "SLOT", f"SINCE ({local_zone()})", "LAST SEEN"), ("slot", "since", "seen"))]
    # An agent's state lives under the lease that holds its slot and is refreshed as the lease is
    # renewed: a holder last seen long ago is not renewing it; one without a state cannot be told.
    for host_id in [holder["host_id"] for holder in holders if holder["host_id"] not in seen]:
        lines += block("Gone?", [f"{host_id} holds a slot and publishes no state; if it is gone:",
                                 f"id1 fleet release {host_id} --reason TEXT"])
    return lines


def _failure_lines(fleet: dict[str, Any]) -> list[str]:
    failures = fleet.get("failures") or []
    if not failures:
        return ["", *block("Failed", "no change failed on a host of the group")]
    rows = [(failure["ref"], "yes" if failure["halted"] else "no", ", ".join(failure.get("hosts") or []) or "—")
            for failure in failures]
    lines = ["", "Changes that failed on hosts of the group:",
             *fitted(rows, ("CHANGE", "HALTED", "FAILED ON"), ("halted", "failed on"))]
    halted = [failure["ref"] for failure in failures if failure["halted"]]
    if halted:
        lines += block("Resume", [f"id1 fleet resume {ref} --reason TEXT" for ref in halted])
    return lines


def fitted(rows: list[tuple[Any, ...]], headers: tuple[str, ...], labels: tuple[str, ...]) -> list[str]:
    """``table`` when it fits WIDTH; else each row as its first cell, the next ones labelled under
    it and any after those on lines of their own (a long fleet or instance id leaves no room for
    columns). An id longer than a line is never broken: it is typed again to act on it."""
    lines = table(rows, headers)
    if all(len(line) <= WIDTH for line in lines):
        return lines
    out: list[str] = []
    for first, *rest in rows:
        out += _wrapped(shown(first), indent=2)
        out += _wrapped(", ".join(f"{label} {shown(value)}" for label, value in zip(labels, rest)), indent=6)
        out += [line for value in rest[len(labels):] for line in _wrapped(shown(value), indent=6)]
    return out


def _wrapped(text: str, *, indent: int) -> list[str]:
    return textwrap.wrap(shown(text), WIDTH, initial_indent=" " * indent, subsequent_indent=" " * (indent or 2),
                         break_long_words=False, break_on_hyphens=False) or [" " * indent]

"""``id1 tui``: the Textual dashboard on the daemon's API (DESIGN.md §9); Textual loads only here."""

from __future__ import annotations

import argparse

from agent.cli.render import add_socket_option


def register(verbs: argparse._SubParsersAction) -> None:
    tui = verbs.add_parser("tui", help="the dashboard: see state, approve, roll back, pin (keyboard-first)",
                           description="Open the dashboard on the agent's API: 1-7 switch screens, a approve, "
                           "x reject, r roll back, ? help, q quit.")
    add_socket_option(tui)
    tui.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tui.run import run_tui

    return run_tui(args.socket)

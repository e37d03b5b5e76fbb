"""``id1 plan``: offline planning (DESIGN.md §5)."""

from __future__ import annotations

import argparse


def register(verbs: argparse._SubParsersAction) -> None:
    verbs.add_parser("plan", help="print what this host would run and why (offline)")

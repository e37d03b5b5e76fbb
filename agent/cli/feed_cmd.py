"""``id1 feed keygen | sign | verify | build``: the vendor's and operator's feed tools."""

from __future__ import annotations

import argparse

from agent.cli import keys_cmd


def register(verbs: argparse._SubParsersAction) -> None:
    feed = verbs.add_parser(
        "feed",
        help="make keys, sign, verify and build release feeds",
        description="Tools for the signed release feed (DESIGN.md §4).",
    )
    feed_verbs = feed.add_subparsers(dest="feed_verb", metavar="FEED_VERB", parser_class=type(feed))
    feed_verbs.required = True
    keys_cmd.register_keygen(feed_verbs)
    keys_cmd.register_sign(feed_verbs)

"""``id1 plan``: offline planning (DESIGN.md §5).

Verifies the feed (its ``.minisig`` beside it, keys from the config), plans, prints the plan as
one JSON object on stdout. Exit 0 planned, 2 usage, 3 feed rejected, 4 target invalid.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from agent.cli.render import shown
from agent.errors import UsageError

if TYPE_CHECKING:
    from agent.config import AgentConfig

EXIT_TARGET_INVALID = 4


def register(verbs: argparse._SubParsersAction) -> None:
    parser = verbs.add_parser(
        "plan",
        help="print what this host would run and why (offline, no daemon)",
        description="Verify a feed and print the plan for this host as JSON. "
        "Exit status: 0 planned, 2 usage, 3 feed rejected, 4 target invalid.",
    )
    parser.add_argument("--feed", required=True, type=Path, metavar="PATH", help="feed.json (its .minisig beside it)")
    parser.add_argument("--config", required=True, type=Path, metavar="AGENT_TOML", help="agent config: keys, policy, pins")
    parser.add_argument("--installed", type=Path, metavar="MANIFEST_JSON", help="the manifest running now (default: nothing installed)")
    parser.add_argument("--now", type=parse_instant, metavar="ISO8601", help="plan as of this time (default: now)")
    parser.add_argument("--instance-id", metavar="ID", help="this host's id (default: the config's instance_id, else /etc/machine-id)")
    parser.set_defaults(run=run)


def parse_instant(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time such as 2026-11-27T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def instance_id_for(explicit: str | None, config: AgentConfig) -> str:
    from agent.config import read_machine_id

    instance_id = explicit or config.instance_id or read_machine_id()
    if not instance_id:
        raise UsageError("no instance id: give --instance-id, set instance_id in the config, or create /etc/machine-id")
    return instance_id


def run(args: argparse.Namespace) -> int:
    # Imported here, not when the command line is built: `id1 --version` or `id1 status` need
    # none of the config, feed or planner modules (pydantic, cryptography, packaging).
    from agent.config import load_config
    from agent.feed.verify import read_feed_files, trusted_keys_from_config, verify_feed
    from agent.planning import INVALIDATING, make_plan
    from agent.planning.manifest import load_manifest

    config = load_config(args.config)
    instance_id = instance_id_for(args.instance_id, config)
    installed = load_manifest(args.installed) if args.installed else None
    now = args.now or datetime.now(timezone.utc)
    data, signature = read_feed_files(args.feed, config.feed.max_bytes)
    catalog = verify_feed(
        data,
        signature,
        trusted_keys_from_config(config.feed.trusted_keys),
        now=now,
        max_bytes=config.feed.max_bytes,
        source=str(args.feed),
    )
    plan = make_plan(catalog, config.policy, config.pins, installed, now=now, instance_id=instance_id)
    json.dump(plan.to_json(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    if not plan.valid:
        reasons = "; ".join(p.detail for p in plan.problems if p.code in INVALIDATING) or "no target could be resolved"
        print(f"id1: the target is invalid: {shown(reasons)}", file=sys.stderr)
        return EXIT_TARGET_INVALID
    return 0

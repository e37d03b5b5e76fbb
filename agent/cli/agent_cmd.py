"""``id1 agent run --once --config FILE``: one pass of the agent (DESIGN.md §7)."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from agent.cli.plan_cmd import instance_id_for
from agent.config import load_config


def register(verbs: argparse._SubParsersAction) -> None:
    agent = verbs.add_parser("agent", help="run the agent", description="Run the update agent on this host.")
    agent_verbs = agent.add_subparsers(dest="agent_verb", metavar="AGENT_VERB", parser_class=type(agent))
    agent_verbs.required = True
    run = agent_verbs.add_parser(
        "run",
        help="check the feed, plan and deploy per policy",
        description="Check the feed, plan, and deploy per policy once, then exit: 0 the host is "
        "steady, 1 a deployment failed and was rolled back, 3 the feed was rejected. One line per "
        "change on stderr. (Running as a long-lived daemon comes with the API.)",
    )
    run.add_argument("--once", action="store_true", required=True, help="one pass, then exit")
    run.add_argument("--config", type=Path, default=Path("/etc/id1/agent.toml"), metavar="FILE", help="agent config (default /etc/id1/agent.toml)")
    run.set_defaults(run=run_once)


def run_once(args: argparse.Namespace) -> int:
    from agent.once import Once  # the deployment engine's imports are not needed by other verbs

    config = load_config(args.config)
    return Once(config, instance_id_for(None, config), now=lambda: datetime.now(timezone.utc)).run()

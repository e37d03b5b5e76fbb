"""``id1 agent run [--once] --config FILE`` (DESIGN.md §7), and the state backups an operator
restores with the agent stopped: ``id1 agent backups`` and ``id1 agent restore BACKUP``."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path

from agent.cli.plan_cmd import instance_id_for


def register(verbs: argparse._SubParsersAction) -> None:
    agent = verbs.add_parser("agent", help="run the agent", description="Run the update agent on this host.")
    agent_verbs = agent.add_subparsers(dest="agent_verb", metavar="AGENT_VERB", parser_class=type(agent))
    agent_verbs.required = True
    run = agent_verbs.add_parser(
        "run",
        help="run the agent daemon (or one pass with --once)",
        description="Run the agent: serve the API on the socket, poll the feed on schedule, deploy "
        "per policy, until SIGTERM (SIGHUP reloads the config). With --once: check, plan and deploy "
        "once, then exit 0 when the host is steady, 1 when a deployment failed and was rolled back, "
        "3 when the feed was rejected, with one line per change on stderr.",
    )
    run.add_argument("--once", action="store_true", help="one pass, then exit")
    run.add_argument("--config", type=Path, default=Path("/etc/id1/agent.toml"), metavar="FILE", help="agent config (default /etc/id1/agent.toml)")
    run.set_defaults(run=run_once)
    backups = agent_verbs.add_parser("backups", help="list the state backups, newest first",
                                     description="List the snapshots of the agent's state taken every retention.backup_interval: "
                                     "state-<UTC>.json.gz, and plain state-<UTC>.json from older agents.")
    backups.add_argument("--config", type=Path, default=Path("/etc/id1/agent.toml"), metavar="FILE")
    backups.set_defaults(run=list_backups)
    restore = agent_verbs.add_parser(
        "restore", help="put a state backup back (the agent must be stopped)",
        description="Replace the agent's state with a backup, with the agent stopped "
        "(systemctl stop id1-agent). The current state file is kept beside it as state.json.before-restore-<time>.")
    restore.add_argument("backup", type=Path, metavar="BACKUP", help="a file listed by `id1 agent backups` (gzipped or not)")
    restore.add_argument("--config", type=Path, default=Path("/etc/id1/agent.toml"), metavar="FILE")
    restore.set_defaults(run=restore_backup)


def run_once(args: argparse.Namespace) -> int:
    from agent.config import load_config  # pydantic: only for these verbs

    if not args.once:
        return run_daemon(args)
    from agent.once import (
        Once,  # the deployment engine's imports are not needed by other verbs
    )

    config = load_config(args.config)
    return Once(config, instance_id_for(None, config), now=lambda: datetime.now(timezone.utc)).run()


def run_daemon(args: argparse.Namespace) -> int:
    import logging

    from agent.daemon.run import run_daemon as serve

    logging.basicConfig(level=logging.INFO, format="id1-agent: %(levelname)s %(name)s: %(message)s")
    for chatty in ("apscheduler", "httpx", "uvicorn"):  # their per-request lines would drown the agent's own
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return serve(args.config, lambda config: instance_id_for(None, config))


def list_backups(args: argparse.Namespace) -> int:
    from agent.config import load_config  # pydantic and the store: only for these verbs
    from agent.store import Store

    config = load_config(args.config)
    found = Store.list_backups(Path(config.state_dir))
    if not found:
        print(f"no backups in {Path(config.state_dir) / 'backups'}")
        return 0
    for backup in found:
        print(f"{backup.taken_at:%Y-%m-%d %H:%M:%S} UTC  {backup.size:>9,} bytes  {backup.path}")
    return 0


def restore_backup(args: argparse.Namespace) -> int:
    from agent.config import load_config  # pydantic and the store: only for these verbs
    from agent.store import Store

    config = load_config(args.config)
    summary = Store.restore_backup(Path(config.state_dir), args.backup)
    print(summary)
    return 0

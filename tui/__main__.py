"""``python -m tui [--socket PATH]``: the same dashboard as ``id1 tui``."""

from __future__ import annotations

import argparse
import sys

from tui.run import run_tui


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tui", description="The id1 agent's dashboard.")
    parser.add_argument("--socket", help="the agent's API socket (default: $ID1_SOCKET, else /run/id1/agent.sock)")
    args = parser.parse_args(argv)
    return run_tui(args.socket)


if __name__ == "__main__":
    sys.exit(main())

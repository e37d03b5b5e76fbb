"""Entry point of ``id1``: parses the command line and turns foreseen errors into one line.

Each verb lives in its own module with a ``register(subparsers)`` function that adds its parser
and sets ``run`` (a callable taking the parsed arguments and returning an exit status).

The verbs that talk to the daemon (DESIGN.md §9) find it at ``--socket PATH`` (before or after
the verb), else ``$ID1_SOCKET``, else ``/run/id1/agent.sock``. Their exit statuses:

    0   done                              4   nothing of that name (no approval, revision, pin)
    1   not confirmed, failed, broken     5   refused by the agent's state (409: already decided…)
    2   usage or invalid input (422)      69  the agent is not running / the socket is unreachable
    3   the feed was rejected             77  your role does not allow it (403)

Every line printed here may quote what the agent or the command line was given (an approval
id, a reason, a feed's text), so it is escaped for the terminal first (``agent.safe_text``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agent import __version__
from agent.cli.render import add_socket_option, shown
from agent.errors import ApiError, Id1Error, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is exit 2 with one line, as for every other foreseen error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {shown(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="id1",
        description="ID-1 update agent: plans, verifies and deploys signed platform releases.",
    )
    # The verb modules import only what building their parsers needs; each verb imports the rest
    # (httpx, pydantic, the planner…) when it runs, so `id1 --version` and `id1 status` start fast.
    from agent.cli import agent_cmd, audit_cmd, feed_cmd, fleet_cmd, history_cmd, pins_cmd, plan_cmd, status_cmd, tui_cmd, updates_cmd

    parser.add_argument("--version", action="version", version=f"id1 {__version__}")
    add_socket_option(parser, top_level=True)
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True
    for verbs_of in (status_cmd, updates_cmd, history_cmd, pins_cmd, fleet_cmd, audit_cmd, tui_cmd):
        verbs_of.register(verbs)
    agent_cmd.register(verbs)
    plan_cmd.register(verbs)
    feed_cmd.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv == ["--version"]:  # what a login script or a package check asks most: no parser needed
        print(f"id1 {__version__}")
        return 0
    try:
        check_arguments_are_text(argv)
        args = build_parser().parse_args(argv)
        return args.run(args)
    except Id1Error as error:
        # The API's message is one line by contract; a line break in it can only be quoted input.
        # Local errors may list their problems on several lines, indented under the first.
        print(f"id1: {shown(error, keep='' if isinstance(error, ApiError) else chr(10))}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("id1: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def check_arguments_are_text(argv: Sequence[str]) -> None:
    """Refuse an argument that is not UTF-8 (Python hands its bytes over as lone surrogates):
    sent on, it would fail deep inside as a traceback, or be stored as something else."""
    for position, argument in enumerate(argv, 1):
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"argument {position} ({shown(argument)}) is not UTF-8 text; "
                             "names, versions and reasons must be UTF-8") from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

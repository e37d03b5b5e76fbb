"""What the client verbs share: the ``--socket`` / ``--json`` options, the client, and output for people.

    add_client_options(parser)          --socket (also accepted before the verb) and --json
    with agent_client(args) as client:  the daemon at --socket, else $ID1_SOCKET, else the default
    table(rows, headers)                aligned columns, no borders, for an 80-column terminal
    moment(text) · relative(text, now)  API times as a person reads them
    confirm("Approve approval-3?")      the [y/N] question an admin answers over SSH
    shown(text) · emit(lines)           text from the agent made safe for a terminal, and printed

Human output goes to stdout; anything that is not the answer (a question, a refusal) goes where
it is read and not parsed: the prompt on the terminal, the refusal on stderr as ``id1: …``.

Everything printed may hold text the agent only passes on: an approver's reason, a feed's release
notes, an error quoting either, audit entries written before such text was refused. A control
character in it would be obeyed by the admin's terminal, so every way out of here (``emit``,
``say``, ``print_json``, the tables and blocks, ``confirm``) writes each one as its escape
(``agent.safe_text``: ESC as ``\\x1b``); the layout helpers escape first, so widths stay true.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Iterator

from agent.errors import Id1Error
from agent.safe_text import escape_unsafe
from agent.socket_path import DEFAULT_SOCKET, SOCKET_ENV

if TYPE_CHECKING:
    from agent.client import AgentClient

WIDTH = 80
LABEL = 11  # width of the labels in "Label      value" blocks


class NotConfirmed(Id1Error):
    """The admin answered no (or nothing) to a [y/N] question: nothing was changed."""

    exit_code = 1


class NothingToDecide(Id1Error):
    """A verb that needs something to act on (a pending approval) found none."""

    exit_code = 4


# --- options and the client ------------------------------------------------------------------

def add_socket_option(parser: argparse.ArgumentParser, *, top_level: bool = False) -> None:
    """``--socket`` on the top-level parser (default None) and again on each verb (no default,
    so ``id1 --socket S status`` and ``id1 status --socket S`` both work)."""
    parser.add_argument(
        "--socket", metavar="PATH", default=None if top_level else argparse.SUPPRESS,
        help=f"the agent's API socket (default: ${SOCKET_ENV}, else {DEFAULT_SOCKET})",
    )


def add_client_options(parser: argparse.ArgumentParser, *, json_help: str | None = "print the API's JSON answer",
                       nested: bool = False) -> None:
    """``--socket`` and ``--json``; ``nested`` for a sub-verb (``policy show``) whose parent has them too,
    so that ``id1 policy --json show`` keeps the parent's value."""
    add_socket_option(parser)
    if json_help is not None:
        parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS if nested else False, help=json_help)


@contextmanager
def agent_client(args: argparse.Namespace) -> Iterator[AgentClient]:
    from agent.client import (
        AgentClient,  # httpx: only for the verbs that talk to the daemon
    )

    with AgentClient.connect(getattr(args, "socket", None)) as client:
        yield client


# What json.dumps(ensure_ascii=False) leaves raw (DEL, C1 controls, bidi overrides, lone
# surrogates; C0 controls in strings it escapes itself, and its line breaks are its layout),
# written as the \\uXXXX escapes JSON has for them: the same data, safe to cat.
_RAW_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def json_text(data: Any) -> str:
    """``data`` as indented JSON, readable (UTF-8, not ``\\u`` escapes) but safe on a terminal."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def print_json(data: Any, stream: IO[str] | None = None) -> None:
    stream = stream or sys.stdout
    stream.write(json_text(data))
    stream.write("\n")


WRAPPED = "\n\t"
"""What may stay in text given to ``textwrap``, which makes each a space (a reason's line break
cannot start a line of its own)."""


def shown(value: Any, *, keep: str = "") -> str:
    """``str(value)`` fit for a terminal: each control character as its escape (``keep``: those
    the caller lays out itself, such as the line breaks of release notes)."""
    return escape_unsafe(str(value), keep=keep)


# --- text ------------------------------------------------------------------------------------

def table(rows: Iterable[Sequence[Any]], headers: Sequence[str], *, indent: int = 2) -> list[str]:
    """Aligned columns; the last column is not padded, and wraps under itself past WIDTH."""
    cells = [[shown(cell) if cell is not None else "—" for cell in row] for row in rows]
    widths = [max([len(headers[i]), *(len(row[i]) for row in cells)]) for i in range(len(headers))]
    last_column = indent + sum(width + 2 for width in widths[:-1])

    def lines_of(values: Sequence[str]) -> list[str]:
        head = " " * indent + "  ".join(value.ljust(widths[i]) for i, value in enumerate(values[:-1]))
        head = head + "  " if len(values) > 1 else head
        room = WIDTH - last_column
        if room < 20 or len(head) + len(values[-1]) <= WIDTH:
            return [(head + values[-1]).rstrip()]
        wrapped = textwrap.wrap(values[-1], room, break_long_words=False, break_on_hyphens=False) or [""]
        return [(head + wrapped[0]).rstrip(), *(" " * last_column + more for more in wrapped[1:])]

    out = lines_of(list(headers))
    for row in cells:
        out.extend(lines_of(row))
    return out


def block(label: str, lines: str | Sequence[str]) -> list[str]:
    """``Label      first line`` and the other lines under the first, each fitted to WIDTH."""
    if isinstance(lines, str):
        lines = [lines]
    out: list[str] = []
    for index, text in enumerate(lines or [""]):
        prefix = (label if index == 0 else "").ljust(LABEL)
        wrapped = textwrap.wrap(shown(text, keep=WRAPPED), WIDTH - LABEL, break_long_words=False, break_on_hyphens=False) or [""]
        out.append(prefix + wrapped[0])
        out.extend(" " * LABEL + more for more in wrapped[1:])
    return out


def indented(text: str, indent: int = 2) -> list[str]:
    """Free text (release notes) wrapped to WIDTH, its own line breaks kept."""
    out = []
    for paragraph in shown(text.replace("\r\n", "\n"), keep="\n\t").strip().split("\n") or [""]:
        out.extend(textwrap.wrap(paragraph, WIDTH - indent, initial_indent=" " * indent, subsequent_indent=" " * indent) or [""])
    return out


def say(text: str) -> None:
    """One message (the API's answer to a decision), wrapped to WIDTH."""
    text = shown(text, keep=WRAPPED)
    print("\n".join(textwrap.wrap(text, WIDTH, break_long_words=False, break_on_hyphens=False, subsequent_indent="  ")) or text)


def answered(args: argparse.Namespace, answer: dict[str, Any]) -> int:
    """An action's answer: its JSON with ``--json``, else its one-line ``message``; exit 0."""
    if args.json:
        print_json(answer)
    else:
        say(answer["message"])
    return 0


def emit(lines: Iterable[str], stream: IO[str] | None = None) -> None:
    (stream or sys.stdout).write("".join(f"{shown(line)}\n" for line in lines))


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural_form or singular + 's'}"


def arrow(before: str | None, after: str | None) -> str:
    return f"{before or '(none)'} → {after or '(removed)'}"


def action_words(change: dict[str, Any], *, window_closed: bool) -> str:
    """The plan's action, plus when an ``apply`` actually happens: a security fix at once, the
    rest when the maintenance window opens."""
    action = change["action"]
    if action == "apply" and window_closed and not change["source"].startswith("security:"):
        return "apply (in the window)"
    return action


def opens_later(next_window: str | None) -> bool:
    """True when a maintenance window is set and not open now (the API gives ``now`` while it is)."""
    opens = parse_time(next_window)
    return opens is not None and (opens - datetime.now(timezone.utc)).total_seconds() > 2


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def moment(text: str | None, *, seconds: bool = False, zone: bool = True) -> str:
    """``2026-11-27 09:34 UTC`` in the local time zone of the terminal's host; ``—`` for none.
    ``zone=False`` leaves the zone out, for a table column whose header names it (``local_zone()``)."""
    when = parse_time(text)
    if when is None:
        return "—"
    local = when.astimezone()
    return local.strftime("%Y-%m-%d %H:%M" + (":%S" if seconds else "") + (" %Z" if zone else ""))


def local_zone() -> str:
    return datetime.now().astimezone().strftime("%Z")


def relative(text: str | None, now: datetime | None = None) -> str:
    """``3 min ago`` / ``in 2 h``; empty for none."""
    when = parse_time(text)
    if when is None:
        return ""
    delta = (when - (now or datetime.now(timezone.utc))).total_seconds()
    span = abs(delta)
    if span < 60:
        amount = f"{int(span)} s"
    elif span < 3600:
        amount = f"{int(span // 60)} min"
    elif span < 2 * 86400:
        amount = f"{span / 3600:.0f} h"
    else:
        amount = f"{span / 86400:.0f} days"
    return f"in {amount}" if delta > 0 else f"{amount} ago"


def moment_and_relative(text: str | None) -> str:
    if not text:
        return "—"
    return f"{moment(text)} ({relative(text)})"


# --- asking ----------------------------------------------------------------------------------

def confirm(question: str, *, stream: IO[str] | None = None) -> bool:
    """Ask ``question [y/N]`` and read one line from stdin: only y or yes is a yes (EOF is no)."""
    out = stream or sys.stdout
    out.write(f"{shown(question)} [y/N] ")
    out.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):  # no stdin at all (closed, detached)
        answer = ""
    if not answer.endswith("\n"):
        out.write("\n")  # EOF: end the prompt's line so what follows does not run on from it
    return answer.strip().lower() in ("y", "yes")

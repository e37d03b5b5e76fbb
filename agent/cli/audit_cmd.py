"""``id1 audit [verify]`` (who changed what, when and why; is the hash chain intact) and ``id1 report``."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

from agent.cli.render import (
    WIDTH,
    WRAPPED,
    add_client_options,
    agent_client,
    emit,
    json_text,
    moment,
    plural,
    print_json,
    say,
    shown,
)
from agent.errors import Id1Error, UsageError
from agent.files import write_atomically


class AuditLogBroken(Id1Error):
    exit_code = 1


def register(verbs: argparse._SubParsersAction) -> None:
    audit = verbs.add_parser(
        "audit",
        help="the audit log (or `audit verify`: check its hash chain)",
        description="`id1 audit`: the newest entries, oldest of them first (--actor, --action, --limit filter). "
        "`id1 audit verify`: check the hash chain; exit 1 naming each entry that was edited, removed or reordered.",
    )
    audit.add_argument("action_verb", nargs="?", choices=("list", "verify"), default="list", metavar="verify",
                       help="check the log's hash chain instead of listing it")
    audit.add_argument("--actor", metavar="USER", help="only entries by this user (`agent` for the agent's own)")
    audit.add_argument("--action", metavar="ACTION", help="only this action (approve, reject, pin, rollback, forced-patch, …)")
    audit.add_argument("--limit", type=int, default=50, metavar="N", help="at most N entries, the newest (default 50)")
    add_client_options(audit)
    audit.set_defaults(run=run_audit)

    report = verbs.add_parser(
        "report",
        help="the compliance report: what runs and why, exposure, decisions",
        description="Print (or write to --output) the compliance report as Markdown, or as JSON.",
    )
    report.add_argument("--format", choices=("markdown", "json"), default="markdown", help="default markdown")
    report.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the report to FILE instead of stdout")
    add_client_options(report, json_help="the same as --format json")
    report.set_defaults(run=run_report)


def run_audit(args: argparse.Namespace) -> int:
    if args.action_verb == "verify":
        return run_verify(args)
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    with agent_client(args) as client:
        entries = client.audit(actor=args.actor, action=args.action, limit=args.limit)
    if args.json:
        print_json(entries)
    else:
        emit(audit_lines(entries))
    return 0


def audit_lines(entries: list[dict[str, Any]]) -> list[str]:
    if not entries:
        return ["No audit entries match."]
    lines = []
    # Entries hold people's words (reasons, comments), escaped here before they are laid out.
    actor_width = max(len(shown(entry["actor"])) for entry in entries)
    for entry in reversed(entries):  # the API gives newest first; a log reads oldest first
        head = f"{entry['seq']:>5}  {moment(entry['at'])}  {shown(entry['actor']):<{actor_width}}  "
        lines += textwrap.wrap(shown(f"{entry['action']}: {entry['what']}", keep=WRAPPED), WIDTH, initial_indent=head, subsequent_indent=" " * 7,
                               break_long_words=False, break_on_hyphens=False)
        if entry.get("why"):
            lines += textwrap.wrap(shown(f"why: {entry['why']}", keep=WRAPPED), WIDTH, initial_indent=" " * 7, subsequent_indent=" " * 12,
                                   break_long_words=False, break_on_hyphens=False)
    return lines


def run_verify(args: argparse.Namespace) -> int:
    with agent_client(args) as client:
        result = client.audit_verify()
    if args.json:
        print_json(result)
    elif result["ok"]:
        span = f" (entries {result['first_seq']}–{result['last_seq']})" if result.get("first_seq") is not None else ""
        say(f"audit log intact: {plural(result['checked'], 'entry', 'entries')} checked{span}")
    else:
        for problem in result["problems"]:
            where = f"{problem['file']} line {problem['line']}" if problem.get("line") is not None else problem["file"]
            say(f"{where}: {problem['message']}")
    if not result["ok"]:
        raise AuditLogBroken(f"the audit log is broken: {plural(len(result['problems']), 'problem')} "
                             f"in {plural(result['checked'], 'entry', 'entries')} checked")
    return 0


def run_report(args: argparse.Namespace) -> int:
    fmt = "json" if args.json else args.format
    with agent_client(args) as client:
        report = client.report(fmt)
    if fmt == "json":
        text = json_text(report) + "\n"
    else:
        text = shown(report, keep="\n\t")  # the entries' and the feed's words, as audit_lines shows them
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        write_atomically(args.output, text.encode("utf-8"), mode=0o644)
    except OSError as error:
        raise Id1Error(f"cannot write {args.output}: {error.strerror or error}") from None
    print(f"wrote the {fmt} report to {args.output}", file=sys.stderr)
    return 0

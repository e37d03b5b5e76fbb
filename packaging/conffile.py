"""Write the package's /etc/id1/agent.toml from the TOML block of docs/configuration.md.

    python3 packaging/conffile.py docs/configuration.md > build/deb/root/etc/id1/agent.toml

One source for both: the documentation lists every key with its default, and marks the values
that are only examples with a trailing ``# example`` comment (a table header marked so makes its
whole table an example). The conffile keeps every line and comment, but turns each example into a
commented-out line (``#url = "…"``), so a fresh install runs on the defaults and has no feed:
the unit's ExecCondition keeps the daemon stopped until an admin sets ``feed.url``.
tests/packaging/test_conffile.py checks that the result loads to the defaults and still names
every key.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

EXAMPLE = re.compile(r"#\s*example\b")
TABLE = re.compile(r"^\s*\[\[?[A-Za-z0-9_.\"-]+\]\]?")
KEY = re.compile(r"^\s*[A-Za-z0-9_\"-]+\s*=")

HEADER = """\
# /etc/id1/agent.toml: the configuration of the ID-1 update agent (id1-agent.service).
#
# Every key is listed below with its default. Lines such as `#url = "…"` are examples: remove the
# `#` and put in this host's value. Unknown keys are errors, and a bad file is refused with every
# problem named by its key path. Full reference: /usr/share/doc/id1-agent/configuration.md
#
# The agent is not started until feed.url (and feed.trusted_keys) are set. Then:
#     systemctl start id1-agent       first start (it is enabled at boot already)
#     systemctl reload id1-agent      after later edits (state_dir, socket, instance_id: restart)
"""


def toml_block(markdown: str) -> str:
    """The first ```toml block of the page: the complete, documented configuration."""
    found = re.search(r"```toml\n(.*?)```", markdown, re.DOTALL)
    if found is None:
        raise ValueError("no ```toml block in the configuration page")
    return found[1]


def conffile_text(markdown: str) -> str:
    lines = [HEADER]
    in_example_table = False
    for line in toml_block(markdown).splitlines():
        if TABLE.match(line):
            in_example_table = bool(EXAMPLE.search(line))
            lines.append("#" + line if in_example_table else line)
        elif KEY.match(line) and (in_example_table or EXAMPLE.search(line)):
            lines.append("#" + line)
        else:
            lines.append(line)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: conffile.py docs/configuration.md", file=sys.stderr)
        return 2
    sys.stdout.write(conffile_text(Path(argv[1]).read_text(encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

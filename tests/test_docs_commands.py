"""Every command the README and docs/ tell a user to type is run by a test, or this test shows
which one runs it.

``id1 …`` commands must parse as written (placeholders like ``N`` and ``"…"`` filled in), and
each verb they use must be driven by a test against the real agent. Other commands (make,
systemctl, …) are listed below with the test that runs them or what they stand for.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from agent.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOOLS = ("id1", "make", "systemctl", "journalctl", "usermod", "curl", "minisign", "python")

# The verb (first words of an id1 command) → a test file that runs it, and the text showing it does.
ID1_VERBS = {
    "status": ("tests/daemon/test_daemon_cli.py", '"status"'),
    "updates": ("tests/daemon/test_daemon_cli.py", '"updates"'),
    "approve": ("tests/daemon/test_daemon_cli.py", '"approve"'),
    "reject": ("tests/daemon/test_daemon_cli.py", '"reject"'),
    "history": ("tests/daemon/test_daemon_cli.py", '"history"'),
    "rollback": ("tests/daemon/test_daemon_cli.py", '"rollback"'),
    "pin": ("tests/daemon/test_daemon_cli.py", '"pin"'),
    "unpin": ("tests/daemon/test_daemon_cli.py", '"unpin"'),
    "policy": ("tests/daemon/test_daemon_cli.py", '"policy"'),
    "check": ("tests/daemon/test_daemon_cli.py", '"check"'),
    "audit": ("tests/daemon/test_daemon_cli.py", '"audit"'),
    "fleet": ("tests/test_cli_fleet.py", '"fleet", "resume"'),  # and "release", against a daemon in an etcd group
    "report": ("tests/test_docs_operations.py", "operations.md"),
    "tui": ("tests/e2e/test_tui_tmux.py", "tui"),
    "plan": ("tests/test_cli_plan.py", '"plan"'),
    "feed": ("tests/test_docs_examples.py", "feed-format.md"),
    "agent run": ("tests/test_agent_once.py", '"agent", "run"'),
    "agent backups": ("tests/test_cli_backups.py", '"agent", "backups"'),
    "agent restore": ("tests/test_cli_backups.py", '"agent", "restore"'),
}
# Commands that are not id1's → the test that runs them (or the behaviour they trigger), and evidence.
OTHERS = {
    "make demo": ("tests/demo/test_make_demo.py", "make"),
    "make test": (".ci/run", "make test"),
    "make bench": ("Makefile", "bench:"),
    "systemctl reload nginx": ("tests/systemd/test_bluegreen_on_systemd.py", "nginx_reload (systemctl"),
    "make deb": ("tests/packaging/test_deb.py", "deb"),
    "systemctl reload id1-agent": ("tests/systemd/test_agent_on_systemd.py", '"reload", AGENT'),  # on a real systemd host
    "systemctl reload": ("tests/systemd/test_agent_on_systemd.py", '"reload", AGENT'),
    "systemctl status id1-agent": ("tests/packaging/test_deb.py", "systemd-analyze"),  # the unit is verified there
    "systemctl is-system-running --wait": ("tests/hosts/machine.py", '"is-system-running", "--wait"'),  # a test host's boot
    "systemctl poweroff": ("tests/hosts/machine.py", '"systemctl", "poweroff"'),  # a test host's reboot
    "systemctl edit UNIT": ("tests/test_units.py", "override.conf"),  # an admin's drop-in outlives deployments
    "journalctl -u id1-agent": ("tests/hosts/agent.py", '"journalctl", "-u"'),
    "usermod -aG id1-approver alice": ("tests/daemon/test_roles_cli.py", "useradd"),  # group membership grants the role
    "curl --unix-socket /run/id1/agent.sock http://id1/status": ("tests/test_docs_api.py", "curl"),
    "minisign -G": ("tests/test_minisign_interop.py", '"-G"'),
    "minisign -V": ("tests/test_minisign_interop.py", '"-V"'),
    "python -m agent.api.reference": ("tests/test_docs_api.py", "render_reference"),
}


def commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        spans = re.findall(r"`([^`\n]+)`", text)
        # ```sh run blocks are run as written by test_docs_examples / test_docs_operations.
        blocks = [line for block in re.findall(r"^```sh(?! run)[^\n]*\n(.*?)^```", text, re.M | re.S) for line in block.splitlines()]
        for command in [*spans, *blocks]:
            command = command.split("#")[0].strip()
            if command.split(" ")[0] in TOOLS and " " in command:
                found.append((page.name, command))
    return sorted(set(found))


def id1_variants(command: str) -> list[list[str]]:
    """``id1 feed keygen | sign`` → two commands; placeholders filled in so argparse can parse them."""
    command = command.replace("[--suite S]", "--suite core").replace("approval-N", "approval-1").replace("…", "x")
    command = re.sub(r"\bN\b", "1", command).replace("FILE", "agent.toml")
    head, *alternatives = [part.strip() for part in command.split("|")]
    words = shlex.split(head)
    variants = [words] + [words[:-1] + shlex.split(alternative) for alternative in alternatives]
    return [variant[1:] for variant in variants]


def _names_a_verb_only(argv: list[str]) -> bool:
    return all(re.fullmatch(r"[a-z]+", word) for word in argv) and len(argv) <= 2 and (
        verb_of(argv) in ID1_VERBS or argv[0] in ("feed", "policy", "audit"))


def verb_of(argv: list[str]) -> str:
    return " ".join(argv[:2]) if argv[0] == "agent" else argv[0]


@pytest.mark.parametrize(("page", "command"), commands())
def test_every_documented_command_is_run_by_a_test(page, command):
    if command.startswith("id1 "):
        for argv in id1_variants(command):
            if not _names_a_verb_only(argv):  # `id1 pin` in a sentence names the verb; a full command must parse
                try:
                    build_parser().parse_args(argv)
                except SystemExit:
                    pytest.fail(f"{page}: `{command}` does not parse as `id1 {' '.join(argv)}`")
            path, evidence = ID1_VERBS[verb_of(argv)]
    else:
        assert command in OTHERS, f"{page}: `{command}` is run by no test listed here"
        path, evidence = OTHERS[command]
    assert (ROOT / path).exists() and evidence in (ROOT / path).read_text(encoding="utf-8"), (page, command, path)

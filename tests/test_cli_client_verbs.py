"""The client verbs' command line (DESIGN.md §9) without a daemon: where they look for the agent,
``--json`` on every data verb, the [y/N] question, and output that fits 80 columns.
The verbs against a real daemon are in tests/daemon/test_daemon_cli.py."""

from __future__ import annotations

import io

import pytest

from agent.cli.main import build_parser, main
from agent.cli.render import confirm, table
from agent.cli.status_cmd import status_lines

DATA_VERBS = [["status"], ["updates"], ["history"], ["policy"], ["policy", "show"], ["audit"], ["audit", "verify"], ["report"],
              ["check"], ["approve"], ["reject", "--reason", "x"], ["rollback"], ["pin", "suite", "core", "1.0.0"],
              ["unpin", "suite", "core"], ["policy", "set", "frozen"]]


@pytest.mark.parametrize("argv", DATA_VERBS, ids=" ".join)
def test_every_client_verb_takes_json_and_the_socket_before_or_after_it(argv):
    parser = build_parser()
    after = parser.parse_args([*argv, "--json", "--socket", "/tmp/after.sock"])
    before = parser.parse_args(["--socket", "/tmp/before.sock", *argv, "--json"])
    assert (after.json, after.socket) == (True, "/tmp/after.sock")
    assert (before.json, before.socket) == (True, "/tmp/before.sock")
    assert parser.parse_args(argv).socket is None  # then $ID1_SOCKET, then /run/id1/agent.sock


def test_the_socket_comes_from_the_environment_and_its_absence_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ID1_SOCKET", str(tmp_path / "env.sock"))
    assert main(["status"]) == 69
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith("id1: the agent is not running") and str(tmp_path / "env.sock") in err
    assert main(["updates", "--socket", str(tmp_path / "flag.sock")]) == 69
    assert str(tmp_path / "flag.sock") in capsys.readouterr().err


def test_a_ca_bundle_setting_that_names_no_file_does_not_matter_on_the_socket(tmp_path, monkeypatch, capsys):
    """Seen on a host without ca-certificates, with SSL_CERT_FILE inherited: a traceback, not an answer."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "no-such-bundle.crt"))
    assert main(["status", "--socket", str(tmp_path / "agent.sock")]) == 69
    assert capsys.readouterr().err.startswith("id1: the agent is not running")


@pytest.mark.parametrize("answer, approved", [("y\n", True), ("yes\n", True), ("Y\n", True), (" YES \n", True),
                                              ("\n", False), ("n\n", False), ("yess\n", False), ("", False), ("y", True)])
def test_only_y_or_yes_is_a_yes(answer, approved, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    out = io.StringIO()
    assert confirm("Approve approval-3?", stream=out) is approved
    assert out.getvalue().startswith("Approve approval-3? [y/N] ")


def test_tables_align_and_wrap_their_last_column_within_80_columns():
    rows = [("core/auth", "1.0.0", "security:ID1-SA-2026-0001 (overrides pin:capability) " * 2), ("core/api", "2.10.0", "latest")]
    lines = table(rows, ("CAPABILITY", "VERSION", "SOURCE"))
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].index("VERSION") == lines[1].index("1.0.0") == lines[-1].index("2.10.0")
    assert lines[-1].endswith("latest") and len(lines) > 3  # the long source wrapped under its column


def test_status_reads_in_80_columns_and_says_how_to_act_on_a_pending_approval():
    status = {
        "instance_id": "host-01", "agent_version": "0.1.0", "activity": "idle", "activity_since": "2026-11-27T09:00:00Z",
        "user": "alice", "role": "approver", "channel": "manual-approval", "suites": {"analytics": "auto-update"},
        "maintenance_window": ["Sat 02:00-05:00"], "timezone": "UTC", "in_window": False, "next_window": "2026-11-28T02:00:00Z",
        "revision": 4, "platform": "2.5.0",
        "capabilities": [{"capability": "core/auth", "version": "1.0.1", "source": "security:ID1-SA-2026-0001",
                          "overrides": "pin:suite", "units": ["id1-core-auth.service"]}],
        "feed_url": "https://releases.example.com/id1/stable/feed.json", "feed_serial": 42,
        "last_check": "2026-11-27T09:00:00Z", "last_success": "2026-11-27T09:00:00Z", "next_check": "2026-11-27T09:15:00Z",
        "pending_approval": {"id": "approval-7", "status": "pending", "created_at": "2026-11-27T09:00:00Z", "changes": 2},
        "changes": [{"capability": "core/api", "from": "2.0.0", "to": "2.1.0", "source": "latest", "action": "await-approval"}],
        "problems": [{"code": "exposed", "detail": "analytics/report 1.0.0 is affected by ID1-SA-2026-0002 and no release fixes it yet"}],
        "exposed_advisories": 1, "blocked_versions": 1, "deployment": None, "last_error": None, "warnings": [],
    }
    text = "\n".join(status_lines(status))
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "revision 4, platform 2.5.0" in text and "security:ID1-SA-2026-0001 (overrides pin:suite)" in text
    assert "approval-7: 2 changes await approval" in text
    assert "id1 approve approval-7" in text and "id1 reject approval-7 --reason TEXT" in text
    assert "exposed: analytics/report 1.0.0" in text and "1 version blocked" in text
    assert "alice (approver)" in text and "analytics: auto-update" in text

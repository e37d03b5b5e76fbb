"""``id1 plan`` per its contract: JSON on stdout, exit 0 planned / 2 usage / 3 feed rejected /
4 target invalid, one clear line on stderr and never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from agent import __version__
from agent.cli.main import main
from agent.feed.signature import SecretKey, sign
from tests.builders import NOW, FeedBuilder, iso, simple_feed


class Host:
    """A feed folder signed by a vendor key and an agent config trusting that key."""

    def __init__(self, root: Path):
        self.root = root
        self.key = SecretKey.generate()
        self.feed = root / "feed.json"
        self.config = root / "agent.toml"
        self.write_config()

    def write_config(self, *, pins: str = "", channel: str = "manual-approval", keys: list[str] | None = None, extra: str = ""):
        keys = keys if keys is not None else [self.key.public_key().to_base64()]
        self.config.write_text(
            f'instance_id = "host-01"\n{extra}[feed]\ntrusted_keys = {json.dumps(keys)}\n'
            f'[policy]\nchannel = "{channel}"\n{pins}'
        )

    def publish(self, builder: FeedBuilder, key: SecretKey | None = None) -> None:
        data = builder.bytes()
        self.feed.write_bytes(data)
        (self.root / "feed.json.minisig").write_text(sign(data, key or self.key, trusted_comment="test feed"))


def run_id1(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def host(tmp_path) -> Host:
    return Host(tmp_path)


def plan_args(host: Host, *extra):
    return ["plan", "--feed", host.feed, "--config", host.config, "--now", iso(NOW), *extra]


def test_plan_prints_the_plan_as_json_and_exits_0(host, capsys):
    host.publish(simple_feed().advisory("ID1-SA-2026-0001", "core/auth", "<1.0.1"))
    code, out, err = run_id1(capsys, *plan_args(host))
    assert code == 0, err
    plan = json.loads(out)
    assert set(plan) >= {"installed", "target", "next", "changes", "problems"}
    assert plan["installed"] is None and plan["next"] is None
    assert plan["target"]["platform"] == "2.6.0"
    auth = plan["target"]["suites"]["core"]["capabilities"]["auth"]
    assert auth["version"] == "1.1.0" and auth["source"] == "latest" and auth["artifact"]["size"] == 1000
    assert {c["action"] for c in plan["changes"]} == {"await-approval"}


def test_plan_with_an_installed_manifest_forces_the_critical_fix(host, capsys, tmp_path):
    host.publish(simple_feed())
    host.write_config(pins='[[pins]]\nlevel = "platform"\nname = "platform"\nversion = "2.5.0"\n')
    _, out, _ = run_id1(capsys, *plan_args(host))
    installed = tmp_path / "installed.json"
    installed.write_text(json.dumps(json.loads(out)["target"]))

    host.publish(simple_feed().advisory("ID1-SA-2026-0001", "core/auth", "<1.0.1"))
    host.write_config(channel="frozen")
    code, out, err = run_id1(capsys, *plan_args(host, "--installed", installed))
    assert code == 0, err
    changes = json.loads(out)["changes"]
    assert changes[0] == {"capability": "core/auth", "from": "1.0.0", "to": "1.0.1",
                          "source": "security:ID1-SA-2026-0001", "action": "apply"}
    assert all(c["action"] == "hold" for c in changes[1:])


def test_an_invalid_target_prints_the_plan_and_exits_4(host, capsys):
    host.publish(simple_feed())
    host.write_config(pins='[[pins]]\nlevel = "suite"\nname = "core"\nversion = "9.9.9"\n')
    code, out, err = run_id1(capsys, *plan_args(host))
    assert code == 4
    plan = json.loads(out)
    assert plan["problems"] == [{"code": "unknown-release", "detail": "suite pin core 9.9.9: the feed has no core release 9.9.9"}]
    assert err.startswith("id1: the target is invalid: suite pin core 9.9.9")


@pytest.mark.parametrize(
    "spoil,message",
    [
        (lambda host: host.feed.write_bytes(host.feed.read_bytes().replace(b'"1.1.0"', b'"1.1.9"', 1)), "does not match"),
        (lambda host: host.publish(simple_feed(), key=SecretKey.generate()), "not a trusted key"),
        (lambda host: (host.root / "feed.json.minisig").unlink(), "no signature"),
        (lambda host: host.publish(FeedBuilder(issued_at=NOW - timedelta(days=20), expires_at=NOW - timedelta(days=6))), "expired"),
        (lambda host: host.publish(FeedBuilder().withdraw("platform@9")), "invalid feed"),
        (lambda host: host.write_config(extra="", keys=[host.key.public_key().to_base64()]) or host.config.write_text(
            host.config.read_text().replace("[feed]\n", "[feed]\nmax_bytes = 100\n")), "larger than the 100-byte cap"),
    ],
    ids=["tampered", "untrusted-key", "unsigned", "expired", "bad-format", "over-size-cap"],
)
def test_a_rejected_feed_is_exit_3_with_one_clear_message(host, capsys, spoil, message):
    host.publish(simple_feed())
    spoil(host)
    code, out, err = run_id1(capsys, *plan_args(host))
    assert code == 3
    assert out == ""
    assert message in err and "Traceback" not in err
    assert err.startswith("id1: ")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["plan", "--config", "x.toml"], "the following arguments are required: --feed"),
        (["plan", "--feed", "f.json", "--config", "missing.toml"], "missing.toml: invalid agent config: no such file"),
        (["plan", "--feed", "f.json", "--config", "x", "--now", "yesterday"], "'yesterday' is not an ISO 8601 time"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exited:  # argparse's own errors
        code = exited.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and "Traceback" not in err


def test_a_missing_feed_file_is_a_usage_error(host, capsys):
    code, _, err = run_id1(capsys, "plan", "--feed", host.root / "nope.json", "--config", host.config)
    assert code == 2 and "cannot read feed" in err


def test_a_bad_installed_manifest_is_a_usage_error(host, capsys, tmp_path):
    host.publish(simple_feed())
    bad = tmp_path / "installed.json"
    bad.write_text("[]")
    code, _, err = run_id1(capsys, *plan_args(host, "--installed", bad))
    assert code == 2 and "installed.json: invalid manifest" in err


def test_the_instance_id_sets_the_rollout_place(host, capsys):
    builder = simple_feed()
    builder.data["platforms"][1]["rollout"] = {"start": iso(NOW - timedelta(hours=1)), "hours": 2}
    host.publish(builder)
    platforms = set()
    for instance in ("a", "b", "c", "d", "e", "f", "g", "h"):
        _, out, _ = run_id1(capsys, *plan_args(host, "--instance-id", instance))
        platforms.add(json.loads(out)["target"]["platform"])
    assert platforms == {"2.5.0", "2.6.0"}


def test_the_installed_console_script_runs_without_traceback(host):
    """The real ``id1`` entry point, in a fresh interpreter."""
    host.publish(simple_feed())
    command = [sys.executable, "-m", "agent.cli.main"]
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout.strip() == f"id1 {__version__}"
    helped = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "plan" in helped.stdout and "feed" in helped.stdout
    planned = subprocess.run([*command, *map(str, plan_args(host))], capture_output=True, text=True, timeout=60)
    assert planned.returncode == 0 and json.loads(planned.stdout)["target"]["platform"] == "2.6.0"
    rejected = subprocess.run([*command, "plan", "--feed", str(host.feed), "--config", str(host.config), "--now", "2030-01-01T00:00:00Z"],
                              capture_output=True, text=True, timeout=60)
    assert rejected.returncode == 3 and "Traceback" not in rejected.stderr and rejected.stderr.count("\n") == 1

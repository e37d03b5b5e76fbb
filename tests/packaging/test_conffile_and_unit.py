"""The package's pieces that need no build: the example /etc/id1/agent.toml made from
docs/configuration.md, the unit's sandbox, the ExecCondition check, sysusers.d and tmpfiles.d.

(No __init__.py in this folder on purpose: as a package, ``tests/packaging`` would shadow the
``packaging`` library for the whole test session.)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from agent.api.limits import ApiLimits, descriptors_kept
from agent.config import AgentConfig, FeedConfig, config_from_dict
from tests.test_docs_configuration import key_paths

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "id1-agent.service"
FEED_CONFIGURED = REPO / "packaging" / "feed-configured"
MAX_EXPOSURE = 3.0


def conffile_text() -> str:
    sys.path.insert(0, str(REPO / "packaging"))
    try:
        from conffile import conffile_text as make
    finally:
        sys.path.remove(str(REPO / "packaging"))
    return make((REPO / "docs" / "configuration.md").read_text(encoding="utf-8"))


def uncommented_examples(text: str) -> str:
    """The conffile with its `#key = …` and `#[table]` example lines switched on."""
    return re.sub(r"^#(?=[A-Za-z\[])", "", text, flags=re.M)


def test_the_conffile_runs_on_the_defaults_and_sets_no_feed():
    config = config_from_dict(tomllib.loads(conffile_text()), "/etc/id1/agent.toml")
    assert config == AgentConfig()
    assert config.feed.url is None and config.feed.trusted_keys == []


def test_the_conffile_names_every_key_and_its_examples_are_the_documented_ones():
    text = conffile_text()
    documented = tomllib.loads(re.search(r"```toml\n(.*?)```", (REPO / "docs/configuration.md").read_text(), re.S)[1])
    switched_on = tomllib.loads(uncommented_examples(text))
    assert switched_on == documented
    named = set()
    table = ""
    for line in text.splitlines():
        if header := re.match(r"^#?\[\[?([a-z_.]+)\]\]?", line):
            table = header[1] + "."
            named.add(header[1])
        elif key := re.match(r"^#?([a-z_]+)\s*=", line):
            named.add(table + key[1])
    missing = [path for path in key_paths(AgentConfig) if path not in named and not path.startswith("policy.suites")]
    assert missing == []


@pytest.mark.parametrize(
    ("config", "status", "said"),
    [
        ('[feed]\nurl = "https://releases.example.com/id1/feed.json"\n', 0, ""),
        ("[feed]\npoll_interval = \"15m\"\n", 1, "feed.url is not set"),
        ('[feed]\nurl = ""\n', 1, "feed.url is not set"),
        ("", 1, "feed.url is not set"),
        (None, 1, "does not exist"),
        ("[feed\nurl = ", 0, ""),  # unparsable: the daemon starts and lists what is wrong
    ],
)
def test_the_unit_starts_only_with_a_feed(tmp_path, config, status, said):
    path = tmp_path / "agent.toml"
    if config is not None:
        path.write_text(config)
    done = subprocess.run([sys.executable, FEED_CONFIGURED, path], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (status, "")
    assert said in done.stderr


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_keeps_its_promises():
    settings = unit_settings()
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert settings["ExecStart"] == ["/usr/bin/id1 agent run --config /etc/id1/agent.toml"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["ExecCondition"] == ["/usr/libexec/id1/feed-configured /etc/id1/agent.toml"]
    assert settings["Restart"] == ["on-failure"] and settings["KillMode"] == ["mixed"]
    assert settings["StateDirectory"] == ["id1"] and settings["RuntimeDirectory"] == ["id1"]
    assert settings["RuntimeDirectoryMode"] == ["0755"]
    assert "ConfigurationDirectory" not in settings  # it would make /etc/id1 writable to health commands
    assert settings["ProtectSystem"] == ["strict"]
    assert set(settings["ReadWritePaths"][0].split()) >= {"/etc/systemd/system", "/var/lib/id1"}
    assert settings["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert settings["CapabilityBoundingSet"] == [""]
    watchdog = int(re.fullmatch(r"(\d+)s", settings["WatchdogSec"][0])[1])
    assert watchdog >= 20  # the daemon pings at half of it, from an event loop that may be busy
    stop = int(re.fullmatch(r"(\d+)min", settings["TimeoutStopSec"][0])[1]) * 60
    assert stop >= 2 * 120 + 5  # undo = at least two systemctl calls (120 s each) after a 5 s health cut


AGENT_AT_REST = 64
"""Descriptors the daemon holds when idle, with room to spare (it measures a dozen)."""


def test_the_units_descriptor_limit_holds_every_connection_the_api_takes_and_the_agents_reserve():
    settings = unit_settings()
    nofile = int(settings["LimitNOFILE"][0])  # one number: soft and hard alike
    limits = ApiLimits()
    connections = limits.max_connections + limits.max_per_user  # everyone's, then root's own
    assert AGENT_AT_REST + connections + descriptors_kept(limits, nofile) <= nofile
    assert descriptors_kept(limits, nofile) >= 128  # a feed poll, a download, the state, a few commands


def test_the_unit_caps_memory_and_survives_a_command_killed_for_it():
    settings = unit_settings()
    amount, unit = re.fullmatch(r"(\d+)([MG])", settings["MemoryMax"][0]).groups()
    memory = int(amount) << (20 if unit == "M" else 30)
    largest_feed = FeedConfig().max_bytes
    assert memory >= max(256 << 20, 16 * largest_feed)  # a parsed feed takes many times its bytes
    assert memory <= 2 << 30
    assert settings["OOMPolicy"] == ["continue"]  # a health command killed for memory fails its step only


def exposure(unit: Path) -> float:
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    assert found, done.stdout[-2000:]
    return float(found[1])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (Debian package systemd)")
def test_the_unit_is_hardened():
    assert exposure(UNIT) <= MAX_EXPOSURE


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers (Debian package systemd)")
def test_sysusers_creates_the_three_role_groups(tmp_path):
    (tmp_path / "etc").mkdir()
    done = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(REPO / "systemd/sysusers.d/id1.conf")],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    groups = [line.split(":")[0] for line in (tmp_path / "etc/group").read_text().splitlines()]
    assert groups == ["id1-viewer", "id1-approver", "id1-admin"]


@pytest.mark.skipif(shutil.which("systemd-tmpfiles") is None, reason="needs systemd-tmpfiles (Debian package systemd)")
def test_tmpfiles_creates_the_state_folder(tmp_path):
    done = subprocess.run(
        ["systemd-tmpfiles", "--create", f"--root={tmp_path}", str(REPO / "systemd/tmpfiles.d/id1.conf")],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    state = tmp_path / "var/lib/id1"
    assert state.is_dir() and oct(state.stat().st_mode & 0o777) == "0o755"

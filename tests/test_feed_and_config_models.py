"""Invalid feeds and configs fail with every error named by its path; unknown feed fields are
ignored, unknown config keys are errors."""

from __future__ import annotations

import json

import pytest

from agent.config import config_from_dict, load_config, parse_duration
from agent.errors import ConfigError, FeedInvalid, ManifestInvalid
from agent.feed.catalog import parse_feed
from agent.planning.manifest import load_manifest
from tests.builders import simple_feed


def feed_errors(data) -> list[str]:
    with pytest.raises(FeedInvalid) as raised:
        parse_feed(json.dumps(data).encode() if not isinstance(data, bytes) else data)
    return [str(issue) for issue in raised.value.issues]


def test_a_reference_to_a_missing_suite_release_is_named_by_path():
    feed = simple_feed()
    feed.data["platforms"][1]["suites"]["core"] = "9.9.9"
    assert feed_errors(feed.data) == ["platforms[1].suites.core: no suite release core 9.9.9 in the feed"]


def test_every_error_is_listed_not_just_the_first():
    feed = simple_feed()
    feed.data["suites"][0]["capabilities"]["auth"] = "7.0.0"
    feed.data["capabilities"][0]["artifact"]["sha256"] = "nothex"
    del feed.data["platforms"][0]["released_at"]
    errors = feed_errors(feed.data)
    assert "capabilities[0].artifact.sha256: String should match pattern '^[0-9a-fA-F]{64}$'" in errors
    assert "platforms[0].released_at: Field required" in errors
    # shape errors come first; cross-references are checked once the shape is right
    feed.data["capabilities"][0]["artifact"]["sha256"] = "a" * 64
    feed.data["platforms"][0]["released_at"] = "2026-11-20T12:00:00Z"
    assert feed_errors(feed.data) == ["suites[0].capabilities.auth: no capability release core/auth 7.0.0 in the feed"]


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda d: d["capabilities"][1].update(version="not a version"), "capabilities[1].version: 'not a version' is not a PEP 440 version"),
        (lambda d: d["advisories"].append({**d["advisories"][0], "capability": "core/nothing"}), "advisories[1].capability: no capability core/nothing in the feed"),
        (lambda d: d["advisories"][0].update(severity="urgent"), "advisories[0].severity: Input should be 'low', 'medium', 'high' or 'critical'"),
        (lambda d: d["advisories"][0].update(affected="<<1"), "advisories[0].affected: '<<1' is not a PEP 440 version specifier"),
        (lambda d: d["withdrawn"].append("core/auth@4.0.0"), "withdrawn[0]: no release core/auth 4.0.0 in the feed"),
        (lambda d: d["withdrawn"].append("core auth 1.0"), "withdrawn[0]: 'core auth 1.0' is not a release reference such as core/auth@1.0.2 or platform@2.5.1"),
        (lambda d: d["capabilities"].append(dict(d["capabilities"][0])), "capabilities[7]: core/auth 1.0.0 is already listed at capabilities[0]"),
        (lambda d: d["capabilities"][0].update(suite="../etc"), "capabilities[0].suite: '../etc' is not a name of up to 64 letters"),
        (lambda d: d["capabilities"][0].update(requires={"capabilities": {"core/ghost": ">=1"}}), "capabilities[0].requires.capabilities.core/ghost: no capability core/ghost in the feed"),
        (lambda d: d.update(format=2), "format: Input should be 1"),
        (lambda d: d.update(expires_at=d["issued_at"]), "expires_at: 2026-11-26T12:00:00+00:00 is not after issued_at"),
    ],
)
def test_invalid_feeds_name_the_path(mutate, expected):
    feed = simple_feed().advisory("ID1-SA-1", "core/auth", "<1.0.1")
    mutate(feed.data)
    assert any(error.startswith(expected) for error in feed_errors(feed.data)), feed_errors(feed.data)


def test_unknown_feed_fields_are_ignored():
    feed = simple_feed()
    feed.data["signed_by"] = "future field"
    feed.data["platforms"][0]["lts"] = True
    feed.data["capabilities"][0]["artifact"]["mirrors"] = ["https://m1"]
    assert parse_feed(feed.bytes()).serial == 1


def test_not_json_is_a_feed_error_not_a_traceback():
    [error] = feed_errors(b"{not json")
    assert "Invalid JSON" in error


def test_unknown_config_keys_are_errors_named_by_path():
    with pytest.raises(ConfigError) as raised:
        config_from_dict({"feed": {"urll": "x"}, "policy": {"channel": "sometimes", "suites": {"core": {"chanel": "frozen"}}}})
    errors = [str(issue) for issue in raised.value.issues]
    assert "feed.urll: unknown key" in errors
    assert any(e.startswith("policy.channel: Input should be 'auto-update', 'manual-approval' or 'frozen'") for e in errors)
    assert "policy.suites.core.chanel: unknown key" in errors
    assert any(e.startswith("policy.suites.core.channel: Field required") for e in errors)


@pytest.mark.parametrize(
    "table,expected",
    [
        ({"pins": [{"level": "suite", "name": "core/auth", "version": "1.0"}]}, "pins[0]: name 'core/auth' does not fit level suite"),
        ({"pins": [{"level": "capability", "name": "core/auth", "version": "~=~1"}]}, "pins[0].version: '~=~1' is neither a PEP 440 version nor a specifier"),
        ({"policy": {"maintenance_window": "Caturday 02:00-05:00"}}, "policy.maintenance_window[0]: 'Caturday 02:00-05:00' is not a maintenance window"),
        ({"policy": {"maintenance_window": ["Sat 25:00-26:00"]}}, "policy.maintenance_window[0]: 'Sat 25:00-26:00': 25:00 is not a time of day"),
        ({"policy": {"timezone": "Mars/Olympus"}}, "policy.timezone: 'Mars/Olympus' is not a known time zone"),
        ({"feed": {"poll_interval": "often"}}, "feed.poll_interval: 'often' is not a duration"),
        ({"feed": {"trusted_keys": ["RWnotakey"]}}, "feed.trusted_keys[0]: not a minisign public key"),
    ],
)
def test_config_values_are_checked(table, expected):
    with pytest.raises(ConfigError) as raised:
        config_from_dict(table)
    assert any(str(issue).startswith(expected) for issue in raised.value.issues), raised.value.issues


def test_a_config_file_that_is_not_toml_or_missing_is_one_clear_error(tmp_path):
    broken = tmp_path / "agent.toml"
    broken.write_text("[policy\nchannel = 1")
    with pytest.raises(ConfigError, match=r"agent.toml: invalid agent config: not valid TOML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_the_design_example_config_loads(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(
        """
instance_id = "host-01"
state_dir = "/var/lib/id1"
socket = "/run/id1/agent.sock"
[feed]
url = "https://releases.example.com/id1/stable/feed.json"
trusted_keys = ["RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"]  # DESIGN.md has [], which no longer loads with a url
poll_interval = "15m"
[policy]
channel = "manual-approval"
enforce_severity = "critical"
maintenance_window = "Sat 02:00-05:00"
allow_prerelease = false
[policy.suites.analytics]
channel = "auto-update"
[[pins]]
level = "suite"
name = "core"
version = "~=1.2.0"
reason = "certified stack"
[services]
systemctl = "systemctl"
systemctl_args = []
unit_dir = "/etc/systemd/system"
[roles]
viewer = ["id1-viewer"]
approver = ["id1-approver"]
admin = ["id1-admin"]
"""
    )
    config = load_config(path)
    assert config.policy.channel_for("analytics") == "auto-update"
    assert config.policy.channel_for("core") == "manual-approval"
    assert config.policy.maintenance_window == ["Sat 02:00-05:00"]
    assert config.pins[0].describe() == "suite pin core ~=1.2.0"
    assert parse_duration(config.feed.poll_interval).total_seconds() == 900


def test_two_pins_on_the_same_name_are_a_config_error():
    with pytest.raises(ConfigError, match=r"pins\[1\] pins suite core again"):
        config_from_dict({"pins": [{"level": "suite", "name": "core", "version": "1.2.0"}, {"level": "suite", "name": "core", "version": "1.3.0"}]})


def test_an_invalid_installed_manifest_names_file_and_path(tmp_path):
    path = tmp_path / "installed.json"
    path.write_text(json.dumps({"platform": "2.5.0", "suites": {"core": {"version": "1.2.0", "capabilities": {"auth": {"version": "1.0.0"}}}}}))
    with pytest.raises(ManifestInvalid) as raised:
        load_manifest(path)
    assert "suites.core.capabilities.auth.source: Field required" in [str(i) for i in raised.value.issues]


def test_a_bad_specifier_in_an_installed_manifest_is_named(tmp_path):
    feed = simple_feed().catalog()
    release = feed.capabilities["core/auth"][next(iter(feed.capabilities["core/auth"]))]
    entry = {"version": "1.0.0", "source": "latest", "artifact": release.artifact.model_dump(), "units": [],
             "requires": {"platform": ">>2"}}
    path = tmp_path / "installed.json"
    path.write_text(json.dumps({"platform": "2.5.0", "suites": {"core": {"version": "1.2.0", "capabilities": {"auth": entry}}}}))
    with pytest.raises(ManifestInvalid, match="'>>2' is not a PEP 440 version specifier"):
        load_manifest(path)

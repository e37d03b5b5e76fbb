"""Inputs that ended in a traceback or an odd state (issue 12, item 4): each is now one clear
error naming the key, field or path, and nothing half-done.

Config values out of range, a non-UTF-8 argument, versions spelled otherwise than their normal
form, endless versions and specifiers, a serial far past any real one, duplicate JSON keys,
``file:`` artifact URLs, a feed URL without keys, and ``id1 updates`` when every release is
blocked. The health command's time is in tests/deploy/test_health_command_time.py, ids in URL
paths in tests/test_terminal_escapes.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from packaging.version import InvalidVersion, Version

from agent.config import PolicyConfig, config_from_dict
from agent.errors import ConfigError, FeedInvalid
from agent.feed.catalog import parse_feed
from agent.planning import make_plan
from tests.builders import NOW, FeedBuilder, simple_feed
from tests.daemon.site import Release, Site, poll_until

ROOT = Path(__file__).resolve().parents[1]


def feed_issues(data: bytes) -> list[str]:
    with pytest.raises(FeedInvalid) as raised:
        parse_feed(data)
    return [str(issue) for issue in raised.value.issues]


# --- the config ------------------------------------------------------------------------------

@pytest.mark.parametrize(("table", "key", "says"), [
    ({"feed": {"poll_interval": "99999999999d"}}, "feed.poll_interval", "longest duration allowed, 3650d"),
    ({"retention": {"backups": "1" + "0" * 5000 + "d"}}, "retention.backups", "longest duration allowed, 3650d"),
    ({"health": {"bake_period": "3651d"}}, "health.bake_period", "longest duration allowed, 3650d"),
    ({"feed": {"max_bytes": 2**70}}, "feed.max_bytes", "1073741824"),
])
def test_durations_and_sizes_are_bounded_with_the_key_named(table, key, says):
    with pytest.raises(ConfigError) as raised:
        config_from_dict(table)
    [issue] = raised.value.issues
    assert issue.path == key and says in issue.message and len(str(issue)) < 200, str(issue)


def test_the_longest_duration_is_still_taken():
    assert config_from_dict({"retention": {"backups": "3650d"}}).retention.backups == "3650d"


def test_a_feed_url_without_trusted_keys_is_a_config_error_at_once():
    with pytest.raises(ConfigError) as raised:
        config_from_dict({"feed": {"url": "https://releases.example.com/id1/stable/feed.json"}})
    [issue] = raised.value.issues
    assert issue.path == "feed.trusted_keys" and "feed.url is set" in issue.message
    assert config_from_dict({}).feed.url is None  # no feed at all stays a valid config (API only)


@pytest.fixture(scope="module")
def site():
    site = Site()
    try:
        site.configure("manual-approval")
        site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
        site.start()
        yield site
    finally:
        site.close()


def test_sighup_with_an_endless_poll_interval_is_refused_and_said(site):
    good = site.config.read_text()
    try:
        site.config.write_text(good.replace('poll_interval = "1h"', 'poll_interval = "99999999999d"'))
        site.send(signal.SIGHUP)
        poll_until(lambda: site.audit("config-rejected"), timeout=20, what="the reload to be refused")
        [refused] = site.audit("config-rejected")
        assert "feed.poll_interval" in refused["why"] and "ten years" in refused["why"], refused
        assert any("feed.poll_interval" in warning for warning in site.status()["warnings"])
        assert site.process.poll() is None
    finally:
        site.config.write_text(good)


# --- the command line ------------------------------------------------------------------------

def test_an_argument_that_is_not_utf8_is_one_line_and_exit_2(site):
    done = subprocess.run([sys.executable, "-m", "agent.cli.main", "pin", "capability", "core/auth", b"\xff",
                           "--socket", str(site.socket)], capture_output=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2, done.stderr
    err = done.stderr.decode()
    assert err.count("\n") == 1 and "argument 4 (\\xff) is not UTF-8" in err, err
    assert not site.get("/versions").json()["pins"]  # nothing was pinned


def test_id1_updates_says_what_blocks_when_every_release_is_blocked():
    from agent.api.schemas import Updates
    from agent.cli.updates_cmd import updates_lines

    catalog = simple_feed().catalog()
    blocked = [f"{ref}@{version}" for ref, versions in catalog.capabilities.items() for version in versions]
    plan = make_plan(catalog, PolicyConfig(), [], None, now=NOW, instance_id="host-01", blocked=blocked)
    assert plan.target is None
    answer = Updates(target_hash=plan.target_hash, changes=[], problems=[p.to_json() for p in plan.problems],
                     approval=None, next_window=None).model_dump(mode="json", by_alias=True)
    lines = updates_lines(answer, {"pins": [], "blocked": []})
    assert lines[0].startswith("Nothing to deploy: no usable platform release"), lines
    assert not any("No feed has been accepted" in line for line in lines)
    assert all(len(line) <= 80 for line in lines)


def test_id1_updates_without_a_target_still_lists_the_forced_fixes():
    from agent.api.schemas import Updates
    from agent.cli.updates_cmd import updates_lines
    from agent.config import VersionPin

    pinned = [VersionPin(level="platform", name="platform", version="2.5.0")]
    installed = make_plan(simple_feed().catalog(), PolicyConfig(channel="auto-update"), pinned, None, now=NOW, instance_id="h").next
    catalog = simple_feed().advisory("ID1-SA-2026-0001", "core/auth", "==1.0.0").catalog()
    plan = make_plan(catalog, PolicyConfig(), [], installed, now=NOW, instance_id="h", blocked=["platform@2.5.0", "platform@2.6.0"])
    assert plan.target is None and [(c.capability, c.to_version) for c in plan.changes] == [("core/auth", "1.0.1")]
    answer = Updates(target_hash=None, changes=[c.to_json() for c in plan.changes], problems=[p.to_json() for p in plan.problems],
                     approval=None, next_window=None).model_dump(mode="json", by_alias=True)
    lines = updates_lines(answer, {})
    assert lines[0].startswith("No target: no usable platform release") and any("core/auth" in line and "1.0.1" in line for line in lines)


# --- versions --------------------------------------------------------------------------------

@pytest.mark.parametrize(("written", "normal"), [(" 1.1.0\n", "1.1.0"), ("v1.1.0", "1.1.0"), ("01.1.0", "1.1.0"), ("1.1.0-RC1", "1.1.0rc1")])
def test_a_version_becomes_a_name_in_its_normal_form(written, normal):
    feed = FeedBuilder().capability("core/auth", written).suite("core", written, {"auth": written}).platform(written, {"core": written})
    feed.data["capabilities"][0]["artifact"]["url"] = "artifacts/core-auth.tar.gz"
    plan = make_plan(feed.catalog(), PolicyConfig(allow_prerelease=True), [], None, now=NOW, instance_id="host-01")
    assert plan.target.platform == normal and plan.target.suites["core"].version == normal
    assert plan.target.suites["core"].capabilities["auth"].version == normal  # the release folder's name
    assert [(change.capability, change.to_version) for change in plan.changes] == [("core/auth", normal)]


SPELLINGS = (r"\A\s?[vV]?(0|0?[1-9][0-9]{0,3})(\.(0|0?[1-9][0-9]{0,3})){0,3}"
             r"([-._]?(a|b|c|rc|RC|alpha|beta|pre|preview)[-._]?[0-9]{0,2})?([-._]?(post|rev|r)[0-9]{0,2}|-[0-9]{1,2})?"
             r"([-._]?dev[0-9]{0,2})?(\+[a-z0-9]{1,4}([._-][a-z0-9]{1,3})?)?\s?\Z")


@settings(max_examples=300, derandomize=True, database=None)
@given(st.from_regex(SPELLINGS))
def test_the_normal_form_is_what_packaging_says(text):
    from agent.versions import canonical_version

    try:
        expected = str(Version(text))
    except InvalidVersion:
        assume(False)
    assert canonical_version(text) == expected


def test_one_release_spelled_two_ways_by_two_feeds_is_not_a_change():
    def feed(spelling: str):
        built = FeedBuilder().capability("core/auth", spelling).suite("core", "1.0.0", {"auth": spelling}).platform("1.0.0", {"core": "1.0.0"})
        built.data["capabilities"][0]["artifact"]["sha256"] = "a" * 64  # the same bytes in both
        return built.catalog()

    installed = make_plan(feed("1.0"), PolicyConfig(channel="auto-update"), [], None, now=NOW, instance_id="h").next
    again = make_plan(feed("1.0.0"), PolicyConfig(channel="auto-update"), [], installed, now=NOW, instance_id="h")
    assert again.valid and again.changes == () and again.next.versions() == {"core/auth": "1.0"}


@pytest.mark.parametrize("version", ["1" * 10_000, "1." * 5_000 + "1"])
def test_a_ten_thousand_character_version_is_refused_by_its_path_in_a_short_line(version):
    feed = simple_feed()
    feed.data["capabilities"][0]["version"] = version
    started = time.perf_counter()
    issues = feed_issues(feed.bytes())
    assert time.perf_counter() - started < 1
    assert issues[0].startswith("capabilities[0].version: ") and "at most 128 characters" in issues[0], issues[0][:300]


def test_a_version_too_long_for_a_config_pin_is_named_without_repeating_it():
    with pytest.raises(ConfigError) as raised:
        config_from_dict({"pins": [{"level": "suite", "name": "core", "version": "~=" + "1" * 10_000}]})
    [issue] = raised.value.issues
    assert issue.path == "pins.0.version" or issue.path == "pins[0].version"
    assert len(str(issue)) < 200 and "10002 characters" in str(issue), str(issue)[:300]


def test_a_very_long_specifier_is_refused_by_its_path():
    feed = simple_feed()
    feed.data["capabilities"][0]["requires"] = {"platform": ",".join([">=1.0"] * 200)}  # valid, 1,199 characters
    assert any(issue.startswith("capabilities[0].requires.platform: ") for issue in feed_issues(feed.bytes()))


# --- serials, duplicate keys, artifact URLs --------------------------------------------------

def test_a_serial_past_two_to_the_53_is_refused():
    issues = feed_issues(FeedBuilder(serial=2**53).platform("1.0.0", {}).bytes())
    assert issues and issues[0].startswith("serial: "), issues
    assert parse_feed(FeedBuilder(serial=2**53 - 1).platform("1.0.0", {}).bytes()).serial == 2**53 - 1


@pytest.mark.parametrize(("before", "after", "path"), [
    (b'"serial": 1,', b'"serial": 1, "serial": 900,', "serial"),
    (b'"size": 1000', b'"size": 1000, "size": 1', "capabilities[0].artifact.size"),
    (b'"auth": "1.0.0"', b'"auth": "1.0.0", "auth": "1.1.0"', "suites[0].capabilities.auth"),
    (b'"format": 1,', b'"format": 1, "x-vendor": {"a": 1, "a": 2},', "x-vendor.a"),
    (b'"serial": 1,', b'"serial": 1, "serial" \n : 2, "x-note": "say \\": hi",', "serial"),
])
def test_a_key_written_twice_is_refused_by_its_path(before, after, path):
    data = simple_feed().bytes()
    assert before in data
    issues = feed_issues(data.replace(before, after, 1))
    assert any(issue.startswith(f"{path}: this key is written twice") for issue in issues), issues


@pytest.mark.parametrize("layout", [{"indent": 2}, {"separators": (",", ":")}, {"separators": (" , ", " : "), "indent": "\t"}])
def test_feeds_without_duplicates_are_read_whatever_their_layout(layout):
    data = json.loads(simple_feed().bytes())
    data["x-vendor"] = {"note": 'a "quoted": key-like text', "list": [{"a": 1}, {"a": 2}]}  # unknown keys: ignored
    assert parse_feed(json.dumps(data, **layout).encode()).serial == 1


@pytest.mark.parametrize("url", ["file:///etc/shadow", "FILE:/var/lib/id1/state.json", " file:///etc/shadow", "ftp://mirror/x.tar.gz",
                                 "data:,x", "fi\tle:///etc/shadow"])
def test_a_feed_may_not_name_a_local_file_or_another_scheme_as_an_artifact(url):
    feed = simple_feed()
    feed.data["capabilities"][1]["artifact"]["url"] = url
    issues = feed_issues(feed.bytes())
    assert issues[0].startswith("capabilities[1].artifact.url: ") and "file:" in issues[0], issues


@pytest.mark.parametrize("url", ["artifacts/a.tar.gz", "https://cdn.example.com/a.tar.gz", "HTTP://mirror/a", "//cdn/a", "./a:b.tar.gz"])
def test_http_and_relative_artifact_urls_are_fine(url):
    feed = simple_feed()
    feed.data["capabilities"][1]["artifact"]["url"] = url
    assert parse_feed(feed.bytes()).serial == 1

"""One test (at least) per rule of DESIGN.md §5, each failing without the rule."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agent.config import PolicyConfig, SuitePolicy, VersionPin
from agent.planning import APPLY, AWAIT_APPROVAL, HOLD, make_plan
from agent.planning.rollout import has_reached, wariness
from agent.feed.model import Rollout
from tests.builders import NOW, FeedBuilder, simple_feed

HOST = "host-01"


def plan(builder_or_catalog, *, channel="auto-update", pins=(), installed=None, blocked=(), approved=None, now=NOW, instance_id=HOST, **policy):
    catalog = builder_or_catalog.catalog() if isinstance(builder_or_catalog, FeedBuilder) else builder_or_catalog
    return make_plan(
        catalog,
        PolicyConfig(channel=channel, **policy),
        list(pins),
        installed,
        now=now,
        instance_id=instance_id,
        blocked=blocked,
        approved_target=approved,
    )


def pin(level, name, version):
    return VersionPin(level=level, name=name, version=version)


def versions(manifest):
    return manifest.versions() if manifest is not None else {}


def codes(result):
    return [problem.code for problem in result.problems]


def changes(result):
    return [(c.capability, c.from_version, c.to_version, c.source, c.action) for c in result.changes]


def installed_at(platform, feed=None):
    """The target of a plan pinned to ``platform``: what a host on that release runs (security
    fixes included when the feed has advisories, so security tests use the default feed)."""
    result = plan(feed or simple_feed(), pins=[pin("platform", "platform", platform)])
    assert result.valid, result.problems
    return result.target


# --- latest ---------------------------------------------------------------------------------

def test_latest_is_the_highest_platform_release():
    result = plan(simple_feed())
    assert result.target.platform == "2.6.0"
    assert versions(result.target) == {"core/auth": "1.1.0", "core/api": "2.1.0", "analytics/report": "1.1.0"}
    assert {c.source for c in result.target.capabilities().values()} == {"latest"}


def test_latest_skips_a_withdrawn_platform_release():
    assert plan(simple_feed().withdraw("platform@2.6.0")).target.platform == "2.5.0"


def test_latest_skips_a_platform_release_containing_a_withdrawn_capability():
    assert plan(simple_feed().withdraw("core/auth@1.1.0")).target.platform == "2.5.0"


def test_latest_skips_prereleases_unless_allowed():
    feed = simple_feed().suite("core", "1.4.0rc1", {"auth": "1.1.0", "api": "2.1.0"}).platform(
        "2.7.0rc1", {"core": "1.4.0rc1", "analytics": "1.1.0"}
    )
    assert plan(feed).target.platform == "2.6.0"
    assert plan(feed, allow_prerelease=True).target.platform == "2.7.0rc1"


def test_a_release_before_its_rollout_start_reaches_no_host():
    feed = simple_feed()
    feed.data["platforms"][1]["rollout"] = {"start": "2026-11-28T00:00:00Z", "hours": 1}
    for host in ("a", "b", "c", "d"):
        assert plan(feed, instance_id=host).target.platform == "2.5.0"


def test_rollout_ramps_linearly_with_the_hosts_wariness():
    hosts = [f"host-{i}" for i in range(200)]
    start = NOW - timedelta(hours=24)
    feed = simple_feed()
    feed.data["platforms"][1]["rollout"] = {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "hours": 48}
    catalog = feed.catalog()
    reached = [h for h in hosts if plan(catalog, instance_id=h).target.platform == "2.6.0"]
    assert {h for h in reached} == {h for h in hosts if wariness(h) <= 0.5}
    assert 60 < len(reached) < 140  # about half the fleet half-way through
    assert all(plan(catalog, instance_id=h, now=start + timedelta(hours=48)).target.platform == "2.6.0" for h in hosts[:20])


def test_wariness_is_stable_and_in_unit_interval():
    assert wariness("host-01") == wariness("host-01")
    assert wariness("host-01") != wariness("host-02")
    assert all(0 <= wariness(f"h{i}") < 1 for i in range(100))


def test_has_reached():
    rollout = Rollout(start=NOW, hours=10)
    assert not has_reached(rollout, NOW - timedelta(seconds=1), 0.0)
    assert has_reached(rollout, NOW, 0.0)
    assert not has_reached(rollout, NOW + timedelta(hours=4), 0.5)
    assert has_reached(rollout, NOW + timedelta(hours=5), 0.5)
    assert has_reached(None, NOW, 0.99)
    assert has_reached(Rollout(start=NOW, hours=0), NOW, 0.99)


# --- pins -----------------------------------------------------------------------------------

def test_capability_pin_beats_suite_pin_beats_platform_pin_beats_latest():
    result = plan(simple_feed(), pins=[
        pin("platform", "platform", "2.5.0"),
        pin("suite", "core", "1.3.0"),
        pin("capability", "core/auth", "1.0.1"),
    ])
    target = result.target.capabilities()
    assert result.target.platform == "2.5.0"
    assert (target["core/auth"].version, target["core/auth"].source) == ("1.0.1", "pin:capability")
    assert (target["core/api"].version, target["core/api"].source) == ("2.1.0", "pin:suite")
    assert (target["analytics/report"].version, target["analytics/report"].source) == ("1.0.0", "pin:platform")


def test_specifier_pin_picks_the_highest_matching_release():
    feed = simple_feed().capabilities("core/auth", "1.0.2", "1.2.0")
    result = plan(feed, pins=[pin("capability", "core/auth", "~=1.0.0")])
    assert versions(result.target)["core/auth"] == "1.0.2"


def test_specifier_pin_skips_withdrawn_and_prereleases():
    feed = simple_feed().capabilities("core/auth", "1.0.2", "1.0.3rc1").withdraw("core/auth@1.0.2")
    assert versions(plan(feed, pins=[pin("capability", "core/auth", "~=1.0.0")]).target)["core/auth"] == "1.0.1"


def test_pin_to_a_release_the_feed_lacks_makes_the_target_invalid():
    result = plan(simple_feed(), pins=[pin("suite", "core", "9.9.9")])
    assert not result.valid
    assert "unknown-release" in codes(result)
    assert "suite pin core 9.9.9" in result.problems[0].detail


def test_specifier_pin_matching_nothing_makes_the_target_invalid():
    result = plan(simple_feed(), pins=[pin("capability", "core/auth", ">=5")])
    assert not result.valid and "no-match" in codes(result)


def test_exact_pin_to_a_withdrawn_release_is_refused():
    result = plan(simple_feed().withdraw("core/auth@1.0.1"), pins=[pin("capability", "core/auth", "1.0.1")])
    assert not result.valid and "withdrawn" in codes(result)


def test_pin_on_something_the_platform_lacks_is_reported_unused():
    result = plan(simple_feed(), pins=[pin("suite", "billing", "1.0.0")])
    assert result.valid and codes(result) == ["unused-pin"]


# --- compatibility --------------------------------------------------------------------------

def test_a_pin_that_breaks_requires_is_a_problem_by_name_and_nothing_is_deployed():
    feed = simple_feed()
    feed.capability("core/auth", "1.3.0", requires={"platform": ">=2.7"})
    result = plan(feed, pins=[pin("capability", "core/auth", "1.3.0")])
    assert not result.valid
    [problem] = [p for p in result.problems if p.code == "incompatible"]
    assert "core/auth 1.3.0 requires platform >=2.7" in problem.detail and "pin:capability" in problem.detail
    assert result.next is None
    assert all(c.action == HOLD for c in result.changes)


def test_capability_requirements_are_checked_against_the_target():
    feed = simple_feed().capability("analytics/report", "1.2.0", requires={"capabilities": {"core/api": ">=3.0"}})
    result = plan(feed, pins=[pin("capability", "analytics/report", "1.2.0")])
    assert "incompatible" in codes(result)
    assert "requires core/api >=3.0 (has 2.1.0)" in result.problems[0].detail


# --- channels -------------------------------------------------------------------------------

@pytest.mark.parametrize("channel,action", [("auto-update", APPLY), ("manual-approval", AWAIT_APPROVAL), ("frozen", HOLD)])
def test_the_channel_decides_the_action(channel, action):
    result = plan(simple_feed(), channel=channel, installed=installed_at("2.5.0"))
    assert {c.action for c in result.changes} == {action}
    assert versions(result.next) == (versions(result.target) if action == APPLY else versions(installed_at("2.5.0")))


def test_per_suite_channel_overrides():
    result = plan(simple_feed(), channel="frozen", installed=installed_at("2.5.0"),
                  suites={"analytics": SuitePolicy(channel="auto-update")})
    by_capability = {c.capability: c.action for c in result.changes}
    assert by_capability == {"analytics/report": APPLY, "core/api": HOLD, "core/auth": HOLD}
    assert versions(result.next)["analytics/report"] == "1.1.0"
    assert result.next.platform == "2.5.0"  # not every change applied: still the installed platform


def test_next_platform_is_the_targets_once_everything_is_applied():
    result = plan(simple_feed(), installed=installed_at("2.5.0"))
    assert result.next.platform == "2.6.0" and result.next.suites["core"].version == "1.3.0"


def test_fresh_install_changes_come_from_null():
    result = plan(simple_feed(), channel="manual-approval")
    assert result.installed is None and result.next is None
    assert all(c.from_version is None and c.action == AWAIT_APPROVAL for c in result.changes)


def test_a_capability_the_target_no_longer_has_is_removed():
    feed = simple_feed().capabilities("core/legacy", "0.9.0").suite(
        "core", "1.1.0", {"auth": "1.0.0", "api": "2.0.0", "legacy": "0.9.0"}
    ).platform("2.4.0", {"core": "1.1.0", "analytics": "1.0.0"})
    result = plan(feed, installed=installed_at("2.4.0", feed))
    assert ("core/legacy", "0.9.0", None, "latest", APPLY) in changes(result)
    assert "core/legacy" not in versions(result.next)


def test_approval_binds_to_the_exact_target():
    feed = simple_feed()
    first = plan(feed, channel="manual-approval", installed=installed_at("2.5.0"))
    approved = plan(feed, channel="manual-approval", installed=installed_at("2.5.0"), approved=first.target_hash)
    assert {c.action for c in approved.changes} == {APPLY}
    assert versions(approved.next) == versions(first.target)
    newer = feed.capabilities("core/auth", "1.1.1").suite("core", "1.3.1", {"auth": "1.1.1", "api": "2.1.0"}).platform(
        "2.6.1", {"core": "1.3.1", "analytics": "1.1.0"})
    changed = plan(newer, channel="manual-approval", installed=installed_at("2.5.0"), approved=first.target_hash)
    assert {c.action for c in changed.changes} == {AWAIT_APPROVAL}


def test_an_apply_that_needs_a_waiting_change_is_deferred():
    feed = (
        simple_feed()
        .capability("analytics/report", "1.2.0", requires={"capabilities": {"core/api": ">=2.1"}})
        .suite("analytics", "1.2.0", {"report": "1.2.0"})
        .platform("2.7.0", {"core": "1.3.0", "analytics": "1.2.0"})
    )
    result = plan(feed, channel="manual-approval", installed=installed_at("2.5.0", feed),
                  suites={"analytics": SuitePolicy(channel="auto-update")})
    assert "deferred" in codes(result)
    assert versions(result.next) == versions(installed_at("2.5.0", feed))
    assert ("analytics/report", "1.0.0", "1.2.0", "latest", HOLD) in changes(result)


# --- security -------------------------------------------------------------------------------

def secure_feed():
    return simple_feed().capabilities("core/auth", "1.0.2").advisory("ID1-SA-1", "core/auth", "<1.0.1")


def test_an_affected_installed_version_is_fixed_now_even_when_frozen():
    feed = secure_feed()
    result = plan(feed, channel="frozen", installed=installed_at("2.5.0"))
    first = result.changes[0]
    assert (first.capability, first.from_version, first.to_version, first.source, first.action) == (
        "core/auth", "1.0.0", "1.0.1", "security:ID1-SA-1", APPLY)
    assert versions(result.next)["core/auth"] == "1.0.1"
    # the rest of the update still waits for the channel: core/auth appears twice
    assert ("core/auth", "1.0.1", "1.1.0", "latest", HOLD) in changes(result)


def test_the_fix_is_the_lowest_unaffected_version_not_the_latest():
    feed = secure_feed().advisory("ID1-SA-2", "core/auth", "==1.0.1")
    result = plan(feed, channel="frozen", installed=installed_at("2.5.0"))
    assert versions(result.next)["core/auth"] == "1.0.2"


def test_the_fix_skips_withdrawn_and_blocked_versions():
    feed = secure_feed().withdraw("core/auth@1.0.1")
    installed = installed_at("2.5.0")
    assert versions(plan(feed, channel="frozen", installed=installed).next)["core/auth"] == "1.0.2"
    assert versions(plan(secure_feed(), channel="frozen", installed=installed, blocked=["core/auth@1.0.1"]).next)["core/auth"] == "1.0.2"


def test_the_fix_must_be_compatible():
    feed = simple_feed()
    feed.data["capabilities"] = [c for c in feed.data["capabilities"] if not (c["name"] == "auth" and c["version"] == "1.0.1")]
    feed.capability("core/auth", "1.0.1", requires={"platform": ">=9"}).capability("core/auth", "1.0.5")
    feed.advisory("ID1-SA-1", "core/auth", "<1.0.1")
    result = plan(feed, channel="frozen", installed=installed_at("2.5.0", simple_feed()))
    assert versions(result.next)["core/auth"] == "1.0.5"


def test_a_security_fix_overrides_a_pin_and_records_it():
    result = plan(secure_feed(), pins=[pin("capability", "core/auth", "1.0.0")])
    entry = result.target.capabilities()["core/auth"]
    assert (entry.version, entry.source) == ("1.0.1", "security:ID1-SA-1")
    assert entry.overrides == "capability pin core/auth 1.0.0 chose 1.0.0"
    assert result.valid


def test_latest_never_lands_on_an_affected_version():
    feed = simple_feed().advisory("ID1-SA-9", "core/auth", "==1.1.0").capabilities("core/auth", "1.1.1")
    entry = plan(feed).target.capabilities()["core/auth"]
    assert (entry.version, entry.source) == ("1.1.1", "security:ID1-SA-9")


def test_no_fix_means_exposed():
    feed = simple_feed().advisory("ID1-SA-3", "core/api", ">=0")
    result = plan(feed, channel="frozen", installed=installed_at("2.5.0"))
    assert "exposed" in codes(result) and result.valid
    assert any("ID1-SA-3" in p.detail for p in result.problems)


def test_lower_severities_follow_the_policy():
    feed = simple_feed().advisory("ID1-SA-4", "core/auth", "<1.0.1", severity="high")
    assert not plan(feed, channel="frozen", installed=installed_at("2.5.0")).next.capabilities()["core/auth"].source.startswith("security")
    forced = plan(feed, channel="frozen", installed=installed_at("2.5.0"), enforce_severity="high")
    assert versions(forced.next)["core/auth"] == "1.0.1"


# --- blocked --------------------------------------------------------------------------------

def test_blocked_versions_are_not_chosen_automatically():
    feed = simple_feed()
    assert plan(feed, blocked=["core/auth@1.1.0"]).target.platform == "2.5.0"
    assert plan(feed, blocked=["platform@2.6.0"]).target.platform == "2.5.0"
    spec = plan(feed.capabilities("core/auth", "1.0.2"), pins=[pin("capability", "core/auth", "~=1.0.0")], blocked=["core/auth@1.0.2"])
    assert versions(spec.target)["core/auth"] == "1.0.1"


def test_an_exact_pin_still_gets_a_blocked_version():
    result = plan(simple_feed(), pins=[pin("capability", "core/auth", "1.1.0")], blocked=["core/auth@1.1.0"])
    assert versions(result.target)["core/auth"] == "1.1.0" and result.valid


# --- stored policies ------------------------------------------------------------------------

def test_enabled_stored_policies_override_the_config_newest_first():
    from datetime import datetime, timezone

    from agent.config import UpdatePolicy
    from agent.planning.policy import effective_policy

    def stored(id, channel, minute, suite=None, enabled=True):
        moment = datetime(2026, 11, 27, 12, minute, tzinfo=timezone.utc)
        return UpdatePolicy(id=id, name=id, channel=channel, enabled=enabled, created_at=moment, updated_at=moment, suite=suite)

    configured = PolicyConfig(channel="manual-approval", suites={"core": SuitePolicy(channel="frozen")})
    assert effective_policy(configured, []) == configured
    policy = effective_policy(configured, [
        stored("p1", "frozen", 1),
        stored("p2", "auto-update", 2),
        stored("p3", "frozen", 3, enabled=False),
        stored("p4", "auto-update", 1, suite="core"),
    ])
    assert policy.channel == "auto-update"
    assert policy.channel_for("core") == "auto-update"
    assert policy.channel_for("analytics") == "auto-update"
    assert configured.channel_for("core") == "frozen"  # the configured policy is left as it was


def test_a_channel_never_moves_a_capability_back_onto_an_affected_version():
    """The target is exposed (its core/auth is affected and the fix does not fit platform 2.6),
    the installed core/auth has a fix that fits: the fix is forced and kept, never undone."""
    feed = (
        FeedBuilder()
        .capabilities("core/auth", "1.0.0")
        .capability("core/auth", "1.0.5", requires={"platform": "<2.6"})
        .capabilities("core/api", "2.0.0", "2.1.0")
        .suite("core", "1.2.0", {"auth": "1.0.0", "api": "2.0.0"})
        .suite("core", "1.3.0", {"auth": "1.0.0", "api": "2.1.0"})
        .platform("2.5.0", {"core": "1.2.0"})
        .platform("2.6.0", {"core": "1.3.0"})
    )
    installed = installed_at("2.5.0", feed)
    result = plan(feed.advisory("ID1-SA-7", "core/auth", "<1.0.5"), installed=installed)
    assert "exposed" in codes(result)
    assert changes(result) == [
        ("core/api", "2.0.0", "2.1.0", "latest", APPLY),
        ("core/auth", "1.0.0", "1.0.5", "security:ID1-SA-7", APPLY),
        ("core/auth", "1.0.5", "1.0.0", "latest", HOLD),
    ]
    assert versions(result.next) == {"core/auth": "1.0.5", "core/api": "2.1.0"}


# --- fleet halts ------------------------------------------------------------------------------

def test_a_version_the_fleet_group_halted_is_held_with_who_failed_it():
    installed = installed_at("2.5.0")
    free = plan(simple_feed(), installed=installed)
    assert ("core/auth", "1.0.0", "1.1.0", "latest", APPLY) in changes(free)
    halted = make_plan(simple_feed().catalog(), PolicyConfig(channel="auto-update"), [], installed, now=NOW, instance_id=HOST,
                       halted={"core/auth@1.1.0": ["h1", "h3"]})
    assert versions(halted.next)["core/auth"] == "1.0.0"  # held: the rest of the release still goes
    assert versions(halted.next)["core/api"] == "2.1.0"
    assert ("core/auth", "1.0.0", "1.1.0", "latest", HOLD) in changes(halted)
    [problem] = [p for p in halted.problems if p.code == "fleet-halted"]
    assert problem.detail == ("core/auth 1.1.0 is halted for this host's fleet group: it failed on h1, h3 "
                              "(id1 fleet resume core/auth@1.1.0 lifts it)")
    assert halted.valid


def test_a_forced_fix_the_fleet_group_halted_is_not_forced():
    feed = simple_feed().advisory("ID1-SA-1", "core/auth", "<1.0.1")
    installed = installed_at("2.5.0", simple_feed())
    assert versions(plan(feed, channel="frozen", installed=installed).next)["core/auth"] == "1.0.1"
    halted = make_plan(feed.catalog(), PolicyConfig(channel="frozen"), [], installed, now=NOW, instance_id=HOST,
                       halted={"core/auth@1.0.1": ["h2"]})
    assert versions(halted.next)["core/auth"] == "1.0.0"
    assert "fleet-halted" in codes(halted)

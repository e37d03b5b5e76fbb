"""Property tests of the pure planner (DESIGN.md §5): rules that hold for every feed, policy, pin
set, blocked set, installed manifest, clock and host, drawn at random (``tests.strategies``).

The oracles are written from the contract, not from the planner's code: which advisories are
enforced, what an exact pin is, which release is the highest usable one, what the apply changes
do to the installed manifest. One fact is taken from the planner: which versions it reports
``exposed`` (no usable, compatible fix). It is taken from a plan that can be exposed only in the
context asked about — without an installed manifest for the target, with an unresolvable target
for the installed manifest — so an exposure of one cannot excuse the other.

Two planner bugs broke properties 2, 5 and 6 (fixed since, 9c8a7ec). Their minimal cases, and
cases the search reaches only now and then, are given as ``@example`` so every run checks them:

  FORCED_FIX_UNDONE    an installed version is affected and has a fix, the target keeps that
                       very version (exposed: its fix does not fit the target), the channel is
                       auto-update: ``changes`` forced the fix (apply 1.0.0 → 1.1.0) and then
                       listed a second ``apply`` 1.1.0 → 1.0.0 back onto the vulnerable version,
                       which ``next`` did not contain (properties 2 and 6).
  AFFECTED_APPLIED     an installed version is affected and has a fix, the target's version is
                       affected too and has none (exposed), the channel is auto-update: ``next``
                       ran the target's affected version instead of the fix (property 5).
  MIXED_CHANNELS       a forced fix, a channel apply and held changes in one plan.
  DEFERRED             an apply that needs a change still awaiting approval.
  BLOCKED              blocked releases that latest and a specifier skip and an exact pin gets.
  WITHDRAWN            an exact pin on a platform release containing a withdrawn one.

``ID1_PROPERTY_EXAMPLES=3000 python3 -m pytest tests/test_planner_properties.py`` searches longer.
"""

from __future__ import annotations

import json
import os
import re

from hypothesis import HealthCheck, example, given, settings
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from agent.config import PolicyConfig, SuitePolicy, VersionPin
from agent.feed.catalog import Catalog, parse_feed
from agent.feed.model import SEVERITIES, Requires
from agent.planning import APPLY, DeployedCapability, Manifest, Plan, make_plan
from agent.planning.rollout import wariness
from tests.builders import NOW, FeedBuilder, simple_feed
from tests.strategies import Scenario, manifest_of_platform, scenarios

EXAMPLES = int(os.environ.get("ID1_PROPERTY_EXAMPLES", "150"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A platform release no generated feed has: a pin to it leaves the target unresolved, so every
# problem of that plan comes from the installed manifest.
NO_SUCH_PLATFORM = VersionPin(level="platform", name="platform", version="0.0.0.dev0")


# --- cases every run checks ---------------------------------------------------------------------

def example_scenario(builder: FeedBuilder, installed_platform: str, *, pins=(), blocked=(), **policy) -> Scenario:
    """A host running ``installed_platform`` as the feed lists it, planning at NOW."""
    catalog = builder.catalog()
    return Scenario(
        feed=builder.data,
        catalog=catalog,
        policy=PolicyConfig(**policy),
        pins=list(pins),
        installed=manifest_of_platform(catalog, Version(installed_platform)),
        now=NOW,
        instance_id="host-01",
        blocked=list(blocked),
    )


# core/auth 1.0.0 is affected; its fix 1.1.0 needs platform <2.2; the host moves from 2.0.0 to
# 2.2.0, where auth stays 1.0.0 (exposed: the fix does not fit 2.2.0). The bug (auto-update):
# changes = [auth 1.0.0 → 1.1.0 security:SA-1 apply, auth 1.1.0 → 1.0.0 latest apply],
# next = {auth: 1.1.0}: the second apply was not in next, and it would undo the forced fix.
FORCED_FIX_UNDONE = example_scenario(
    FeedBuilder()
    .capability("core/auth", "1.0.0")
    .capability("core/auth", "1.1.0", requires={"platform": "<2.2"})
    .suite("core", "1.0.0", {"auth": "1.0.0"})
    .platform("2.0.0", {"core": "1.0.0"})
    .platform("2.2.0", {"core": "1.0.0"})
    .advisory("SA-1", "core/auth", "==1.0.0"),
    "2.0.0",
    channel="auto-update",
)

# core/auth 1.1.0 is the only unaffected release; the host runs 1.0.0 and latest is 1.2.0
# (exposed: nothing above it). The bug (auto-update): changes = [auth 1.0.0 → 1.2.0 latest
# apply], next = {auth: 1.2.0}, affected by SA-1, though the installed version's fix 1.1.0
# exists (frozen or manual-approval: next = {auth: 1.1.0}).
AFFECTED_APPLIED = example_scenario(
    FeedBuilder()
    .capabilities("core/auth", "1.0.0", "1.1.0", "1.2.0")
    .suite("core", "1.0.0", {"auth": "1.0.0"})
    .suite("core", "1.2.0", {"auth": "1.2.0"})
    .platform("2.0.0", {"core": "1.0.0"})
    .platform("2.2.0", {"core": "1.2.0"})
    .advisory("SA-1", "core/auth", "!=1.1.0"),
    "2.0.0",
    channel="auto-update",
)


MIXED_CHANNELS = example_scenario(
    simple_feed().capabilities("core/auth", "1.0.2").advisory("SA-1", "core/auth", "<1.0.1"),
    "2.5.0",
    channel="frozen",
    suites={"analytics": SuitePolicy(channel="auto-update")},
)
DEFERRED = example_scenario(
    simple_feed()
    .capability("analytics/report", "1.2.0", requires={"capabilities": {"core/api": ">=2.1"}})
    .suite("analytics", "1.2.0", {"report": "1.2.0"})
    .platform("2.7.0", {"core": "1.3.0", "analytics": "1.2.0"}),
    "2.5.0",
    channel="manual-approval",
    suites={"analytics": SuitePolicy(channel="auto-update")},
)

# Latest would be platform 2.6.0 (blocked); the capability specifier would pick core/auth 1.0.2
# (blocked); the exact suite pin asks for analytics 1.1.0 by name (blocked, still chosen).
BLOCKED = example_scenario(
    simple_feed().capabilities("core/auth", "1.0.2"),
    "2.5.0",
    channel="auto-update",
    pins=[VersionPin(level="capability", name="core/auth", version="~=1.0.0"), VersionPin(level="suite", name="analytics", version="1.1.0")],
    blocked=["platform@2.6.0", "core/auth@1.0.2", "analytics@1.1.0"],
)
# An exact platform pin on a release that contains a withdrawn capability release: invalid.
WITHDRAWN = example_scenario(
    simple_feed().withdraw("core/auth@1.0.0"),
    "2.5.0",
    pins=[VersionPin(level="platform", name="platform", version="2.5.0")],
)


# --- running the planner ----------------------------------------------------------------------

_SAME = object()


def plan_of(s: Scenario, *, catalog: Catalog | None = None, policy: PolicyConfig | None = None,
            pins: list[VersionPin] | None = None, installed: Manifest | None | object = _SAME,
            blocked: list[str] | None = None) -> Plan:
    """The plan of scenario ``s`` (some inputs replaced); approved if the scenario says so."""
    args = dict(
        catalog=catalog or s.catalog,
        policy=policy or s.policy,
        pins=list(s.pins if pins is None else pins),
        installed=s.installed if installed is _SAME else installed,
        now=s.now,
        instance_id=s.instance_id,
        blocked=list(s.blocked if blocked is None else blocked),
    )
    approved = make_plan(**args).target_hash if s.approve else None
    return make_plan(**args, approved_target=approved)


def target_exposures(s: Scenario) -> set[tuple[str, str]]:
    """(capability, version) of the target for which the planner says no fix exists."""
    return exposed_in(plan_of(s, installed=None))


def installed_exposures(s: Scenario) -> set[tuple[str, str]]:
    """(capability, version) of the installed manifest for which the planner says no fix exists."""
    result = plan_of(s, pins=[NO_SUCH_PLATFORM])
    assert result.target is None
    return exposed_in(result)


_EXPOSED = re.compile(r"^(?P<ref>\S+/\S+) (?P<version>\S+) is affected by ")


def exposed_in(result: Plan) -> set[tuple[str, str]]:
    found = set()
    for problem in result.problems:
        if problem.code == "exposed":
            match = _EXPOSED.match(problem.detail)
            assert match, f"an exposed problem names no capability version: {problem.detail}"
            found.add((match["ref"], match["version"]))
    return found


# --- the contract, written out ----------------------------------------------------------------

def is_exact(text: str) -> bool:
    try:
        Version(text)
    except InvalidVersion:
        return False
    return True


def matches(spec: str, version: str | Version) -> bool:
    """PEP 440 matching, pre-releases included (``<1.0.1`` covers ``1.0.0rc1``), as for advisories and requires."""
    return SpecifierSet(spec).contains(Version(str(version)), prereleases=True)


def satisfies(pin: VersionPin, version: str) -> bool:
    """An exact pin is that release; a specifier pin is any release it matches."""
    if is_exact(pin.version):
        return Version(version) == Version(pin.version)
    return matches(pin.version, version)


def names_prerelease(spec: str) -> bool:
    """A specifier naming a pre-release (``>=2.2.0rc1``) may choose pre-releases."""
    return any(not clause.version.endswith("*") and Version(clause.version).is_prerelease for clause in SpecifierSet(spec))


def enforced_affecting(catalog: Catalog, threshold: str, ref: str, version: str | Version) -> list[str]:
    """Ids of the advisories at or above ``threshold`` whose ``affected`` matches ``ref version``."""
    return [
        advisory.id
        for advisory in catalog.feed.advisories
        if advisory.capability == ref
        and SEVERITIES.index(advisory.severity) >= SEVERITIES.index(threshold)
        and matches(advisory.affected, version)
    ]


def first_pins(pins: list[VersionPin]) -> dict[tuple[str, str], VersionPin]:
    """The pins in force: when two name the same thing, the first listed."""
    kept: dict[tuple[str, str], VersionPin] = {}
    for pin in pins:
        kept.setdefault((pin.level, pin.name), pin)
    return kept


def listed(refs, name: str, version: str | Version) -> bool:
    """Whether release refs (``core/auth@1.0.2``, ``core@1.2.0``, ``platform@2.5.1``) name ``name version``."""
    return any(n == name and Version(v) == Version(str(version)) for n, _, v in (ref.rpartition("@") for ref in refs))


def withdrawn(catalog: Catalog, name: str, version: str | Version) -> bool:
    return listed(catalog.feed.withdrawn, name, version)


def explicitly_requested(entry: DeployedCapability, ref: str, pins: dict[tuple[str, str], VersionPin]) -> bool:
    """Whether an admin asked for this very release: an exact capability pin naming it, or an exact
    suite or platform pin whose release brought it (DESIGN.md §5, Blocked)."""
    suite = ref.partition("/")[0]
    pin = {
        "pin:capability": pins.get(("capability", ref)),
        "pin:suite": pins.get(("suite", suite)),
        "pin:platform": pins.get(("platform", "platform")),
    }.get(entry.source)
    if pin is None or not is_exact(pin.version):
        return False
    return entry.source != "pin:capability" or Version(entry.version) == Version(pin.version)


def unmet_requirements(manifest: Manifest | None) -> list[str]:
    """Every ``requires`` of ``manifest`` that its platform and capability versions do not meet."""
    if manifest is None:
        return []
    have = manifest.versions()
    unmet = []
    for ref, entry in manifest.capabilities().items():
        requires = entry.requires or Requires()
        if requires.platform and (manifest.platform is None or not matches(requires.platform, manifest.platform)):
            unmet.append(f"{ref} {entry.version} needs platform {requires.platform}, has {manifest.platform}")
        for needed, spec in requires.capabilities.items():
            if needed not in have or not matches(spec, have[needed]):
                unmet.append(f"{ref} {entry.version} needs {needed} {spec}, has {have.get(needed)}")
    return unmet


def versions(manifest: Manifest | None) -> dict[str, str]:
    return manifest.versions() if manifest is not None else {}


def split_changes(result: Plan):
    return [c for c in result.changes if c.action == APPLY], [c for c in result.changes if c.action != APPLY]


class Usable:
    """Which releases the planner may choose on its own (DESIGN.md §5: latest, specifier pins)."""

    def __init__(self, s: Scenario):
        self.s, self.catalog = s, s.catalog
        self.wariness = wariness(s.instance_id)

    def free(self, name: str, version: Version) -> bool:
        return not withdrawn(self.catalog, name, version) and not listed(self.s.blocked, name, version)

    def capability(self, ref: str, version: Version) -> bool:
        return self.free(ref, version)

    def suite(self, suite: str, version: Version) -> bool:
        release = self.catalog.suites[suite][version]
        return self.free(suite, version) and all(
            self.capability(f"{suite}/{name}", Version(text)) for name, text in release.capabilities.items())

    def platform(self, version: Version) -> bool:
        release = self.catalog.platforms[version]
        return self.free("platform", version) and self.reached(release.rollout) and all(
            self.suite(suite, Version(text)) for suite, text in release.suites.items())

    def reached(self, rollout) -> bool:
        """``(now − start) / hours ≥ w``; before ``start`` no host; no rollout: every host."""
        if rollout is None:
            return True
        if self.s.now < rollout.start:
            return False
        return rollout.hours == 0 or (self.s.now - rollout.start).total_seconds() / 3600 / rollout.hours >= self.wariness

    def pick(self, name: str, pin: VersionPin | None, ok) -> Version | None:
        """The release a pin (or, for ``platform`` without one, latest) chooses; None if none."""
        candidates = sorted(self.catalog.versions(name), reverse=True)
        if pin is not None and is_exact(pin.version):
            version = Version(pin.version)
            return version if version in candidates and not withdrawn(self.catalog, name, version) else None
        prereleases = self.s.policy.allow_prerelease or (pin is not None and names_prerelease(pin.version))
        for version in candidates:
            if (prereleases or not version.is_prerelease) and (pin is None or matches(pin.version, version)) and ok(name, version):
                return version
        return None


# --- 1. nothing withdrawn, blocked or affected is chosen ------------------------------------------

@PROPERTY
@example(BLOCKED)
@example(WITHDRAWN)
@given(scenarios())
def test_never_newly_selects_a_withdrawn_blocked_or_affected_version(s: Scenario):
    """For every capability of a valid target, and every capability that ``next`` changes: the
    version is not withdrawn; not blocked unless explicitly requested (an exact capability pin on
    that version, or an exact suite/platform pin whose release brought it); and not affected by an
    enforced advisory — unless the planner reports exactly that capability version ``exposed`` in
    the target's own context. The same for the target's platform and suite releases (not
    withdrawn; blocked only behind an exact pin)."""
    result = plan_of(s)
    catalog, threshold, pins = s.catalog, s.policy.enforce_severity, first_pins(s.pins)
    no_fix = target_exposures(s)

    def check(ref: str, entry: DeployedCapability, where: str) -> None:
        what = f"{where} {ref} {entry.version} ({entry.source})"
        assert not withdrawn(catalog, ref, entry.version), f"{what} is withdrawn"
        assert not listed(s.blocked, ref, entry.version) or explicitly_requested(entry, ref, pins), f"{what} is blocked"
        affecting = enforced_affecting(catalog, threshold, ref, entry.version)
        assert not affecting or (ref, entry.version) in no_fix, f"{what} is affected by {affecting} and a fix exists"

    if result.valid:
        target = result.target
        platform_pin = pins.get(("platform", "platform"))
        assert not withdrawn(catalog, "platform", target.platform)
        assert not listed(s.blocked, "platform", target.platform) or (platform_pin and is_exact(platform_pin.version))
        for suite_name, suite in target.suites.items():
            suite_pin = pins.get(("suite", suite_name), platform_pin)
            assert not withdrawn(catalog, suite_name, suite.version)
            assert not listed(s.blocked, suite_name, suite.version) or (suite_pin and is_exact(suite_pin.version)), (
                f"target suite {suite_name} {suite.version} is blocked")
        for ref, entry in target.capabilities().items():
            check(ref, entry, "target")

    had = versions(s.installed)
    for ref, entry in (result.next.capabilities() if result.next else {}).items():
        if had.get(ref) != entry.version:
            check(ref, entry, "next")


# --- 2. next is installed with the apply changes made --------------------------------------------

def check_next_is_installed_with_the_apply_changes_made(s: Scenario, result: Plan) -> None:
    applies, others = split_changes(result)
    current = versions(s.installed)
    for change in applies:
        assert current.get(change.capability) == change.from_version, f"{change} does not start from {current.get(change.capability)}"
        if change.to_version is None:
            del current[change.capability]
        else:
            current[change.capability] = change.to_version
    assert current == versions(result.next), f"installed + apply changes {current} is not next {versions(result.next)}"

    # Every other change goes from next to the target, one for each difference.
    now, want = versions(result.next), versions(result.target)
    for change in others:
        assert (change.from_version, change.to_version) == (now.get(change.capability), want.get(change.capability)), change
    if result.target is not None:
        differing = {ref for ref in now.keys() | want.keys() if now.get(ref) != want.get(ref)}
        assert sorted(differing) == sorted(c.capability for c in others), f"next → target is {differing}, changes say {others}"
    else:
        assert others == []


@PROPERTY
@example(FORCED_FIX_UNDONE)
@example(MIXED_CHANNELS)
@example(DEFERRED)
@given(scenarios())
def test_next_is_installed_with_exactly_the_apply_changes_made(s: Scenario):
    check_next_is_installed_with_the_apply_changes_made(s, plan_of(s))


# --- 3. pins are honoured unless an advisory overrides them ---------------------------------------

@PROPERTY
@given(scenarios())
def test_every_used_pin_is_honoured_unless_an_enforced_advisory_overrides_it(s: Scenario):
    """For the pin in force of each name (the first listed; later ones must be reported
    ``pin-conflict``) that the target uses, each capability it governs carries the pinned choice —
    a capability pin: a matching version; a suite pin: the pinned suite release's version; a
    platform pin: the pinned platform's suite release's version — or else its source is
    ``security:<id>`` of an enforced advisory of the feed that affects the pinned choice, and
    ``overrides`` names the pin and that choice. A pin is reported unused exactly when the valid
    target lacks what it names."""
    result = plan_of(s)
    catalog, threshold = s.catalog, s.policy.enforce_severity
    pins = first_pins(s.pins)
    details = {(p.code, p.detail) for p in result.problems}
    for index, pin in enumerate(s.pins):
        if pins[(pin.level, pin.name)] is not pin:
            assert any(code == "pin-conflict" and detail.startswith(f"{pin.describe()} ignored") for code, detail in details), (
                f"pins[{index}] {pin.describe()} is ignored unreported")
    target = result.target
    if target is None:
        return
    platform_pin = pins.get(("platform", "platform"))
    if platform_pin is not None:
        assert satisfies(platform_pin, target.platform)
    platform_release = catalog.platforms[Version(target.platform)]

    def honoured(ref: str, entry: DeployedCapability, pin: VersionPin, source: str, chose: str | None) -> None:
        """``chose`` is the version the pin selects (None for a capability pin: any match)."""
        if entry.source == source:
            assert satisfies(pin, entry.version) if chose is None else entry.version == chose, (
                f"{ref} {entry.version} does not honour {pin.describe()}")
            return
        assert entry.source.startswith("security:"), f"{ref} {entry.version} from {entry.source}, not {pin.describe()}"
        advisory_id = entry.source.removeprefix("security:")
        match = re.fullmatch(re.escape(pin.describe()) + r" chose (\S+)", entry.overrides or "")
        assert match, f"{ref} {entry.version} overrides {entry.overrides!r}, not {pin.describe()}"
        overridden = match[1]
        assert satisfies(pin, overridden) if chose is None else overridden == chose
        assert advisory_id in enforced_affecting(catalog, threshold, ref, overridden), (
            f"{ref}: {advisory_id} is not an enforced advisory affecting {overridden}")
        assert Version(entry.version) > Version(overridden)

    for suite_name, suite in target.suites.items():
        suite_pin = pins.get(("suite", suite_name))
        if suite_pin is not None:
            assert satisfies(suite_pin, suite.version), f"suite {suite_name} {suite.version} does not honour {suite_pin.describe()}"
        elif platform_pin is not None:
            assert suite.version == platform_release.suites[suite_name]
        suite_release = catalog.suites[suite_name][Version(suite.version)]
        for name, entry in suite.capabilities.items():
            ref = f"{suite_name}/{name}"
            capability_pin = pins.get(("capability", ref))
            if capability_pin is not None:
                honoured(ref, entry, capability_pin, "pin:capability", None)
            elif suite_pin is not None:
                honoured(ref, entry, suite_pin, "pin:suite", suite_release.capabilities[name])
            elif platform_pin is not None:
                honoured(ref, entry, platform_pin, "pin:platform", suite_release.capabilities[name])
            else:
                assert entry.overrides is None, f"{ref}: latest is no pin to override"

    if result.valid:
        present = {("platform", "platform")} | {("suite", n) for n in target.suites} | {("capability", r) for r in target.capabilities()}
        for key, pin in pins.items():
            reported = any(code == "unused-pin" and detail.startswith(f"{pin.describe()}:") for code, detail in details)
            assert reported == (key not in present), f"{pin.describe()} unused: reported {reported}"


# --- 4. determinism -------------------------------------------------------------------------------

@PROPERTY
@given(scenarios())
def test_same_inputs_give_the_same_plan(s: Scenario):
    first = plan_of(s).to_json()
    assert plan_of(s).to_json() == first
    assert plan_of(s, catalog=parse_feed(s.feed_bytes()), pins=[p.model_copy() for p in s.pins]).to_json() == first
    assert plan_of(s, blocked=list(reversed(s.blocked))).to_json() == first
    # Pins naming different things may come in any order: only the order of problems may change.
    if len({(p.level, p.name) for p in s.pins}) == len(s.pins):
        shuffled = plan_of(s, pins=list(reversed(s.pins))).to_json()
        problems = shuffled.pop("problems")
        assert sorted(problems, key=json.dumps) == sorted(first["problems"], key=json.dumps)
        assert shuffled == {k: v for k, v in first.items() if k != "problems"}


# --- 5. critical fixes are forced -----------------------------------------------------------------

def check_affected_installed_versions_are_fixed_now(s: Scenario) -> None:
    """Every installed version affected by an enforced advisory, unless reported exposed, has an
    ``apply`` change in the installed → next part, and ``next`` does not run an affected version
    of it. Under the scenario's channels and with every channel frozen."""
    if s.installed is None:
        return
    threshold = s.policy.enforce_severity
    affected = {
        ref: entry.version
        for ref, entry in s.installed.capabilities().items()
        if enforced_affecting(s.catalog, threshold, ref, entry.version)
    }
    no_fix = installed_exposures(s)
    assert no_fix <= set(affected.items()), "an unaffected installed version is reported exposed"
    frozen = s.policy.model_copy(update={"channel": "frozen", "suites": {}})
    for result in (plan_of(s), plan_of(s, policy=frozen)):
        applies, _ = split_changes(result)
        after = versions(result.next)
        for ref, version in affected.items():
            if (ref, version) in no_fix:
                continue
            assert any(c.capability == ref and c.from_version == version for c in applies), f"{ref} {version} is not fixed now"
            assert ref not in after or not enforced_affecting(s.catalog, threshold, ref, after[ref]), (
                f"{ref}: next runs {after[ref]}, affected by {enforced_affecting(s.catalog, threshold, ref, after[ref])}")


@PROPERTY
@example(AFFECTED_APPLIED)
@example(MIXED_CHANNELS)
@given(scenarios())
def test_an_affected_installed_version_with_a_fix_is_fixed_now_whatever_the_channel(s: Scenario):
    check_affected_installed_versions_are_fixed_now(s)


# --- 6. the JSON form -------------------------------------------------------------------------------

def check_json_and_change_order(s: Scenario, result: Plan) -> None:
    data = result.to_json()
    assert json.loads(json.dumps(data)) == data
    for key in ("installed", "target", "next"):
        if data[key] is not None:
            assert Manifest.model_validate(data[key]).to_json() == data[key]
    assert data["target_hash"] == (result.target.content_hash() if result.target else None)
    # First the installed → next part, all apply, one per capability that differs; then the rest.
    had, now = versions(s.installed), versions(result.next)
    differing = sorted(ref for ref in had.keys() | now.keys() if had.get(ref) != now.get(ref))
    first_part = data["changes"][: len(differing)]
    assert [(c["capability"], c["from"], c["to"], c["action"]) for c in first_part] == [
        (ref, had.get(ref), now.get(ref), APPLY) for ref in differing]
    assert all(c["action"] != APPLY for c in data["changes"][len(differing):]), f"an apply after the installed → next part: {data['changes']}"


@PROPERTY
@example(FORCED_FIX_UNDONE)
@example(MIXED_CHANNELS)
@given(scenarios())
def test_plan_json_is_serialisable_and_lists_the_apply_changes_first(s: Scenario):
    check_json_and_change_order(s, plan_of(s))


# --- 7. latest, pins and fixes choose the release the contract names --------------------------------

@PROPERTY
@example(BLOCKED)
@given(scenarios())
def test_latest_and_specifier_pins_choose_the_highest_usable_release_and_fixes_the_lowest(s: Scenario):
    """Latest: the highest platform release not withdrawn or blocked (nor containing a withdrawn or
    blocked release), rolled out to this host, no pre-release unless allowed. A specifier pin: the
    highest such release it matches (pre-releases if allowed or the specifier names one). An exact
    pin: that release unless withdrawn. A security fix: above the chosen version, not affected,
    usable, and lower than every usable unaffected release that could not have been incompatible."""
    result = plan_of(s)
    catalog, threshold, pins = s.catalog, s.policy.enforce_severity, first_pins(s.pins)
    usable = Usable(s)
    platform = usable.pick("platform", pins.get(("platform", "platform")), lambda _, v: usable.platform(v))
    if platform is None:
        assert result.target is None and not result.valid
        return
    target = result.target
    assert target is not None and Version(target.platform) == platform
    release = catalog.platforms[platform]
    assert set(target.suites) <= set(release.suites)
    pin_source = "pin:platform" if ("platform", "platform") in pins else "latest"
    requirements_on = {needed for entry in target.capabilities().values() for needed in (entry.requires or Requires()).capabilities}
    for suite_name, text in release.suites.items():
        suite_pin = pins.get(("suite", suite_name))
        chosen = Version(text) if suite_pin is None else usable.pick(suite_name, suite_pin, usable.suite)
        if chosen is None:
            assert suite_name not in target.suites and not result.valid
            continue
        suite = target.suites[suite_name]
        assert Version(suite.version) == chosen
        suite_release = catalog.suites[suite_name][chosen]
        assert set(suite.capabilities) <= set(suite_release.capabilities)
        for name, text in suite_release.capabilities.items():
            ref = f"{suite_name}/{name}"
            capability_pin = pins.get(("capability", ref))
            want = Version(text) if capability_pin is None else usable.pick(ref, capability_pin, usable.capability)
            if want is None:
                assert name not in suite.capabilities and not result.valid
                continue
            entry = suite.capabilities[name]
            source = "pin:capability" if capability_pin else "pin:suite" if suite_pin else pin_source
            if not entry.source.startswith("security:"):
                assert (Version(entry.version), entry.source) == (want, source), f"{ref}: want {want} from {source}, got {entry}"
                continue
            fix = Version(entry.version)
            assert entry.source.removeprefix("security:") in enforced_affecting(catalog, threshold, ref, want)
            assert fix > want and not enforced_affecting(catalog, threshold, ref, fix) and usable.capability(ref, fix)
            assert s.policy.allow_prerelease or not fix.is_prerelease
            for version in catalog.versions(ref):
                if want < version < fix and usable.capability(ref, version) and (s.policy.allow_prerelease or not version.is_prerelease):
                    assert enforced_affecting(catalog, threshold, ref, version) or (
                        catalog.capabilities[ref][version].requires is not None or ref in requirements_on
                    ), f"{ref}: fix {fix}, but {version} is lower, usable, unaffected and cannot clash"


# --- 8. next is a coherent manifest -----------------------------------------------------------------

@PROPERTY
@example(DEFERRED)
@example(MIXED_CHANNELS)
@given(scenarios())
def test_next_is_compatible_when_the_installed_manifest_is_and_names_its_releases(s: Scenario):
    """Forced fixes fit and channel applies that need a change still waiting are deferred, so a
    compatible installed manifest (or none) never becomes an incompatible next. ``next.platform``
    is the target's once every change is applied, else the installed one; a suite's version is
    the target's once all its capabilities are, else the installed one."""
    result = plan_of(s)
    if not unmet_requirements(s.installed):
        assert unmet_requirements(result.next) == []
    if result.valid:
        assert unmet_requirements(result.target) == []
    if result.next is None:
        assert s.installed is None and not any(c.action == APPLY for c in result.changes)
        return
    installed_platform = s.installed.platform if s.installed else None
    complete = result.valid and versions(result.next) == versions(result.target)
    assert result.next.platform == (result.target.platform if complete else installed_platform)
    for suite_name, suite in result.next.suites.items():
        in_target = result.target.suites.get(suite_name) if result.target else None
        in_installed = s.installed.suites.get(suite_name) if s.installed else None
        caps = {name: entry.version for name, entry in suite.capabilities.items()}
        if in_target is not None and caps == {name: entry.version for name, entry in in_target.capabilities.items()}:
            assert suite.version == in_target.version
        elif in_installed is not None:
            assert suite.version == in_installed.version
        else:
            assert suite.version is None, f"next suite {suite_name} {suite.version} is only partly applied"


# --- 9. the channel decides the action --------------------------------------------------------------

@PROPERTY
@example(MIXED_CHANNELS)
@example(DEFERRED)
@given(scenarios())
def test_the_channel_decides_what_happens_to_each_change_of_the_target(s: Scenario):
    """For each capability the (valid) target changes: auto-update, or manual-approval with the
    target approved, applies it — it is in ``next`` — unless it is reported ``deferred`` or it
    would move the capability onto an affected version (then it is held); manual-approval
    otherwise awaits approval; frozen holds. An invalid target changes nothing: all held."""
    result = plan_of(s)
    _, others = split_changes(result)
    if not result.valid:
        assert all(c.action == "hold" for c in others), others
        return
    approved = s.approve
    had, now, want = versions(s.installed), versions(result.next), versions(result.target)
    deferred = [p.detail for p in result.problems if p.code == "deferred"]
    waiting = {c.capability: c.action for c in others}
    threshold = s.policy.enforce_severity
    for ref in sorted(had.keys() | want.keys()):
        if had.get(ref) == want.get(ref):
            continue
        channel = s.policy.channel_for(ref.partition("/")[0])
        if channel == "auto-update" or (channel == "manual-approval" and approved):
            if now.get(ref) == want.get(ref):
                continue
            is_deferred = any(detail.startswith(f"{ref} ") for detail in deferred)
            worsens = want.get(ref) is not None and now.get(ref) is not None and bool(
                enforced_affecting(s.catalog, threshold, ref, want[ref])) and not enforced_affecting(s.catalog, threshold, ref, now[ref])
            assert is_deferred or worsens, f"{ref} {had.get(ref)} → {want.get(ref)} ({channel}) is neither applied nor deferred"
            assert waiting.get(ref) == "hold"
        elif now.get(ref) != want.get(ref):
            assert waiting.get(ref) == ("await-approval" if channel == "manual-approval" else "hold"), (ref, channel, waiting.get(ref))

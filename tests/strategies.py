"""Hypothesis strategies for planner inputs: valid feeds, policies, pins, blocked refs, installed
manifests, clocks and instance ids (DESIGN.md §4 and §5).

``scenarios()`` draws one complete set of ``make_plan`` inputs as a ``Scenario``. Feeds are small
but varied and always valid (they go through ``parse_feed``, the one way in):

    suites          1–3 (core, analytics, billing), each with 1–3 capabilities (auth, api, web)
    capabilities    2–5 versions each from a pool with pre-releases (0.9.0 … 1.2.0rc1, 1.2.0, 2.0.0),
                    a fifth with ``requires``: a platform specifier and/or specifiers on other
                    capabilities of the feed (which makes some targets incompatible)
    suite releases  1–3 per suite, naming existing versions of (usually all of) its capabilities
    platforms       1–4 releases naming existing suite releases (usually of all suites), a third in
                    a staged rollout starting up to 100 h before or after ``now``, 0–100 h long
    advisories      0–5 (often on one capability), every severity, ``affected`` such as ``<1.0.1``,
                    ``==1.1.0``, ``>=0``, ``!=1.1.0`` (all but one)
    withdrawn       0–3 refs (``suite/cap@ver``, ``suite@ver``, ``platform@ver``) of existing releases

Half the feeds are upgrade-shaped (newer releases name newer releases, and requirements ask for
the versions that go with them), half are shuffled. The policy has a channel, per-suite channels
now and then, any ``enforce_severity`` and ``allow_prerelease``; pins are exact versions of the
feed, specifiers, or (rarely) names or versions the feed lacks and a second pin of one name.
The installed manifest is None, the target of an earlier plan of the same feed with other
inputs, or a platform release as listed, sometimes with capabilities swapped for older releases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from hypothesis import strategies as st

from agent.config import CHANNELS, PolicyConfig, SuitePolicy, VersionPin
from agent.feed.catalog import Catalog, parse_feed
from agent.feed.model import SEVERITIES
from agent.planning import DeployedCapability, DeployedSuite, Manifest, make_plan
from agent.versions import parse_version
from tests.builders import NOW, capability_release, iso

SUITE_NAMES = ("core", "analytics", "billing")
CAPABILITY_NAMES = ("auth", "api", "web")
CAPABILITY_VERSIONS = ("0.9.0", "1.0.0", "1.0.1", "1.1.0", "1.2.0rc1", "1.2.0", "2.0.0")
SUITE_VERSIONS = ("1.0.0", "1.1.0", "1.2.0", "1.3.0rc1", "1.3.0", "2.0.0")
PLATFORM_VERSIONS = ("2.0.0", "2.1.0", "2.2.0rc1", "2.2.0", "2.3.0", "3.0.0")

PLATFORM_REQUIREMENTS = (">=2.1", "<2.2", ">=2.0,<3", "~=2.0", "==3.*", ">=2.2.0rc1")
CAPABILITY_REQUIREMENTS = (">=1.0", "<1.1", "~=1.0", ">=0", "==2.*", ">=1.2.0rc1", "<2")
AFFECTED = ("<1.0.1", "==1.1.0", ">=0", "<1.2", ">=1.2.0rc1", ">=2", "~=1.0.0", "<=1.0.0", "!=1.1.0")
PLATFORM_PIN_SPECIFIERS = ("~=2.0", ">=2.1", "<3", ">=2.2.0rc1", "<2.2", "==2.*")
SUITE_PIN_SPECIFIERS = ("~=1.0", ">=1.1", "<2", "~=1.2.0", ">=1.3.0rc1")
CAPABILITY_PIN_SPECIFIERS = ("~=1.0", ">=1.1", "<2", "~=1.0.0", "==1.*", ">=1.2.0rc1", "<1.0.1")
INSTANCE_IDS = tuple(f"host-{i:02d}" for i in range(12))


@dataclass
class Scenario:
    """One set of ``make_plan`` inputs (``feed`` is the dict the catalog was parsed from)."""

    feed: dict
    catalog: Catalog
    policy: PolicyConfig
    pins: list[VersionPin]
    installed: Manifest | None
    now: datetime
    instance_id: str
    blocked: list[str] = field(default_factory=list)
    approve: bool = False
    """Whether to pass the target hash of the same plan made without approval as ``approved_target``."""

    def feed_bytes(self) -> bytes:
        return json.dumps(self.feed).encode()

    def _repr_pretty_(self, printer, cycle) -> None:  # hypothesis prints falsifying examples with this
        printer.text(repr(self))

    def __repr__(self) -> str:  # all the planner reads, without artifacts, units and timestamps
        return (
            f"Scenario(\n  feed={json.dumps(_compact(self.feed))},\n  policy={self.policy!r},\n"
            f"  pins={[(p.level, p.name, p.version) for p in self.pins]!r},\n"
            f"  installed={self.installed.versions() if self.installed else None!r}"
            f" platform={self.installed.platform if self.installed else None!r},\n"
            f"  now={iso(self.now)}, instance_id={self.instance_id!r}, blocked={self.blocked!r}, approve={self.approve})"
        )


def _compact(feed: dict) -> dict:
    """The feed without artifacts, units and timestamps that only make it long."""
    return {
        "platforms": [{k: v for k, v in p.items() if k in ("version", "suites", "rollout")} for p in feed["platforms"]],
        "suites": feed["suites"],
        "capabilities": [
            {k: v for k, v in c.items() if k in ("suite", "name", "version", "requires")} for c in feed["capabilities"]
        ],
        "advisories": [{k: a[k] for k in ("id", "severity", "capability", "affected")} for a in feed["advisories"]],
        "withdrawn": feed["withdrawn"],
    }


def _subset(draw, items, *, min_size=0, max_size=None):
    """A sub-list of ``items`` in their order."""
    items = list(items)
    chosen = draw(st.lists(st.sampled_from(items), min_size=min_size, max_size=max_size or len(items), unique=True)) if items else []
    return [item for item in items if item in chosen]


def _some(draw, items):
    """1–3 of ``items``, in their order, more often 2 or 3 than 1."""
    count = draw(st.sampled_from((1, 2, 2, 3, 3)))
    return _subset(draw, items, min_size=count, max_size=count)


def _mostly_all(draw, items):
    """All of ``items`` usually, a non-empty part of them sometimes."""
    items = list(items)
    if len(items) > 1 and draw(st.integers(0, 3)) == 0:
        return _subset(draw, items, min_size=1)
    return items


@st.composite
def feeds(draw, now: datetime = NOW) -> dict:
    """The dict of a valid feed (see the module docstring for its shape)."""
    suite_names = _some(draw, SUITE_NAMES)
    capability_names = {suite: _some(draw, CAPABILITY_NAMES) for suite in suite_names}
    refs = [f"{suite}/{name}" for suite in suite_names for name in capability_names[suite]]
    cap_versions = {
        ref: sorted(draw(st.lists(st.sampled_from(CAPABILITY_VERSIONS), min_size=2, max_size=5, unique=True)), key=parse_version)
        for ref in refs
    }

    # Half the feeds are "upgrade-shaped": newer suite releases take newer capability versions,
    # newer platform releases newer suite releases, and requirements ask for the version that goes
    # with the release's own place in line, so a newer release tends to need the newer releases
    # of what it requires (which is what defers a change waiting for another).
    ordered = draw(st.booleans())

    def in_line(choices: list[str], count: int) -> list[str]:
        drawn = [draw(st.sampled_from(choices)) for _ in range(count)]
        return sorted(drawn, key=parse_version) if ordered else drawn

    def requirement(needed: str, place: float) -> str:
        if ordered and draw(st.booleans()):
            line = cap_versions[needed]
            return ">=" + line[round(place * (len(line) - 1))]
        return draw(st.sampled_from(CAPABILITY_REQUIREMENTS))

    capabilities = []
    for ref in refs:
        suite, _, name = ref.partition("/")
        for index, version in enumerate(cap_versions[ref]):
            release = capability_release(f"{suite}/{name}", version)
            if draw(st.integers(0, 4)) == 0:
                requires: dict = {}
                if draw(st.integers(0, 2)) == 0:
                    requires["platform"] = draw(st.sampled_from(PLATFORM_REQUIREMENTS))
                needed = _subset(draw, [other for other in refs if other != ref], max_size=2)
                if needed:
                    place = index / max(1, len(cap_versions[ref]) - 1)
                    requires["capabilities"] = {other: requirement(other, place) for other in needed}
                release["requires"] = requires
            capabilities.append(release)

    suites = []
    suite_versions: dict[str, list[str]] = {}
    for suite in suite_names:
        count = draw(st.sampled_from((1, 2, 2, 3, 3)))
        versions = sorted(draw(st.lists(st.sampled_from(SUITE_VERSIONS), min_size=count, max_size=count, unique=True)), key=parse_version)
        suite_versions[suite] = versions
        lines = {name: in_line(cap_versions[f"{suite}/{name}"], len(versions)) for name in capability_names[suite]}
        for index, version in enumerate(versions):
            names = _mostly_all(draw, capability_names[suite])
            suites.append({"name": suite, "version": version, "capabilities": {name: lines[name][index] for name in names}})

    platforms = []
    count = draw(st.sampled_from((1, 2, 2, 3, 3, 4, 4)))
    platform_versions = sorted(draw(st.lists(st.sampled_from(PLATFORM_VERSIONS), min_size=count, max_size=count, unique=True)), key=parse_version)
    lines = {suite: in_line(suite_versions[suite], len(platform_versions)) for suite in suite_names}
    for index, version in enumerate(platform_versions):
        release = {
            "version": version,
            "released_at": iso(now - timedelta(days=2)),
            "suites": {suite: lines[suite][index] for suite in _mostly_all(draw, suite_names)},
        }
        if draw(st.integers(0, 2)) == 0:
            start = now + timedelta(hours=draw(st.integers(-100, 100)))
            release["rollout"] = {"start": iso(start), "hours": draw(st.sampled_from((0, 0.5, 1, 12, 24, 48, 100)))}
        platforms.append(release)

    advisories = []
    hot = draw(st.sampled_from(refs))  # advisories cluster on one capability now and then, as they do
    for index in range(draw(st.integers(0, 5))):
        ref = hot if draw(st.integers(0, 2)) else draw(st.sampled_from(refs))
        affected = draw(st.one_of(
            st.sampled_from(AFFECTED),
            st.tuples(st.sampled_from(("<", "==", ">=", "<=", "!=")), st.sampled_from(cap_versions[ref])).map("".join),
        ))
        advisories.append({
            "id": f"SA-{index}",
            "severity": draw(st.sampled_from(SEVERITIES)),
            "capability": ref,
            "affected": affected,
            "summary": f"{ref} {affected} is vulnerable",
            "published_at": iso(now - timedelta(hours=6)),
        })

    releases = (
        [f"{ref}@{v}" for ref in refs for v in cap_versions[ref]]
        + [f"{suite}@{v}" for suite in suite_names for v in suite_versions[suite]]
        + [f"platform@{v}" for v in platform_versions]
    )
    withdrawn = draw(st.lists(st.sampled_from(releases), max_size=draw(st.sampled_from((0, 0, 1, 2, 3))), unique=True))

    return {
        "format": 1,
        "serial": draw(st.integers(1, 100)),
        "issued_at": iso(now - timedelta(days=1)),
        "expires_at": iso(now + timedelta(days=13)),
        "platforms": platforms,
        "suites": suites,
        "capabilities": capabilities,
        "advisories": advisories,
        "withdrawn": withdrawn,
    }


@st.composite
def policies(draw, suite_names=SUITE_NAMES) -> PolicyConfig:
    overrides = {suite: SuitePolicy(channel=draw(st.sampled_from(CHANNELS))) for suite in suite_names if draw(st.booleans())}
    return PolicyConfig(
        channel=draw(st.sampled_from(CHANNELS)),
        suites=overrides,
        enforce_severity=draw(st.sampled_from(SEVERITIES)),
        allow_prerelease=draw(st.booleans()),
    )


def _version_text(catalog: Catalog, name: str) -> list[str]:
    return [str(v) for v in catalog.versions(name)]


@st.composite
def pins_for(draw, catalog: Catalog) -> list[VersionPin]:
    """0–3 pins: exact versions from the feed or specifiers; now and then a name the feed lacks,
    a version the feed lacks, or a second pin of the same name."""
    suite_names = sorted(catalog.suites)
    refs = sorted(catalog.capabilities)

    def one_pin():
        level = draw(st.sampled_from(("platform", "suite", "capability")))
        if level == "platform":
            name, specifiers = "platform", PLATFORM_PIN_SPECIFIERS
        elif level == "suite":
            name, specifiers = draw(st.sampled_from(suite_names + ["ghost"])), SUITE_PIN_SPECIFIERS
        else:
            name, specifiers = draw(st.sampled_from(refs + ["core/ghost"])), CAPABILITY_PIN_SPECIFIERS
        exact = _version_text(catalog, name) + ["9.9.9"]
        kind = draw(st.integers(0, 9))
        version = draw(st.sampled_from(exact[:-1] or exact)) if kind < 5 else "9.9.9" if kind == 5 else draw(st.sampled_from(specifiers))
        return VersionPin(level=level, name=name, version=version)

    return [one_pin() for _ in range(draw(st.integers(0, 3)))]


@st.composite
def blocked_for(draw, catalog: Catalog) -> list[str]:
    releases = (
        [f"{ref}@{v}" for ref in sorted(catalog.capabilities) for v in _version_text(catalog, ref)]
        + [f"{suite}@{v}" for suite in sorted(catalog.suites) for v in _version_text(catalog, suite)]
        + [f"platform@{v}" for v in _version_text(catalog, "platform")]
    )
    return draw(st.lists(st.sampled_from(releases), max_size=draw(st.sampled_from((0, 1, 2, 3))), unique=True))


@st.composite
def installed_for(draw, catalog: Catalog, now: datetime = NOW) -> Manifest | None:
    """None, or the target of an earlier plan of this feed (other policy, pins, blocked refs, clock
    and host), or a platform release as the feed lists it (older ones first), with some capability
    versions swapped for older releases now and then."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return None
    manifest = None
    if kind <= 2:
        pins = draw(pins_for(catalog))
        if draw(st.booleans()):
            pins = [VersionPin(level="platform", name="platform", version=draw(st.sampled_from(_version_text(catalog, "platform"))))]
        manifest = make_plan(
            catalog,
            draw(policies(sorted(catalog.suites))),
            pins,
            None,
            now=now - timedelta(hours=draw(st.integers(0, 200))),
            instance_id=draw(st.sampled_from(INSTANCE_IDS)),
            blocked=draw(blocked_for(catalog)),
        ).target
    if manifest is None or not manifest.suites:
        manifest = manifest_of_platform(catalog, draw(st.sampled_from(sorted(catalog.platforms))))
    if draw(st.booleans()):
        return manifest
    suites = {}
    for suite_name, suite in manifest.suites.items():
        capabilities = dict(suite.capabilities)
        for name in _subset(draw, sorted(capabilities)):
            ref = f"{suite_name}/{name}"
            older = [v for v in catalog.versions(ref) if v < parse_version(capabilities[name].version)]
            if older:
                version = draw(st.sampled_from(older))
                capabilities[name] = DeployedCapability.from_release(catalog.capabilities[ref][version], "latest")
        suites[suite_name] = DeployedSuite(version=suite.version, capabilities=capabilities)
    return Manifest(platform=manifest.platform, suites=suites)


def manifest_of_platform(catalog: Catalog, version) -> Manifest:
    """What a host runs when it runs platform release ``version`` exactly as the feed lists it."""
    platform = catalog.platforms[version]
    suites = {}
    for suite_name, suite_version in platform.suites.items():
        release = catalog.suites[suite_name][parse_version(suite_version)]
        suites[suite_name] = DeployedSuite(version=release.version, capabilities={
            name: DeployedCapability.from_release(catalog.capabilities[f"{suite_name}/{name}"][parse_version(text)], "latest")
            for name, text in release.capabilities.items()
        })
    return Manifest(platform=platform.version, suites=suites)


@st.composite
def scenarios(draw) -> Scenario:
    now = NOW + timedelta(hours=draw(st.integers(-48, 48)))
    feed = draw(feeds(now))
    catalog = parse_feed(json.dumps(feed).encode())
    return Scenario(
        feed=feed,
        catalog=catalog,
        policy=draw(policies(sorted(catalog.suites))),
        pins=draw(pins_for(catalog)),
        installed=draw(installed_for(catalog, now)),
        now=now,
        instance_id=draw(st.sampled_from(INSTANCE_IDS)),
        blocked=draw(blocked_for(catalog)),
        approve=draw(st.integers(0, 3)) == 0,
    )

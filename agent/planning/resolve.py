"""The target: which version of every capability should run, from pins and the feed.

For each capability the version comes from the first that applies: capability pin → suite pin
(the suite release's capability version) → platform pin (the platform release's suite, then
capability) → latest. Security enforcement and compatibility are applied afterwards
(``agent.planning.security``, ``agent.planning.compat``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from packaging.version import Version

from agent.config import VersionPin
from agent.feed.catalog import PLATFORM
from agent.planning.manifest import DeployedCapability, DeployedSuite, Manifest
from agent.planning.model import Problem
from agent.planning.selection import Selection
from agent.versions import canonical_version, parse_version


@dataclass
class Resolution:
    target: Manifest | None
    problems: list[Problem] = field(default_factory=list)
    platform_source: str = "latest"
    suite_sources: dict[str, str] = field(default_factory=dict)
    pins: dict[tuple[str, str], VersionPin] = field(default_factory=dict)


def index_pins(pins: Sequence[VersionPin], problems: list[Problem]) -> dict[tuple[str, str], VersionPin]:
    """Pins by (level, name); when two name the same thing the first wins and it is reported."""
    indexed: dict[tuple[str, str], VersionPin] = {}
    for pin in pins:
        kept = indexed.setdefault(pin.key, pin)
        if kept is not pin:
            problems.append(Problem("pin-conflict", f"{pin.describe()} ignored: {kept.describe()} comes first"))
    return indexed


def resolve_target(selection: Selection, pins: Sequence[VersionPin]) -> Resolution:
    catalog = selection.catalog
    problems: list[Problem] = []
    by_key = index_pins(pins, problems)
    used_pins: set[tuple[str, str]] = set()

    def choose(level: str, name: str, inherited: str | None, inherited_source: str) -> tuple[Version | None, str]:
        """The pin's release of ``name`` if one is pinned, else the version handed down
        (``inherited``; None for the platform, meaning latest). A failed pick is a problem."""
        pin = by_key.get((level, name))
        if pin is None and inherited is not None:
            return parse_version(inherited), inherited_source
        if pin is not None:
            used_pins.add(pin.key)
        version, problem = selection.pick(name, pin)
        if version is None:
            problems.append(problem)
        return version, f"pin:{level}" if pin is not None else inherited_source

    platform_version, platform_source = choose("platform", PLATFORM, None, "latest")
    resolution = Resolution(target=None, problems=problems, platform_source=platform_source, pins=by_key)
    if platform_version is None:
        return resolution
    platform = catalog.platforms[platform_version]

    suites: dict[str, DeployedSuite] = {}
    for suite_name in sorted(platform.suites):
        suite_version, suite_source = choose("suite", suite_name, platform.suites[suite_name], platform_source)
        if suite_version is None:
            continue
        resolution.suite_sources[suite_name] = suite_source
        suite_release = catalog.suites[suite_name][suite_version]

        capabilities: dict[str, DeployedCapability] = {}
        for name in sorted(suite_release.capabilities):
            ref = f"{suite_name}/{name}"
            version, source = choose("capability", ref, suite_release.capabilities[name], suite_source)
            if version is not None:
                capabilities[name] = DeployedCapability.from_release(catalog.capabilities[ref][version], source)
        suites[suite_name] = DeployedSuite(version=canonical_version(suite_release.version), capabilities=capabilities)

    for key, pin in by_key.items():
        if key not in used_pins:
            problems.append(Problem("unused-pin", f"{pin.describe()}: platform {platform.version} has no {pin.name}"))

    resolution.target = Manifest(platform=canonical_version(platform.version), suites=suites)
    return resolution

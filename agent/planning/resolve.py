"""The target: which version of every capability should run, from pins and the feed.

For each capability the version comes from the first that applies: capability pin → suite pin
(the suite release's capability version) → platform pin (the platform release's suite, then
capability) → latest. Security enforcement and compatibility are applied afterwards
(``agent.planning.security``, ``agent.planning.compat``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agent.config import VersionPin
from agent.feed.catalog import PLATFORM
from agent.planning.manifest import DeployedCapability, DeployedSuite, Manifest
from agent.planning.model import Problem
from agent.planning.selection import Selection
from agent.versions import parse_version


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
    platform_pin = by_key.get(("platform", PLATFORM))
    platform_source = "pin:platform" if platform_pin else "latest"
    resolution = Resolution(target=None, problems=problems, platform_source=platform_source, pins=by_key)

    platform_version, problem = selection.pick(PLATFORM, platform_pin)
    if platform_version is None:
        problems.append(problem)
        return resolution
    platform = catalog.platforms[platform_version]

    suites: dict[str, DeployedSuite] = {}
    used_pins = {platform_pin.key} if platform_pin else set()
    for suite_name in sorted(platform.suites):
        suite_pin = by_key.get(("suite", suite_name))
        if suite_pin is not None:
            used_pins.add(suite_pin.key)
            suite_version, problem = selection.pick(suite_name, suite_pin)
            if suite_version is None:
                problems.append(problem)
                continue
            suite_source = "pin:suite"
        else:
            suite_version = parse_version(platform.suites[suite_name])
            suite_source = platform_source
        resolution.suite_sources[suite_name] = suite_source
        suite_release = catalog.suites[suite_name][suite_version]

        capabilities: dict[str, DeployedCapability] = {}
        for name in sorted(suite_release.capabilities):
            ref = f"{suite_name}/{name}"
            capability_pin = by_key.get(("capability", ref))
            if capability_pin is not None:
                used_pins.add(capability_pin.key)
                version, problem = selection.pick(ref, capability_pin)
                if version is None:
                    problems.append(problem)
                    continue
                source = "pin:capability"
            else:
                version = parse_version(suite_release.capabilities[name])
                source = suite_source
            release = catalog.capabilities[ref][version]
            capabilities[name] = DeployedCapability.from_release(release, source)
        suites[suite_name] = DeployedSuite(version=suite_release.version, capabilities=capabilities)

    for key, pin in by_key.items():
        if key not in used_pins:
            problems.append(Problem("unused-pin", f"{pin.describe()}: platform {platform.version} has no {pin.name}"))

    resolution.target = Manifest(platform=platform.version, suites=suites)
    return resolution


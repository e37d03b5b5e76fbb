"""A validated feed, indexed for the planner, with every cross-reference checked.

``parse_feed(bytes)`` is the one way from feed bytes to a ``Catalog``: it validates the shape
(pydantic), then that every reference names a release the feed contains, and reports every
problem by its path (``platforms[3].suites.core: no suite release core 9.9.9 in the feed``).
"""

from __future__ import annotations

import gc
from typing import Any
from dataclasses import dataclass, field

from packaging.version import Version
from pydantic import ValidationError

from agent.errors import FeedInvalid, Issue
from agent.feed.units import unit_file_name, unit_name_problem
from agent.feed.model import (
    Advisory,
    CapabilityRelease,
    Feed,
    PlatformRelease,
    SuiteRelease,
    issues_from_validation_error,
    split_release_ref,
)
from agent.versions import parse_specifier, parse_version

PLATFORM = "platform"


@dataclass(frozen=True, slots=True)
class Catalog:
    """The feed's releases by name and parsed version. Release lists are sorted newest first."""

    feed: Feed
    platforms: dict[Version, PlatformRelease]
    suites: dict[str, dict[Version, SuiteRelease]]
    capabilities: dict[str, dict[Version, CapabilityRelease]]
    advisories: dict[str, list[Advisory]]
    withdrawn: frozenset[tuple[str, Version]]
    _newest_first: dict[str, list[Version]] = field(default_factory=dict, repr=False)

    @property
    def serial(self) -> int:
        return self.feed.serial

    def versions(self, name: str) -> list[Version]:
        """Every version of ``platform``, a suite or a ``suite/capability``, newest first."""
        ordered = self._newest_first.get(name)
        if ordered is None:
            releases = self.platforms if name == PLATFORM else self.suites.get(name) or self.capabilities.get(name, {})
            ordered = self._newest_first[name] = sorted(releases, reverse=True)
        return ordered

    def is_withdrawn(self, name: str, version: Version) -> bool:
        return (name, version) in self.withdrawn


def parse_feed(data: bytes | str, source: str = "feed.json") -> Catalog:
    """Validate feed bytes and index them; raises FeedInvalid naming every problem by path."""
    collecting = gc.isenabled()
    gc.disable()  # tens of thousands of small objects, none cyclic: collections would only cost
    try:
        try:
            feed = Feed.model_validate_json(data)
        except ValidationError as error:
            raise FeedInvalid(source, issues_from_validation_error(error)) from None
        catalog, issues = index_feed(feed)
    finally:
        if collecting:
            gc.enable()
    if issues:
        raise FeedInvalid(source, issues)
    return catalog


class _Checker:
    """Parses versions and specifiers, recording a bad one by its path instead of raising."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    # ``where`` is the path in parts, joined only when something is wrong: most feeds are fine,
    # and building tens of thousands of path strings would be most of the indexing time.
    def version(self, where: tuple, text: str) -> Version | None:
        try:
            return parse_version(text)
        except ValueError as error:
            self.issues.append(Issue(_path(where), str(error)))
            return None

    def specifier(self, where: tuple, text: str | None) -> None:
        if text is None:
            return
        try:
            parse_specifier(text)
        except ValueError as error:
            self.issues.append(Issue(_path(where), str(error)))


def _path(where: tuple) -> str:
    """("capabilities", 3, ".version") → capabilities[3].version"""
    section, index, *rest = where
    return f"{section}[{index}]" + "".join(map(str, rest))


def index_feed(feed: Feed) -> tuple[Catalog, list[Issue]]:
    check = _Checker()
    issues = check.issues
    if feed.expires_at <= feed.issued_at:
        issues.append(Issue("expires_at", f"{feed.expires_at.isoformat()} is not after issued_at"))

    capabilities = _index_releases(check, "capabilities", feed.capabilities, lambda r: f"{r.suite}/{r.name}")
    _check_units(feed.capabilities, issues)
    for index, release in enumerate(feed.capabilities):
        if release.requires is None:
            continue
        check.specifier(("capabilities", index, ".requires.platform"), release.requires.platform)
        for needed, spec in release.requires.capabilities.items():
            check.specifier(("capabilities", index, ".requires.capabilities.", needed), spec)
            if needed not in capabilities:
                issues.append(Issue(f"capabilities[{index}].requires.capabilities.{needed}", f"no capability {needed} in the feed"))

    # References are checked by their exact spelling first (the common case, no parsing), then
    # as PEP 440 versions, so ``1.2`` still finds a release written ``1.2.0``.
    capability_spellings = _spellings(capabilities)
    suites = _index_releases(check, "suites", feed.suites, lambda r: r.name)
    for index, release in enumerate(feed.suites):
        if release.name == PLATFORM:
            issues.append(Issue(f"suites[{index}].name", '"platform" is reserved and cannot name a suite'))
        prefix = release.name + "/"
        for name, text in release.capabilities.items():
            ref = prefix + name
            if text not in capability_spellings.get(ref, ()):
                _check_reference(check, ("suites", index, ".capabilities.", name), text, capabilities.get(ref),
                                 f"no capability release {ref} {text} in the feed")

    suite_spellings = _spellings(suites)
    platforms = _index_releases(check, "platforms", feed.platforms, lambda r: PLATFORM).get(PLATFORM, {})
    for index, release in enumerate(feed.platforms):
        for suite, text in release.suites.items():
            if text not in suite_spellings.get(suite, ()):
                _check_reference(check, ("platforms", index, ".suites.", suite), text, suites.get(suite),
                                 f"no suite release {suite} {text} in the feed")

    advisories: dict[str, list[Advisory]] = {}
    for index, advisory in enumerate(feed.advisories):
        if advisory.capability not in capabilities:
            issues.append(Issue(f"advisories[{index}].capability", f"no capability {advisory.capability} in the feed"))
        check.specifier(("advisories", index, ".affected"), advisory.affected)
        advisories.setdefault(advisory.capability, []).append(advisory)

    withdrawn = set()
    for index, ref in enumerate(feed.withdrawn):
        name, text = split_release_ref(ref)
        version = check.version(("withdrawn", index), text)
        if version is None:
            continue
        releases = platforms if name == PLATFORM else (capabilities if "/" in name else suites).get(name, {})
        if version not in releases:
            issues.append(Issue(f"withdrawn[{index}]", f"no release {name} {text} in the feed"))
        withdrawn.add((name, version))

    catalog = Catalog(
        feed=feed,
        platforms=platforms,
        suites=suites,
        capabilities=capabilities,
        advisories=advisories,
        withdrawn=frozenset(withdrawn),
    )
    return catalog, issues


def _check_units(releases: list[CapabilityRelease], issues: list[Issue]) -> None:
    """Every unit is named for its capability (agent.feed.units), listed once per release, and
    its file is owned by one capability only, across the feed."""
    owners: dict[str, str] = {}  # unit file → capability
    checked: set[tuple[str, str]] = set()  # most releases repeat their units: check each pair once
    for index, release in enumerate(releases):
        ref = f"{release.suite}/{release.name}"
        seen: set[str] = set()
        for position, unit in enumerate(release.units):
            where = f"capabilities[{index}].units[{position}]"
            if unit in seen:
                issues.append(Issue(where, f"{unit} is listed twice"))
                continue
            seen.add(unit)
            if (ref, unit) not in checked:
                problem = unit_name_problem(ref, unit)
                if problem:
                    issues.append(Issue(where, problem))
                    continue
                checked.add((ref, unit))
            owner = owners.setdefault(unit_file_name(unit), ref)
            if owner != ref:
                issues.append(Issue(where, f"{unit_file_name(unit)} is already a unit of {owner}"))


def _index_releases(check: _Checker, section: str, releases: list, name_of) -> dict[str, dict[Version, Any]]:
    """Releases by name and parsed version; a release listed twice is reported, the first kept."""
    indexed: dict[str, dict[Version, Any]] = {}
    for index, release in enumerate(releases):
        version = check.version((section, index, ".version"), release.version)
        if version is None:
            continue
        by_version = indexed.setdefault(name_of(release), {})
        if version in by_version:
            earlier = releases.index(by_version[version])
            check.issues.append(Issue(f"{section}[{index}]", f"{name_of(release)} {release.version} is already listed at {section}[{earlier}]"))
            continue
        by_version[version] = release
    return indexed


def _spellings(indexed: dict[str, dict[Version, Any]]) -> dict[str, set[str]]:
    return {name: {release.version for release in releases.values()} for name, releases in indexed.items()}


def _check_reference(check: _Checker, where: tuple, text: str, releases: dict | None, missing: str) -> None:
    wanted = check.version(where, text)
    if wanted is not None and wanted not in (releases or ()):
        check.issues.append(Issue(_path(where), missing))

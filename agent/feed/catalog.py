"""A validated feed, indexed for the planner, with every cross-reference checked.

``parse_feed(bytes)`` is the one way from feed bytes to a ``Catalog``: it validates the shape
(pydantic), then that every reference names a release the feed contains, and reports every
problem by its path (``platforms[3].suites.core: no suite release core 9.9.9 in the feed``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.version import Version
from pydantic import ValidationError

from agent.errors import FeedInvalid, Issue
from agent.feed.model import (
    Advisory,
    CapabilityRelease,
    Feed,
    PlatformRelease,
    SuiteRelease,
    issues_from_validation_error,
    split_release_ref,
)
from agent.versions import parse_version

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
    try:
        feed = Feed.model_validate_json(data)
    except ValidationError as error:
        raise FeedInvalid(source, issues_from_validation_error(error)) from None
    catalog, issues = index_feed(feed)
    if issues:
        raise FeedInvalid(source, issues)
    return catalog


def index_feed(feed: Feed) -> tuple[Catalog, list[Issue]]:
    issues: list[Issue] = []
    if feed.expires_at <= feed.issued_at:
        issues.append(Issue("expires_at", f"{feed.expires_at.isoformat()} is not after issued_at"))

    platforms = _unique(feed.platforms, "platforms", lambda r: ("platform", r.version), issues)
    suites: dict[str, dict[Version, SuiteRelease]] = defaultdict(dict)
    for path, release in _unique_items(feed.suites, "suites", lambda r: (r.name, r.version), issues):
        suites[release.name][parse_version(release.version)] = release
    capabilities: dict[str, dict[Version, CapabilityRelease]] = defaultdict(dict)
    for path, release in _unique_items(feed.capabilities, "capabilities", lambda r: (r.ref, r.version), issues):
        capabilities[release.ref][parse_version(release.version)] = release

    for index, release in enumerate(feed.suites):
        if release.name == PLATFORM:
            issues.append(Issue(f"suites[{index}].name", '"platform" is reserved and cannot name a suite'))
    for index, release in enumerate(feed.platforms):
        for suite, version in release.suites.items():
            if parse_version(version) not in suites.get(suite, ()):
                issues.append(Issue(f"platforms[{index}].suites.{suite}", f"no suite release {suite} {version} in the feed"))
    for index, release in enumerate(feed.suites):
        for name, version in release.capabilities.items():
            ref = f"{release.name}/{name}"
            if parse_version(version) not in capabilities.get(ref, ()):
                issues.append(Issue(f"suites[{index}].capabilities.{name}", f"no capability release {ref} {version} in the feed"))
    for index, release in enumerate(feed.capabilities):
        if release.requires is None:
            continue
        for ref in release.requires.capabilities:
            if ref not in capabilities:
                issues.append(Issue(f"capabilities[{index}].requires.capabilities.{ref}", f"no capability {ref} in the feed"))

    advisories: dict[str, list[Advisory]] = defaultdict(list)
    for index, advisory in enumerate(feed.advisories):
        if advisory.capability not in capabilities:
            issues.append(Issue(f"advisories[{index}].capability", f"no capability {advisory.capability} in the feed"))
        advisories[advisory.capability].append(advisory)

    withdrawn = set()
    for index, ref in enumerate(feed.withdrawn):
        name, text = split_release_ref(ref)
        version = parse_version(text)
        releases = platforms if name == PLATFORM else (capabilities if "/" in name else suites).get(name, {})
        if version not in releases:
            issues.append(Issue(f"withdrawn[{index}]", f"no release {name} {text} in the feed"))
        withdrawn.add((name, version))

    catalog = Catalog(
        feed=feed,
        platforms=platforms,
        suites=dict(suites),
        capabilities=dict(capabilities),
        advisories=dict(advisories),
        withdrawn=frozenset(withdrawn),
    )
    return catalog, issues


def _unique_items(releases: Iterable, section: str, key, issues: list[Issue]):
    """Yield (path, release) for releases whose (name, version) was not seen before in the section."""
    seen: dict[tuple[str, Version], int] = {}
    for index, release in enumerate(releases):
        name, version = key(release)
        identity = (name, parse_version(version))
        if identity in seen:
            issues.append(Issue(f"{section}[{index}]", f"{name} {version} is already listed at {section}[{seen[identity]}]"))
            continue
        seen[identity] = index
        yield f"{section}[{index}]", release


def _unique(releases, section, key, issues) -> dict[Version, PlatformRelease]:
    return {parse_version(release.version): release for _, release in _unique_items(releases, section, key, issues)}

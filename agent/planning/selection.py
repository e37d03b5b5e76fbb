"""Which releases the planner may choose on its own, and picking one for a pin or for latest.

A release is chosen *automatically* (as latest, by a specifier pin, or as a security fix) only
if it is not withdrawn, not blocked, not a pre-release unless allowed, and, for platform
releases, rolled out to this host. A platform or suite release that contains a withdrawn or
blocked release is skipped as a whole: it is the vendor's tested combination or nothing. An
exact pin is an explicit request: it gets its release even when blocked, pre-release or not yet
rolled out, but never a withdrawn one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from packaging.version import Version

from agent.feed.catalog import PLATFORM, Catalog
from agent.planning.model import Problem
from agent.planning.rollout import has_reached
from agent.versions import is_exact, mentions_prerelease, parse_specifier, parse_version
from agent.config import VersionPin


@dataclass
class Selection:
    catalog: Catalog
    allow_prerelease: bool
    blocked: frozenset[tuple[str, Version]]
    now: datetime
    host_wariness: float
    _suite_usable: dict[tuple[str, Version], bool] = field(default_factory=dict)

    def usable(self, name: str, version: Version) -> bool:
        """Neither withdrawn by the vendor nor blocked on this host."""
        return (name, version) not in self.catalog.withdrawn and (name, version) not in self.blocked

    def prerelease_ok(self, version: Version) -> bool:
        return self.allow_prerelease or not version.is_prerelease

    def suite_release_usable(self, suite: str, version: Version) -> bool:
        key = (suite, version)
        known = self._suite_usable.get(key)
        if known is None:
            release = self.catalog.suites[suite][version]
            known = self.usable(suite, version) and all(
                self.usable(f"{suite}/{name}", parse_version(text)) for name, text in release.capabilities.items()
            )
            self._suite_usable[key] = known
        return known

    def platform_release_usable(self, version: Version) -> bool:
        release = self.catalog.platforms[version]
        return (
            self.usable(PLATFORM, version)
            and has_reached(release.rollout, self.now, self.host_wariness)
            and all(self.suite_release_usable(suite, parse_version(text)) for suite, text in release.suites.items())
        )

    def automatic_ok(self, name: str) -> Callable[[Version], bool]:
        if name == PLATFORM:
            return self.platform_release_usable
        if "/" in name:
            return lambda version: self.usable(name, version)
        return lambda version: self.suite_release_usable(name, version)

    def pick(self, name: str, pin: VersionPin | None) -> tuple[Version | None, Problem | None]:
        """The release of ``name`` (``platform``, a suite, or ``suite/capability``) to run."""
        label = "platform" if name == PLATFORM else name
        automatic_ok = self.automatic_ok(name)
        candidates = self.catalog.versions(name)
        if pin is None:
            for version in candidates:
                if self.prerelease_ok(version) and automatic_ok(version):
                    return version, None
            return None, Problem(
                "no-release",
                f"no usable {label} release in the feed (each is withdrawn, blocked, a pre-release "
                "or not yet rolled out to this host)",
            )
        if is_exact(pin.version):
            version = parse_version(pin.version)
            if version not in candidates:
                return None, Problem("unknown-release", f"{pin.describe()}: the feed has no {label} release {pin.version}")
            if (name, version) in self.catalog.withdrawn:
                return None, Problem("withdrawn", f"{pin.describe()}: {label} {pin.version} is withdrawn by the vendor")
            return version, None
        spec = parse_specifier(pin.version)
        prereleases_ok = self.allow_prerelease or mentions_prerelease(pin.version)
        for version in candidates:
            if version.is_prerelease and not prereleases_ok:
                continue
            if spec.contains(version, prereleases=True) and automatic_ok(version):
                return version, None
        return None, Problem(
            "no-match",
            f"{pin.describe()}: no usable {label} release matches (withdrawn, blocked, pre-release "
            "and not yet rolled out releases are skipped)",
        )

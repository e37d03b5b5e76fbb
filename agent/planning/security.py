"""Security enforcement: versions affected by an enforced advisory are moved to the lowest fix.

An advisory at or above ``enforce_severity`` is enforced: a capability version its ``affected``
specifier matches is moved to the lowest version in the feed that is higher than it, matched by
no enforced advisory, usable (not withdrawn, not blocked, not a pre-release unless allowed) and
compatible with the rest of the manifest. Without such a version the capability is *exposed*.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.feed.catalog import Catalog
from agent.feed.model import SEVERITIES, Advisory, CapabilityRelease, severity_at_least
from agent.planning.compat import fits_with_others
from agent.planning.manifest import DeployedCapability, Manifest
from agent.planning.model import Problem
from agent.planning.selection import Selection
from agent.versions import matches, parse_version


@dataclass(frozen=True, slots=True)
class Enforcement:
    """One capability moved off an affected version."""

    capability: str
    from_version: str
    fix: CapabilityRelease
    advisory: Advisory

    @property
    def source(self) -> str:
        return f"security:{self.advisory.id}"


def enforced_advisories(catalog: Catalog, ref: str, version: str, threshold: str) -> list[Advisory]:
    """Enforced advisories affecting ``ref version``, most severe first."""
    found = [
        advisory
        for advisory in catalog.advisories.get(ref, ())
        if severity_at_least(advisory.severity, threshold) and matches(advisory.affected, version)
    ]
    found.sort(key=lambda a: (-SEVERITIES.index(a.severity), a.id))
    return found


def lowest_fix(
    selection: Selection, ref: str, current: str, threshold: str, fits: Callable[[CapabilityRelease], bool]
) -> CapabilityRelease | None:
    catalog = selection.catalog
    floor = parse_version(current)
    for version in reversed(catalog.versions(ref)):
        if version <= floor or not selection.usable(ref, version) or not selection.prerelease_ok(version):
            continue
        release = catalog.capabilities[ref][version]
        if enforced_advisories(catalog, ref, release.version, threshold):
            continue
        if fits(release):
            return release
    return None


def enforce_advisories(
    manifest: Manifest,
    selection: Selection,
    threshold: str,
    *,
    platform: str | None,
    describe_override: Callable[[str, DeployedCapability], str | None] = lambda ref, entry: None,
) -> tuple[Manifest, list[Enforcement], list[Problem]]:
    """``manifest`` with every affected capability moved to its fix; what moved; what is exposed.

    Capabilities are taken in name order and each fix is checked against the manifest as it
    stands with the earlier fixes in, so the result is deterministic and compatible.
    """
    catalog = selection.catalog
    entries = manifest.capabilities()
    versions = {ref: entry.version for ref, entry in entries.items()}
    requirements = {ref: entry.requires for ref, entry in entries.items()}
    enforcements: list[Enforcement] = []
    problems: list[Problem] = []

    for ref in sorted(entries):
        entry = entries[ref]
        advisories = enforced_advisories(catalog, ref, entry.version, threshold)
        if not advisories:
            continue

        def fits(release: CapabilityRelease, ref=ref) -> bool:
            return fits_with_others(ref, release.version, release.requires, platform, versions, requirements)

        fix = lowest_fix(selection, ref, entry.version, threshold, fits)
        if fix is None:
            ids = ", ".join(f"{a.id} ({a.severity})" for a in advisories)
            problems.append(Problem("exposed", f"{ref} {entry.version} is affected by {ids} and the feed has no usable, compatible fixed release"))
            continue
        enforcement = Enforcement(ref, entry.version, fix, advisories[0])
        enforcements.append(enforcement)
        entries[ref] = DeployedCapability.from_release(fix, enforcement.source, describe_override(ref, entry))
        versions[ref] = fix.version
        requirements[ref] = fix.requires

    if not enforcements:
        return manifest, enforcements, problems
    return replace_capabilities(manifest, entries), enforcements, problems


def replace_capabilities(manifest: Manifest, entries: dict[str, DeployedCapability]) -> Manifest:
    """``manifest`` with its capabilities taken from ``entries`` (by ``suite/name``)."""
    suites = {
        suite_name: suite.model_copy(
            update={"capabilities": {name: entries[f"{suite_name}/{name}"] for name in suite.capabilities}}
        )
        for suite_name, suite in manifest.suites.items()
    }
    return manifest.model_copy(update={"suites": suites})


def enforce_advisory(manifest: Manifest, selection: Selection, advisory: Advisory) -> tuple[Manifest, Enforcement] | Problem | None:
    """``manifest`` with ``advisory``'s capability moved to its lowest fix now, whatever its severity.

    An admin's ``POST /security/enforce``: the fix is the lowest usable, compatible version above
    the running one that no advisory at least as severe affects. None when the running version is
    not affected; a Problem (``exposed``) when the feed has no such fix.
    """
    ref = advisory.capability
    entries = manifest.capabilities()
    entry = entries.get(ref)
    if entry is None or not matches(advisory.affected, entry.version):
        return None
    versions = {name: item.version for name, item in entries.items()}
    requirements = {name: item.requires for name, item in entries.items()}

    def fits(release: CapabilityRelease) -> bool:
        return fits_with_others(ref, release.version, release.requires, manifest.platform, versions, requirements)

    fix = lowest_fix(selection, ref, entry.version, advisory.severity, fits)
    if fix is None:
        return Problem("exposed", f"{ref} {entry.version} is affected by {advisory.id} ({advisory.severity}) and the feed has no usable, compatible fixed release")
    enforcement = Enforcement(ref, entry.version, fix, advisory)
    entries[ref] = DeployedCapability.from_release(fix, enforcement.source, f"{entry.source} {entry.version}")
    return replace_capabilities(manifest, entries), enforcement

"""Rollback to a kept revision: is it possible, and what does it take (DESIGN.md §6 "Rollback").

``check_rollback`` is pure: it compares the revision to go back to with the one running and
says what would change, what stops it (an artifact neither on disk nor in the feed, a
capability whose ``requires`` the old manifest no longer meets) and which enforced advisories
the old versions are affected by (allowed only with ``force``, and recorded). The TUI shows the
same check as a preview before an admin confirms; ``Engine.rollback`` runs it again and then
deploys the revision's manifest like any other, so a rollback that fails its health check is
itself undone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.feed.catalog import Catalog
from agent.planning.compat import unmet_requirements
from agent.planning.manifest import DeployedCapability, Manifest
from agent.planning.security import enforced_advisories
from agent.versions import parse_version


@dataclass(frozen=True)
class RollbackChange:
    capability: str
    from_version: str | None
    to_version: str | None

    def describe(self) -> str:
        return f"{self.capability} {self.from_version or '(none)'} → {self.to_version or '(removed)'}"


@dataclass(frozen=True)
class RollbackCheck:
    to_revision: int
    from_revision: int | None
    from_platform: str | None
    to_platform: str | None
    changes: tuple[RollbackChange, ...]
    problems: tuple[str, ...] = ()
    """What makes the rollback impossible; ``force`` does not help."""
    advisories: tuple[str, ...] = ()
    """Enforced advisories the revision's versions are affected by, e.g. ``ID1-SA-2026-0001 (core/auth 1.0.0, critical)``."""

    def refusal(self, *, force: bool) -> str | None:
        """Why this rollback may not go ahead, or None when it may."""
        if self.problems:
            return f"cannot roll back to revision {self.to_revision}: " + "; ".join(self.problems)
        if self.advisories and not force:
            return (f"revision {self.to_revision} runs versions affected by enforced advisories "
                    f"({', '.join(self.advisories)}); roll back with force to accept that")
        return None

    def rolled_back_from(self) -> list[str]:
        """Release refs left behind (``core/auth@1.1.0``, ``platform@2.6.0``): blocked for automatic updates."""
        refs = [f"{change.capability}@{change.from_version}" for change in self.changes if change.from_version]
        if self.from_platform and self.from_platform != self.to_platform:
            refs.append(f"platform@{self.from_platform}")
        return refs


def check_rollback(
    target: Manifest,
    running: Manifest | None,
    *,
    to_revision: int,
    from_revision: int | None,
    has_release: Callable[[str, DeployedCapability], bool],
    catalog: Catalog | None,
    enforce_severity: str,
) -> RollbackCheck:
    """Whether ``running`` can go back to ``target`` (revision ``to_revision``).

    ``has_release(ref, entry)`` says whether the artifact is on this host already (release
    folder or cache); otherwise the feed must still offer the same artifact.
    """
    wanted = target.capabilities()
    had = running.capabilities() if running else {}
    changes = tuple(
        RollbackChange(ref, had[ref].version if ref in had else None, wanted[ref].version if ref in wanted else None)
        for ref in sorted(set(wanted) | set(had))
        if ref not in had or ref not in wanted or _identity(had[ref]) != _identity(wanted[ref])
    )
    problems: list[str] = []
    if from_revision == to_revision or (not changes and running is not None and running.platform == target.platform):
        problems.append(f"revision {to_revision} is what is running already")
    for change in changes:
        entry = wanted.get(change.capability)
        if entry is not None and not has_release(change.capability, entry) and not _in_feed(catalog, change.capability, entry):
            where = "the feed no longer offers it" if catalog is not None else "no feed has been accepted yet"
            problems.append(f"{change.capability} {entry.version}: its artifact is not on this host and {where}")
    versions = target.versions()
    for ref, entry in sorted(wanted.items()):
        problems.extend(unmet.text for unmet in unmet_requirements(ref, entry.version, entry.requires, target.platform, versions))
    advisories: list[str] = []
    if catalog is not None:
        for ref, entry in sorted(wanted.items()):
            for advisory in enforced_advisories(catalog, ref, entry.version, enforce_severity):
                advisories.append(f"{advisory.id} ({ref} {entry.version}, {advisory.severity})")
    return RollbackCheck(
        to_revision=to_revision,
        from_revision=from_revision,
        from_platform=running.platform if running else None,
        to_platform=target.platform,
        changes=changes,
        problems=tuple(problems),
        advisories=tuple(advisories),
    )


def _identity(entry: DeployedCapability) -> tuple[str, str]:
    return entry.version, entry.artifact.sha256


def _in_feed(catalog: Catalog | None, ref: str, entry: DeployedCapability) -> bool:
    if catalog is None:
        return False
    release = catalog.capabilities.get(ref, {}).get(parse_version(entry.version))
    return release is not None and release.artifact.sha256 == entry.artifact.sha256

"""Compatibility: every capability's ``requires`` must hold against the manifest it runs in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from agent.feed.model import Requires
from agent.versions import matches


class Unmet(NamedTuple):
    """One requirement not met: what is needed (``suite/capability``, None for the platform)."""

    needed: str | None
    text: str


def unmet_requirements(
    ref: str,
    version: str,
    requires: Requires | None,
    platform: str | None,
    versions: Mapping[str, str],
) -> list[Unmet]:
    """What ``ref version`` needs and does not get, each with a readable line."""
    if requires is None:
        return []
    unmet = []
    if requires.platform is not None and (platform is None or not matches(requires.platform, platform)):
        have = f"platform {platform}" if platform else "no platform release"
        unmet.append(Unmet(None, f"{ref} {version} requires platform {requires.platform} (has {have})"))
    for needed, spec in requires.capabilities.items():
        have = versions.get(needed)
        if have is None:
            unmet.append(Unmet(needed, f"{ref} {version} requires {needed} {spec} (not deployed)"))
        elif not matches(spec, have):
            unmet.append(Unmet(needed, f"{ref} {version} requires {needed} {spec} (has {have})"))
    return unmet


def fits_with_others(
    ref: str,
    version: str,
    requires: Requires | None,
    platform: str | None,
    versions: Mapping[str, str],
    requirements: Mapping[str, Requires | None],
) -> bool:
    """Whether ``ref`` at ``version`` meets its own requirements and breaks no other capability's.

    ``versions`` and ``requirements`` describe the rest of the manifest by ``suite/capability``.
    """
    candidate = dict(versions)
    candidate[ref] = version
    if unmet_requirements(ref, version, requires, platform, candidate):
        return False
    for other, other_requires in requirements.items():
        if other == ref or other_requires is None:
            continue
        spec = other_requires.capabilities.get(ref)
        if spec is not None and not matches(spec, version):
            return False
    return True

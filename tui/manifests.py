"""Reading the API's manifests (DESIGN.md §5): capability versions and the difference of two."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Entry:
    capability: str
    version: str
    source: str | None = None
    overrides: str | None = None


def entries(manifest: dict[str, Any] | None) -> dict[str, Entry]:
    """``suite/capability`` -> its entry, in suite then capability order."""
    found: dict[str, Entry] = {}
    for suite, body in sorted(((manifest or {}).get("suites") or {}).items()):
        for name, capability in sorted((body.get("capabilities") or {}).items()):
            ref = f"{suite}/{name}"
            found[ref] = Entry(ref, capability.get("version", "?"), capability.get("source"), capability.get("overrides"))
    return found


@dataclass(frozen=True)
class Difference:
    capability: str
    from_version: str | None
    to_version: str | None


def difference(running: dict[str, Any] | None, other: dict[str, Any] | None) -> list[Difference]:
    """What moving from ``running`` to ``other`` changes, capability by capability."""
    before, after = entries(running), entries(other)
    changed = []
    for ref in sorted(set(before) | set(after)):
        old = before[ref].version if ref in before else None
        new = after[ref].version if ref in after else None
        if old != new:
            changed.append(Difference(ref, old, new))
    return changed

"""What the planner returns: the plan, its changes and its problems (DESIGN.md §5)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.planning.manifest import Manifest

APPLY = "apply"
AWAIT_APPROVAL = "await-approval"
HOLD = "hold"
ACTION_OF_CHANNEL = {"auto-update": APPLY, "manual-approval": AWAIT_APPROVAL, "frozen": HOLD}

# Problems that make the target invalid: nothing is deployed from it (``id1 plan`` exits 4).
INVALIDATING = frozenset({"no-release", "unknown-release", "withdrawn", "no-match", "incompatible"})
# Problems reported for the operator's attention; the target stays valid.
#   exposed      an enforced advisory affects a version and the feed has no fix for it
#   unused-pin   a pin names a suite or capability the target does not have
#   pin-conflict two pins name the same thing; the first one listed wins
#   deferred     a change allowed by its channel waits for another one it needs
#   republished  the feed gives a version this host runs other bytes; the host keeps its own
#   fleet-halted the host's fleet group stopped a version after it failed on other hosts
PROBLEM_CODES = INVALIDATING | {"exposed", "unused-pin", "pin-conflict", "deferred", "republished", "fleet-halted"}


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    detail: str

    def to_json(self) -> dict:
        return {"code": self.code, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Change:
    capability: str
    from_version: str | None
    to_version: str | None
    source: str
    action: str
    overrides: str | None = None

    def to_json(self) -> dict:
        data = {
            "capability": self.capability,
            "from": self.from_version,
            "to": self.to_version,
            "source": self.source,
            "action": self.action,
        }
        if self.overrides is not None:
            data["overrides"] = self.overrides
        return data


@dataclass(frozen=True, slots=True)
class Plan:
    installed: Manifest | None
    target: Manifest | None
    next: Manifest | None
    changes: tuple[Change, ...] = ()
    problems: tuple[Problem, ...] = field(default=())

    @property
    def valid(self) -> bool:
        return self.target is not None and not any(p.code in INVALIDATING for p in self.problems)

    @property
    def target_hash(self) -> str | None:
        """What an approval of this plan binds to."""
        return self.target.content_hash() if self.target is not None else None

    def to_json(self) -> dict:
        return {
            "installed": self.installed.to_json() if self.installed else None,
            "target": self.target.to_json() if self.target else None,
            "next": self.next.to_json() if self.next else None,
            "changes": [change.to_json() for change in self.changes],
            "problems": [problem.to_json() for problem in self.problems],
            "target_hash": self.target_hash,
        }

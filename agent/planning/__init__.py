"""The planner, pure: feed + config + pins + installed manifest + clock → plan (DESIGN.md §5).

Nothing here does I/O or reads the clock; importing it pulls in none of httpx, tinydb, fastapi
or textual (a test checks this).
"""

from agent.planning.manifest import DeployedCapability, DeployedSuite, Manifest
from agent.planning.model import APPLY, AWAIT_APPROVAL, HOLD, INVALIDATING, Change, Plan, Problem
from agent.planning.plan import make_plan

__all__ = [
    "APPLY", "AWAIT_APPROVAL", "HOLD", "INVALIDATING",
    "Change", "DeployedCapability", "DeployedSuite", "Manifest", "Plan", "Problem", "make_plan",
]

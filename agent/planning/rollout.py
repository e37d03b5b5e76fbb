"""Staged rollouts: each host's place in line, and whether a release has reached it.

A host's wariness ``w`` in [0, 1) comes from a hash of its instance id, so it is stable across
restarts and spread evenly over a fleet (Zincati's rollout wariness, made deterministic). A
release with ``rollout {start, hours}`` reaches the host once ``(now − start) / hours ≥ w``.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from agent.feed.model import Rollout


def wariness(instance_id: str) -> float:
    digest = hashlib.sha256(b"id1-rollout\0" + instance_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def has_reached(rollout: Rollout | None, now: datetime, host_wariness: float) -> bool:
    if rollout is None:
        return True
    if now < rollout.start:
        return False
    if rollout.hours == 0:
        return True
    elapsed_hours = (now - rollout.start).total_seconds() / 3600
    return elapsed_hours / rollout.hours >= host_wariness

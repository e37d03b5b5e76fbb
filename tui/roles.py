"""Who may do what, as far as the dashboard can tell beforehand (DESIGN.md §7).

The status names the caller's role; an action the role lacks is shown disabled with the reason.
This is a courtesy, not the check: the API decides, and its 403 message is shown when it refuses.
"""

from __future__ import annotations

from typing import Any

RANK = {"viewer": 1, "approver": 2, "admin": 3}

# The config's defaults (DESIGN.md §8); the status may name the configured groups instead.
DEFAULT_GROUPS = {"viewer": ["id1-viewer"], "approver": ["id1-approver"], "admin": ["id1-admin"]}


def granting_groups(needed: str, status: dict[str, Any] | None) -> list[str]:
    configured = (status or {}).get("role_groups") or DEFAULT_GROUPS
    names: list[str] = []
    for role, rank in sorted(RANK.items(), key=lambda item: item[1]):
        if rank >= RANK[needed]:
            names += [name for name in configured.get(role, []) if name not in names]
    return names


def refusal(status: dict[str, Any] | None, needed: str) -> str | None:
    """None if the caller's role allows it, else why not: "needs the approver role (group …)"."""
    if status is None:
        return "waiting for the agent's status"
    role = status.get("role")
    if role is not None and RANK.get(role, 0) >= RANK[needed]:
        return None
    groups = granting_groups(needed, status)
    where = f"group {' or '.join(groups)}" if groups else "only root has it"
    return f"needs the {needed} role ({where})"


def describe_role(status: dict[str, Any] | None) -> str:
    if status is None:
        return "…"
    role = status.get("role")
    return role if role else "no role"

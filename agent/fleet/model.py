"""What a coordinator tells the agent, as frozen dataclasses of plain JSON types (str, int,
bool, None, lists/tuples, dicts): the API serves them as they are and the CLI prints
``describe()``.

    SlotWait     what a host waits for while it waits for a slot (on_wait gets one each time
                 that changes): slots full (who holds them), refused (FleetLock's error), or
                 the lock service unreachable
    SlotGrant    how acquire ended: the slot held, or not (stopped, timed out) and why
    HostState    what a host publishes about itself (etcd's view)
    FleetView    a group seen from any host: hosts, slot holders, waiting hosts, failures

Times are ISO 8601 strings in UTC (``2025-03-01T02:00:00Z``), so ``json.dumps(asdict(x))``
works on every one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

from agent.feed.model import check_release_ref
from agent.safe_text import escape_unsafe

WaitReason = Literal["full", "refused", "unreachable"]
_SHOWN_HOLDERS = 5


def utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_ref(text: str) -> str:
    """``REF@VERSION`` as halt records name a change: ``core/auth@2.0.1`` or ``platform@2.5.1``.
    Raises ValueError naming the text (the API turns it into a 422)."""
    return check_release_ref(text)


@dataclass(frozen=True)
class SlotWait:
    backend: str
    group: str
    reason: WaitReason
    slots: int | None = None
    """How many hosts may hold a slot; None where the backend does not say (FleetLock)."""
    holders: tuple[str, ...] = ()
    """Fleet ids of the hosts holding a slot, as last read."""
    ahead: int | None = None
    """Hosts that queued for a slot before this one (etcd), as last read."""
    detail: str = ""
    """The refusal (FleetLock ``kind: value``) or why the service is unreachable, as one line."""

    def describe(self) -> str:
        """One line for ``id1 status``: ``waiting for a fleet slot (group g: 2/2 held by h1, h3)``."""
        if self.reason == "unreachable":
            return f"waiting for a fleet slot (group {self.group}): the lock service is unreachable: {self.detail}"
        if self.reason == "refused":
            return f"waiting for a fleet slot (group {self.group}): the lock service refused: {self.detail}"
        shown = ", ".join(self.holders[:_SHOWN_HOLDERS])
        if len(self.holders) > _SHOWN_HOLDERS:
            shown += f" and {len(self.holders) - _SHOWN_HOLDERS} more"
        count = f"{len(self.holders)}/{self.slots}" if self.slots is not None else f"{len(self.holders)}"
        held = f"{count} held by {shown}" if self.holders else f"{count} held"
        queue = f"; {self.ahead} host{'s' if self.ahead != 1 else ''} ahead" if self.ahead else ""
        return f"waiting for a fleet slot (group {self.group}: {held}{queue})"


@dataclass(frozen=True)
class SlotGrant:
    held: bool
    reason: Literal["stopped", "timed-out"] | None = None
    """Why acquire returned without a slot: stopped (should_stop turned true: SIGTERM) or
    timed-out (give_up_after passed: a forced security fix goes ahead without a slot)."""
    waited_s: float = 0.0
    last_wait: SlotWait | None = None
    """What this host was waiting for when acquire returned (None: it never waited)."""
    halted: dict[str, list[str]] = field(default_factory=dict)
    """etcd: the halted changes as read when the slot was granted (REF@VERSION → failed hosts).
    A host that fails a change records it before it gives its slot back, so a change halted by
    the host this slot came from is in here: check the change against it before deploying."""


@dataclass(frozen=True)
class HostState:
    """What this host publishes (etcd): set by the agent, stamped by the coordinator."""

    instance_id: str
    platform: str | None
    """The running platform version, None before the first deployment."""
    revision: int | None
    """The running revision of the installed manifest."""
    agent_state: str
    """idle, deploying, rolling-back, waiting-for-slot, ... (the agent's own words)."""
    updated_at: str
    """When this state began (ISO 8601, UTC)."""


@dataclass(frozen=True)
class FleetHost:
    host_id: str
    instance_id: str
    platform: str | None
    revision: int | None
    agent_state: str
    updated_at: str
    last_seen: str
    """When the host last wrote its record: its state, or the renewal of its lease."""


@dataclass(frozen=True)
class SlotHolder:
    host_id: str
    since: str | None
    slot: int | None = None
    instance_id: str | None = None


@dataclass(frozen=True)
class FailedChange:
    ref: str
    """REF@VERSION."""
    hosts: tuple[str, ...]
    """Fleet ids of the hosts that were rolled back from it."""
    halted: bool
    """At least halt_after (this host's setting) hosts failed on it: the group holds it."""


@dataclass(frozen=True)
class FleetView:
    backend: str
    group: str
    this_host: str
    slots: int | None = None
    halt_after: int | None = None
    hosts: tuple[FleetHost, ...] = ()
    holders: tuple[SlotHolder, ...] = ()
    waiting: tuple[str, ...] = ()
    """Fleet ids of hosts waiting for a slot, first in line first (at most 100 listed)."""
    waiting_total: int = 0
    failures: tuple[FailedChange, ...] = ()
    note: str | None = None
    """What this backend cannot show (FleetLock: no view), or why the view is missing (unreachable)."""

    @property
    def halted(self) -> dict[str, list[str]]:
        return {failure.ref: list(failure.hosts) for failure in self.failures if failure.halted}


def one_line(text: str, limit: int = 300) -> str:
    """Text from a lock service (an error body, an exception) as one safe line for an operator."""
    text = escape_unsafe(" ".join(str(text).split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""The engine's side of the fleet (DESIGN.md §12): one slot of the group, held from before units
or links change until the host is healthy again.

    FleetSlot(coordinator, on_wait=…, on_went_ahead=…)
        acquire(should_stop)      wait for a slot; a forced security fix (``critical_wait_s``
                                  set by the daemon for that deployment) stops waiting after it
        release()                 give it back (owed to the lock service if unreachable)
        record_failures(refs)     REF@VERSION rolled back from, for the group's halt
        went_ahead(detail)        told when a forced fix went on without a slot (audited, alerted)

The coordinator never raises because the lock service is down: acquire waits (and says why
through ``on_wait``), the rest is owed and paid in order when it answers again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from agent.fleet.coordinator import Coordinator
from agent.fleet.model import SlotGrant, SlotWait


@dataclass
class FleetSlot:
    coordinator: Coordinator
    on_wait: Callable[[SlotWait], None] = lambda wait: None
    """Each change of what the host waits for (``id1 status``: "waiting for a fleet slot …")."""
    on_went_ahead: Callable[[str], None] = lambda detail: None
    critical_wait_s: float | None = None
    """Set for the deployment of a forced security fix: how long it waits for a slot at most."""

    @property
    def group(self) -> str:
        return self.coordinator.config.group

    def describe(self) -> str:
        limit = f", at most {self.critical_wait_s:.0f} s (a forced security fix)" if self.critical_wait_s is not None else ""
        return f"group {self.group} ({self.coordinator.backend}){limit}"

    def acquire(self, *, should_stop: Callable[[], bool]) -> SlotGrant:
        return self.coordinator.acquire(should_stop=should_stop, on_wait=self.on_wait, give_up_after=self.critical_wait_s)

    def release(self) -> None:
        self.coordinator.release()

    def record_failures(self, refs: list[str]) -> None:
        for ref in refs:
            self.coordinator.record_failure(ref)

    def went_ahead(self, detail: str) -> None:
        self.on_went_ahead(detail)

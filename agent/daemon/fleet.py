"""The fleet seen from the daemon (DESIGN.md §12, docs/fleet.md): the coordinator of ``[fleet]``,
the slot its deployments hold, the group's halted changes in every plan, the host's published
state, and the admin's two fleet verbs.

    open_fleet()           the coordinator (at start and on a reload that changes ``[fleet]``)
    settle_fleet_slot()    at start, nothing unfinished: give back any slot (idempotent)
    refresh_halted()       the group's halted changes, read once per reconcile; the plan holds them
    publish_state()        this host's state for ``id1 fleet`` on every host (etcd)
    fleet_view()           ``GET /fleet``
    fleet_resume()         ``POST /fleet/resume``: lift a halt (admin, audited)
    fleet_release()        ``POST /fleet/release``: free the slot of a host that is gone (admin, audited)
"""

from __future__ import annotations

import logging
from pathlib import Path

from agent.alerts import DEPLOYMENT_FAILED, FORCED_PATCH
from agent.deploy.slot import FleetSlot
from agent.errors import Conflict
from agent.fleet.coordinator import Coordinator, coordinator_from_config
from agent.fleet.model import FleetView, HostState, SlotWait, check_ref, utc_text
from agent.planning import Manifest
from agent.daemon.recorder import AGENT

logger = logging.getLogger("id1.agent")
MACHINE_ID = Path("/etc/machine-id")


def read_machine_id(path: Path = MACHINE_ID) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


class FleetPart:
    """Part of ``AgentService`` (agent.daemon.service): the host in its fleet group."""

    coordinator: Coordinator
    fleet_halted: dict[str, list[str]]
    slot_wait: SlotWait | None

    def open_fleet(self) -> None:
        self.coordinator = coordinator_from_config(self.config.fleet, instance_id=self.instance_id,
                                                   machine_id=read_machine_id(self.machine_id_path))
        self.fleet_halted = {}
        self.slot_wait = None

    def fleet_slot(self) -> FleetSlot | None:
        if self.config.fleet.backend == "none":
            return None
        return FleetSlot(self.coordinator, on_wait=self._waiting_for_slot, on_went_ahead=self._went_ahead)

    def _waiting_for_slot(self, wait: SlotWait) -> None:
        self.slot_wait = wait
        logger.info("%s", wait.describe())
        self.set_activity(wait.describe())

    def _went_ahead(self, detail: str) -> None:
        self._decided(AGENT, "fleet-slot-skipped", "a forced security fix", detail, alert=FORCED_PATCH)

    def settle_fleet_slot(self) -> None:
        """At start with nothing unfinished: a slot an earlier run held is given back."""
        if self.store.deployments.active() is None:
            self.coordinator.steady_state()

    def refresh_halted(self) -> dict[str, list[str]]:
        """The group's halted changes (the last ones read while the lock service is unreachable);
        a change newly halted is recorded and alerted once."""
        halted = self.coordinator.halted()
        for ref in sorted(set(halted) - set(self.fleet_halted)):
            self._decided(AGENT, "fleet-halted", ref, f"failed on {', '.join(halted[ref])} of fleet group "
                          f"{self.config.fleet.group}: no host of the group deploys it (id1 fleet resume {ref} lifts it)",
                          alert=DEPLOYMENT_FAILED)
        self.fleet_halted = halted
        return halted

    def publish_state(self) -> None:
        if self.config.fleet.backend != "etcd":
            return
        latest = self.store.revisions.latest()
        platform = Manifest.model_validate(latest.manifest).platform if latest else None
        self.coordinator.publish(HostState(instance_id=self.instance_id, platform=platform,
                                           revision=latest.number if latest else None,
                                           agent_state=self.activity.text, updated_at=utc_text(self.activity.since)))

    # --- the admin's verbs ------------------------------------------------------------------------

    def fleet_view(self) -> FleetView:
        return self.coordinator.view()

    def fleet_resume(self, actor: str, ref: str, reason: str | None) -> dict[str, list[str]]:
        self._fleet_backend("resume a halted change", etcd_only=True)
        ref = check_ref(ref)
        halted = self.coordinator.halted()
        failed = next((failure for failure in self.coordinator.view().failures if failure.ref == ref), None)
        if failed is None and ref not in halted:
            raise Conflict(f"{ref} is not halted for fleet group {self.config.fleet.group} and no host recorded a failure of it")
        self.coordinator.resume(ref)
        self._decided(actor, "fleet-resume", ref, reason or "", details={"group": self.config.fleet.group,
                                                                          "failed_on": list(failed.hosts) if failed else []})
        self.fleet_halted.pop(ref, None)
        self.later(self.reconcile)
        return {ref: list(failed.hosts) if failed else []}

    def fleet_release(self, actor: str, host_id: str, reason: str | None) -> bool:
        self._fleet_backend("free another host's slot", etcd_only=True)
        if host_id == self.coordinator.host_id and self.store.deployments.active() is not None:
            raise Conflict("this host is deploying and holds its slot for it; it gives it back when healthy")
        freed = self.coordinator.release_host(host_id)
        if not freed:
            raise Conflict(f"host {host_id} holds no slot of fleet group {self.config.fleet.group}")
        self._decided(actor, "fleet-release", host_id, reason or "", details={"group": self.config.fleet.group})
        return freed

    def _fleet_backend(self, what: str, *, etcd_only: bool) -> None:
        backend = self.config.fleet.backend
        if backend == "none":
            raise Conflict(f"cannot {what}: fleet coordination is off (fleet.backend = none in {self.config_source})")
        if etcd_only and backend != "etcd":
            raise Conflict(f"cannot {what}: the {backend} backend gives slots only (no halt, no view); "
                           "use the lock server's own tools")


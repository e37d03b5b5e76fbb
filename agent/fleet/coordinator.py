"""The coordinator: what the agent asks of its fleet, whatever the backend (DESIGN.md §12).

    Coordinator (abstract)
    ├── NoCoordinator         backend none: every slot granted at once, nothing recorded
    ├── FleetLockCoordinator  backend fleetlock (agent.fleet.fleetlock): a slot, nothing else
    └── EtcdCoordinator       backend etcd (agent.fleet.etcd): slots, halt, view

How the agent uses one (the deployment engine and the daemon):

    start, nothing unfinished ── steady_state()            give back any slot (idempotent)
    a change to deploy ───────── acquire(...)              before units or links change
                                   ├ held: deploy; check SlotGrant.halted first
                                   ├ stopped (SIGTERM): nothing changed, nothing held
                                   └ timed-out (critical_wait of a forced fix): deploy anyway
    rolled back automatically ── record_failure(REF@VERSION)   before the slot goes back
    verified healthy ─────────── steady_state()
    any time ─────────────────── publish(HostState), halted(), view()
    admin ────────────────────── resume(REF@VERSION), release_host(ID)
    stop ─────────────────────── close()                   a held slot is kept (until `lease`
                                                            or the next start takes it over)

No method raises because the lock service is unreachable, except the admin's resume and
release_host (FleetUnreachable: the admin should know it did not happen). acquire waits and
says so; release, steady_state, record_failure and publish are owed and paid in order when the
service answers again (agent.fleet.background). FleetUnavailable means the configuration is
wrong (an endpoint that is not etcd, etcd asking for credentials, no fleet id).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

from agent.errors import FleetUnavailable
from agent.fleet.config import FleetConfig, default_fleet_id
from agent.fleet.model import FleetView, HostState, SlotGrant, SlotWait, check_ref


class Coordinator(abc.ABC):
    backend = "none"

    def __init__(self, config: FleetConfig, *, host_id: str, instance_id: str):
        self.config = config
        self.host_id = host_id
        self.instance_id = instance_id

    @abc.abstractmethod
    def steady_state(self) -> None:
        """Give back any slot this host holds, also one held by an earlier run of the agent."""

    @abc.abstractmethod
    def acquire(self, *, should_stop: Callable[[], bool], on_wait: Callable[[SlotWait], None],
                give_up_after: float | None) -> SlotGrant:
        """Block until this host holds a slot; on_wait hears each change of what it waits for."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give back the slot acquire took (idempotent)."""

    def record_failure(self, ref: str) -> None:
        check_ref(ref)

    def halted(self) -> dict[str, list[str]]:
        return {}

    def resume(self, ref: str) -> None:
        check_ref(ref)

    def publish(self, state: HostState) -> None:
        return None

    def view(self) -> FleetView:
        return FleetView(backend=self.backend, group=self.config.group, this_host=self.host_id)

    def release_host(self, host_id: str) -> bool:
        return False

    def close(self) -> None:
        return None


class NoCoordinator(Coordinator):
    """backend none: the host acts alone, as before fleets existed."""

    def steady_state(self) -> None:
        return None

    def acquire(self, *, should_stop: Callable[[], bool], on_wait: Callable[[SlotWait], None],
                give_up_after: float | None) -> SlotGrant:
        return SlotGrant(held=True)

    def release(self) -> None:
        return None

    def view(self) -> FleetView:
        return FleetView(backend="none", group=self.config.group, this_host=self.host_id,
                         note="fleet coordination is off (fleet.backend = none)")


def fleet_id(config: FleetConfig, machine_id: str | None) -> str:
    if config.id:
        return config.id
    if machine_id and machine_id.strip():
        return default_fleet_id(machine_id)
    raise FleetUnavailable("fleet.id is empty and /etc/machine-id cannot be read: set fleet.id in the agent config")


def coordinator_from_config(config: FleetConfig, *, instance_id: str, machine_id: str | None) -> Coordinator:
    """The coordinator ``[fleet]`` asks for. ``machine_id`` is the text of /etc/machine-id (None if
    unreadable); it only matters when ``fleet.id`` is empty."""
    if config.backend == "none":
        return NoCoordinator(config, host_id=config.id or (default_fleet_id(machine_id) if machine_id else ""),
                             instance_id=instance_id)
    host_id = fleet_id(config, machine_id)
    if config.backend == "fleetlock":
        from agent.fleet.fleetlock import FleetLockCoordinator

        return FleetLockCoordinator(config, host_id=host_id, instance_id=instance_id)
    from agent.fleet.etcd import EtcdCoordinator

    return EtcdCoordinator(config, host_id=host_id, instance_id=instance_id)

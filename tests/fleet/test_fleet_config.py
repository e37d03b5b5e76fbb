"""The [fleet] table, the fleet id, the coordinator it makes and the lines a waiting host shows:
pure, no etcd needed."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from agent.config import config_from_dict
from agent.errors import ConfigError, FleetUnavailable
from agent.fleet.config import FleetConfig, default_fleet_id
from agent.fleet.coordinator import NoCoordinator, coordinator_from_config
from agent.fleet.etcd import EtcdCoordinator
from agent.fleet.fleetlock import FleetLockCoordinator
from agent.fleet.model import SlotWait

MACHINE_ID = "4f6c2a3e0a8b4b0c9d1e2f3a4b5c6d7e\n"


def issues(raw: dict) -> list[str]:
    with pytest.raises(ConfigError) as error:
        config_from_dict({"fleet": raw})
    return [str(issue) for issue in error.value.issues]


def test_the_defaults_coordinate_nothing():
    fleet = config_from_dict({}).fleet
    assert (fleet.backend, fleet.group, fleet.id, fleet.slots, fleet.lease, fleet.halt_after, fleet.critical_wait) == (
        "none", "default", "", 1, "15m", 1, "30m")
    assert (fleet.lease_s, fleet.critical_wait_s) == (900, 1800)


def test_bad_values_are_refused_with_their_key_path():
    assert issues({"backend": "zookeeper", "group": "web tier", "id": "-x", "slots": 0, "lease": "15 minutes",
                   "halt_after": 0, "critical_wait": "0s", "etcd_endpoints": ["10.0.0.5:2379"],
                   "fleetlock_url": "ftp://x", "slot": 2}) == [
        "fleet.backend: Input should be 'none', 'fleetlock' or 'etcd'",
        "fleet.group: 'web tier' is not a group name: 1 to 64 letters, digits, '.' and '-'",
        "fleet.id: '-x' is not a fleet id: up to 128 letters, digits, '_', '.', ':' and '-', starting with a letter "
        "or digit (or empty: derived from /etc/machine-id)",
        "fleet.fleetlock_url: 'ftp://x' is not an http or https URL such as http://10.0.0.5:2379",
        "fleet.etcd_endpoints[0]: '10.0.0.5:2379' is not an http or https URL such as http://10.0.0.5:2379",
        "fleet.slots: Input should be greater than or equal to 1",
        "fleet.lease: '15 minutes' is not a duration such as 30s, 15m, 6h or 1d",
        "fleet.halt_after: Input should be greater than or equal to 1",
        "fleet.critical_wait: '0s' is not a duration such as 30s, 15m, 6h or 1d",
        "fleet.slot: unknown key",
    ]


def test_each_backend_needs_its_address():
    assert issues({"backend": "etcd"}) == [
        'fleet.etcd_endpoints: empty, but fleet.backend is etcd: list the cluster\'s client URLs, e.g. ["http://10.0.0.5:2379"]']
    assert issues({"backend": "fleetlock"}) == [
        "fleet.fleetlock_url: empty, but fleet.backend is fleetlock: set the FleetLock server's base URL"]
    assert config_from_dict({"fleet": {"backend": "none", "etcd_endpoints": []}}).fleet.backend == "none"


def test_the_fleet_id_is_a_stable_hash_of_the_machine_id_that_does_not_disclose_it():
    assert default_fleet_id(MACHINE_ID) == default_fleet_id(MACHINE_ID.strip())
    assert default_fleet_id(MACHINE_ID) != default_fleet_id("0" * 32)
    assert len(default_fleet_id(MACHINE_ID)) == 32 and MACHINE_ID.strip() not in default_fleet_id(MACHINE_ID)


def test_the_coordinator_is_the_one_the_config_asks_for():
    etcd = FleetConfig(backend="etcd", etcd_endpoints=["http://127.0.0.1:2379"])
    fleetlock = FleetConfig(backend="fleetlock", fleetlock_url="http://127.0.0.1:3333")
    made = [coordinator_from_config(config, instance_id="host-01", machine_id=MACHINE_ID)
            for config in (FleetConfig(), etcd, fleetlock, fleetlock.model_copy(update={"id": "node-7"}))]
    try:
        assert [type(c) for c in made] == [NoCoordinator, EtcdCoordinator, FleetLockCoordinator, FleetLockCoordinator]
        assert [c.host_id for c in made[1:]] == [default_fleet_id(MACHINE_ID)] * 2 + ["node-7"]
    finally:
        for coordinator in made:
            coordinator.close()
    with pytest.raises(FleetUnavailable, match="fleet.id is empty and /etc/machine-id cannot be read"):
        coordinator_from_config(etcd, instance_id="host-01", machine_id=None)


def test_without_a_backend_nothing_ever_waits():
    coordinator = coordinator_from_config(FleetConfig(), instance_id="host-01", machine_id=None)
    coordinator.steady_state()
    grant = coordinator.acquire(should_stop=lambda: True, on_wait=pytest.fail, give_up_after=0)
    assert grant.held
    coordinator.record_failure("core/auth@2.0.1")
    assert coordinator.halted() == {} and coordinator.release_host("x") is False
    assert coordinator.view().note == "fleet coordination is off (fleet.backend = none)"


def test_what_a_waiting_host_shows():
    full = SlotWait("etcd", "g", "full", slots=2, holders=("h1", "h3"))
    assert full.describe() == "waiting for a fleet slot (group g: 2/2 held by h1, h3)"
    queued = SlotWait("etcd", "g", "full", slots=100, holders=tuple(f"h{i}" for i in range(100)), ahead=7)
    assert queued.describe() == "waiting for a fleet slot (group g: 100/100 held by h0, h1, h2, h3, h4 and 95 more; 7 hosts ahead)"
    assert SlotWait("fleetlock", "g", "refused", detail="failed_lock: full").describe() == (
        "waiting for a fleet slot (group g): the lock service refused: failed_lock: full")
    down = SlotWait("etcd", "g", "unreachable", slots=1, detail="http://10.0.0.5:2379: cannot connect (Connection refused)")
    assert down.describe() == ("waiting for a fleet slot (group g): the lock service is unreachable: "
                               "http://10.0.0.5:2379: cannot connect (Connection refused)")
    assert json.loads(json.dumps(asdict(queued)))["ahead"] == 7

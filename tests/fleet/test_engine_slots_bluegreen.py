"""A blue-green switch holds its fleet slot from the start of the idle colour to the end of the
drain (DESIGN.md §12, issue 14), against a real etcd, a real nginx and real units."""

from __future__ import annotations

from agent.deploy.engine import DRAINING, SLOT_HELD, SLOT_RELEASED, STARTING_IDLE, STOPPING_OLD
from agent.deploy.slot import FleetSlot
from agent.store import DeploymentStatus
from tests.bluegreen import BlueGreenHost
from tests.fleet.helpers import holder_hosts, never


def test_the_slot_is_held_from_the_idle_colour_to_the_end_of_the_drain(tmp_path, make_coordinator, etcd_cluster, group):
    coordinator = make_coordinator("h1", slots=1)
    seen = {}
    with BlueGreenHost(tmp_path, drain="2s") as host:
        def look(state):
            if state in (STARTING_IDLE, DRAINING, STOPPING_OLD):
                seen[state] = holder_hosts(etcd_cluster.endpoints, group)

        def engine():
            made = host.engine(look)
            made.fleet = FleetSlot(coordinator, on_wait=never, on_went_ahead=never)
            return made

        def during_drain(seconds):  # the drain, as the engine waits it: the slot must still be held
            seen["drain"] = holder_hosts(etcd_cluster.endpoints, group)

        host.waited = []
        assert host.deploy({"core/api": "1.0.0"}, engine=engine()).status == DeploymentStatus.SUCCEEDED
        bluegreen_engine = engine()
        bluegreen_engine.bluegreen.wait = during_drain
        result = host.deploy({"core/api": "1.1.0"}, engine=bluegreen_engine)

        assert result.status == DeploymentStatus.SUCCEEDED, result.error
        steps = [entry.state for entry in host.store.deployments.get(result.deployment_id).journal]
        assert steps.index(SLOT_HELD) < steps.index(STARTING_IDLE) < steps.index(DRAINING) < steps.index(STOPPING_OLD) < steps.index(SLOT_RELEASED)
        assert seen == {STARTING_IDLE: ["h1"], DRAINING: ["h1"], "drain": ["h1"], STOPPING_OLD: ["h1"]}
        assert holder_hosts(etcd_cluster.endpoints, group) == []
        assert host.answers("core/api", "1.1.0 green")

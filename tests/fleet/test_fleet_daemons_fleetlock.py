"""Real daemons with ``backend = "fleetlock"`` against a FleetLock server written to Zincati's
protocol and backed by etcd (tests/fleet/fleetlock_server.py): the deployment takes the lock
after staging, before anything changes, and gives it back only once healthy; a refusal shows in
``id1 status`` as the server worded it (``kind: value``); with the server down the host waits,
says why, and goes on when the server is back.

When each request reached the server is recorded there; the agents' journals give the rest.
"""

from __future__ import annotations

import time

import pytest

from agent.fleet.gateway import EtcdGateway
from tests.daemon.site import Release
from tests.fleet.fleet_site import Fleet, fleetlock_table, fleets, max_concurrent
from tests.fleet.fleetlock_server import EtcdSemaphore, FleetLockServer

REFUSAL = "no free slot in the semaphore (1 of 1 locked)"
DELAY_S = 2.0
V1 = {"1.0.0": Release()}
V2 = {**V1, "1.0.1": Release(start_delay_s=DELAY_S)}
V3 = {**V2, "1.0.2": Release()}
P1 = {"1.0.0": "1.0.0"}
P2 = {**P1, "1.1.0": "1.0.1"}
P3 = {**P2, "1.2.0": "1.0.2"}


class Arrivals(list):
    """The server's request log, with when each request arrived."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def append(self, item) -> None:
        self.times.append(time.time())
        super().append(item)

    def of(self, host: str, path: str) -> list[float]:
        return [at for at, (called, _, body) in zip(self.times, self, strict=True)
                if called == f"/fleet/v1/{path}" and (body or {}).get("client_params", {}).get("id") == host]


@pytest.fixture
def server(etcd_cluster):
    gateway = EtcdGateway(etcd_cluster.endpoints)
    server = FleetLockServer(EtcdSemaphore(gateway, slots=1))
    server.requests = Arrivals()
    server.refusal_value = REFUSAL
    server.start()
    yield server
    server.stop()
    gateway.close()


@pytest.fixture
def make_fleet():
    with fleets() as make:
        yield make


def latest(fleet: Fleet, host: str, auth: str):
    return next((d for d in fleet.deployments(host) if d.auth == auth), None)


def test_the_lock_is_taken_before_switching_given_back_once_healthy_refusals_and_outages_shown(server, group, make_fleet):
    fleet = make_fleet(["h1", "h2"], lambda host: fleetlock_table(host, group, server.url))
    fleet.first_install(V1, P1)
    assert server.holders(group) == []

    # Both ask at once: one takes the lock; the other is refused and says so in the server's words.
    fleet.publish(2, V2, P2)
    fleet.check("h1", "h2")

    def first_holder() -> str | None:
        held = [(d.at("slot-held"), host) for host in ("h1", "h2") if (d := latest(fleet, host, "1.0.1")) and d.reached("slot-held")]
        return min(held)[1] if held else None

    first = fleet.wait(first_holder, "a host holds the lock")
    second = "h2" if first == "h1" else "h1"
    assert server.holders(group) == [first]
    refused = f"waiting for a fleet slot (group {group}): the lock service refused: failed_lock_semaphore_full: {REFUSAL}"
    fleet.wait(lambda: fleet.status(second)["activity"] == refused, f"{second} says it was refused")
    assert not latest(fleet, second, "1.0.1").reached("switching")
    fleet.wait(lambda: fleet.on_platform("1.1.0"), "both hosts run platform 1.1.0", deadline_s=120)
    assert server.holders(group) == []

    took, waited = latest(fleet, first, "1.0.1"), latest(fleet, second, "1.0.1")
    arrivals = server.requests
    [taken] = [at for at in arrivals.of(first, "pre-reboot") if took.at("waiting-for-slot") <= at <= took.at("slot-held")]
    [given] = [at for at in arrivals.of(first, "steady-state") if at > taken]
    assert took.at("staging") < taken < took.at("switching")
    # Given back once verified, not before the release could answer its health check; the step is
    # journaled first, then the lock given back (so no two journals ever show one slot held twice).
    assert took.at("verifying") < took.at("slot-released") <= given and given >= took.at("restarting") + DELAY_S
    assert [at for at in arrivals.of(second, "pre-reboot") if waited.at("waiting-for-slot") <= at < given], f"{second} was never refused"
    assert waited.at("slot-held") > given
    most, _, who = max_concurrent(d.interval("switching", "slot-released") for d in (took, waited))
    assert most == 1, who

    # The server down: h1 waits and says why, changes nothing, and goes on once it is back.
    server.stop()
    fleet.publish(3, V3, P3, hosts=["h1"])
    fleet.check("h1")
    unreachable = f"waiting for a fleet slot (group {group}): the lock service is unreachable: {server.url}/v1/pre-reboot: cannot connect"
    fleet.wait(lambda: fleet.status("h1")["activity"].startswith(unreachable), "h1 says the lock service is unreachable")
    down = latest(fleet, "h1", "1.0.2")
    assert down.state == "waiting-for-slot" and fleet.status("h1")["platform"] == "1.1.0"
    back_at = time.time()
    server.start()
    fleet.wait(lambda: fleet.on_platform("1.2.0", ["h1"]), "h1 runs platform 1.2.0 once the server is back")
    assert latest(fleet, "h1", "1.0.2").at("slot-held") > back_at
    assert server.holders(group) == []

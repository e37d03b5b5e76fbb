"""The FleetLock client against a FleetLock server written in the tests to the protocol
document and backed by etcd (as Airlock is): slots taken and given back, refusals shown to the
operator as the server worded them, the server down (a wait, and a give-back paid later)."""

from __future__ import annotations

import threading

import pytest

from agent.fleet.config import FleetConfig
from agent.fleet.fleetlock import FleetLockCoordinator
from agent.fleet.gateway import EtcdGateway
from tests.fleet.fleetlock_server import EtcdSemaphore, FleetLockServer
from tests.fleet.helpers import DEADLINE_S, never, run_in_thread, wait_until


@pytest.fixture
def server(etcd_cluster):
    gateway = EtcdGateway(etcd_cluster.endpoints)
    server = FleetLockServer(EtcdSemaphore(gateway, slots=1)).start()
    yield server
    server.stop()
    gateway.close()


@pytest.fixture
def make_client(server, group):
    made = []

    def make(host_id: str, **keys) -> FleetLockCoordinator:
        config = FleetConfig(backend="fleetlock", group=group, fleetlock_url=server.url, **keys)
        client = FleetLockCoordinator(config, host_id=host_id, instance_id=f"instance-{host_id}", retry_first=0.2, retry_cap=0.5)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_a_slot_is_taken_refused_while_held_and_given_back(server, make_client, group):
    first, second = make_client("c988d2509fdf4cdcbed39037c56406fb"), make_client("second")
    first.steady_state()  # at start: nothing held, and the server says yes to that too
    grant = first.acquire(should_stop=lambda: False, on_wait=never, give_up_after=10)
    assert grant.held and server.holders(group) == ["c988d2509fdf4cdcbed39037c56406fb"]
    path, headers, body = server.requests[-1]
    assert path == "/fleet/v1/pre-reboot" and headers["fleet-lock-protocol"] == "true"
    assert body == {"client_params": {"id": "c988d2509fdf4cdcbed39037c56406fb", "group": group}}

    waits = []
    thread, box = run_in_thread(lambda: second.acquire(should_stop=lambda: False, on_wait=waits.append, give_up_after=DEADLINE_S))
    wait_until(lambda: waits, "second is refused")
    assert waits[0].describe() == (f"waiting for a fleet slot (group {group}): the lock service refused: "
                                   "failed_lock_semaphore_full: semaphore currently full, all slots are locked already")
    assert first.view().holders[0].host_id == "c988d2509fdf4cdcbed39037c56406fb"
    first.steady_state()
    thread.join(DEADLINE_S)
    assert box["result"].held and server.holders(group) == ["second"]
    assert first.view().holders == () and "FleetLock gives slots only" in first.view().note
    second.release()
    second.release()  # idempotent
    assert server.holders(group) == []


def test_the_server_checks_the_protocol_header_the_client_sends(server, group):
    import httpx

    answer = httpx.post(f"{server.url}/v1/pre-reboot", json={"client_params": {"id": "x", "group": group}})
    assert answer.status_code == 400 and answer.json()["kind"] == "missing_fleetlock_header"


def test_a_refusal_that_is_not_json_or_not_safe_is_still_one_readable_line(server, make_client, group):
    client = make_client("h1")
    server.plain_failure = True
    waits = []
    grant = client.acquire(should_stop=lambda: False, on_wait=waits.append, give_up_after=0.5)
    assert not grant.held and grant.reason == "timed-out"
    assert waits[0].detail == "HTTP 503 upstream unavailable"
    server.plain_failure = False
    make_client("holder").acquire(should_stop=lambda: False, on_wait=never, give_up_after=5)
    server.refusal_value = "full\x1b[2J\nheld by h1"
    waits.clear()
    client.acquire(should_stop=lambda: False, on_wait=waits.append, give_up_after=0.5)
    assert waits[0].detail == "failed_lock_semaphore_full: full\\x1b[2J held by h1"


def test_the_server_down_is_a_wait_and_a_give_back_owed_until_it_is_back(server, make_client, group):
    client = make_client("h1")
    assert client.acquire(should_stop=lambda: False, on_wait=never, give_up_after=5).held
    server.stop()
    client.steady_state()  # the server is down: owed, not lost
    assert client._background.owing == ["giving back the slot"]
    waits = []
    sigterm = threading.Event()
    thread, box = run_in_thread(lambda: make_client("h2").acquire(should_stop=sigterm.is_set, on_wait=waits.append, give_up_after=None))
    wait_until(lambda: waits, "h2 waits")
    assert waits[0].reason == "unreachable" and "cannot connect" in waits[0].describe()
    server.start()
    wait_until(lambda: not client._background.owing, "the give-back is paid once the server is back")
    thread.join(DEADLINE_S)
    assert box["result"].held and server.holders(group) == ["h2"]

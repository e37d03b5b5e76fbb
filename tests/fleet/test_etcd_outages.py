"""etcd failing under the fleet (a cluster of this module's own, since members are killed):
one member down changes nothing; quorum lost means no slot for anyone and a waiter that says
why; quorum back and everything goes on, a slot given back during the outage included. A
misconfigured endpoint is an error, an unreachable one a wait."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent.errors import FleetUnavailable
from tests.fleet.helpers import DEADLINE_S, holder_hosts, never, run_in_thread, wait_until
from tests.ports import free_port


def test_one_member_killed_acquire_still_works(etcd_cluster, make_coordinator, group):
    leader = etcd_cluster.leader()
    endpoints = etcd_cluster.endpoints
    # This host asks the dead member first: it must move on to the others.
    host = make_coordinator("h1", slots=1, endpoints=endpoints[leader:] + endpoints[:leader])
    waiter = make_coordinator("h2", slots=1, poll_first=60, poll_cap=60)
    etcd_cluster.kill(leader)
    try:
        assert host.acquire(should_stop=lambda: False, on_wait=never, give_up_after=DEADLINE_S).held
        thread, box = run_in_thread(lambda: waiter.acquire(should_stop=lambda: False, on_wait=never, give_up_after=DEADLINE_S))
        wait_until(lambda: host.view().waiting == ("h2",), "h2 in line")
        host.steady_state()
        thread.join(DEADLINE_S)
        assert box["result"].held
        assert holder_hosts(endpoints[leader + 1:] + endpoints[:leader], group) == ["h2"]
    finally:
        etcd_cluster.restart(leader)
        etcd_cluster.wait_healthy()


def test_quorum_lost_no_slot_is_taken_each_waiter_says_why_and_quorum_back_it_goes_on(etcd_cluster, make_coordinator, group):
    holder = make_coordinator("h1", slots=1)
    waiter = make_coordinator("h2", slots=1, poll_first=1, poll_cap=2)
    assert holder.acquire(should_stop=lambda: False, on_wait=never, give_up_after=10).held
    waiter.view()  # h2 has talked to the cluster: what follows is the outage, not a first contact
    etcd_cluster.kill(1)
    etcd_cluster.kill(2)
    restored = False
    try:
        waits = []
        thread, box = run_in_thread(lambda: waiter.acquire(should_stop=lambda: False, on_wait=waits.append, give_up_after=None))
        wait_until(lambda: any(wait.reason == "unreachable" for wait in waits), "h2 says the service is unreachable")
        said = next(wait for wait in waits if wait.reason == "unreachable").describe()
        assert said.startswith(f"waiting for a fleet slot (group {group}): the lock service is unreachable: "), said
        holder.steady_state()  # h1 is healthy during the outage: giving back is owed, not lost
        assert holder._background.owing
        assert thread.is_alive() and "result" not in box  # nothing granted without a quorum

        etcd_cluster.restart(1)
        etcd_cluster.restart(2)
        etcd_cluster.wait_healthy()
        restored = True
        thread.join(DEADLINE_S)
        assert box["result"].held
        assert holder_hosts(etcd_cluster.endpoints, group) == ["h2"]
        wait_until(lambda: not holder._background.owing, "h1's give-back paid")
    finally:
        if not restored:
            etcd_cluster.restart(1)
            etcd_cluster.restart(2)
            etcd_cluster.wait_healthy()


def test_an_endpoint_that_does_not_answer_is_a_wait_not_an_error(make_coordinator):
    closed = f"http://127.0.0.1:{free_port()}"
    host = make_coordinator("h1", endpoints=[closed])
    waits = []
    grant = host.acquire(should_stop=lambda: False, on_wait=waits.append, give_up_after=1.0)
    assert not grant.held and grant.reason == "timed-out"
    assert waits[0].reason == "unreachable" and f"{closed}: cannot connect" in waits[0].describe()
    assert host.halted() == {}
    assert host.view().note.startswith("the lock service is unreachable: ")


class _NotEtcd(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = b"404 page not found\n"
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def not_etcd():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _NotEtcd)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_an_endpoint_that_is_not_etcd_is_a_configuration_error(make_coordinator, not_etcd):
    host = make_coordinator("h1", endpoints=[not_etcd])
    with pytest.raises(FleetUnavailable, match=f"etcd cannot be used: {not_etcd}: HTTP 404, not an etcd v3 JSON gateway"):
        host.acquire(should_stop=lambda: False, on_wait=never, give_up_after=5)

"""Slots on a real 3-member etcd cluster: never more holders than slots, a slot handed to the
first in line, a lease that frees the slot of a host that stops renewing, a slot left by a
crashed run taken over or given back, waiting that stops on SIGTERM or a deadline and leaves
nothing behind, and an admin freeing the slot of a host that is gone."""

from __future__ import annotations

import random
import threading
import time

from agent.fleet.config import FleetConfig
from tests.fleet.helpers import DEADLINE_S, holder_hosts, lease_ttl, never, run_in_thread, slot_keys, wait_until
from tests.fleet.holder import Holder


def test_never_more_holders_than_slots_with_100_concurrent_acquirers(etcd_cluster, make_coordinator, group):
    slots, hosts = 3, 100
    endpoints = etcd_cluster.endpoints
    # Each host its own coordinator, spread over the members: every decision is etcd's, made
    # on whichever member a host talks to.
    coordinators = [make_coordinator(f"host-{index:03d}", slots=slots, endpoints=endpoints[index % 3:] + endpoints[:index % 3])
                    for index in range(hosts)]
    lock = threading.Lock()
    holding: set[str] = set()
    most_holding = 0
    granted: list[str] = []
    start = threading.Barrier(hosts)
    stop_watching = threading.Event()
    most_in_etcd = 0

    def host(coordinator) -> None:
        nonlocal most_holding
        start.wait()
        grant = coordinator.acquire(should_stop=lambda: False, on_wait=never, give_up_after=DEADLINE_S)
        assert grant.held, grant
        with lock:
            holding.add(coordinator.host_id)
            most_holding = max(most_holding, len(holding))
            granted.append(coordinator.host_id)
        time.sleep(random.uniform(0, 0.03))
        with lock:
            holding.discard(coordinator.host_id)
        coordinator.steady_state()

    def watch_etcd() -> None:
        nonlocal most_in_etcd
        while not stop_watching.is_set():
            most_in_etcd = max(most_in_etcd, len(slot_keys(endpoints, group)))

    watcher = threading.Thread(target=watch_etcd, daemon=True)
    watcher.start()
    threads = [run_in_thread(lambda c=c: host(c)) for c in coordinators]
    for thread, box in threads:
        thread.join(DEADLINE_S * 2)
        assert not thread.is_alive() and "error" not in box, box.get("error")
    stop_watching.set()
    watcher.join(10)

    assert sorted(granted) == sorted(c.host_id for c in coordinators)  # every host had its turn, once
    assert most_holding <= slots, f"{most_holding} hosts held a slot at once with slots = {slots}"
    assert most_holding == slots  # and the slots were used: the hosts did run side by side
    assert most_in_etcd <= slots
    assert slot_keys(endpoints, group) == []  # all given back


def test_a_slot_given_back_goes_to_the_first_in_line_at_once(make_coordinator):
    # Polls every 60 s: only the hand-over (and the waiter's watch) can bring the slot in time.
    first, second, third = (make_coordinator(name, slots=1, poll_first=60, poll_cap=60) for name in ("first", "second", "third"))
    assert first.acquire(should_stop=lambda: False, on_wait=never, give_up_after=10).held
    waits: dict[str, list] = {"second": [], "third": []}
    second_thread, second_box = run_in_thread(lambda: second.acquire(should_stop=lambda: False, on_wait=waits["second"].append, give_up_after=30))
    wait_until(lambda: waits["second"], "second waits")
    third_thread, third_box = run_in_thread(lambda: third.acquire(should_stop=lambda: False, on_wait=waits["third"].append, give_up_after=30))
    wait_until(lambda: waits["third"], "third waits")
    assert waits["second"][0].describe() == f"waiting for a fleet slot (group {first.config.group}: 1/1 held by first)"
    assert waits["third"][0].ahead == 1

    first.steady_state()
    second_thread.join(20)
    assert second_box["result"].held  # second came first, so second goes first
    assert third_thread.is_alive()
    assert holder_hosts(first._gateway.endpoints, first.config.group) == ["second"]
    second.steady_state()
    third_thread.join(20)
    assert third_box["result"].held


def test_the_slot_of_a_holder_that_stops_renewing_is_freed_after_the_lease(etcd_cluster, make_coordinator, group):
    config = FleetConfig(backend="etcd", group=group, etcd_endpoints=etcd_cluster.endpoints, slots=1, lease="2s")
    gone = Holder("gone", config)
    waiter = make_coordinator("next", slots=1, lease="2s", poll_first=0.5, poll_cap=1)
    waits = []
    thread, box = run_in_thread(lambda: waiter.acquire(should_stop=lambda: False, on_wait=waits.append, give_up_after=DEADLINE_S))
    wait_until(lambda: waits, "the waiter waits")
    assert waits[0].holders == ("gone",)
    [held] = slot_keys(etcd_cluster.endpoints, group)
    gone.kill()  # no renewal from now on
    thread.join(DEADLINE_S)
    assert box["result"].held
    assert lease_ttl(etcd_cluster.endpoints[0], held.lease) == -1  # freed because its lease ended


def test_a_slot_left_by_a_crashed_run_is_taken_over_by_the_next_start(etcd_cluster, make_coordinator, group):
    config = FleetConfig(backend="etcd", group=group, etcd_endpoints=etcd_cluster.endpoints, slots=1)
    crashed = Holder("h1", config)
    crashed.kill()  # mid-deployment: its lease lives on for fleet.lease (15 minutes)
    restarted = make_coordinator("h1", slots=1)
    grant = restarted.acquire(should_stop=lambda: False, on_wait=never, give_up_after=5)
    assert grant.held and grant.last_wait is None  # its own slot, without waiting
    [slot] = slot_keys(etcd_cluster.endpoints, group)
    assert slot.lease == restarted._lease  # now under the new run's lease
    restarted.steady_state()
    assert slot_keys(etcd_cluster.endpoints, group) == []


def test_steady_state_at_start_gives_a_slot_left_by_a_crashed_run_to_the_first_in_line(etcd_cluster, make_coordinator, group):
    config = FleetConfig(backend="etcd", group=group, etcd_endpoints=etcd_cluster.endpoints, slots=1)
    crashed = Holder("h1", config)
    crashed.kill()
    waiter = make_coordinator("h2", slots=1, poll_first=60, poll_cap=60)
    waits = []
    thread, box = run_in_thread(lambda: waiter.acquire(should_stop=lambda: False, on_wait=waits.append, give_up_after=30))
    wait_until(lambda: waits, "h2 waits for the crashed run's slot")
    make_coordinator("h1", slots=1).steady_state()  # the next start, nothing unfinished
    thread.join(20)
    assert box["result"].held
    make_coordinator("h1", slots=1).steady_state()  # idempotent: nothing of h1's left to give
    assert holder_hosts(etcd_cluster.endpoints, group) == ["h2"]


def test_sigterm_while_waiting_leaves_nothing_behind(make_coordinator):
    holder, waiter = make_coordinator("holder", slots=1), make_coordinator("waiter", slots=1)
    assert holder.acquire(should_stop=lambda: False, on_wait=never, give_up_after=10).held
    sigterm = threading.Event()
    waits = []
    thread, box = run_in_thread(lambda: waiter.acquire(should_stop=sigterm.is_set, on_wait=waits.append, give_up_after=None))
    wait_until(lambda: waits, "the waiter waits")
    assert holder.view().waiting == ("waiter",)
    sigterm.set()
    thread.join(10)
    grant = box["result"]
    assert not grant.held and grant.reason == "stopped" and grant.last_wait == waits[-1]
    assert holder.view().waiting == ()  # out of the line
    holder.steady_state()
    assert holder.view().holders == ()  # the slot was not handed to the host that left


def test_a_forced_fix_gives_up_waiting_after_its_deadline(make_coordinator):
    holder, forced = make_coordinator("holder", slots=1), make_coordinator("forced", slots=1)
    assert holder.acquire(should_stop=lambda: False, on_wait=never, give_up_after=10).held
    waits = []
    grant = forced.acquire(should_stop=lambda: False, on_wait=waits.append, give_up_after=1.0)
    assert not grant.held and grant.reason == "timed-out" and grant.waited_s >= 1.0
    assert grant.last_wait.holders == ("holder",)
    assert holder.view().waiting == ()


def test_an_admin_frees_the_slot_of_a_host_that_is_gone(etcd_cluster, make_coordinator, group):
    config = FleetConfig(backend="etcd", group=group, etcd_endpoints=etcd_cluster.endpoints, slots=1)
    gone = Holder("gone", config)
    gone.kill()  # its slot would stay 15 minutes
    waiter = make_coordinator("waiter", slots=1, poll_first=60, poll_cap=60)
    waits = []
    thread, box = run_in_thread(lambda: waiter.acquire(should_stop=lambda: False, on_wait=waits.append, give_up_after=30))
    wait_until(lambda: waits, "the waiter waits")
    admin = make_coordinator("admin", slots=1)
    assert admin.release_host("nobody") is False
    assert admin.release_host("gone") is True
    thread.join(20)
    assert box["result"].held  # handed over at once, not found at a poll a minute later


def test_acquire_is_idempotent_and_release_too(make_coordinator, etcd_cluster, group):
    host = make_coordinator("h", slots=2)
    assert host.acquire(should_stop=lambda: False, on_wait=never, give_up_after=5).held
    assert host.acquire(should_stop=lambda: False, on_wait=never, give_up_after=5).held
    assert len(slot_keys(etcd_cluster.endpoints, group)) == 1
    host.release()
    host.release()
    host.steady_state()
    assert slot_keys(etcd_cluster.endpoints, group) == []

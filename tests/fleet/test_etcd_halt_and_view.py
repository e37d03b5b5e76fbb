"""Halt and view on a real etcd cluster: a change halted for the group once halt_after hosts
failed on it (each host counted once), lifted by resume; the group seen from any host."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict

import pytest

from agent.fleet.model import FailedChange, HostState
from tests.fleet.helpers import never, run_in_thread, wait_until

REF = "core/auth@2.0.1"


def test_a_change_is_halted_after_halt_after_hosts_failed_and_resumed_by_an_admin(make_coordinator):
    first, second, third = (make_coordinator(name, halt_after=2) for name in ("h1", "h2", "h3"))
    first.record_failure(REF)
    first.record_failure(REF)  # the same host again: still one failure
    assert third.halted() == {}
    assert third.view().failures == (FailedChange(REF, ("h1",), halted=False),)
    second.record_failure(REF)
    assert third.halted() == {REF: ["h1", "h2"]}
    grant = third.acquire(should_stop=lambda: False, on_wait=never, give_up_after=10)
    assert grant.held and grant.halted == {REF: ["h1", "h2"]}  # read with the slot: checked before deploying
    third.steady_state()

    third.resume(REF)
    assert first.halted() == {}
    assert first.view().failures == ()


def test_halt_after_one_halts_at_the_first_failure_and_other_changes_are_not_touched(make_coordinator):
    host, other = make_coordinator("h1", halt_after=1), make_coordinator("h2", halt_after=1)
    host.record_failure(REF)
    host.record_failure("platform@2.5.1")
    assert other.halted() == {REF: ["h1"], "platform@2.5.1": ["h1"]}
    other.resume("platform@2.5.1")
    assert other.halted() == {REF: ["h1"]}


def test_a_ref_that_is_not_ref_at_version_is_refused(make_coordinator):
    host = make_coordinator("h1")
    for bad in ("core/auth", "../../slots/0000@1", "core/auth@"):
        with pytest.raises(ValueError):
            host.record_failure(bad)
        with pytest.raises(ValueError):
            host.resume(bad)


def test_the_group_is_seen_from_any_host(make_coordinator, group):
    hosts = {name: make_coordinator(name, slots=1) for name in ("h1", "h2", "h3")}
    for index, (name, coordinator) in enumerate(hosts.items()):
        coordinator.publish(HostState(instance_id=f"instance-{name}", platform="2.5.1", revision=index + 1,
                                      agent_state="idle", updated_at="2025-03-01T02:00:00Z"))
    assert hosts["h1"].acquire(should_stop=lambda: False, on_wait=never, give_up_after=10).held
    stop_h2 = threading.Event()
    waits = []
    thread, box = run_in_thread(lambda: hosts["h2"].acquire(should_stop=stop_h2.is_set, on_wait=waits.append, give_up_after=None))
    wait_until(lambda: waits, "h2 waits")
    hosts["h3"].record_failure(REF)

    onlooker = make_coordinator("h4", slots=1)
    view = wait_until(lambda: (v := onlooker.view()) and len(v.hosts) == 3 and v, "every host's state is published")
    assert [(h.host_id, h.instance_id, h.platform, h.revision, h.agent_state) for h in view.hosts] == [
        ("h1", "instance-h1", "2.5.1", 1, "idle"), ("h2", "instance-h2", "2.5.1", 2, "idle"),
        ("h3", "instance-h3", "2.5.1", 3, "idle")]
    assert all(h.last_seen.endswith("Z") and h.updated_at == "2025-03-01T02:00:00Z" for h in view.hosts)
    assert [holder.host_id for holder in view.holders] == ["h1"] and view.holders[0].slot == 0
    assert view.waiting == ("h2",) and view.waiting_total == 1
    assert view.failures == (FailedChange(REF, ("h3",), halted=True),) and view.halted == {REF: ["h3"]}
    assert (view.group, view.slots, view.halt_after, view.this_host) == (group, 1, 1, "h4")
    assert json.loads(json.dumps(asdict(view)))["holders"][0]["host_id"] == "h1"  # served as it is

    hosts["h2"].publish(HostState(instance_id="instance-h2", platform="2.5.1", revision=2,
                                  agent_state="waiting-for-slot", updated_at="2025-03-01T02:05:00Z"))
    wait_until(lambda: [h.agent_state for h in onlooker.view().hosts if h.host_id == "h2"] == ["waiting-for-slot"],
               "a new state replaces the old one")
    stop_h2.set()
    thread.join(10)
    hosts["h3"].close()  # a host that stops is gone from the view (its lease revoked)
    assert [h.host_id for h in onlooker.view().hosts] == ["h1", "h2"]


def test_a_published_state_outlives_the_lease_only_while_the_host_renews_it(make_coordinator):
    host = make_coordinator("h1", lease="2s")
    host.publish(HostState(instance_id="i", platform=None, revision=None, agent_state="idle", updated_at="2025-03-01T02:00:00Z"))
    onlooker = make_coordinator("h2")
    first = wait_until(lambda: onlooker.view().hosts, "published")[0]
    # Renewed every ~0.7 s, and the record's last_seen with it, well past the 2 s lease.
    later = wait_until(lambda: [h for h in onlooker.view().hosts if h.last_seen > first.last_seen], "renewed", deadline_s=10)
    assert later[0].platform is None and later[0].revision is None

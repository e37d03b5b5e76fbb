"""A real daemon SIGKILLed while it holds its fleet slot (DESIGN.md §12 Slot): nothing gives the
slot back, so it stays the dead host's until its lease runs out (etcd), and then the hosts in
line go on, one at a time; the dead host's record leaves the group's view with its lease.

Timelines come from the agents' journals and from etcd, polled with deadlines.
"""

from __future__ import annotations

import time

import pytest

from tests.daemon.site import Release
from tests.fleet.fleet_site import etcd_table, fleets, max_concurrent
from tests.fleet.helpers import holder_hosts

HOSTS = ["h1", "h2", "h3", "h4"]
LEASE_S = 3
OLD = {"1.0.0": Release(start_delay_s=1.0)}
NEW = {**OLD, "1.0.1": Release(start_delay_s=1.0)}
OLD_PLATFORMS = {"1.0.0": "1.0.0"}
NEW_PLATFORMS = {"1.0.0": "1.0.0", "1.1.0": "1.0.1"}


@pytest.fixture
def make_fleet():
    with fleets() as make:
        yield make


def test_a_slot_holder_killed_frees_its_slot_after_lease_and_the_others_go_on(etcd_cluster, group, make_fleet, record_property):
    hosts = HOSTS
    endpoints = etcd_cluster.endpoints
    fleet = make_fleet(hosts, lambda host: etcd_table(host, group, endpoints, slots=1, lease=f"{LEASE_S}s"))
    fleet.first_install(OLD, OLD_PLATFORMS)

    fleet.publish(2, NEW, NEW_PLATFORMS)
    fleet.check()

    def holding() -> str | None:
        for host in hosts:
            for deployment in fleet.deployments(host, limit=1):
                if deployment.auth == "1.0.1" and deployment.reached("slot-held") and not deployment.reached("slot-released"):
                    return host
        return None

    victim = fleet.wait(holding, "a host journals slot-held for 1.0.1")
    [taken] = fleet.deployments(victim, limit=1)
    killed_at = fleet.kill(victim)
    survivors = [host for host in hosts if host != victim]

    # The slot stays the dead host's until its lease runs out: read from etcd.
    seen_holding = killed_at
    while True:
        holders = holder_hosts(endpoints, group)
        now = time.time()
        if victim not in holders:
            freed_at = now
            break
        seen_holding = now
        assert now - killed_at < LEASE_S + 5, f"the slot of {victim} is still held {now - killed_at:.1f} s after it was killed"
        time.sleep(0.05)
    assert seen_holding > killed_at, "the slot was freed with the process, not by the lease running out"
    assert freed_at - killed_at <= LEASE_S + 3

    fleet.wait(lambda: fleet.on_platform("1.1.0", survivors), "the other hosts run platform 1.1.0", deadline_s=120)
    rollout = [deployment for host in survivors for deployment in fleet.deployments(host) if deployment.auth == "1.0.1"]
    assert sorted(deployment.host for deployment in rollout) == survivors
    assert all(deployment.status == "succeeded" for deployment in rollout), rollout
    # One at a time, the dead host included for as long as etcd showed it holding.
    changing = [deployment.interval("switching", "slot-released") for deployment in rollout]
    most, instant, who = max_concurrent([*changing, (taken.at("slot-held"), seen_holding, f"{victim} (killed)")])
    assert most == 1, f"{who} changing at once at {instant}"
    assert holder_hosts(endpoints, group) == []
    view = fleet.api(survivors[0], "GET", "/fleet").json()
    assert sorted(host["host_id"] for host in view["hosts"]) == survivors  # the dead host's record went with its lease
    next_held = min(deployment.at("slot-held") for deployment in rollout)
    record_property("slot_freed_after_kill_s", round(freed_at - killed_at, 2))
    record_property("next_holder_after_free_s", round(next_held - freed_at, 2))
    print(f"lease {LEASE_S}s: slot freed {freed_at - killed_at:.1f} s after the kill; next holder {next_held - freed_at:.1f} s later")

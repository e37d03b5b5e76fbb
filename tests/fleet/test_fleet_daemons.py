"""Real ``id1 agent run`` daemons taking turns through the test's 3-member etcd cluster
(DESIGN.md §12–§13): a rollout over 5 hosts never has more than ``slots`` of them changing at
once, and a slot holder that crashes frees its slot after ``lease`` so the others go on.

Every timeline is read from what the agents journal (each deployment step with its time) or
from etcd, polled with deadlines; nothing here sleeps to let something happen.
"""

from __future__ import annotations

import time

import pytest

from tests.daemon.site import Release
from tests.fleet.fleet_site import etcd_table, fleets, max_concurrent
from tests.fleet.helpers import holder_hosts

HOSTS = ["h1", "h2", "h3", "h4", "h5"]
OLD = {"1.0.0": Release(start_delay_s=1.0)}
NEW = {**OLD, "1.0.1": Release(start_delay_s=1.0)}
OLD_PLATFORMS = {"1.0.0": "1.0.0"}
NEW_PLATFORMS = {"1.0.0": "1.0.0", "1.1.0": "1.0.1"}


@pytest.fixture
def make_fleet():
    with fleets() as make:
        yield make


def test_a_rollout_over_five_hosts_never_changes_more_than_two_at_once(etcd_cluster, group, make_fleet, record_property):
    fleet = make_fleet(HOSTS, lambda host: etcd_table(host, group, etcd_cluster.endpoints, slots=2, lease="5s"))
    fleet.first_install(OLD, OLD_PLATFORMS)

    fleet.publish(2, NEW, NEW_PLATFORMS)
    fleet.check()
    fleet.wait(lambda: fleet.on_platform("1.1.0"), "every host runs platform 1.1.0", deadline_s=120)

    for host in HOSTS:
        status = fleet.status(host)
        assert [(c["capability"], c["version"]) for c in status["capabilities"]] == [("core/auth", "1.0.1")], host
        assert fleet.sites[host].answers_http() == 200, host
    deployments = [deployment for host in HOSTS for deployment in fleet.deployments(host)]
    rollout = [deployment for deployment in deployments if deployment.auth == "1.0.1"]
    assert sorted(deployment.host for deployment in rollout) == HOSTS
    for deployment in deployments:
        assert deployment.status == "succeeded", deployment
        assert deployment.states.index("slot-held") < deployment.states.index("switching") < \
            deployment.states.index("slot-released") < deployment.states.index("committed"), deployment.states
    # Between its switch and its verified health a host is changing: never more than 2 at once,
    # over the first installs and the rollout alike, and the rollout did use both slots.
    changing = [deployment.interval("switching", "slot-released") for deployment in deployments]
    most, instant, who = max_concurrent(changing)
    assert most <= 2, f"{most} hosts changing at once at {instant}: {who}"
    rollout_most, _, _ = max_concurrent(deployment.interval("switching", "slot-released") for deployment in rollout)
    assert rollout_most == 2, "the rollout never had two hosts changing at once"
    assert holder_hosts(etcd_cluster.endpoints, group) == []

    first = min(deployment.at("waiting-for-slot") for deployment in rollout)
    last = max(deployment.at("committed") for deployment in rollout)
    record_property("rollout_s", round(last - first, 1))
    record_property("max_concurrent", most)
    print(f"slots=2 rollout over {len(HOSTS)} hosts: {last - first:.1f} s, at most {most} changing at once")


def test_a_slot_holder_killed_frees_its_slot_after_lease_and_the_others_go_on(etcd_cluster, group, make_fleet, record_property):
    hosts = HOSTS[:4]
    endpoints = etcd_cluster.endpoints
    fleet = make_fleet(hosts, lambda host: etcd_table(host, group, endpoints, slots=1, lease="3s"))
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
        assert now - killed_at < 3 + 5, f"the slot of {victim} is still held {now - killed_at:.1f} s after it was killed"
        time.sleep(0.05)
    assert seen_holding > killed_at, "the slot was freed with the process, not by the lease running out"
    assert freed_at - killed_at <= 3 + 3

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
    print(f"lease 3s: slot freed {freed_at - killed_at:.1f} s after the kill; next holder {next_held - freed_at:.1f} s later")

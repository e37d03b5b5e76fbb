"""Real daemons while the etcd cluster under them fails (DESIGN.md §12–§13): a rollout goes on
with one member of three killed; with quorum lost no host starts a change and each waiting host
says the lock service is unreachable; with quorum back every host converges.

The cluster is this test's own (members are killed), and the timeline is read from the agents'
journals: no ``slot-held`` while quorum is lost, whatever was in flight when it went.
"""

from __future__ import annotations

import time

import pytest

from tests.daemon.site import Release
from tests.fleet.etcd_cluster import EtcdCluster
from tests.fleet.fleet_site import Fleet, etcd_table, fleets, max_concurrent
from tests.fleet.helpers import holder_hosts

HOSTS = ["h1", "h2", "h3", "h4"]
OLD = {"1.0.0": Release()}
NEW = {**OLD, "1.0.1": Release(start_delay_s=1.0)}
IN_FLIGHT_S = 2.0
"""A slot granted by a txn etcd committed just before the second member died may be journaled
a little after: the test allows that much."""


@pytest.fixture
def etcd_cluster(tmp_path):
    cluster = EtcdCluster(tmp_path, members=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def make_fleet():
    with fleets() as make:
        yield make


def rollout(fleet: Fleet) -> list:
    return [d for host in HOSTS for d in fleet.deployments(host) if d.auth == "1.0.1"]


def test_a_rollout_goes_on_with_a_member_down_stops_without_quorum_and_converges_when_it_is_back(
        etcd_cluster, group, make_fleet, record_property):
    fleet = make_fleet(HOSTS, lambda host: etcd_table(host, group, etcd_cluster.endpoints, slots=1, lease="5s"))
    fleet.first_install(OLD, {"1.0.0": "1.0.0"})
    fleet.publish(2, NEW, {"1.0.0": "1.0.0", "1.1.0": "1.0.1"})
    fleet.check()

    # One member down (the leader) while the first host holds its slot: the rollout goes on.
    fleet.wait(lambda: any(d.reached("slot-held") for d in rollout(fleet)), "a host holds a slot for 1.0.1")
    leader = etcd_cluster.leader()
    etcd_cluster.kill(leader)
    one_down_at = time.time()
    fleet.wait(lambda: any(d.reached("slot-held") and d.at("slot-held") > one_down_at for d in rollout(fleet)),
               "a host is given the slot with one member down")

    # Quorum lost: nobody starts a change; each host in line says why it waits.
    second = next(index for index in range(3) if index != leader)
    etcd_cluster.kill(second)
    lost_at = time.time()

    def waiting_hosts_say_unreachable() -> list[str] | None:
        waiting = [host for host in HOSTS if (latest := fleet.deployments(host, limit=1)) and latest[0].state == "waiting-for-slot"]
        activities = {host: fleet.status(host)["activity"] for host in waiting}
        if waiting and all("the lock service is unreachable" in text for text in activities.values()):
            return waiting
        return None

    try:
        waiting = fleet.wait(waiting_hosts_say_unreachable, "every host in line says the lock service is unreachable",
                             deadline_s=75)
        for host in waiting:
            activity = fleet.status(host)["activity"]
            assert activity.startswith(f"waiting for a fleet slot (group {group}): the lock service is unreachable: "), activity
        view = fleet.api(waiting[0], "GET", "/fleet").json()
        assert view["note"].startswith("the lock service is unreachable"), view
        done_while_lost = sum(fleet.on_platform("1.1.0", [host]) for host in HOSTS)
    finally:
        back_at = time.time()  # quorum may be back from here on: two members run again
        etcd_cluster.restart(second)
        etcd_cluster.restart(leader)
        etcd_cluster.wait_healthy()

    fleet.wait(lambda: fleet.on_platform("1.1.0"), "every host runs platform 1.1.0", deadline_s=120)
    converged_at = time.time()
    deployments = rollout(fleet)
    assert sorted(d.host for d in deployments) == HOSTS and all(d.status == "succeeded" for d in deployments), deployments
    granted_while_lost = [d for d in deployments if lost_at + IN_FLIGHT_S < d.at("slot-held") < back_at]
    assert not granted_while_lost, f"slots granted without a quorum: {granted_while_lost}"
    for deployment in deployments:
        assert deployment.at("slot-held") < deployment.at("switching")
    most, instant, who = max_concurrent(d.interval("switching", "slot-released") for d in deployments)
    assert most == 1, f"{who} changing at once at {instant}; seconds from the quorum loss:\n" + "\n".join(
        f"  {d.host}: " + ", ".join(f"{step.state} {step.at - lost_at:+.2f}" for step in d.steps[4:]) for d in deployments)
    assert holder_hosts(etcd_cluster.endpoints, group) == []

    record_property("hosts_in_line_when_quorum_lost", len(waiting))
    record_property("quorum_lost_s", round(back_at - lost_at, 1))
    record_property("converged_after_quorum_back_s", round(converged_at - back_at, 1))
    print(f"quorum lost {back_at - lost_at:.1f} s with {len(waiting)} host(s) in line and {done_while_lost} done; "
          f"converged {converged_at - back_at:.1f} s after it was back")

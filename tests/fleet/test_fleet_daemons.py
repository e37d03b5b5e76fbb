"""Real ``id1 agent run`` daemons taking turns through the test's 3-member etcd cluster
(DESIGN.md §12–§13): a rollout over 5 hosts never has more than ``slots`` of them changing at
once, and does use them side by side. (A holder that crashes: test_fleet_daemons_crash.py; a
release that fails: _halt; etcd failing: _outage; FleetLock: _fleetlock.)

Every timeline is read from what the agents journal (each deployment step with its time) or
from etcd, polled with deadlines; nothing here sleeps to let something happen.
"""

from __future__ import annotations

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


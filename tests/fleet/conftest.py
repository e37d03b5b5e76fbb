"""Fixtures of the fleet tests: a real 3-member etcd cluster per test module (start-up costs
about a second, so tests share it and each works in a group of its own), and coordinators made
the way the agent makes them."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from agent.fleet.config import FleetConfig
from agent.fleet.etcd import EtcdCoordinator
from tests.fleet.etcd_cluster import EtcdCluster

_groups = itertools.count()


@pytest.fixture(scope="module")
def etcd_cluster(tmp_path_factory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"), members=3)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def group(request) -> str:
    """A group of this test's own in the shared cluster."""
    name = request.node.name.replace("_", "-").replace("[", ".").replace("]", "")
    return f"{name[:40].strip('.-')}.{next(_groups)}"


@pytest.fixture
def make_coordinator(etcd_cluster, group):
    """make_coordinator(host_id, **fleet_keys, poll_first=..) → an EtcdCoordinator, closed after the test."""
    made: list[EtcdCoordinator] = []

    def make(host_id: str, *, endpoints: list[str] | None = None, poll_first: float = 10.0, poll_cap: float = 60.0,
             watch_silence: float = 60.0, **keys) -> EtcdCoordinator:
        config = FleetConfig(backend="etcd", group=group, etcd_endpoints=endpoints or etcd_cluster.endpoints, **keys)
        coordinator = EtcdCoordinator(config, host_id=host_id, instance_id=f"instance-{host_id}",
                                      poll_first=poll_first, poll_cap=poll_cap, watch_silence=watch_silence)
        made.append(coordinator)
        return coordinator

    yield make
    for coordinator in made:
        coordinator.close()

"""Fixtures for the tests on real systemd hosts (tests/hosts)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.feedserver import FeedServer
from tests.hosts.agent import AgentHost
from tests.hosts.deb import built_deb
from tests.hosts.machine import TestHost
from tests.hosts.vendor import ServiceVendor


def require_host_platform() -> None:
    """Root and the tools, or a skip; in CI (a machine of our own, as root) never a skip."""
    missing = [tool for tool in ("mmdebstrap", "systemd-nspawn", "nsenter") if shutil.which(tool) is None]
    problem = "booting test hosts needs root" if os.geteuid() != 0 else (
        f"booting test hosts needs {', '.join(missing)} (make test installs mmdebstrap and systemd-container)" if missing else None)
    if problem:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(problem)


@pytest.fixture(scope="session")
def deb():
    require_host_platform()
    return built_deb()


@pytest.fixture
def make_host():
    """``make_host(name)`` → a booted TestHost (``agent=True``: an AgentHost); destroyed after the test."""
    require_host_platform()
    hosts = []

    def make(name: str, *, agent: bool = False, boot: bool = True):
        host = (AgentHost if agent else TestHost).create(name)
        hosts.append(host)
        if boot:
            host.boot()
        return host

    yield make
    for host in hosts:
        host.destroy()


@pytest.fixture
def vendor(tmp_path):
    with FeedServer(tmp_path / "www") as server:
        yield ServiceVendor(server)

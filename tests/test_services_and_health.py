"""Service control and health checks against real units run by systemctl3 (no mock of systemd)."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

from agent.deploy.health import HealthChecker
from agent.deploy.services import ServiceController
from agent.errors import ServiceError
from agent.feed.model import HealthCheck
from tests.ports import free_port

SYSTEMCTL3 = Path(sys.executable).parent / "systemctl3"
HOST_PYTHON = "/usr/bin/python3"  # a unit runs as a real process: use Debian's interpreter


class Sandbox:
    def __init__(self, root: Path):
        self.root = root
        self.unit_dir = root / "etc" / "systemd" / "system"
        self.unit_dir.mkdir(parents=True)
        self.services = ServiceController([str(SYSTEMCTL3), f"--root={root}"], timeout_s=60)
        self.units: list[str] = []

    def unit(self, name: str, exec_start: str) -> str:
        (self.unit_dir / name).write_text(
            f"[Unit]\nDescription={name}\n[Service]\nType=simple\nExecStart={exec_start}\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
        self.units.append(name)
        return name

    def http_unit(self, name: str, port: int, folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "healthz").write_text("ok")
        return self.unit(name, f"{HOST_PYTHON} -m http.server {port} --bind 127.0.0.1 --directory {folder}")


@pytest.fixture
def sandbox(tmp_path):
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    box = Sandbox(tmp_path / "host" / "root")
    yield box
    for unit in box.units:
        try:
            box.services.stop([unit])
        except ServiceError:
            pass


def wait_until(predicate, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def answers(port: int) -> bool:
    with socket.socket() as client:
        client.settimeout(0.5)
        return client.connect_ex(("127.0.0.1", port)) == 0


def test_units_start_restart_and_stop_as_real_processes(sandbox, tmp_path):
    port = free_port()
    unit = sandbox.http_unit("id1-core-api.service", port, tmp_path / "www")
    services = sandbox.services
    services.daemon_reload()
    assert services.state(unit) == "inactive"
    services.start([unit])
    assert services.is_active(unit)
    assert wait_until(lambda: answers(port))
    services.restart([unit])
    assert services.is_active(unit) and wait_until(lambda: answers(port))
    services.stop([unit])
    assert services.state(unit) == "inactive"
    assert wait_until(lambda: not answers(port))


def test_a_failing_systemctl_call_is_one_clear_error(sandbox):
    with pytest.raises(ServiceError, match=r"start -- nothing-here.service failed \(exit \d+\)"):
        sandbox.services.start(["nothing-here.service"])
    with pytest.raises(ServiceError, match="cannot run '/no/such/systemctl': no such command"):
        ServiceController(["/no/such/systemctl"]).daemon_reload()


def test_health_is_active_units_and_a_2xx_answer(sandbox, tmp_path):
    port = free_port()
    unit = sandbox.http_unit("id1-core-auth.service", port, tmp_path / "www")
    sandbox.services.start([unit])
    checker = HealthChecker(sandbox.services, interval_s=0.1)
    good = checker.wait_healthy([unit], HealthCheck(http=f"http://127.0.0.1:{port}/healthz", timeout_s=20))
    assert good.healthy, good.detail
    bad = checker.wait_healthy([unit], HealthCheck(http=f"http://127.0.0.1:{port}/missing", timeout_s=0.5))
    assert not bad.healthy and "answered 404" in bad.detail and bad.attempts >= 1


def test_health_by_command_and_by_unit_state(sandbox, tmp_path):
    unit = sandbox.unit("id1-analytics-report.service", f"{HOST_PYTHON} -c 'import time; time.sleep(600)'")
    checker = HealthChecker(sandbox.services, interval_s=0.1)
    stopped = checker.wait_healthy([unit], None, timeout_s=0.3)
    assert not stopped.healthy and f"unit {unit} is inactive" in stopped.detail
    sandbox.services.start([unit])
    assert checker.wait_healthy([unit], None, timeout_s=10).healthy
    assert checker.wait_healthy([unit], HealthCheck(command=["/usr/bin/true"], timeout_s=5)).healthy
    failing = checker.wait_healthy([unit], HealthCheck(command="/bin/sh -c 'echo broken >&2; exit 3'", timeout_s=0.3))
    assert not failing.healthy and "exited 3: broken" in failing.detail


def test_a_unit_that_dies_is_unhealthy(sandbox):
    unit = sandbox.unit("id1-core-broken.service", "/bin/sh -c 'exit 1'")
    try:
        sandbox.services.start([unit])
    except ServiceError:
        pass  # systemctl may report the failure itself; health must say it either way
    result = HealthChecker(sandbox.services, interval_s=0.1).wait_healthy([unit], None, timeout_s=1)
    assert not result.healthy and f"unit {unit} is" in result.detail

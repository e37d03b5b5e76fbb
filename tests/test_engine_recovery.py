"""The deployment engine when things go wrong in ways a release does not choose: errors no code
path foresaw, a disk that refuses writes, an undo that cannot finish, a crash inside a step,
republished versions, release folders and cached artifacts changed since they were written.
Real parts: artifacts from a loopback server, units run by systemctl3, a real read-only mount."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from agent.deploy.engine import RESTARTING, ROLLING_BACK, SWITCHING, UNDO_ATTEMPTS
from agent.deploy.health import HealthChecker
from agent.deploy.releases import ReleaseLayout
from agent.deploy.services import ServiceController
from agent.store import DeploymentStatus, Store
from tests.test_engine import SYSTEMCTL3, Crash, Host, host  # noqa: F401  (the fixture)


def test_an_error_nobody_foresaw_still_ends_the_deployment(host):
    """A bug (here a TypeError from the service layer) must not leave a deployment "in progress",
    which would refuse every later poll, rollback and deployment."""
    host.engine().deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)
    real = subprocess.run
    calls = {"restart": 0}

    def flaky_run(argv, **kwargs):
        if "restart" in argv:
            calls["restart"] += 1
            if calls["restart"] == 1:
                raise TypeError("a bug in the service layer")
        return real(argv, **kwargs)

    engine = host.engine()
    engine.services = ServiceController(host.services.command, timeout_s=60, run=flaky_run)
    result = engine.deploy(host.manifest({"core/auth": "1.0.1"}), feed_serial=2)
    assert result.status == DeploymentStatus.ROLLED_BACK, result.error
    assert result.error == "unexpected error: TypeError: a bug in the service layer"
    assert host.store.deployments.active() is None
    assert ReleaseLayout(host.state_dir).current_version("core/auth") == "1.0.0"
    assert host.engine().deploy(host.manifest({"core/auth": "1.0.2"}), feed_serial=3).revision == 2  # nothing stuck


@pytest.fixture
def read_only_later(host):
    """The unit folder on its own tmpfs, which the test can make read-only (EROFS from the kernel)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (make test runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(host.unit_dir)], check=True)

    def make_read_only():
        subprocess.run(["mount", "-o", "remount,ro", str(host.unit_dir)], check=True)

    yield make_read_only
    for unit in [p.name for p in host.unit_dir.glob("*.service")]:
        subprocess.run([str(SYSTEMCTL3), f"--root={host.root}", "stop", unit], capture_output=True, timeout=60)
    subprocess.run(["umount", "-l", str(host.unit_dir)], check=False)


def test_a_unit_folder_that_refuses_writes_is_one_clear_error_and_the_deployment_ends(host, read_only_later):
    host.engine().deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)
    read_only_later()
    # Another unit text (the port moved): the install must write, and the kernel says EROFS.
    host.ports["core/auth"] += 1
    result = host.engine().deploy(host.manifest({"core/auth": "1.0.1"}), feed_serial=2)
    assert result.status in (DeploymentStatus.ROLLED_BACK, DeploymentStatus.UNDO_FAILED)
    assert "cannot write" in result.error and "Read-only file system" in result.error, result.error
    assert host.store.deployments.active() is None


def test_an_undo_that_cannot_put_everything_back_ends_undo_failed(host):
    host.engine().deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)
    layout = ReleaseLayout(host.state_dir)
    os.rename(layout.release_dir("core/auth", "1.0.0"), host.state_dir / "moved-away")  # what the undo needs is gone
    result = host.engine().deploy(host.manifest({"core/auth": "1.1.0"}, broken={"core/auth"}), feed_serial=2)
    assert result.status == DeploymentStatus.UNDO_FAILED
    assert "core/auth 1.1.0 is not healthy" in result.error and "the undo did not put everything back" in result.error
    assert "release folder" in result.error and "is gone" in result.error
    assert host.store.deployments.active() is None


def test_an_undo_cut_off_again_and_again_ends_undo_failed_without_another_try(host):
    host.engine().deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)

    def crash_when_undoing(state):
        if state == ROLLING_BACK:
            raise Crash(state)

    with pytest.raises(Crash):
        host.engine(crash_when_undoing).deploy(host.manifest({"core/auth": "1.1.0"}, broken={"core/auth"}), feed_serial=2)
    for _ in range(UNDO_ATTEMPTS - 1):  # each start resumes the undo, and it is cut off again
        with pytest.raises(Crash):
            host.engine(crash_when_undoing).resume()
    restarts = host.starts("core/auth")
    result = host.engine(crash_when_undoing).resume()  # no crash this time: it is not tried at all
    assert result.status == DeploymentStatus.UNDO_FAILED
    assert f"the undo was cut off {UNDO_ATTEMPTS} times and is not tried again" in result.error
    assert host.starts("core/auth") == restarts
    assert host.store.deployments.active() is None
    assert "core/auth@1.1.0" in host.store.blocked.refs()  # blocked when the first undo began


@pytest.mark.parametrize("point", [f"{SWITCHING} core/api", f"{RESTARTING} core/api"])
def test_a_kill_between_capabilities_inside_a_step_converges(host, point):
    """SIGKILL after the first of two capabilities was switched (or restarted), not on a step's edge."""
    host.engine().deploy(host.manifest({"core/api": "2.0.0", "core/auth": "1.0.0"}), feed_serial=1)
    update = host.manifest({"core/api": "2.1.0", "core/auth": "1.1.0"})
    host.store.close()
    child = os.fork()
    if child == 0:
        try:
            host.store = Store.open(host.state_dir)

            def die(entered):
                if entered == point:
                    os.kill(os.getpid(), signal.SIGKILL)

            host.engine(die).deploy(update, feed_serial=2)
        finally:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status), f"the agent was not killed at {point}"
    layout = ReleaseLayout(host.state_dir)
    if point.startswith(SWITCHING):  # half switched
        assert (layout.current_version("core/api"), layout.current_version("core/auth")) == ("2.1.0", "1.0.0")

    host.store = Store.open(host.state_dir)
    result = host.engine().resume(feed_serial=2)
    assert result.status == DeploymentStatus.SUCCEEDED, result.error
    assert (layout.current_version("core/api"), layout.current_version("core/auth")) == ("2.1.0", "1.1.0")
    checker = HealthChecker(host.services, interval_s=0.1)
    for unit in ("id1-core-api.service", "id1-core-auth.service"):
        assert checker.wait_healthy([unit], None, timeout_s=20).healthy, unit


def test_a_release_folder_changed_since_it_was_unpacked_is_unpacked_again_before_a_rollback(host):
    host.engine().deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)
    host.engine().deploy(host.manifest({"core/auth": "1.1.0"}), feed_serial=2)
    layout = ReleaseLayout(host.state_dir)
    served = layout.release_dir("core/auth", "1.0.0") / "bin" / "serve.py"
    served.write_text("raise SystemExit('tampered')\n")  # same folder, other bytes
    (layout.release_dir("core/auth", "1.0.0") / "__pycache__").mkdir()  # added by a service: harmless
    assert "changed since it was unpacked" in layout.holds("core/auth", "1.0.0", host.store.revisions.get(1).manifest["suites"]["core"]["capabilities"]["auth"]["artifact"]["sha256"])

    result = host.engine().rollback(1, catalog=None, reason="test", actor="root")
    assert result.deployment.status == DeploymentStatus.SUCCEEDED, result.deployment.error
    assert "tampered" not in served.read_text()
    assert host.services.is_active("id1-core-auth.service")


def test_a_cached_artifact_changed_on_disk_is_fetched_again(host):
    host.engine().deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)
    host.engine().deploy(host.manifest({"core/auth": "1.1.0"}), feed_serial=2)
    layout = ReleaseLayout(host.state_dir)
    entry = host.store.revisions.get(1).manifest["suites"]["core"]["capabilities"]["auth"]
    cached = host.cache.path_for(entry["artifact"]["sha256"])
    layout.remove_release("core/auth", "1.0.0")  # retention took the folder; the cache kept the artifact
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit flipped, same size
    cached.write_bytes(bytes(data))

    result = host.engine().rollback(1, catalog=None, reason="test", actor="root")
    assert result.deployment.status == DeploymentStatus.SUCCEEDED, result.deployment.error
    assert host.cache.path_for(entry["artifact"]["sha256"]).read_bytes() != bytes(data)  # the good bytes again


def test_a_kept_folder_of_a_republished_version_is_replaced_by_the_new_bytes_and_a_running_one_never(host):
    layout = ReleaseLayout(host.state_dir)
    host.engine().deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)
    host.engine().deploy(host.manifest({"core/auth": "1.1.0"}), feed_serial=2)
    old_record = layout.read_record("core/auth", "1.0.0")
    # The vendor republishes 1.0.0 with other bytes (here: the service answers 500) and a pin
    # brings the host back to it: the kept folder must not be re-used for the new digest.
    republished = host.manifest({"core/auth": "1.0.0"}, broken={"core/auth"})
    result = host.engine().deploy(republished, feed_serial=3)
    assert result.status == DeploymentStatus.ROLLED_BACK  # the new bytes ran, and failed their check
    assert layout.read_record("core/auth", "1.0.0").artifact_sha256 != old_record.artifact_sha256

    # The running version, republished: refused before anything changes.
    running_again = host.manifest({"core/auth": "1.1.0"}, broken={"core/auth"})
    refused = host.engine().deploy(running_again, feed_serial=4)
    assert refused.status == DeploymentStatus.FAILED
    assert "a running release is never replaced in place" in refused.error
    assert layout.current_version("core/auth") == "1.1.0" and host.services.is_active("id1-core-auth.service")

"""The deployment state machine with real parts: artifacts from a loopback server, real unit
files run as real processes by systemctl3, real health checks, the real store."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import signal
import sys
import tarfile
from pathlib import Path

import pytest

from agent.deploy.artifacts import ArtifactCache
from agent.deploy.engine import (
    CHECKING,
    LOOP_GUARD,
    DOWNLOADING,
    INSTALLING_UNITS,
    RESTARTING,
    ROLLING_BACK,
    STAGING,
    SWITCHING,
    VERIFYING,
    Engine,
)
from agent.deploy.health import HealthChecker
from agent.deploy.releases import ReleaseLayout
from agent.deploy.services import ServiceController
from agent.planning.manifest import Manifest
from agent.store import DeploymentStatus, Store
from tests.deploy.loopback import ArtifactServer
from tests.ports import free_port  # noqa: F401  (other test modules import it from here)

SYSTEMCTL3 = Path(sys.executable).parent / "systemctl3"

SERVER = """
import http.server, os, sys
port, state, name, broken = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "broken"
os.makedirs(state, exist_ok=True)
with open(os.path.join(state, name + ".starts"), "a") as log:
    log.write(f"{os.getpid()}\\n")
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if broken else 200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


class Crash(BaseException):
    """Stands for the agent dying at a step: nothing after it runs, nothing cleans up."""


def artifact(ref: str, port: int, *, broken: bool = False, version: str = "1.0.0") -> bytes:
    suite, _, name = ref.partition("/")
    unit = (f"[Service]\nType=simple\nExecStart=/usr/bin/python3 @CURRENT@/bin/serve.py {port} @STATE_DIR@/run "
            f"{suite}-{name} {'broken' if broken else 'fine'}\n[Install]\nWantedBy=multi-user.target\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, text, mode in [("bin/serve.py", SERVER, 0o755), (f"systemd/id1-{suite}-{name}.service", unit, 0o644),
                                 ("VERSION", f"{version}\n", 0o644)]:
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)  # the same release, the same bytes


class Host:
    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "host" / "root"
        self.unit_dir = self.root / "etc" / "systemd" / "system"
        self.unit_dir.mkdir(parents=True)
        self.state_dir = tmp_path / "state"
        self.server = ArtifactServer(tmp_path / "www").__enter__()
        self.services = ServiceController([str(SYSTEMCTL3), f"--root={self.root}"], timeout_s=60)
        self.ports: dict[str, int] = {}
        self.store = Store.open(self.state_dir)
        self.cache = ArtifactCache(self.state_dir / "cache", min_free_bytes=0)

    def engine(self, on_step=lambda state: None) -> Engine:
        return Engine(
            store=self.store,
            layout=ReleaseLayout(self.state_dir),
            artifacts=self.cache,
            services=self.services,
            health=HealthChecker(self.services, interval_s=0.1),
            unit_dir=self.unit_dir,
            instance_id="host-01",
            on_step=on_step,
        )

    def manifest(self, versions: dict[str, str], broken: set[str] = frozenset()) -> Manifest:
        suites: dict = {}
        for ref, version in versions.items():
            port = self.ports.setdefault(ref, free_port())
            data = artifact(ref, port, broken=ref in broken, version=version)
            name = f"{ref.replace('/', '-')}-{version}.tar.gz"
            self.server.publish(name, data)
            suite, _, capability = ref.partition("/")
            suites.setdefault(suite, {"version": "1.0.0", "capabilities": {}})["capabilities"][capability] = {
                "version": version, "source": "latest",
                "artifact": {"url": self.server.url(name), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
                "units": [f"id1-{suite}-{capability}.service"],
                "health": {"http": f"http://127.0.0.1:{port}/healthz", "timeout_s": 3 if ref in broken else 20},
            }
        return Manifest.model_validate({"platform": "1.0.0", "suites": suites})

    def starts(self, ref: str) -> int:
        log = self.state_dir / "run" / f"{ref.replace('/', '-')}.starts"
        return len(log.read_text().split()) if log.exists() else 0

    def close(self):
        for unit in [p.name for p in self.unit_dir.glob("*.service")]:
            try:
                self.services.stop([unit])
            except Exception:
                pass
        self.cache.close()
        self.store.close()
        self.server.__exit__(None, None, None)


@pytest.fixture
def host(tmp_path):
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    box = Host(tmp_path)
    yield box
    box.close()


def test_fresh_install_then_a_broken_update_is_rolled_back_and_blocked(host):
    first = host.engine().deploy(host.manifest({"core/auth": "1.0.0", "core/api": "2.0.0"}), feed_serial=1)
    assert (first.status, first.revision) == (DeploymentStatus.SUCCEEDED, 1)
    layout = ReleaseLayout(host.state_dir)
    assert layout.current_version("core/auth") == "1.0.0"
    assert host.services.is_active("id1-core-api.service")
    api_starts = host.starts("core/api")

    broken = host.engine().deploy(host.manifest({"core/auth": "1.1.0", "core/api": "2.0.0"}, broken={"core/auth"}), feed_serial=2)
    assert broken.status == DeploymentStatus.ROLLED_BACK and broken.revision is None
    assert "core/auth 1.1.0 is not healthy" in broken.error and "answered 500" in broken.error
    assert layout.current_version("core/auth") == "1.0.0"
    assert host.services.is_active("id1-core-auth.service")
    assert host.starts("core/api") == api_starts  # the untouched capability was not restarted
    assert "core/auth@1.1.0" in host.store.blocked.refs()
    assert host.store.revisions.latest().number == 1


def test_an_agent_killed_anywhere_retries_the_deployment_and_blocks_nothing(host):
    """A crash is not a bad release: a power cut during a critical fix must not leave the host
    on the old version with the fix blocked until an admin notices."""
    host.engine().deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)

    def crash_at(step):
        def hook(state):
            if state == step:
                raise Crash(step)
        return hook

    for number, (step, version) in enumerate([(STAGING, "1.0.1"), (SWITCHING, "1.0.2"), (VERIFYING, "1.0.3")], start=2):
        with pytest.raises(Crash):
            host.engine(crash_at(step)).deploy(host.manifest({"core/auth": version}), feed_serial=number)
        resumed = host.engine().resume(feed_serial=number)
        assert resumed.status == DeploymentStatus.SUCCEEDED and resumed.revision == number, resumed.error
        assert ReleaseLayout(host.state_dir).current_version("core/auth") == version
        assert host.services.is_active("id1-core-auth.service")
        assert not host.store.blocked.refs()
        journal = host.store.deployments.get(resumed.deployment_id).journal
        assert [entry.state for entry in journal].count(CHECKING) == 2  # one per run: the first and the retry
    assert host.engine().resume() is None


def test_a_deployment_cut_off_again_and_again_is_undone_and_blocked_as_interrupted(host):
    host.engine().deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)

    def crash_in_verifying(state):
        if state == VERIFYING:
            raise Crash(state)

    with pytest.raises(Crash):
        host.engine(crash_in_verifying).deploy(host.manifest({"core/auth": "1.1.0"}), feed_serial=2)
    for _ in range(LOOP_GUARD - 1):  # each start runs it again, and it is cut off again
        with pytest.raises(Crash):
            host.engine(crash_in_verifying).resume(feed_serial=2)
    undone = host.engine().resume(feed_serial=2)
    assert undone.status == DeploymentStatus.ROLLED_BACK
    assert f"the deployment was cut off {LOOP_GUARD} times (last during verifying)" in undone.error
    assert ReleaseLayout(host.state_dir).current_version("core/auth") == "1.0.0"
    [blocked] = host.store.blocked.list()
    assert (str(blocked.ref), str(blocked.source)) == ("core/auth@1.1.0", "interrupted")


def test_a_tampered_artifact_is_refused_before_anything_switches(host):
    host.engine().deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)
    manifest = host.manifest({"core/auth": "1.0.1"}, broken={"core/auth"})  # other bytes: not in the cache
    host.server.publish("core-auth-1.0.1.tar.gz", b"tampered bytes")
    result = host.engine().deploy(manifest, feed_serial=2)
    assert result.status == DeploymentStatus.FAILED
    assert "core-auth-1.0.1.tar.gz" in result.error
    assert ReleaseLayout(host.state_dir).current_version("core/auth") == "1.0.0"
    assert host.services.is_active("id1-core-auth.service")


@pytest.mark.parametrize("state", [CHECKING, DOWNLOADING, STAGING, INSTALLING_UNITS, SWITCHING, RESTARTING, VERIFYING, ROLLING_BACK])
def test_sigkill_in_every_state_converges_on_the_next_start(host, state):
    """The agent process is SIGKILLed on entering ``state``; the next run finishes or undoes the
    deployment, leaving a healthy host on the old or the new revision and a readable store."""
    host.engine().deploy(host.manifest({"core/auth": "1.0.0", "core/api": "2.0.0"}), feed_serial=1)
    breaks = state == ROLLING_BACK  # to reach the rollback, the update must fail its health check
    update = host.manifest({"core/auth": "1.1.0", "core/api": "2.0.0"}, broken={"core/auth"} if breaks else set())
    host.store.close()
    child = os.fork()
    if child == 0:  # the agent: dies the hard way on entering the state
        try:
            host.store = Store.open(host.state_dir)

            def die(entered):
                if entered == state:
                    os.kill(os.getpid(), signal.SIGKILL)

            host.engine(die).deploy(update, feed_serial=2)
        finally:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"the agent was not killed in {state}"

    host.store = Store.open(host.state_dir)  # the lock died with the agent; the store reads
    result = host.engine().resume(feed_serial=2)
    assert result is not None and host.store.deployments.active() is None
    layout = ReleaseLayout(host.state_dir)
    if result.status == DeploymentStatus.SUCCEEDED:  # a crash is retried, wherever it happened
        assert state != ROLLING_BACK and layout.current_version("core/auth") == "1.1.0"
        assert host.store.revisions.latest().number == 2
    else:  # the broken release: the undo the crash cut off is finished
        assert result.status == DeploymentStatus.ROLLED_BACK, result.error
        assert layout.current_version("core/auth") == "1.0.0"
        assert host.store.revisions.latest().number == 1
    checker = HealthChecker(host.services, interval_s=0.1)
    for ref in ("core/auth", "core/api"):
        suite, _, name = ref.partition("/")
        assert checker.wait_healthy([f"id1-{suite}-{name}.service"], None, timeout_s=20).healthy, ref

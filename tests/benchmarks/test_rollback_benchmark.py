"""Rollback benchmark (DESIGN.md §10): the agent's own cost of rolling 20 capabilities back.

The host has two revisions of 20 capabilities (every one changes between them) with their
release folders unpacked, and ``systemctl`` is a no-op script (``is-active`` answers
``active``), so what is timed is the agent: the check, the store writes of every step (each
fsynced), unit files, the ``current`` switches, the systemctl calls it makes and the health
checks. Each round rolls back to the revision before, alternating between the two manifests.

Beside it, the trivial baseline measured in the same run: running the no-op ``systemctl`` as
many times as one rollback ran it (the floor no agent can go under on this machine). Figures
are medians of ``ROUNDS`` rounds. Target: a rollback ≤ 300 ms, asserted with
``ID1_BENCH_ENFORCE=1``, twice it always (bounds.py); that every round succeeded always is.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import platform
import statistics
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from agent.deploy.artifacts import ArtifactCache
from agent.deploy.engine import Engine
from agent.deploy.health import HealthChecker
from agent.deploy.releases import ReleaseLayout
from agent.deploy.services import ServiceController
from agent.planning.manifest import Manifest
from agent.store import DeploymentStatus, RollbackStatus, Store
from tests.benchmarks.bounds import at_most

pytestmark = pytest.mark.benchmark

CAPABILITIES = 20
ROUNDS = 9
TARGET_S = 0.300
NOOP_SYSTEMCTL = """#!/bin/sh
[ "$1" = is-active ] && echo active
exit 0
"""


def tarball(ref: str, version: str) -> bytes:
    suite, _, name = ref.partition("/")
    unit = f"[Service]\nExecStart=@CURRENT@/bin/run\n# {version}\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, text in [("bin/run", "#!/bin/sh\n"), (f"systemd/id1-{suite}-{name}.service", unit)]:
            info = tarfile.TarInfo(path)
            info.size = len(text)
            archive.addfile(info, io.BytesIO(text.encode()))
    return gzip.compress(buffer.getvalue(), mtime=0)


def manifest(www: Path, version: str) -> Manifest:
    suites: dict = {}
    for index in range(CAPABILITIES):
        suite, name = f"suite{index // 5}", f"cap{index}"
        data = tarball(f"{suite}/{name}", version)
        path = www / f"{suite}-{name}-{version}.tar.gz"
        path.write_bytes(data)
        suites.setdefault(suite, {"version": version, "capabilities": {}})["capabilities"][name] = {
            "version": version, "source": "latest", "units": [f"id1-{suite}-{name}.service"],
            "artifact": {"url": path.as_uri(), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)},
        }
    return Manifest.model_validate({"platform": version, "suites": suites})


class CountingRun:
    def __init__(self):
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return subprocess.run(*args, **kwargs)


def test_rollback_of_20_capabilities_with_a_noop_systemctl(tmp_path):
    systemctl = tmp_path / "systemctl"
    systemctl.write_text(NOOP_SYSTEMCTL)
    systemctl.chmod(0o755)
    www = tmp_path / "www"
    www.mkdir()
    run = CountingRun()
    services = ServiceController([str(systemctl)], run=run)
    with Store.open(tmp_path / "state") as store, ArtifactCache(tmp_path / "state" / "cache", min_free_bytes=0) as cache:
        engine = Engine(store=store, layout=ReleaseLayout(tmp_path / "state"), artifacts=cache, services=services,
                        health=HealthChecker(services, interval_s=0.01), unit_dir=tmp_path / "units", instance_id="bench")
        for version in ("1.0.0", "1.1.0"):
            assert engine.deploy(manifest(www, version), feed_serial=1).status == DeploymentStatus.SUCCEEDED

        timings, calls = [], []
        for _ in range(ROUNDS):
            before = run.calls
            started = time.perf_counter()
            result = engine.rollback(store.revisions.latest().number - 1, catalog=None, reason="bench", actor="root")
            timings.append(time.perf_counter() - started)
            calls.append(run.calls - before)
            assert result.operation.status == RollbackStatus.SUCCEEDED, result.deployment.error
            assert len(result.deployment.changed) == CAPABILITIES

    baseline = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(calls[0]):
            subprocess.run([str(systemctl), "is-active", "x"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        baseline.append(time.perf_counter() - started)

    rollback_s, baseline_s = statistics.median(timings), statistics.median(baseline)
    print(f"\nrollback of {CAPABILITIES} capabilities ({platform.node()}, {os.cpu_count()} cpus): "
          f"{rollback_s * 1000:.0f} ms (target ≤ {TARGET_S * 1000:.0f} ms); "
          f"baseline, {calls[0]} no-op systemctl runs: {baseline_s * 1000:.0f} ms; "
          f"the agent's own share: {(rollback_s - baseline_s) * 1000:.0f} ms")
    at_most("rollback of 20 capabilities", rollback_s, TARGET_S, " s")

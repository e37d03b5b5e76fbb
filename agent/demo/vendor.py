"""The demo's vendor: a key, real artifacts and three publications, built with ``id1 feed build``.

    vendor = DemoVendor(sandbox.vendor, ports, id1=id1_command())
    public_key = vendor.make_key()        # `id1 feed keygen --no-password`
    vendor.build(1)                       # releases-1.json + artifacts → `id1 feed build` → vendor/feed/

Each capability release is a tarball holding ``bin/service.py`` (a tiny HTTP service, see
``capability_service``), its unit in ``systemd/`` (with ``@CURRENT@`` and ``@STATE_DIR@``) and
``VERSION``. The publications tell the story (DEMO_STORY in ``agent.demo.story``):

    1  platform 1.0.0: core 1.0.0 (auth 1.0.0, api 1.0.0), analytics 1.0.0 (report 1.0.0)
    2  + critical advisory ID1-SA-DEMO-0001 on core/auth <1.0.1, fixed by platform 1.0.1 (auth 1.0.1)
    3  + platform 1.1.0 with analytics/report 1.1.0, whose health check fails
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.demo.errors import DemoError

ADVISORY_ID = "ID1-SA-DEMO-0001"
SERVICE_SCRIPT = Path(__file__).with_name("capability_service.py")
BROKEN = {("analytics", "report", "1.1.0")}
"""Releases whose service answers 500 on /healthz."""
HEALTH_TIMEOUT_S = 20
BROKEN_HEALTH_TIMEOUT_S = 8
"""Short, so the failed health check (and the rollback after it) shows within seconds."""

CAPABILITIES = (("core", "auth"), ("core", "api"), ("analytics", "report"))


@dataclass(frozen=True)
class Publication:
    serial: int
    headline: str


PUBLICATIONS = {
    1: Publication(1, "platform 1.0.0 (suites core and analytics)"),
    2: Publication(2, f"critical advisory {ADVISORY_ID} on core/auth <1.0.1, fixed in platform 1.0.1"),
    3: Publication(3, "platform 1.1.0 with analytics/report 1.1.0 (a build that fails its health check)"),
}


def releases(stage: int, *, advisory_published_at: str) -> dict:
    """The release description of publication ``stage`` (each adds to the one before)."""
    description: dict = {
        "valid_for": "1d",
        "platforms": [{"version": "1.0.0", "suites": {"core": "1.0.0", "analytics": "1.0.0"},
                       "notes": "First release of the demo platform"}],
        "suites": [
            {"name": "core", "version": "1.0.0", "capabilities": {"auth": "1.0.0", "api": "1.0.0"}},
            {"name": "analytics", "version": "1.0.0", "capabilities": {"report": "1.0.0"}},
        ],
        "capabilities": [("core", "auth", "1.0.0"), ("core", "api", "1.0.0"), ("analytics", "report", "1.0.0")],
        "advisories": [],
    }
    if stage >= 2:
        description["platforms"].append({"version": "1.0.1", "suites": {"core": "1.0.1", "analytics": "1.0.0"},
                                         "notes": f"Security fix for core/auth ({ADVISORY_ID})"})
        description["suites"].append({"name": "core", "version": "1.0.1", "capabilities": {"auth": "1.0.1", "api": "1.0.0"}})
        description["capabilities"].append(("core", "auth", "1.0.1"))
        description["advisories"].append({
            "id": ADVISORY_ID, "severity": "critical", "capability": "core/auth", "affected": "<1.0.1",
            "summary": "Session tokens accepted after logout",
            "published_at": advisory_published_at,
        })
    if stage >= 3:
        description["platforms"].append({"version": "1.1.0", "suites": {"core": "1.0.1", "analytics": "1.1.0"},
                                         "notes": "New analytics report engine"})
        description["suites"].append({"name": "analytics", "version": "1.1.0", "capabilities": {"report": "1.1.0"}})
        description["capabilities"].append(("analytics", "report", "1.1.0"))
    return description


def unit_name(suite: str, name: str) -> str:
    return f"id1-{suite}-{name}.service"


def artifact_bytes(suite: str, name: str, version: str, *, port: int, python: str) -> bytes:
    """A capability release: its service, its unit and VERSION, as a reproducible .tar.gz."""
    mode = "broken" if (suite, name, version) in BROKEN else "fine"
    unit = (
        f"[Unit]\nDescription=ID-1 demo capability {suite}/{name} {version}\n\n"
        f"[Service]\nType=simple\n"
        f"ExecStart={python} @CURRENT@/bin/service.py {suite}/{name} {version} {port} @STATE_DIR@/services {mode}\n\n"
        f"[Install]\nWantedBy=multi-user.target\n"
    )
    files = [
        ("bin/service.py", SERVICE_SCRIPT.read_text(encoding="utf-8"), 0o755),
        (f"systemd/{unit_name(suite, name)}", unit, 0o644),
        ("VERSION", f"{version}\n", 0o644),
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, text, file_mode in files:
            data = text.encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), file_mode
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


class DemoVendor:
    """Keys, artifacts and feeds of the demo vendor, all under ``folder``."""

    def __init__(self, folder: Path, ports: dict[tuple[str, str], int], *, id1: list[str], python: str, log: Path):
        self.folder = folder
        self.ports = ports
        self.id1 = id1
        self.python = python
        self.log = log
        self.key = folder / "demo-vendor.key"
        self.artifacts = folder / "artifacts"
        self.feed = folder / "feed"
        """What ``id1 feed build --out`` writes: feed.json, its signature and artifacts/."""
        self.advisory_published_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def make_key(self) -> str:
        """A key pair without a password (a demo); the public key, ``RW…``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        done = self._id1("feed", "keygen", "--out", str(self.folder / "demo-vendor"), "--no-password")
        return done.stdout.strip()

    def build(self, stage: int) -> int:
        """Write publication ``stage``'s description and artifacts, build and sign the feed; its serial."""
        description = releases(stage, advisory_published_at=self.advisory_published_at)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        capabilities = []
        for suite, name, version in description["capabilities"]:
            port = self.ports[(suite, name)]
            artifact = self.artifacts / f"{suite}-{name}-{version}.tar.gz"
            artifact.write_bytes(artifact_bytes(suite, name, version, port=port, python=self.python))
            broken = (suite, name, version) in BROKEN
            capabilities.append({
                "suite": suite, "name": name, "version": version, "units": [unit_name(suite, name)],
                "health": {"http": f"http://127.0.0.1:{port}/healthz",
                           "timeout_s": BROKEN_HEALTH_TIMEOUT_S if broken else HEALTH_TIMEOUT_S},
            })
        description["capabilities"] = capabilities
        source = self.folder / f"releases-{stage}.json"
        source.write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
        self._id1("feed", "build", "--source", str(source), "--artifacts", str(self.artifacts),
                  "--out", str(self.feed), "--key", str(self.key))
        return json.loads((self.feed / "feed.json").read_bytes())["serial"]

    def _id1(self, *args: str) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.id1, *args], capture_output=True, text=True, timeout=120)
        with self.log.open("a", encoding="utf-8") as log:
            log.write(f"$ id1 {' '.join(args)}\n{done.stdout}{done.stderr}")
        if done.returncode != 0:
            raise DemoError(f"id1 {' '.join(args[:2])} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()}")
        return done

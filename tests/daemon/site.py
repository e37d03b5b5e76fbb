"""A real daemon on a temp socket, a real feed server and real units (systemctl3): the host the
daemon tests drive with the ``id1`` CLI.

    site = Site()
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})      # signed feed + real tarballs
                                                                   # (site.vendor.publish: test_agent_once's)
    site.configure("manual-approval")
    site.start()                                                   # `id1 agent run` as a subprocess
    result = site.cli("approve", stdin="y\\n")                      # `id1 …` in-process, on its socket
    site.close()                                                   # SIGTERM, stop the units, stop the server

``publish`` writes a feed whose ``core/auth`` releases are tarballs carrying a unit and a tiny
HTTP server: fine (200), broken (500) or slow (answers only after ``start_delay_s``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx

from agent.cli.main import main
from agent.feed.signature import sign
from tests.builders import FeedBuilder
from tests.feedserver import FeedServer
from tests.test_agent_once import Vendor
from tests.test_engine import SYSTEMCTL3

REPO = Path(__file__).resolve().parents[2]
UNIT = "id1-core-auth.service"

SERVER = """
import http.server, os, sys, time
port, state, delay, broken = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4] == "broken"
os.makedirs(state, exist_ok=True)
with open(os.path.join(state, "core-auth.starts"), "a") as log:
    log.write(f"{os.getpid()}\\n")
time.sleep(delay)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if broken else 200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@dataclass(frozen=True)
class Release:
    """One ``core/auth`` release as the vendor ships it."""

    broken: bool = False
    start_delay_s: float = 0.0
    timeout_s: float | None = None
    """Health timeout in the feed (default 3 s for a broken release, 30 s otherwise)."""


def poll_until(condition, *, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def run_cli(args: list[str], *, stdin: str = "") -> CliResult:
    """``id1 ARGS`` in this process, stdin given, stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as exit_:  # argparse: --help, usage errors
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.stdin = saved_stdin
    return CliResult(code, out.getvalue(), err.getvalue())


def artifact(port: int, release: Release, version: str) -> bytes:
    unit = (f"[Service]\nType=simple\nExecStart=/usr/bin/python3 @CURRENT@/bin/serve.py {port} @STATE_DIR@/run "
            f"{release.start_delay_s} {'broken' if release.broken else 'fine'}\n[Install]\nWantedBy=multi-user.target\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, text, mode in [("bin/serve.py", SERVER, 0o755), (f"systemd/{UNIT}", unit, 0o644), ("VERSION", f"{version}\n", 0o644)]:
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


class Site:
    """``start()`` the daemon, ``cli(...)`` it, ``stop()`` it; everything under one temp folder."""

    def __init__(self, root: Path | None = None, *, nofile: int | None = None):
        """``nofile``: the daemon's soft RLIMIT_NOFILE (1024 is what a systemd service gets by
        default); None leaves it the test's."""
        # World-traversable, so throwaway users can reach the socket.
        self._own_root = root is None  # a folder we made goes in close() (ID1_KEEP_SITE=1 keeps it)
        self.root = Path(root or tempfile.mkdtemp(prefix="id1-site-", dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.host_root = self.root / "host"
        (self.host_root / "etc" / "systemd" / "system").mkdir(parents=True)
        self.state = self.root / "state"
        self.socket = self.root / "run" / "agent.sock"
        self.config = self.root / "agent.toml"
        self.server = FeedServer(self.root / "www").__enter__()
        self.vendor = Vendor(self.server)  # its publish() and ours share the key and the service's port
        self.key = self.vendor.key
        self.port = self.vendor.port
        self.process: subprocess.Popen | None = None
        self.log = self.root / "agent.log"
        self._log_file = None
        self.nofile = nofile

    # --- the vendor -------------------------------------------------------------------------

    def publish(self, serial: int, releases: dict[str, Release], platforms: dict[str, str], *, advisory: str | None = None,
                severity: str = "critical", notes: dict[str, str] | None = None) -> None:
        """A signed feed: ``releases`` of core/auth, ``platforms`` {platform version: core/auth version}
        (suite core has the platform's version), an advisory ID1-SA-2026-0001 on ``advisory`` versions."""
        now = datetime.now(timezone.utc)
        feed = FeedBuilder(serial=serial, issued_at=now - timedelta(hours=1), expires_at=now + timedelta(days=13))
        for version, release in releases.items():
            feed.capability("core/auth", version)
            data = artifact(self.port, release, version)
            name = f"core-auth-{version}.tar.gz"
            self.server.publish(f"artifacts/{name}", data)
            entry = feed.data["capabilities"][-1]
            entry["artifact"] = {"url": f"artifacts/{name}", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            timeout = release.timeout_s if release.timeout_s is not None else (3 if release.broken else 30)
            entry["health"] = {"http": f"http://127.0.0.1:{self.port}/", "timeout_s": timeout}
        for platform, auth in platforms.items():
            feed.suite("core", platform, {"auth": auth}).platform(platform, {"core": platform}, notes=(notes or {}).get(platform))
        if advisory:
            feed.advisory("ID1-SA-2026-0001", "core/auth", advisory, severity=severity)
        data = feed.bytes()
        self.server.publish("feed.json", data)
        self.server.publish("feed.json.minisig", sign(data, self.key, trusted_comment=f"serial {serial}").encode())

    # --- the host ---------------------------------------------------------------------------

    def config_text(self, channel: str = "manual-approval", *, extra: str = "", window: str | None = None) -> str:
        policy = f'[policy]\nchannel = "{channel}"\n' + (f'maintenance_window = "{window}"\n' if window else "")
        return (
            f'instance_id = "host-01"\nstate_dir = "{self.state}"\nsocket = "{self.socket}"\n'
            f'[feed]\nurl = "{self.server.url_for("feed.json")}"\ntrusted_keys = ["{self.key.public_key().to_base64()}"]\n'
            f'poll_interval = "1h"\n{policy}'
            f'[services]\nsystemctl = "{SYSTEMCTL3}"\nsystemctl_args = ["--root={self.host_root}"]\n'
            f'unit_dir = "{self.host_root}/etc/systemd/system"\n[health]\nbake_period = "5s"\nwatch_interval = "1s"\n{extra}'
        )

    def configure(self, channel: str = "manual-approval", *, extra: str = "", window: str | None = None) -> Path:
        self.config.write_text(self.config_text(channel, extra=extra, window=window))
        return self.config

    def start(self, timeout: float = 60, *, env: dict[str, str] | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        self._log_file = open(self.log, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "agent.cli.main", "agent", "run", "--config", str(self.config)],
                                        stdout=self._log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        if self.nofile:  # set from outside (no preexec_fn: this process runs threads), long before it serves
            _, hard = resource.prlimit(self.process.pid, resource.RLIMIT_NOFILE)
            resource.prlimit(self.process.pid, resource.RLIMIT_NOFILE, (self.nofile, hard))
        poll_until(lambda: self._answers() or self._died(), timeout=timeout, what=f"the agent to serve {self.socket}")

    def _died(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the agent exited with {self.process.returncode}:\n{self.log.read_text()}")
        return False

    def _answers(self) -> bool:
        try:
            return self.get("/status").status_code == 200
        except (httpx.TransportError, OSError):
            return False

    def get(self, path: str, **kwargs) -> httpx.Response:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket)), base_url="http://id1", timeout=30) as client:
            return client.get(path, **kwargs)

    def cli(self, *args: str, stdin: str = "") -> CliResult:
        """``id1 ARGS --socket SOCKET`` in this process."""
        return run_cli([*args, "--socket", str(self.socket)], stdin=stdin)

    def ok(self, *args: str, stdin: str = "") -> CliResult:
        """``cli`` that must exit 0; what it prints for people must fit an 80-column terminal."""
        result = self.cli(*args, stdin=stdin)
        assert result.code == 0, f"id1 {' '.join(args)} exited {result.code}:\n{result.out}{result.err}"
        if "--json" not in args and args[0] != "report":
            wide = [line for line in result.out.splitlines() if len(line) > 80]
            assert not wide, f"id1 {' '.join(args)} printed lines wider than 80 columns:\n" + "\n".join(wide)
        return result

    def status(self) -> dict:
        return self.ok("status", "--json").json()

    def wait_for(self, condition, *, timeout: float = 60, what: str = "the agent") -> dict:
        """Poll ``id1 status --json`` until ``condition(status)``; the agent must stay alive meanwhile."""
        found: dict = {}

        def check():
            self._died()
            status = self.status()
            found["status"] = status
            return condition(status)

        try:
            poll_until(check, timeout=timeout, interval=0.2, what=what)
        except AssertionError as error:
            raise AssertionError(f"{error}; last status: {json.dumps(found.get('status'), indent=1)}") from None
        return found["status"]

    def audit(self, action: str) -> list[dict]:
        return self.ok("audit", "--action", action, "--json").json()

    def unit_active(self) -> bool:
        done = subprocess.run([str(SYSTEMCTL3), f"--root={self.host_root}", "is-active", UNIT], capture_output=True, text=True, timeout=60)
        return done.stdout.strip() == "active"

    def answers_http(self) -> int | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/", timeout=2).status_code
        except httpx.HTTPError:
            return None

    # --- stopping ---------------------------------------------------------------------------

    def send(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        if self.process is None or self.process.poll() is not None:
            code = self.process.returncode if self.process else 0
        else:
            self.process.send_signal(sig)
            code = self.process.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.process is not None and self.process.poll() is None:
                self.process.kill()
                self.process.wait(30)
            units = self.host_root / "etc" / "systemd" / "system"
            for unit in units.glob("*.service"):
                subprocess.run([str(SYSTEMCTL3), f"--root={self.host_root}", "stop", unit.name], capture_output=True, timeout=60)
            self.server.__exit__(None, None, None)
            if self._own_root and not os.environ.get("ID1_KEEP_SITE"):
                shutil.rmtree(self.root, ignore_errors=True)

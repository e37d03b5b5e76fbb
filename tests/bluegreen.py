"""A host with blue-green capabilities for the tests: real nginx (tests/nginx.py), real units run
by systemctl3, artifacts from a loopback server, the real store and engine.

    with BlueGreenHost(tmp_path) as host:
        host.deploy({"core/api": "1.0.0"})                      # revision 1: colour blue
        host.get("core/api")                                    # "1.0.0 blue", through nginx
        host.deploy({"core/api": "1.1.0"}, modes={"core/api": "broken-behind-proxy"})

A release's service (``SERVICE``) listens on the port it is given (``@PORT@``) and answers
``VERSION COLOUR``; its mode decides ``/healthz``: ``fine`` 200, ``broken`` 500 everywhere,
``broken-behind-proxy`` 500 only through nginx (a release that passes its own colour's check and
fails once users reach it), ``slow`` starts answering after 2 s.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import tarfile
from pathlib import Path

from agent.config import SwitchConfig
from agent.deploy.artifacts import ArtifactCache
from agent.deploy.bluegreen import BlueGreen
from agent.deploy.engine import Engine
from agent.deploy.health import HealthChecker
from agent.deploy.proxy import NginxProxy
from agent.deploy.releases import ReleaseLayout
from agent.deploy.services import ServiceController
from agent.deploy.units import UnitFolder
from agent.planning.manifest import Manifest
from agent.store import Store
from tests.deploy.loopback import ArtifactServer
from tests.nginx import Nginx
from tests.ports import free_port, free_port_range
from tests.test_engine import SYSTEMCTL3

SERVICE = """
import http.server, os, sys, time
port, state, name, version, mode, colour = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
os.makedirs(state, exist_ok=True)
with open(os.path.join(state, f"{name}.starts"), "a") as log:
    log.write(f"{colour} {version} {os.getpid()}\\n")
if mode == "slow":
    time.sleep(2)
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        behind = "X-Forwarded-For" in self.headers
        failing = self.path.startswith("/healthz") and (mode == "broken" or (mode == "broken-behind-proxy" and behind))
        body = f"{version} {colour}\\n".encode()
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
Server(("127.0.0.1", port), Handler).serve_forever()
"""


def blue_green_artifact(ref: str, version: str, mode: str = "fine") -> bytes:
    suite, _, name = ref.partition("/")
    unit = ("[Unit]\nDescription=%N\n[Service]\nType=simple\n"
            f"ExecStart=/usr/bin/python3 @CURRENT@/bin/serve.py @PORT@ @STATE_DIR@/run {suite}-{name} {version} {mode} %i\n"
            "[Install]\nWantedBy=multi-user.target\n")
    return _tarball([("bin/serve.py", SERVICE, 0o755), (f"systemd/id1-{suite}-{name}@.service", unit, 0o644),
                     ("VERSION", f"{version}\n", 0o644)])


def restart_artifact(ref: str, version: str, port: int) -> bytes:
    """The same service as a restart release: one unit, on the public port itself."""
    suite, _, name = ref.partition("/")
    unit = (f"[Service]\nType=simple\nExecStart=/usr/bin/python3 @CURRENT@/bin/serve.py {port} @STATE_DIR@/run "
            f"{suite}-{name} {version} fine main\n[Install]\nWantedBy=multi-user.target\n")
    return _tarball([("bin/serve.py", SERVICE, 0o755), (f"systemd/id1-{suite}-{name}.service", unit, 0o644),
                     ("VERSION", f"{version}\n", 0o644)])


def _tarball(files) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, text, mode in files:
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


class BlueGreenHost:
    def __init__(self, tmp_path: Path, *, drain: str = "0s", colour_ports: int = 8):
        self.tmp_path = tmp_path
        self.root = tmp_path / "host" / "root"
        self.unit_dir = self.root / "etc" / "systemd" / "system"
        self.unit_dir.mkdir(parents=True)
        self.state_dir = tmp_path / "state"
        self.nginx = Nginx(tmp_path / "nginx")
        self.public: dict[str, int] = {}
        self.switch = SwitchConfig(ports=_span(free_port_range(colour_ports)), nginx_include=str(self.nginx.include),
                                   nginx_test=self.nginx.test_command, nginx_reload=self.nginx.reload_command,
                                   drain=drain, listen="127.0.0.1")
        self.services = ServiceController([str(SYSTEMCTL3), f"--root={self.root}"], timeout_s=60)
        self.waited: list[float] = []

    def __enter__(self) -> BlueGreenHost:
        self.nginx.__enter__()
        self.server = ArtifactServer(self.tmp_path / "www").__enter__()
        self.store = Store.open(self.state_dir)
        self.cache = ArtifactCache(self.state_dir / "cache", min_free_bytes=0)
        return self

    def __exit__(self, *exc) -> None:
        for unit in sorted(p.name for p in self.unit_dir.glob("*.service")):
            try:
                self.services.stop([unit])
            except Exception:
                pass
        self.cache.close()
        self.store.close()
        self.server.__exit__(None, None, None)
        self.nginx.__exit__(None, None, None)

    # --- the agent's parts ------------------------------------------------------------------------

    def engine(self, on_step=lambda state: None, *, switch: SwitchConfig | None = None, should_stop=lambda: False) -> Engine:
        switch = switch or self.switch
        layout = ReleaseLayout(self.state_dir)
        health = HealthChecker(self.services, interval_s=0.1)
        bluegreen = BlueGreen(self.store, layout, UnitFolder(self.unit_dir, self.state_dir), self.services, health,
                              NginxProxy.from_config(switch), switch, wait=self.waited.append)
        return Engine(store=self.store, layout=layout, artifacts=self.cache, services=self.services, health=health,
                      unit_dir=self.unit_dir, instance_id="host-01", on_step=on_step, should_stop=should_stop,
                      bluegreen=bluegreen)

    def manifest(self, versions: dict[str, str], modes: dict[str, str] | None = None, *,
                 restart: set[str] = frozenset(), timeout_s: float = 10) -> Manifest:
        """Blue-green releases of ``versions`` (``restart``: those refs as restart releases on
        their public port instead)."""
        modes = modes or {}
        suites: dict = {}
        for ref, version in versions.items():
            public = self.public.setdefault(ref, free_port())
            suite, _, capability = ref.partition("/")
            mode = modes.get(ref, "fine")
            if ref in restart:
                data = restart_artifact(ref, version, public)
                entry = {"units": [f"id1-{suite}-{capability}.service"],
                         "health": {"http": f"http://127.0.0.1:{public}/healthz", "timeout_s": timeout_s}}
            else:
                data = blue_green_artifact(ref, version, mode)
                entry = {"units": [f"id1-{suite}-{capability}@.service"],
                         "health": {"http": "http://127.0.0.1:@PORT@/healthz", "timeout_s": 3 if "broken" in mode else timeout_s},
                         "switch": {"mode": "blue-green", "port": public}}
            name = f"{ref.replace('/', '-')}-{version}-{mode}{'-restart' if ref in restart else ''}.tar.gz"
            self.server.publish(name, data)
            entry.update({"version": version, "source": "latest",
                          "artifact": {"url": self.server.url(name), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}})
            suites.setdefault(suite, {"version": "1.0.0", "capabilities": {}})["capabilities"][capability] = entry
        return Manifest.model_validate({"platform": "1.0.0", "suites": suites})

    def deploy(self, versions: dict[str, str], modes: dict[str, str] | None = None, *, engine: Engine | None = None, **kwargs):
        return (engine or self.engine()).deploy(self.manifest(versions, modes, **kwargs), feed_serial=1)

    # --- what users and systemd see ---------------------------------------------------------------------

    def get(self, ref: str, path: str = "/") -> str | None:
        """What a user gets on ``ref``'s public port (through nginx); None when nothing answers 200."""
        connection = http.client.HTTPConnection("127.0.0.1", self.public[ref], timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read().decode().strip()
            return body if response.status == 200 else None
        except OSError:
            return None
        finally:
            connection.close()

    def answers(self, ref: str, expected: str | None, *, timeout_s: float = 15.0) -> bool:
        """True once a new connection to ``ref``'s public port gets ``expected`` (None: no 200),
        False if it does not before the deadline. Polled: right after a reload one of nginx's
        old workers may still take a new connection and route it by the old include (on a host,
        ``switch.drain`` covers them; here the drain is not waited)."""
        import time

        deadline = time.monotonic() + timeout_s
        while self.get(ref) != expected:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def state(self, unit: str) -> str:
        return self.services.state(unit)

    def colour_states(self, ref: str) -> dict[str, str]:
        suite, _, name = ref.partition("/")
        # systemctl3 prints nothing for a unit without a file (systemd: inactive)
        return {colour: self.state(f"id1-{suite}-{name}@{colour}.service").replace("unknown", "inactive")
                for colour in ("blue", "green")}

    def enabled(self, unit: str) -> str:
        return self.services.is_enabled(unit)

    def starts(self, ref: str) -> list[str]:
        log = self.state_dir / "run" / f"{ref.replace('/', '-')}.starts"
        return [" ".join(line.split()[:2]) for line in log.read_text().splitlines()] if log.exists() else []


def _span(ports: range) -> str:
    return f"{ports.start}-{ports.stop - 1}"

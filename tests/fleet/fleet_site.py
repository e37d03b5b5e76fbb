"""Real daemons in one fleet group (DESIGN.md §13): ``Site``s (tests/daemon/site.py), each an
``id1 agent run`` with its own state folder, systemctl3 root and feed, whose ``[fleet]`` table
points at the test's etcd cluster or FleetLock server. They are driven over their API (from
any thread: ``Site.cli`` swaps ``sys.stdout`` and is for the main thread only), and a rollout's
timeline is read back from what each agent journals, never from sleeps.

    fleet = make(["h1", "h2"], lambda host: etcd_table(host, group, endpoints, slots=1))
    fleet.first_install({"1.0.0": Release()}, {"1.0.0": "1.0.0"})
                                           feed serial 1, every daemon started at once; each
                                           installs the platform at its first poll
    fleet.publish(2, releases, platforms)  on every host's feed (or hosts=[...])
    fleet.check("h1", "h2")                POST /check in the background: it answers once the
                                           deployment it starts has ended, slot wait included
    fleet.wait(lambda: ..., "what")        polled with a deadline; a daemon that died fails it at
                                           once, and a timeout says what each host was doing
    fleet.deployments("h1")                its deployments, newest first, each step with its time
    fleet.kill("h1")                       SIGKILL (a crash): fleet.wait stops expecting it alive
                                           fleets() closes every daemon, its units and feed server

    max_concurrent(intervals)              the most intervals open at one instant (a sweep)

``EnvironmentSensitive``: a release that is fine unless a flag file is in the host's state —
a host-side problem (a missing migration, a full disk) that an admin fixes before resuming.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from agent.feed.signature import sign
from tests.builders import FeedBuilder
from tests.daemon.site import UNIT, Release, Site, artifact

DEADLINE_S = 90.0
POLL_S = 0.5
"""Each poll asks every daemon over its API: more often costs the daemons CPU on a small machine."""

SERVER_FAILING_WHILE_FLAGGED = """
import http.server, os, sys, time
port, state, delay, flag = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), sys.argv[4]
os.makedirs(state, exist_ok=True)
time.sleep(delay)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(500 if os.path.exists(os.path.join(state, flag)) else 200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@dataclass(frozen=True)
class EnvironmentSensitive(Release):
    """A ``core/auth`` release that answers 500 while ``<state_dir>/run/<flag>`` exists on the host."""

    flag: str = "environment-broken"
    timeout_s: float | None = 4.0


def flag_path(site: Site, release: EnvironmentSensitive) -> Path:
    return site.state / "run" / release.flag


def _environment_artifact(port: int, release: EnvironmentSensitive, version: str) -> bytes:
    unit = (f"[Service]\nType=simple\nExecStart=/usr/bin/python3 @CURRENT@/bin/serve.py {port} @STATE_DIR@/run "
            f"{release.start_delay_s} {release.flag}\n[Install]\nWantedBy=multi-user.target\n")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, text, mode in [("bin/serve.py", SERVER_FAILING_WHILE_FLAGGED, 0o755), (f"systemd/{UNIT}", unit, 0o644),
                                 ("VERSION", f"{version}\n", 0o644)]:
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


def publish(site: Site, serial: int, releases: dict[str, Release], platforms: dict[str, str]) -> None:
    """``Site.publish`` (same feed, same key), with ``EnvironmentSensitive`` releases too."""
    if not any(isinstance(release, EnvironmentSensitive) for release in releases.values()):
        site.publish(serial, releases, platforms)
        return
    now = datetime.now(UTC)
    feed = FeedBuilder(serial=serial, issued_at=now - timedelta(hours=1), expires_at=now + timedelta(days=13))
    for version, release in releases.items():
        feed.capability("core/auth", version)
        if isinstance(release, EnvironmentSensitive):
            data = _environment_artifact(site.port, release, version)
        else:
            data = artifact(site.port, release, version)
        name = f"core-auth-{version}.tar.gz"
        site.server.publish(f"artifacts/{name}", data)
        entry = feed.data["capabilities"][-1]
        entry["artifact"] = {"url": f"artifacts/{name}", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        timeout = release.timeout_s if release.timeout_s is not None else (3 if release.broken else 30)
        entry["health"] = {"http": f"http://127.0.0.1:{site.port}/", "timeout_s": timeout}
    for platform, auth in platforms.items():
        feed.suite("core", platform, {"auth": auth}).platform(platform, {"core": platform})
    data = feed.bytes()
    site.server.publish("feed.json", data)
    site.server.publish("feed.json.minisig", sign(data, site.key, trusted_comment=f"serial {serial}").encode())


# --- config -----------------------------------------------------------------------------------

def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(str(value))


def etcd_table(host: str, group: str, endpoints: list[str], **keys) -> str:
    """The ``[fleet]`` table of an etcd host; ``keys``: slots, lease, halt_after, critical_wait."""
    return _table(backend="etcd", group=group, id=host, etcd_endpoints=endpoints, **keys)


def fleetlock_table(host: str, group: str, url: str) -> str:
    return _table(backend="fleetlock", group=group, id=host, fleetlock_url=url)


def _table(**keys) -> str:
    return "[fleet]\n" + "".join(f"{name} = {_toml(value)}\n" for name, value in keys.items())


# --- what the agents record -------------------------------------------------------------------

def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True)
class Step:
    state: str
    at: float
    """Seconds since the epoch (the daemons and the test share the clock)."""
    detail: str


@dataclass(frozen=True)
class Deployment:
    """One deployment as ``GET /deployments`` tells it."""

    host: str
    id: str
    status: str
    state: str
    error: str | None
    platform: str | None
    auth: str | None
    """The core/auth version it deploys."""
    steps: tuple[Step, ...]

    @classmethod
    def from_json(cls, host: str, data: dict) -> Deployment:
        manifest = data.get("manifest") or {}
        auth = manifest.get("suites", {}).get("core", {}).get("capabilities", {}).get("auth", {}).get("version")
        steps = tuple(Step(entry["state"], _epoch(entry["at"]), entry.get("detail") or "") for entry in data["journal"])
        return cls(host, data["id"], data["status"], data["state"], data.get("error"), manifest.get("platform"), auth, steps)

    def at(self, state: str) -> float | None:
        """When the deployment first entered ``state`` (None: never)."""
        return next((step.at for step in self.steps if step.state == state), None)

    def reached(self, state: str) -> bool:
        return self.at(state) is not None

    @property
    def states(self) -> list[str]:
        return [step.state for step in self.steps]

    def interval(self, start: str, end: str) -> tuple[float, float, str] | None:
        """(start, end, label) of the span between two steps; an unfinished span ends now."""
        begin = self.at(start)
        if begin is None:
            return None
        finish = self.at(end)
        return begin, finish if finish is not None else time.time(), f"{self.host}:{self.id}({self.auth})"


def max_concurrent(intervals: Iterable[tuple[float, float, str]]) -> tuple[int, float | None, list[str]]:
    """(most intervals open at one instant, that instant, their labels): a sweep over the
    endpoints, a start at the very instant another ends counted as overlapping.

    Count hosts changing as ``interval("switching", "slot-released")``: the giver journals
    ``slot-released`` before it gives the slot back, and the taker journals ``switching`` after it
    took it and installed the units, so with one slot the intervals never meet."""
    events = []
    for begin, end, label in intervals:
        events.append((begin, 0, label))
        events.append((end, 1, label))
    events.sort(key=lambda event: (event[0], event[1]))
    open_now: list[str] = []
    best: tuple[int, float | None, list[str]] = (0, None, [])
    for moment, kind, label in events:
        if kind == 0:
            open_now.append(label)
            if len(open_now) > best[0]:
                best = (len(open_now), moment, list(open_now))
        else:
            open_now.remove(label)
    return best


# --- the hosts --------------------------------------------------------------------------------

class Fleet:
    """Daemons of one group, by fleet id; ``table(host)`` is each one's ``[fleet]`` table."""

    def __init__(self, hosts: list[str], table: Callable[[str], str], *, channel: str = "auto-update"):
        self.sites: dict[str, Site] = {}
        self._checks = ThreadPoolExecutor(max_workers=2 * len(hosts) + 2, thread_name_prefix="fleet-check")
        self.checks: list[tuple[str, Future]] = []
        self.killed: set[str] = set()
        try:
            for host in hosts:
                site = Site()
                self.sites[host] = site
                site.configure(channel, extra=table(host))
        except BaseException:
            self.close()
            raise

    @property
    def hosts(self) -> list[str]:
        return list(self.sites)

    def first_install(self, releases: dict[str, Release], platforms: dict[str, str]) -> None:
        """Publish feed serial 1 with one platform, start every daemon, and wait until each has
        installed it at its first poll (through the fleet: a first install takes a slot too)."""
        [platform] = platforms
        self.publish(1, releases, platforms)
        self.start()
        self.wait(lambda: self.on_platform(platform), f"every host runs platform {platform}", deadline_s=120)

    def publish(self, serial: int, releases: dict[str, Release], platforms: dict[str, str], *, hosts: Iterable[str] | None = None) -> None:
        for host in hosts if hosts is not None else self.sites:
            publish(self.sites[host], serial, releases, platforms)

    def start(self, hosts: Iterable[str] | None = None) -> None:
        """Start the daemons at once (each takes a couple of seconds to import and serve)."""
        chosen = list(hosts if hosts is not None else self.sites)
        with ThreadPoolExecutor(max_workers=len(chosen)) as starting:
            for future in [starting.submit(self.sites[host].start) for host in chosen]:
                future.result()

    def close(self) -> None:
        """Every daemon (SIGTERM, or what is left of a SIGKILLed one), its units and feed server."""
        errors = []
        with ThreadPoolExecutor(max_workers=max(1, len(self.sites))) as closing:
            for future in [closing.submit(site.close) for site in self.sites.values()]:
                try:
                    future.result()
                except Exception as error:  # noqa: BLE001 (every site is closed; the first error is raised)
                    errors.append(error)
        self._checks.shutdown(wait=False, cancel_futures=True)
        if errors:
            raise errors[0]

    # --- the API, from any thread ---------------------------------------------------------------

    def api(self, host: str, method: str, path: str, *, timeout: float | None = 30, **kwargs) -> httpx.Response:
        site = self.sites[host]
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(site.socket)), base_url="http://id1", timeout=timeout) as client:
            return client.request(method, path, **kwargs)

    def status(self, host: str) -> dict:
        response = self.api(host, "GET", "/status")
        assert response.status_code == 200, response.text
        return response.json()

    def deployments(self, host: str, limit: int = 20) -> list[Deployment]:
        response = self.api(host, "GET", "/deployments", params={"limit": limit})
        assert response.status_code == 200, response.text
        return [Deployment.from_json(host, data) for data in response.json()]

    def check(self, *hosts: str) -> None:
        """``POST /check`` on each host, in the background: the answer comes once the deployment
        it starts has ended (slot wait included); what it said is kept in ``checks``."""
        for host in hosts or self.hosts:
            self.checks.append((host, self._checks.submit(self._check, host)))

    def _check(self, host: str) -> str:
        try:
            response = self.api(host, "POST", "/check", timeout=None)
        except httpx.HTTPError as error:  # the daemon was stopped or killed meanwhile
            return f"no answer: {error}"
        return f"{response.status_code} {response.text}"

    def kill(self, host: str) -> float:
        """SIGKILL the daemon (a crash, a power cut: nothing it holds is given back); when it died."""
        site = self.sites[host]
        self.killed.add(host)
        site.process.kill()
        site.process.wait(30)
        return time.time()

    def alive(self, host: str) -> bool:
        process = self.sites[host].process
        return process is not None and process.poll() is None

    def wait(self, condition: Callable[[], object], what: str, deadline_s: float = DEADLINE_S):
        """Poll ``condition`` until it is truthy; every daemon not killed on purpose must stay alive."""
        deadline = time.monotonic() + deadline_s
        while True:
            for host, site in self.sites.items():
                if host not in self.killed and site.process is not None and site.process.poll() is not None:
                    raise AssertionError(f"{host}: the agent exited with {site.process.returncode}:\n{site.log.read_text()[-4000:]}")
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {deadline_s:g} s: {what}\n{self.describe()}")
            time.sleep(POLL_S)

    def describe(self) -> str:
        """What each host is doing: for a failure message."""
        lines = []
        for host in self.sites:
            if not self.alive(host):
                lines.append(f"  {host}: not running")
                continue
            try:
                status = self.status(host)
                latest = self.deployments(host, limit=1)
            except (httpx.HTTPError, AssertionError) as error:
                lines.append(f"  {host}: no answer ({error})")
                continue
            step = (f"{latest[0].status} {latest[0].states}" + (f" ({latest[0].error})" if latest[0].error else "")
                    if latest else "no deployment")
            lines.append(f"  {host}: platform {status['platform']}, {status['activity']!r}, "
                         f"problems {[p['code'] for p in status['problems']]}; last deployment {step}"
                         + (f"; last error: {status['last_error']}" if status.get("last_error") else ""))
        return "\n".join(lines)

    # --- common conditions ----------------------------------------------------------------------

    def on_platform(self, platform: str, hosts: Iterable[str] | None = None) -> bool:
        """Every host (of ``hosts``) runs ``platform`` and is not deploying."""
        for host in hosts if hosts is not None else self.sites:
            status = self.status(host)
            if status["platform"] != platform or status["deployment"] is not None:
                return False
        return True


@contextlib.contextmanager
def fleets() -> Iterator[Callable[[list[str], Callable[[str], str]], Fleet]]:
    """``make(hosts, table)`` → a ``Fleet``; every one made is closed on the way out, whatever
    the test's outcome. A test module's fixture::

        @pytest.fixture
        def make_fleet():
            with fleets() as make:
                yield make
    """
    made: list[Fleet] = []

    def make(hosts: list[str], table: Callable[[str], str]) -> Fleet:
        fleet = Fleet(hosts, table)
        made.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in made:
            fleet.close()

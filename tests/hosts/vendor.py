"""A vendor for test hosts: signed feeds whose capabilities are real tiny HTTP services.

    vendor = ServiceVendor(FeedServer(folder).start())
    web = Service("core/web", port=free_port())
    vendor.publish({"1.0.0": [web.release("1.0.0")]})            # platform → its capability releases
    vendor.publish({"1.0.0": [...], "1.1.0": [web.release("1.1.0", broken=True)]})
    api = BlueGreenService("core/api", public_port=free_port())
    vendor.publish({"1.0.0": [api.release("1.0.0")]})            # "switch": blue-green on that port

A release's artifact holds ``serve.py`` and ``release.json`` (``serve.py`` answers ``GET /`` with
the version, or exits 1 at once when broken: its unit's ``Restart=on-failure`` then retries until
systemd gives up) and one unit file per listed unit. Extra units, files the release does not list (hostile artifacts) and a slow
start are asked for by name. Feed times are relative to now, so the feeds never expire under a
running test.

A blue-green release (``BlueGreenService``, docs/feed-format.md "Switch") lists one unit
template, ``id1-<suite>-<name>@.service``, whose ``ExecStart`` passes ``@PORT@`` (the colour's
private port) and ``%i`` (the colour) to ``serve.py``: it answers ``GET /`` with ``VERSION
COLOUR``, and ``/healthz`` with 200, or 500 when the release is ``broken_behind_proxy`` and the
request came through nginx (``X-Forwarded-For``): a release that passes its own colour's check and
fails once users reach it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from agent.feed.signature import SecretKey, sign
from tests.builders import FeedBuilder, iso
from tests.feedserver import FeedServer

SERVE = """\
import http.server, json, os, sys, time
port = int(sys.argv[1])
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "release.json")) as file:
    release = json.load(file)
if release["broken"]:
    sys.exit("this release is broken on purpose")
time.sleep(release["start_delay_s"])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(release["version"].encode())
    def log_message(self, *args): pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def service_unit(description: str, exec_start: str) -> str:
    return (f"[Unit]\nDescription={description}\n\n"
            f"[Service]\nExecStart={exec_start}\nRestart=on-failure\nRestartSec=200ms\n\n"
            "[Install]\nWantedBy=multi-user.target\n")


def idle_unit(description: str) -> str:
    """A second unit of a capability: a long sleep, enough to be active and enabled."""
    return service_unit(description, "/bin/sleep infinity")


BLUE_GREEN_SERVE = """\
import http.server, json, os, sys
port, colour = int(sys.argv[1]), sys.argv[2]
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "release.json")) as file:
    release = json.load(file)
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        behind = "X-Forwarded-For" in self.headers
        failing = self.path.startswith("/healthz") and release["broken_behind_proxy"] and behind
        body = f"{release['version']} {colour}".encode()
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


@dataclass(frozen=True)
class Release:
    ref: str
    version: str
    files: dict[str, str]
    units: list[str]
    health: dict | None
    switch: dict | None = None


@dataclass
class Service:
    """One capability of the platform: its HTTP port and the unit that runs it."""

    ref: str
    port: int
    unit: str = ""

    def __post_init__(self) -> None:
        suite, _, name = self.ref.partition("/")
        self.unit = self.unit or f"id1-{suite}-{name}.service"

    def release(self, version: str, *, broken: bool = False, start_delay_s: float = 0.0, health_timeout_s: float | None = None,
                extra_units: tuple[str, ...] = (), unlisted: dict[str, str] | None = None) -> Release:
        """``extra_units`` are more units of the capability (each a long sleep); ``unlisted`` are
        files under ``systemd/`` that the release does not list in ``units``."""
        # The unit files are the same in every version (what changes is in the release folder), as
        # a vendor's usually are: then putting an old version back needs no daemon-reload, which
        # would have hidden a unit's start limit from the test.
        files = {"serve.py": SERVE,
                 "release.json": json.dumps({"version": version, "start_delay_s": start_delay_s, "broken": broken}),
                 f"systemd/{self.unit}": service_unit(f"ID-1 {self.ref}", f"/usr/bin/python3 @CURRENT@/serve.py {self.port}")}
        for unit in extra_units:
            files[f"systemd/{unit}"] = idle_unit(f"ID-1 {self.ref}: {unit}")
        for name, text in (unlisted or {}).items():
            files[f"systemd/{name}"] = text
        timeout = health_timeout_s if health_timeout_s is not None else (5 if broken else 60)
        return Release(self.ref, version, files, [self.unit, *extra_units],
                       {"http": f"http://127.0.0.1:{self.port}/", "timeout_s": timeout})


@dataclass
class BlueGreenService:
    """A blue-green capability: nginx listens on ``public_port``, each colour on the private port
    the agent gives it (``[switch] ports``)."""

    ref: str
    public_port: int

    @property
    def template(self) -> str:
        suite, _, name = self.ref.partition("/")
        return f"id1-{suite}-{name}@.service"

    def unit(self, colour: str) -> str:
        """The colour's instance of the template (``id1-core-api@green.service``)."""
        return self.template.replace("@.", f"@{colour}.")

    def release(self, version: str, *, broken_behind_proxy: bool = False, health_timeout_s: float | None = None) -> Release:
        # The template is the same in every version, as a vendor's usually is; the agent writes
        # each colour's unit file from its own release (@CURRENT@, @PORT@).
        files = {"serve.py": BLUE_GREEN_SERVE,
                 "release.json": json.dumps({"version": version, "broken_behind_proxy": broken_behind_proxy}),
                 f"systemd/{self.template}": service_unit(f"ID-1 {self.ref} (%i)", "/usr/bin/python3 @CURRENT@/serve.py @PORT@ %i")}
        timeout = health_timeout_s if health_timeout_s is not None else (5 if broken_behind_proxy else 60)
        return Release(self.ref, version, files, [self.template],
                       {"http": "http://127.0.0.1:@PORT@/healthz", "timeout_s": timeout},
                       {"mode": "blue-green", "port": self.public_port})


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


@dataclass
class ServiceVendor:
    server: FeedServer
    key: SecretKey = field(default_factory=SecretKey.generate)
    serial: int = 0

    @property
    def public_key(self) -> str:
        return self.key.public_key().to_base64()

    @property
    def feed_url(self) -> str:
        return self.server.url_for("feed.json")

    def publish(self, platforms: dict[str, list[Release]], *, advisory: tuple[str, str] | None = None) -> int:
        """Sign and serve a feed: each platform version is one ``core`` suite release of the same
        version holding the given capability releases; ``advisory`` (ref, affected) is critical."""
        self.serial += 1
        now = datetime.now(timezone.utc)
        feed = FeedBuilder(serial=self.serial, issued_at=now - timedelta(minutes=5), expires_at=now + timedelta(days=7))
        seen: set[tuple[str, str]] = set()
        for platform, releases in platforms.items():
            for release in releases:
                if (release.ref, release.version) in seen:
                    continue
                seen.add((release.ref, release.version))
                data = tarball(release.files)
                name = f"artifacts/{release.ref.replace('/', '-')}-{release.version}.tar.gz"
                self.server.publish(name, data)
                feed.capability(release.ref, release.version, units=release.units, switch=release.switch)
                entry = feed.data["capabilities"][-1]
                entry["artifact"] = {"url": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                if release.health:
                    entry["health"] = release.health
            suites: dict[str, dict[str, str]] = {}
            for release in releases:
                suite, _, name = release.ref.partition("/")
                suites.setdefault(suite, {})[name] = release.version
            for suite, capabilities in suites.items():
                feed.suite(suite, platform, capabilities)
            feed.platform(platform, {suite: platform for suite in suites})
            feed.data["platforms"][-1]["released_at"] = iso(now - timedelta(minutes=10))
        if advisory:
            feed.advisory("ID1-SA-TEST-0001", advisory[0], advisory[1])
            feed.data["advisories"][-1]["published_at"] = iso(now - timedelta(minutes=1))
        data = feed.bytes()
        self.server.publish("feed.json", data)
        self.server.publish("feed.json.minisig", sign(data, self.key, trusted_comment=f"serial {self.serial}").encode())
        return self.serial

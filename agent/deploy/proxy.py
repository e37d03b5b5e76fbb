"""The nginx side of a blue-green switch (docs/feed-format.md "Switch", docs/configuration.md [switch]).

The host's nginx — the operator's: the agent never starts or stops it — listens on the public
port of each blue-green capability and passes requests to the capability's live colour, which
listens on a private loopback port. The agent moves traffic only by rewriting one http-context
include file (``switch.nginx_include``) and reloading nginx, whose old workers finish the
requests they hold while new ones take the new connections.

    pure                                          the edge: NginxProxy(include, test, reload)
    assign_ports(public, kept, range)             apply(text, loaded=probe)
      → ColourPorts (blue, green) per capability    0. nginx serves this include already → done
                                                    1. write the include (temp, fsync, rename; 0644)
    render_include(live, listen) → text             2. run nginx_test    non-zero → put back, ProxyRefused
    loaded_probe(live, listen) → LoadedProbe        3. run nginx_reload  non-zero → put back, ProxyError
                                                    4. (probe given) wait until nginx answers with
                                                       this text's generation; not in time → put
                                                       back, reload, ProxyError
                                                  current() → the include's text, None without one

"Put back" is the previous include, byte for byte (or no file, when there was none), so after
any failure nginx runs, and the file says, what they did before. ``apply`` refuses to replace a
file that does not start with the agent's header line: a mistyped ``nginx_include`` cannot
overwrite the operator's own configuration.

**Why wait for a generation (step 4).** ``nginx -t`` does not bind sockets, and ``nginx -s
reload`` (which ``systemctl reload nginx`` runs) returns once the master is signalled, before it
has read the new file. A public port that something else holds passes both, then the master
fails to bind it, logs it and keeps the old configuration: traffic never moved. Every server of
the include answers a request carrying the header ``X-Id1-Probe`` itself (``return 200``, the
service never sees it) with the include's generation, a digest of what it routes where; only a
worker that runs this very include answers with it, so once one does on a new connection, nginx
has loaded it. (A client that sends that header gets the same one line: the ref, the live colour
and the digest, nothing else.)

**Ports.** Each blue-green capability has two private ports from ``switch.ports``, one per
colour. The caller keeps the assignment (the engine, in its store) and passes it back as
``kept``: ``assign_ports`` keeps every kept pair that still fits (both ports in the range, not
taken by another capability), so a colour keeps its port from one deployment, restart or agent
version to the next, and a running colour never has to move. A capability without a pair takes
the lowest free aligned pair (``LOW+2k``, ``LOW+2k+1``), in the order of their names, so the
result is a function of its inputs alone. A capability gone from ``public`` gives its pair back.
A public port inside the range is refused rather than worked around: the operator chose a range
that overlaps a service's port, and should move it.

**The include.** Deterministic (capabilities in name order), an agent header first, then per
capability an ``upstream`` (the live colour's port, with idle keep-alive connections so a steady
load does not open a connection per request) and a ``server`` on ``LISTEN:PUBLIC_PORT`` that
passes everything through as directly as it can: HTTP/1.1 to the upstream, the client's Host
and addresses in the usual headers, WebSocket upgrades, no body size limit and no buffering
either way (the service keeps deciding its limits and streams as it writes). IPv6 listen
addresses are bracketed.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import re
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.config import SwitchConfig
from agent.errors import PortsUnavailable, ProxyError, ProxyRefused
from agent.feed.units import COLOURS
from agent.files import fsync_folder, write_atomically
from agent.safe_text import escape_unsafe

HEADER = "# Written by id1-agent (agent/deploy/proxy.py): the public ports of its blue-green capabilities."
"""The include's first line: how ``apply`` knows the file it replaces is its own."""
PROBE_HEADER = "X-Id1-Probe"
COMMAND_TIMEOUT_S = 60.0
LOADED_WAIT_S = 10.0
"""How long ``apply`` waits for nginx to serve the new include after the reload command."""
UPSTREAM_KEEPALIVE = 32
"""Idle connections each nginx worker keeps open to the live colour."""
_PROBE_INTERVAL_S = 0.05
_PROBE_TIMEOUT_S = 2.0
_MOST_SAID = 600  # characters of nginx's message quoted in an error
_NGINX_PROBLEM = re.compile(r"\[(?:emerg|alert|crit|error)\]")


# ── ports ────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class ColourPorts:
    """The private loopback ports of a capability's two colours."""

    blue: int
    green: int

    def of(self, colour: str) -> int:
        if colour not in COLOURS:
            raise ValueError(f"{colour!r} is not a colour ({' or '.join(COLOURS)})")
        return self.blue if colour == "blue" else self.green

    def to_json(self) -> dict[str, int]:
        return {"blue": self.blue, "green": self.green}

    @classmethod
    def from_json(cls, data: Mapping[str, int]) -> ColourPorts:
        return cls(blue=int(data["blue"]), green=int(data["green"]))


def assign_ports(public: Mapping[str, int], kept: Mapping[str, ColourPorts], ports: range) -> dict[str, ColourPorts]:
    """Two private ports from ``ports`` for each blue-green capability (ref → its public port),
    keeping the pairs of ``kept`` that still fit (see "Ports" above). PortsUnavailable when a
    public port lies in the range or the range is too small."""
    span = f"{ports.start}-{ports.stop - 1}"
    inside = sorted(f"{ref} ({port})" for ref, port in public.items() if port in ports)
    if inside:
        raise PortsUnavailable(f"switch.ports {span} holds the public port of {', '.join(inside)}: the colours' "
                               "private ports and the public ones must not meet; move switch.ports")
    assigned: dict[str, ColourPorts] = {}
    taken: set[int] = set()
    for ref in sorted(public):
        pair = kept.get(ref)
        if pair is not None and pair.blue != pair.green and {pair.blue, pair.green} <= set(ports) - taken:
            assigned[ref] = pair
            taken |= {pair.blue, pair.green}
    free = (ColourPorts(low, low + 1) for low in range(ports.start, ports.stop - 1, 2)
            if low not in taken and low + 1 not in taken)
    for ref in sorted(set(public) - set(assigned)):
        pair = next(free, None)
        if pair is None:
            raise PortsUnavailable(f"switch.ports {span} has no two free ports left for {ref}: {len(public)} blue-green "
                                   f"capabilities need {2 * len(public)} ports; widen switch.ports")
        assigned[ref] = pair
    return assigned


# ── the include ──────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where nginx sends a blue-green capability's requests: its public port, its live colour
    and that colour's private port."""

    public_port: int
    colour: str
    colour_port: int


@dataclass(frozen=True, slots=True)
class LoadedProbe:
    """A request that only an nginx running a given include answers with ``answer``."""

    host: str
    port: int
    answer: str


def render_include(live: Mapping[str, Upstream], listen: str) -> str:
    """The include that routes each public port to its live colour (see "The include" above)."""
    address = _listen_address(listen)
    generation = include_generation(live, listen)
    lines = [
        HEADER,
        "# The agent replaces this file whole at every switch (local changes are lost); nginx.conf's http",
        "# block includes it (switch.nginx_include). See docs/configuration.md, [switch].",
        f"# generation {generation}",
    ]
    if live:
        lines += [
            "",
            "# WebSocket upgrades pass through; other requests keep the upstream connection alive.",
            "map $http_upgrade $id1_upstream_connection {",
            "    default upgrade;",
            '    ""      "";',
            "}",
        ]
    for ref, upstream in sorted(live.items()):
        name = f"id1_{upstream.public_port}"
        lines += [
            "",
            f"# {ref}: live colour {upstream.colour}",
            f"upstream {name} {{",
            f"    server 127.0.0.1:{upstream.colour_port};",
            f"    keepalive {UPSTREAM_KEEPALIVE};",
            "}",
            "",
            "server {",
            f"    listen {address}:{upstream.public_port};",
            "    location / {",
            f"        # The agent's check that nginx runs this file (agent.deploy.proxy); never reaches {ref}.",
            f"        if ($http_{PROBE_HEADER.lower().replace('-', '_')}) {{",
            f'            return 200 "{_probe_answer(ref, upstream, generation)}\\n";',
            "        }",
            f"        proxy_pass http://{name};",
            "        proxy_http_version 1.1;",
            "        proxy_set_header Host $http_host;",
            "        proxy_set_header Upgrade $http_upgrade;",
            "        proxy_set_header Connection $id1_upstream_connection;",
            "        proxy_set_header X-Real-IP $remote_addr;",
            "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
            "        proxy_set_header X-Forwarded-Proto $scheme;",
            "        proxy_buffering off;",
            "        proxy_request_buffering off;",
            "        client_max_body_size 0;",
            "    }",
            "}",
        ]
    return "\n".join(lines) + "\n"


def include_generation(live: Mapping[str, Upstream], listen: str) -> str:
    """A digest of what the include routes where: equal for equal includes, and the answer of
    its probe."""
    _check_upstreams(live)
    routes = {ref: [u.public_port, u.colour, u.colour_port] for ref, u in live.items()}
    text = json.dumps({"listen": str(ipaddress.ip_address(listen)), "routes": routes}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def loaded_probe(live: Mapping[str, Upstream], listen: str) -> LoadedProbe | None:
    """How to tell that nginx runs the include ``render_include(live, listen)`` made: its first
    server, asked on the address it listens on (loopback when it listens on every address).
    None for an include without servers (nothing to route, nothing to wait for)."""
    if not live:
        return None
    ref, upstream = min(live.items())
    return LoadedProbe(public_address(listen), upstream.public_port, _probe_answer(ref, upstream, include_generation(live, listen)))


def public_address(listen: str) -> str:
    """Where this host reaches the public ports: the listen address, or loopback when nginx
    listens on every address."""
    address = ipaddress.ip_address(listen)
    if address.is_unspecified:
        return "::1" if address.version == 6 else "127.0.0.1"
    return str(address)


def _probe_answer(ref: str, upstream: Upstream, generation: str) -> str:
    return f"id1 {ref} {upstream.colour} {generation}"


def _listen_address(listen: str) -> str:
    address = ipaddress.ip_address(listen)
    return f"[{address}]" if address.version == 6 else str(address)


def _check_upstreams(live: Mapping[str, Upstream]) -> None:
    owners: dict[int, str] = {}
    for ref, upstream in sorted(live.items()):
        if upstream.colour not in COLOURS:
            raise ValueError(f"{ref}: {upstream.colour!r} is not a colour ({' or '.join(COLOURS)})")
        for port in (upstream.public_port, upstream.colour_port):
            if not 1 <= port <= 65535:
                raise ValueError(f"{ref}: {port} is not a port")
        other = owners.setdefault(upstream.public_port, ref)
        if other != ref:
            raise PortsUnavailable(f"{other} and {ref} both declare public port {upstream.public_port}: nginx can "
                                   "listen there for one of them only")


# ── the edge ─────────────────────────────────────────────────────────────────────────────────


def ask_probe(probe: LoadedProbe, timeout_s: float = _PROBE_TIMEOUT_S) -> str | None:
    """What nginx answers ``probe`` on a new connection (so a worker that runs the newest
    configuration takes it); None when nothing answers."""
    connection = http.client.HTTPConnection(probe.host, probe.port, timeout=timeout_s)
    try:
        connection.request("GET", "/", headers={PROBE_HEADER: "1", "Connection": "close"})
        response = connection.getresponse()
        return response.read(1024).decode("utf-8", "replace").strip() if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


class NginxProxy:
    """Writes, tests and loads the include; puts the previous one back on any failure."""

    def __init__(
        self,
        include_path: str | Path,
        test_command: Sequence[str],
        reload_command: Sequence[str],
        *,
        timeout_s: float = COMMAND_TIMEOUT_S,
        run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
        ask: Callable[[LoadedProbe], str | None] = ask_probe,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.include_path = Path(include_path)
        self.test_command = list(test_command)
        self.reload_command = list(reload_command)
        self.timeout_s = timeout_s
        self._run = run
        self._ask = ask
        self._clock = clock
        self._sleep = sleep

    @classmethod
    def from_config(cls, switch: SwitchConfig, **kwargs) -> NginxProxy:
        return cls(switch.nginx_include, switch.nginx_test, switch.nginx_reload, **kwargs)

    def current(self) -> str | None:
        """The include as it is on disk (what nginx runs once ``apply`` has returned), or None."""
        data = self._read()
        return None if data is None else data.decode("utf-8", "replace")

    def apply(self, text: str, *, loaded: LoadedProbe | None = None, wait_s: float = LOADED_WAIT_S) -> None:
        """Make ``text`` the include nginx runs (steps 1–4 above), or raise with the previous
        include back in place. ``loaded`` is ``loaded_probe()`` of what ``text`` was rendered
        from: without it, ``apply`` returns once the reload command has, not once nginx runs it."""
        if not text.startswith(HEADER + "\n"):
            raise ValueError("not an include made by render_include")
        previous = self._read()
        if previous is not None and not previous.startswith(HEADER.encode()):
            raise ProxyError(f"{self.include_path} was not written by id1-agent (its first line is not the agent's "
                             "header): refusing to replace it; point switch.nginx_include at a file of its own")
        if previous == text.encode("utf-8") and loaded is not None and self._ask(loaded) == loaded.answer:
            return  # nginx serves this very include already: a reload would only close idle connections
        self._write(text.encode("utf-8"), "write")
        try:
            self._command(self.test_command, "switch.nginx_test", ProxyRefused)
            self._command(self.reload_command, "switch.nginx_reload", ProxyError)
        except ProxyError as error:
            raise self._put_back(previous, error, reload=False) from None
        if loaded is not None and not self._wait_loaded(loaded, wait_s):
            error = ProxyError(f"nginx did not load {self.include_path} within {wait_s:g} s of "
                               f"{' '.join(self.reload_command)} (a public port that another program holds? "
                               "nginx's error log says)")
            raise self._put_back(previous, error, reload=True) from None

    # --- helpers ------------------------------------------------------------------------------

    def _read(self) -> bytes | None:
        try:
            return self.include_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise ProxyError(f"cannot read {self.include_path}: {error.strerror or error}") from None

    def _write(self, data: bytes, what: str) -> None:
        try:
            write_atomically(self.include_path, data, mode=0o644)
        except OSError as error:
            raise ProxyError(f"cannot {what} {self.include_path}: {error.strerror or error}") from None

    def _command(self, argv: list[str], key: str, failure: type[ProxyError]) -> None:
        shown = escape_unsafe(" ".join(argv))
        try:
            done = self._run(argv, capture_output=True, text=True, errors="replace", timeout=self.timeout_s,
                             stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise ProxyError(f"cannot run {escape_unsafe(argv[0])!r} ({key}): no such command") from None
        except PermissionError:
            raise ProxyError(f"cannot run {escape_unsafe(argv[0])!r} ({key}): permission denied") from None
        except OSError as error:
            raise ProxyError(f"cannot run {escape_unsafe(argv[0])!r} ({key}): {error.strerror or error}") from None
        except subprocess.TimeoutExpired:
            raise ProxyError(f"{shown} ({key}) did not finish within {self.timeout_s:g} s") from None
        if done.returncode != 0:
            said = _nginx_said(done.stderr or done.stdout or "")
            if failure is ProxyRefused:
                raise ProxyRefused(f"nginx refused {self.include_path} ({shown}, exit {done.returncode}): {said}")
            raise failure(f"{shown} ({key}) failed (exit {done.returncode}): {said}")

    def _wait_loaded(self, probe: LoadedProbe, wait_s: float) -> bool:
        deadline = self._clock() + wait_s
        while True:
            if self._ask(probe) == probe.answer:
                return True
            if self._clock() >= deadline:
                return False
            self._sleep(_PROBE_INTERVAL_S)

    def _put_back(self, previous: bytes | None, error: ProxyError, *, reload: bool) -> ProxyError:
        """The previous include back (and reloaded, when nginx may have read the failed one);
        ``error`` said with how that went."""
        try:
            if previous is None:
                self.include_path.unlink(missing_ok=True)
                fsync_folder(self.include_path.parent)
            else:
                self._write(previous, "put back")
        except (OSError, ProxyError) as failed:
            detail = failed.strerror if isinstance(failed, OSError) and failed.strerror else failed
            return type(error)(f"{error}; putting the previous include back failed too ({detail}): "
                               f"{self.include_path} may hold the failed one")
        if reload:
            try:
                self._command(self.reload_command, "switch.nginx_reload", ProxyError)
            except ProxyError as failed:
                return type(error)(f"{error}; the previous include is back but reloading it failed: {failed}")
        what = "the previous include is back" if previous is not None else f"{self.include_path} is removed again"
        return type(error)(f"{error}; {what}, nothing switched")


def _nginx_said(output: str) -> str:
    """nginx's complaint in one safe line: its [emerg]/[alert]/[crit]/[error] lines, or all it said."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    said = "; ".join([line for line in lines if _NGINX_PROBLEM.search(line)] or lines) or "no output"
    said = escape_unsafe(said)
    return said if len(said) <= _MOST_SAID else said[:_MOST_SAID] + "…"

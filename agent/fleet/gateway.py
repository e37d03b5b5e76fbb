"""etcd v3 through its JSON gateway (``POST {endpoint}/v3/...``, etcd 3.4+), over httpx.

Keys and values travel base64-encoded, 64-bit numbers as JSON strings; etcd's own client
libraries speak gRPC, which would bring a code generator's output and a C extension for what is
here a dozen small requests, so this module speaks the gateway directly: the requests and their
answers are documented by etcd (``Documentation/dev-guide/api_grpc_gateway.md``) and read the
same as ``etcdctl``'s.

Each request goes to the endpoint that answered last, then to the others in turn. What comes
back is translated here, at the boundary:

    an answer                          → its JSON (numbers still strings: see ``number``)
    connection refused, timeout, 5xx,  → next endpoint; after the last, FleetUnreachable
    "no leader", "request timed out"     (an unreachable cluster is a wait, not an error)
    code 5 NotFound (a lease that      → None with ``missing_ok``, else FleetUnavailable
    expired)
    401/403, auth required, not a      → FleetUnavailable when every endpoint said so: the
    gateway (404 page, not JSON)         config is wrong (the message names endpoint and cause)
    this gateway closed (stopping)     → FleetUnavailable, also to a watch still open in a thread

``requests`` counts every HTTP request sent (the scale benchmark reads it).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx

from agent.errors import FleetUnavailable, FleetUnreachable
from agent.fleet.model import one_line

REQUEST_TIMEOUT = httpx.Timeout(5.0, connect=2.0)
"""A member cut off from its peers answers "request timed out" after about 7 s (its own request
timeout): 5 s is enough for a healthy cluster under load, and then the next member is asked."""
_UNAVAILABLE_CODES = {1, 4, 8, 10, 13, 14}  # canceled, deadline, exhausted, aborted, internal, unavailable
_AUTH_CODES = {7, 16}  # permission denied, unauthenticated
_NOT_FOUND = 5


def encode(text: str | bytes) -> str:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def decode(text: str | None) -> str:
    return base64.b64decode(text or "").decode("utf-8", "replace")


def number(value: str | int | None) -> int:
    """etcd's int64 fields arrive as JSON strings, and zero values not at all."""
    return int(value or 0)


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int

    @classmethod
    def from_json(cls, kv: dict) -> KeyValue:
        return cls(decode(kv.get("key")), decode(kv.get("value")), number(kv.get("create_revision")),
                   number(kv.get("mod_revision")), number(kv.get("lease")))


@dataclass(frozen=True)
class WatchOutcome:
    revision: int
    """The cluster's revision the outcome was read at: watch again from revision + 1."""
    events: tuple[tuple[str, KeyValue], ...] = ()
    """("PUT" | "DELETE", kv) in order; empty when the watch ended without one (timed out,
    compacted: the caller reads the state afresh)."""


class EtcdGateway:
    def __init__(self, endpoints: Sequence[str], *, http: httpx.Client | None = None,
                 timeout: httpx.Timeout = REQUEST_TIMEOUT):
        if not endpoints:
            raise FleetUnavailable("fleet.etcd_endpoints is empty: list the etcd cluster's client URLs")
        self.endpoints = [endpoint.rstrip("/") for endpoint in endpoints]
        self._timeout = timeout
        self._http = http if http is not None else httpx.Client(timeout=timeout, trust_env=False)
        self._owns_http = http is None
        self._preferred = 0
        self._count_lock = threading.Lock()
        self.requests = 0

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # -- requests ---------------------------------------------------------------------------------

    def call(self, path: str, body: dict, *, missing_ok: bool = False) -> dict | None:
        """POST ``body`` to ``/v3/{path}`` of the first endpoint that answers; see the module docstring."""
        unreachable: list[str] = []
        misconfigured: list[str] = []
        for index in self._order():
            endpoint = self.endpoints[index]
            self._check_open()
            self._count()
            try:
                response = self._http.post(f"{endpoint}/v3/{path}", json=body, timeout=self._timeout)
            except httpx.UnsupportedProtocol as error:
                misconfigured.append(f"{endpoint}: {one_line(error)}")
                continue
            except (httpx.TransportError, OSError) as error:
                unreachable.append(f"{endpoint}: {_transport_problem(error)}")
                continue
            outcome = self._judge(endpoint, response, missing_ok)
            if isinstance(outcome, _Unreachable):
                unreachable.append(outcome.text)
            elif isinstance(outcome, _Misconfigured):
                misconfigured.append(outcome.text)
            else:
                self._preferred = index
                return outcome.answer
        if misconfigured and not unreachable:
            raise FleetUnavailable(f"etcd cannot be used: {'; '.join(misconfigured)}")
        raise FleetUnreachable("; ".join(unreachable + misconfigured))

    def range(self, key: str, range_end: str | None = None, **options) -> tuple[list[KeyValue], int, int]:
        """(kvs, count, revision) of ``[key, range_end)``; ``options`` as etcd names them."""
        body = {"key": encode(key), **options}
        if range_end is not None:
            body["range_end"] = encode(range_end)
        answer = self.call("kv/range", body) or {}
        kvs = [KeyValue.from_json(kv) for kv in answer.get("kvs", [])]
        return kvs, number(answer.get("count")), number(answer.get("header", {}).get("revision"))

    def txn(self, compare: list[dict], success: list[dict], failure: list[dict]) -> Txn:
        answer = self.call("kv/txn", {"compare": compare, "success": success, "failure": failure}) or {}
        return Txn(bool(answer.get("succeeded")), number(answer.get("header", {}).get("revision")),
                   answer.get("responses", []))

    def watch(self, key: str, *, start_revision: int, read_timeout: float, range_end: str | None = None) -> WatchOutcome:
        """Watch ``key`` (or ``[key, range_end)``) from ``start_revision`` until its first change,
        for at most ``read_timeout`` seconds of silence. One request."""
        request = {"key": encode(key), "start_revision": str(start_revision)}
        if range_end is not None:
            request["range_end"] = encode(range_end)
        unreachable: list[str] = []
        for index in self._order():
            endpoint = self.endpoints[index]
            self._check_open()
            self._count()
            try:
                with self._http.stream("POST", f"{endpoint}/v3/watch", json={"create_request": request},
                                       timeout=httpx.Timeout(read_timeout, connect=self._timeout.connect)) as response:
                    if response.status_code != 200:
                        response.read()
                        unreachable.append(f"{endpoint}: HTTP {response.status_code} {one_line(response.text, 120)}")
                        continue
                    self._preferred = index
                    return _first_change(response.iter_lines(), start_revision)
            except httpx.ReadTimeout:
                return WatchOutcome(start_revision - 1)
            except (httpx.TransportError, OSError) as error:
                unreachable.append(f"{endpoint}: {_transport_problem(error)}")
        raise FleetUnreachable("; ".join(unreachable))

    # -- internals --------------------------------------------------------------------------------

    def _order(self) -> list[int]:
        first = self._preferred
        return [first] + [index for index in range(len(self.endpoints)) if index != first]

    def _check_open(self) -> None:
        # A watch or an owed request still running in a thread when the coordinator is closed (the
        # agent stopping) ends as our error, which those threads handle, not httpx's RuntimeError.
        if self._http.is_closed:
            raise FleetUnavailable("the etcd client is closed: the agent is stopping")

    def _count(self) -> None:
        with self._count_lock:
            self.requests += 1

    def _judge(self, endpoint: str, response: httpx.Response, missing_ok: bool):
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            text = f"{endpoint}: HTTP {response.status_code}, not an etcd v3 JSON gateway answer ({one_line(response.text, 80)!s})"
            return _Unreachable(text) if response.status_code >= 500 else _Misconfigured(
                text + ": is it an etcd 3.4+ client URL?")
        if response.status_code == 200 and "error" not in answer:
            return _Answer(answer)
        code = answer.get("code")
        message = one_line(answer.get("message") or answer.get("error") or f"HTTP {response.status_code}", 200)
        if code == _NOT_FOUND and missing_ok:
            return _Answer(None)
        if code in _AUTH_CODES or response.status_code in (401, 403):
            return _Misconfigured(f"{endpoint}: {message} (etcd authentication is not configured in the agent: "
                                  "give the group's keys to unauthenticated clients or put a proxy in front)")
        if code in _UNAVAILABLE_CODES or response.status_code >= 500 or "no leader" in message or "timed out" in message:
            return _Unreachable(f"{endpoint}: {message}")
        return _Misconfigured(f"{endpoint}: {message}")


@dataclass(frozen=True)
class Txn:
    succeeded: bool
    revision: int
    responses: list[dict]

    def kvs(self, index: int) -> list[KeyValue]:
        """The kvs of the range request at ``index`` of the branch that ran."""
        answer = self.responses[index].get("response_range", {}) if index < len(self.responses) else {}
        return [KeyValue.from_json(kv) for kv in answer.get("kvs", [])]

    def count(self, index: int) -> int:
        answer = self.responses[index].get("response_range", {}) if index < len(self.responses) else {}
        return number(answer.get("count"))


@dataclass(frozen=True)
class _Answer:
    answer: dict | None


@dataclass(frozen=True)
class _Unreachable:
    text: str


@dataclass(frozen=True)
class _Misconfigured:
    text: str


def _transport_problem(error: BaseException) -> str:
    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(error, httpx.ConnectError):
        cause = error.__cause__ or error.__context__
        text = str(getattr(cause, "strerror", "") or cause or error)
        return f"cannot connect ({one_line(text, 120)})"
    return one_line(f"{type(error).__name__}: {error}", 160)


def _first_change(lines: Iterator[str], start_revision: int) -> WatchOutcome:
    revision = start_revision - 1
    for line in lines:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            return WatchOutcome(revision)
        if "error" in message:
            return WatchOutcome(revision)
        result = message.get("result", {})
        revision = max(revision, number(result.get("header", {}).get("revision")))
        if result.get("canceled") or result.get("compact_revision"):
            return WatchOutcome(revision)
        events = tuple((event.get("type", "PUT"), KeyValue.from_json(event.get("kv", {})))
                       for event in result.get("events", []))
        if events:
            return WatchOutcome(revision, events)
    return WatchOutcome(revision)


# Request bodies, named as etcd's API names them.

def put(key: str, value: str, *, lease: int = 0) -> dict:
    request = {"key": encode(key), "value": encode(value)}
    if lease:
        request["lease"] = str(lease)
    return {"request_put": request}


def delete(key: str, range_end: str | None = None) -> dict:
    request = {"key": encode(key)}
    if range_end is not None:
        request["range_end"] = encode(range_end)
    return {"request_delete_range": request}


def get(key: str, range_end: str | None = None, **options) -> dict:
    request = {"key": encode(key), **options}
    if range_end is not None:
        request["range_end"] = encode(range_end)
    return {"request_range": request}


def absent(key: str, range_end: str | None = None) -> dict:
    """Compare: no key at ``key`` (or none in ``[key, range_end)``): create_revision is 0."""
    compare = {"key": encode(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
    if range_end is not None:
        compare["range_end"] = encode(range_end)
    return compare


def created_at(key: str, revision: int) -> dict:
    return {"key": encode(key), "target": "CREATE", "result": "EQUAL", "create_revision": str(revision)}


def modified_at(key: str, revision: int) -> dict:
    return {"key": encode(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(revision)}

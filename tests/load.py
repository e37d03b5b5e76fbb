"""A steady HTTP load on one port, as users would send it while an update runs (the switch benchmark).

    with Load("127.0.0.1", port, rate=200) as load:     # sends from here on
        ...                                             # the update
    summary = load.summary()                            # stopped at the end of the with

Request ``i`` is due at ``t0 + i / rate``: a schedule, not a pace kept by sleeping between
requests, so a slow answer never thins the load out (a thread that is late sends at once; how
late the latest was is in the summary). Even requests go on a new connection each
(``Connection: close``) from a pool of threads; odd ones go in turn on ``keepalive``
persistent connections, each owned by one thread that reuses it until the server closes it.

Every request is ``GET path``, written and read on a raw socket, so the client knows whether any
byte of the answer came back. A request fails unless it is answered 2xx, with one exception, the
one RFC 9112 §9.3.1 makes (and browsers and common HTTP clients take): a request on a *reused*
keep-alive connection that the server closed before sending any byte of an answer (EOF, or a
reset, when writing or reading; nginx closes idle keep-alive connections on a reload) is sent
again once, on a new connection; answered 2xx then, it counts as ``retried``, not failed.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Self

REQUEST_TIMEOUT_S = 5.0
"""A request not answered within this (connecting, and each read) fails as a timeout."""
RETRYABLE = frozenset({"closed", "reset"})


class Unanswered(Exception):
    """The request got no byte of an answer: ``kind`` is refused, closed, reset or timeout."""

    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind


class BadAnswer(Exception):
    """Some of an answer came, not all of it (truncated, reset or timed out midway, or garbled)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: str
    close: bool  # the server closes the connection after it


@dataclass(frozen=True, slots=True)
class Outcome:
    due: float  # time.monotonic() it was scheduled for
    sent: float  # when it was sent (first attempt)
    done: float  # when it ended (answered, or given up)
    ok: bool
    retried: str | None = None  # sent again once on a new connection, after this (closed, reset)
    body: str | None = None  # the 2xx answer's body
    failure: str | None = None  # why it failed (refused, closed, reset, timeout, truncated, status 502…)
    keepalive: bool = False


@dataclass(frozen=True, slots=True)
class Summary:
    sent: int
    failed: int
    retried: int
    longest_gap_s: float  # the longest time between two consecutive successful answers
    latest_s: float  # how late the latest request was sent, against its schedule
    answers: Counter = field(default_factory=Counter)  # body → how many
    failures: Counter = field(default_factory=Counter)  # why → how many
    retried_after: Counter = field(default_factory=Counter)  # what a retried request met first → how many
    last_body: str | None = None  # the last successful answer

    def versions(self) -> str:
        return ", ".join(f"{body} ×{count}" for body, count in sorted(self.answers.items())) or "none"

    def why(self) -> str:
        return ", ".join(f"{kind} ×{count}" for kind, count in self.failures.most_common()) or "-"

    def retry_causes(self) -> str:
        return ", ".join(f"{kind} ×{count}" for kind, count in self.retried_after.most_common()) or "-"


def summarize(outcomes: list[Outcome]) -> Summary:
    good = sorted((o for o in outcomes if o.ok), key=lambda o: o.done)
    times = [o.done for o in good]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    if len(times) < 2:  # nothing or one answer: the whole run was a gap
        gaps = [max((o.done for o in outcomes), default=0.0) - min((o.sent for o in outcomes), default=0.0)]
    return Summary(
        sent=len(outcomes),
        failed=sum(not o.ok for o in outcomes),
        retried=sum(o.ok and o.retried is not None for o in outcomes),
        longest_gap_s=max(gaps),
        latest_s=max((o.sent - o.due for o in outcomes), default=0.0),
        answers=Counter(o.body for o in good),
        failures=Counter(o.failure for o in outcomes if not o.ok),
        retried_after=Counter(o.retried for o in outcomes if o.ok and o.retried is not None),
        last_body=good[-1].body if good else None,
    )


class Load:
    def __init__(self, host: str, port: int, *, rate: float = 200.0, keepalive: int = 8, oneshot_threads: int = 16,
                 path: str = "/", timeout_s: float = REQUEST_TIMEOUT_S):
        self.host, self.port, self.rate, self.path, self.timeout_s = host, port, rate, path, timeout_s
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: id1-load\r\n"
                        "Accept: */*\r\n").encode()
        self._stopping = threading.Event()
        self._end: float | None = None
        self._outcomes: list[list[Outcome]] = []
        self._threads: list[threading.Thread] = []
        self._keepalive, self._oneshot = keepalive, oneshot_threads
        self.t0 = 0.0

    def __enter__(self) -> Self:
        self.t0 = time.monotonic() + 0.05  # every thread started before the first request is due
        # slot n of a kind is request 2n (new connection) or 2n + 1 (keep-alive)
        for index in range(self._oneshot):
            self._start(self._run_oneshot, index, self._oneshot, 0)
        for index in range(self._keepalive):
            self._start(self._run_keepalive, index, self._keepalive, 1)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """No request is due from now on; wait for those sent to end."""
        if self._end is None:
            self._end = time.monotonic()
            self._stopping.set()
        for thread in self._threads:
            thread.join()

    def summary(self) -> Summary:
        return summarize(self.outcomes())

    def outcomes(self) -> list[Outcome]:
        """Every request's outcome (once the load has stopped)."""
        self.stop()
        return [outcome for mine in self._outcomes for outcome in mine]

    # --- the threads ------------------------------------------------------------------------------

    def _start(self, run, first: int, step: int, parity: int) -> None:
        mine: list[Outcome] = []
        self._outcomes.append(mine)
        thread = threading.Thread(target=run, args=(self._due(first, step, parity), mine), daemon=True,
                                  name=f"load-{'keepalive' if parity else 'oneshot'}-{first}")
        self._threads.append(thread)
        thread.start()

    def _due(self, first: int, step: int, parity: int):
        """The times this thread's requests are due, until the load stops."""
        slot = first
        while True:
            due = self.t0 + (2 * slot + parity) / self.rate
            while True:
                end = self._end
                if end is not None and due >= end:
                    return
                left = due - time.monotonic()
                if left <= 0 or not self._stopping.wait(left):
                    break
            yield due
            slot += step

    def _run_oneshot(self, schedule, outcomes: list[Outcome]) -> None:
        for due in schedule:
            sent = time.monotonic()
            try:
                answer = self._on_new_connection(close=True)[0]
            except (Unanswered, BadAnswer) as error:
                outcomes.append(Outcome(due, sent, time.monotonic(), False, failure=_kind(error)))
                continue
            outcomes.append(_answered(due, sent, answer))

    def _run_keepalive(self, schedule, outcomes: list[Outcome]) -> None:
        connection: socket.socket | None = None  # reused once it carried an answer
        for due in schedule:
            sent = time.monotonic()
            retried = None
            try:
                if connection is None:
                    answer, connection = self._on_new_connection(close=False)
                else:
                    try:
                        answer = self._exchange(connection, close=False)
                    except Unanswered as error:
                        _close(connection)
                        connection = None
                        if error.kind not in RETRYABLE:
                            raise
                        retried = error.kind  # closed by the server before it answered: once more, anew
                        answer, connection = self._on_new_connection(close=False)
            except (Unanswered, BadAnswer) as error:
                _close(connection)
                connection = None
                failure = f"{_kind(error)} on the retry" if retried else _kind(error)
                outcomes.append(Outcome(due, sent, time.monotonic(), False, retried, failure=failure, keepalive=True))
                continue
            if answer.close:
                _close(connection)
                connection = None
            outcomes.append(_answered(due, sent, answer, retried=retried, keepalive=True))
        _close(connection)

    # --- one request --------------------------------------------------------------------------------

    def _on_new_connection(self, *, close: bool) -> tuple[Answer, socket.socket | None]:
        try:
            connection = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        except ConnectionRefusedError:
            raise Unanswered("refused") from None
        except TimeoutError:
            raise Unanswered("timeout") from None
        except OSError as error:
            raise Unanswered(f"connect: {error.strerror or error}") from None
        try:
            answer = self._exchange(connection, close=close)
        except BaseException:
            _close(connection)
            raise
        if close or answer.close:
            _close(connection)
            return answer, None
        return answer, connection

    def _exchange(self, connection: socket.socket, *, close: bool) -> Answer:
        request = self.request + (b"Connection: close\r\n\r\n" if close else b"\r\n")
        try:
            connection.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            raise Unanswered("reset") from None
        except TimeoutError:
            raise Unanswered("timeout") from None
        received = bytearray()
        while b"\r\n\r\n" not in received:
            chunk = _recv(connection, received)
            if not chunk:
                if not received:
                    raise Unanswered("closed")
                raise BadAnswer("truncated")
            received += chunk
        head, _, body = bytes(received).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            version, status = lines[0].split(" ", 2)[:2]
            status_code = int(status)
        except ValueError:
            raise BadAnswer(f"garbled status line {lines[0][:40]!r}") from None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        tokens = {token.strip() for token in headers.get("connection", "").split(",")}
        closes = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        if "transfer-encoding" in headers:
            raise BadAnswer(f"transfer-encoding {headers['transfer-encoding']} (the load client reads lengths only)")
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(body) < length:
                chunk = _recv(connection, received)
                if not chunk:
                    raise BadAnswer("truncated")
                body += chunk
            body = body[:length]
        else:  # the body ends where the connection does
            while chunk := _recv(connection, received):
                body += chunk
            closes = True
        return Answer(status_code, body.decode("utf-8", "replace").strip(), closes or close)


def _recv(connection: socket.socket, received: bytearray) -> bytes:
    """One read: Unanswered when it fails before any byte came, BadAnswer after some did."""
    try:
        return connection.recv(65536)
    except ConnectionResetError:
        if not received:
            raise Unanswered("reset") from None
        raise BadAnswer("reset midway") from None
    except TimeoutError:
        if not received:
            raise Unanswered("timeout") from None
        raise BadAnswer("timeout midway") from None


def _answered(due: float, sent: float, answer: Answer, *, retried: str | None = None, keepalive: bool = False) -> Outcome:
    ok = 200 <= answer.status < 300
    return Outcome(due, sent, time.monotonic(), ok, retried, body=answer.body if ok else None,
                   failure=None if ok else f"status {answer.status}", keepalive=keepalive)


def _kind(error: Exception) -> str:
    return error.kind if isinstance(error, Unanswered) else str(error)


def _close(connection: socket.socket | None) -> None:
    if connection is not None:
        try:
            connection.close()
        except OSError:
            pass

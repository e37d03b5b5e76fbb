"""Alerts to a webhook, sent from a background thread so that no deployment ever waits on them.

    notifier = WebhookNotifier("https://hooks.example.com/id1", instance_id="host-01")
    notifier.notify(DEPLOYMENT_FAILED, "core 1.3.0 failed its health check", {"revision": 42})
    ...
    notifier.close()          # at shutdown: deliver what can be delivered within the deadline

Each alert is one JSON POST ``{"instance_id", "kind", "summary", "details", "at"}``; ``at`` is
the moment ``notify`` was called (UTC, ``2026-05-01T02:13:07Z``), not the moment it was sent.
``notify`` only puts the alert in a bounded queue and returns: a slow, hanging or absent webhook
costs the caller nothing. When the queue is full the oldest alert makes room and is counted as
dropped, with a warning. Connection errors, timeouts, 429 and 5xx are retried with exponential
backoff and jitter (a ``Retry-After`` in seconds is honoured, up to ``max_backoff``); any other
answer is final. An alert that cannot be delivered costs one log line on logger ``id1.alerts``;
nothing here ever raises into the caller after construction, except ``notify`` with a kind the
daemon does not use (a programming error, caught by the daemon's own tests).

Log lines name the webhook by its origin only (``https://hooks.example.com``): webhook URLs often
carry their secret in the path.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import httpx

from agent.tls import shared_ssl_context

from agent import __version__

DEPLOYMENT_FAILED = "deployment-failed"
ROLLBACK = "rollback"
FORCED_PATCH = "forced-patch"
FEED_REJECTED = "feed-rejected"
ALERT_KINDS = frozenset({DEPLOYMENT_FAILED, ROLLBACK, FORCED_PATCH, FEED_REJECTED})

DEFAULT_QUEUE_SIZE = 1000
"""Alerts waiting beyond this many mean the webhook has been down a long while; the oldest go first."""

logger = logging.getLogger("id1.alerts")


@dataclass(frozen=True, slots=True)
class AlertStats:
    """Counts since the notifier was made: delivered, given up on, pushed out of the queue."""

    sent: int
    failed: int
    dropped: int


@dataclass(frozen=True, slots=True)
class _Alert:
    kind: str
    summary: str
    body: bytes

    def describe(self) -> str:
        summary = self.summary if len(self.summary) <= 80 else self.summary[:79] + "…"
        return f"{self.kind} alert {summary!r}"


class _Transient(Exception):
    """Worth another attempt: no connection, a timeout, 429 or 5xx."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Refused(Exception):
    """An answer that another attempt would not change (a 4xx other than 429, a redirect)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class WebhookNotifier:
    """Posts alerts to one webhook from a daemon thread; ``notify`` never waits for the network."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        attempts: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        instance_id: str,
        transport: httpx.BaseTransport | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ):
        _check_arguments(url, timeout, attempts, backoff, max_backoff, queue_size)
        self.url = url
        self.origin = _origin(url)
        self.instance_id = instance_id
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.queue_size = queue_size
        self._client = httpx.Client(
            transport=transport,
            verify=shared_ssl_context(),
            timeout=timeout,
            headers={"Content-Type": "application/json", "User-Agent": f"id1-agent/{__version__}"},
        )
        self._jitter = random.Random()
        # One condition guards the queue, the counters and the closing state; the worker also
        # sleeps its backoff on it so that close() can cut a long pause short.
        self._condition = threading.Condition()
        self._pending: deque[_Alert] = deque()
        self._closing = False
        self._deadline: float | None = None
        self._overflowing = False
        self._sent = self._failed = self._dropped = 0
        self._worker = threading.Thread(target=self._run, name="id1-alerts", daemon=True)
        self._worker.start()

    # ── the caller's side ─────────────────────────────────────────────────────────────────────

    def notify(self, kind: str, summary: str, details: dict[str, Any] | None = None) -> None:
        """Queue one alert and return at once; ``details`` values JSON cannot hold are sent as text."""
        if kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {kind!r}; expected one of {', '.join(sorted(ALERT_KINDS))}")
        alert = _Alert(kind, summary, self._body(kind, summary, details))
        with self._condition:
            if self._closing:
                self._dropped += 1
                warning = f"{alert.describe()} not sent: the notifier is closed"
            else:
                warning = self._make_room()
                self._pending.append(alert)
                self._condition.notify_all()
        if warning:  # logged outside the lock: a slow log handler must not stall the worker
            logger.warning(warning)

    @property
    def stats(self) -> AlertStats:
        with self._condition:
            return AlertStats(sent=self._sent, failed=self._failed, dropped=self._dropped)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what can be delivered within ``timeout`` seconds, then stop; what is left is dropped."""
        with self._condition:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + max(timeout, 0.0)
                self._condition.notify_all()
            deadline = self._deadline
        self._worker.join(max(deadline - time.monotonic(), 0.0))
        if self._worker.is_alive():
            # Stuck in one request (a server trickling its answer); the thread dies with the process.
            self._drop_pending("the webhook was still answering an earlier alert when the notifier closed")

    def __enter__(self) -> WebhookNotifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _body(self, kind: str, summary: str, details: dict[str, Any] | None) -> bytes:
        payload = {
            "instance_id": self.instance_id,
            "kind": kind,
            "summary": summary,
            "details": details or {},
            "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        try:
            return json.dumps(payload, default=str).encode()
        except (TypeError, ValueError):  # keys JSON cannot hold, a cycle: the alert still goes out
            payload["details"] = {"unreadable": repr(details)}
            return json.dumps(payload, default=str).encode()

    def _make_room(self) -> str | None:
        """Drop the oldest queued alert when the queue is full; warn once per overflow."""
        if len(self._pending) < self.queue_size:
            return None
        oldest = self._pending.popleft()
        self._dropped += 1
        if self._overflowing:
            return None
        # Quiet until the worker takes the next alert: a flood costs one line per delivery, not one per alert.
        self._overflowing = True
        return (
            f"alert queue full ({self.queue_size} waiting for {self.origin}): dropped the oldest, "
            f"{oldest.describe()}; {self._dropped} dropped so far"
        )

    # ── the worker thread ─────────────────────────────────────────────────────────────────────

    def _run(self) -> None:
        try:
            while (alert := self._next_alert()) is not None:
                try:
                    self._deliver(alert)
                except Exception:  # a bug here must not end alerting for the life of the daemon
                    logger.exception("%s not delivered to %s: unexpected error", alert.describe(), self.origin)
                    self._count_failure()
        finally:
            self._client.close()
            self._drop_pending("the notifier closed before the webhook took them")

    def _next_alert(self) -> _Alert | None:
        with self._condition:
            while not self._pending and not self._closing:
                self._condition.wait()
            if not self._pending or self._time_left() == 0.0:
                return None
            self._overflowing = False
            return self._pending.popleft()

    def _deliver(self, alert: _Alert) -> None:
        for attempt in range(1, self.attempts + 1):
            try:
                self._post(alert)
            except _Refused as failure:
                self._give_up(alert, f"{failure.reason}, not retried")
                return
            except _Transient as failure:
                if attempt == self.attempts:
                    self._give_up(alert, f"{failure.reason}; gave up after {attempt} attempt{_plural(attempt)}")
                    return
                if not self._pause(self._backoff(attempt, failure.retry_after)):
                    self._give_up(alert, f"{failure.reason}; the notifier closed before attempt {attempt + 1}")
                    return
            else:
                with self._condition:
                    self._sent += 1
                return

    def _post(self, alert: _Alert) -> None:
        timeout = min(self.timeout, self._time_left())
        if timeout <= 0:
            raise _Refused("the notifier closed before it could be sent")
        try:
            response = self._client.post(self.url, content=alert.body, timeout=timeout)
        except httpx.TimeoutException as error:
            raise _Transient(f"timed out after {timeout:g} s ({type(error).__name__})") from error
        except httpx.ConnectError as error:
            raise _Transient(f"cannot connect ({error})") from error
        except httpx.TransportError as error:
            raise _Transient(f"the connection failed ({type(error).__name__}: {error})") from error
        status = response.status_code
        if 200 <= status < 300:
            return
        reason = f"HTTP {status} {response.reason_phrase}".rstrip()
        if status == 429 or status >= 500:
            raise _Transient(reason, retry_after=_retry_after(response))
        raise _Refused(reason)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        # "Equal jitter": half the exponential delay for sure, half at random, so that agents that
        # lost the same webhook at the same moment do not all come back in step.
        ceiling = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        delay = ceiling / 2 + self._jitter.uniform(0, ceiling / 2)
        return max(delay, min(retry_after or 0.0, self.max_backoff))

    def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False (at once) when closing and the wait would end past the deadline."""
        end = time.monotonic() + seconds
        with self._condition:
            while True:
                if self._deadline is not None and end > self._deadline:
                    return False
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return True
                self._condition.wait(remaining)

    def _time_left(self) -> float:
        """Seconds until the close deadline (infinite while open), never negative."""
        if self._deadline is None:
            return float("inf")
        return max(self._deadline - time.monotonic(), 0.0)

    def _give_up(self, alert: _Alert, why: str) -> None:
        self._count_failure()
        logger.error("%s not delivered to %s: %s", alert.describe(), self.origin, why)

    def _count_failure(self) -> None:
        with self._condition:
            self._failed += 1

    def _drop_pending(self, why: str) -> None:
        with self._condition:
            count = len(self._pending)
            self._pending.clear()
            self._dropped += count
        if count:
            logger.warning("%d alert%s not sent to %s: %s", count, _plural(count), self.origin, why)


def _check_arguments(url: str, timeout: float, attempts: int, backoff: float, max_backoff: float, queue_size: int) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"webhook URL must be http:// or https:// with a host, not {_origin(url)!r}")
    if attempts < 1 or queue_size < 1:
        raise ValueError("attempts and queue_size must be at least 1")
    if timeout <= 0 or backoff < 0 or max_backoff < 0:
        raise ValueError("timeout must be positive, backoff and max_backoff not negative")


def _origin(url: str) -> str:
    """``https://hooks.example.com`` for ``https://user:token@hooks.example.com/secret/path``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else "(no scheme)"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    return float(value) if value.isdigit() else None


def _plural(count: int) -> str:
    return "" if count == 1 else "s"

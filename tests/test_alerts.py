"""WebhookNotifier against a real loopback webhook that answers, fails, hangs or is not there.

Waiting is done by polling a condition with a deadline (``wait_until``), never by sleeping for a
guessed time, so the tests are as fast as the notifier and do not flake on a slow machine.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from agent.alerts import DEPLOYMENT_FAILED, FEED_REJECTED, ROLLBACK, AlertStats, WebhookNotifier

# ── a webhook on 127.0.0.1 ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: int | None = None


@dataclass(frozen=True)
class Hang:
    """Read the request, then answer nothing until the test releases the server (or it stops)."""


@dataclass(frozen=True)
class Received:
    body: dict
    headers: dict[str, str]
    at: float  # time.monotonic() when it arrived


class Webhook:
    """Records every POST body; scripted answers are used up in order, then it answers 200."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._script: deque[Answer | Hang] = deque()
        self._lock = threading.Lock()
        self.release = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.01,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/hooks/s3cr3t-token"

    def script(self, *answers: Answer | Hang) -> None:
        with self._lock:
            self._script.extend(answers)

    def next_answer(self) -> Answer | Hang:
        with self._lock:
            return self._script.popleft() if self._script else Answer(200)

    def record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def summaries(self) -> list[str]:
        with self._lock:
            return [seen.body["summary"] for seen in self.received]

    def start(self) -> Webhook:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def _handler_for(webhook: Webhook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
            pass

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            body = self.rfile.read(int(self.headers["Content-Length"]))
            answer = webhook.next_answer()
            webhook.record(Received(json.loads(body), dict(self.headers.items()), time.monotonic()))
            if isinstance(answer, Hang):
                webhook.release.wait(30)
                self.close_connection = True
                return
            self.send_response(answer.status)
            if answer.retry_after is not None:
                self.send_header("Retry-After", str(answer.retry_after))
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Handler


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {condition.__doc__ or condition}")
        time.sleep(0.005)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook().start()
    yield server
    server.stop()


@pytest.fixture
def new_notifier() -> Iterator[Callable[..., WebhookNotifier]]:
    made: list[WebhookNotifier] = []

    def make(url: str, **options) -> WebhookNotifier:
        options.setdefault("instance_id", "host-01")
        options.setdefault("backoff", 0.01)
        notifier = WebhookNotifier(url, **options)
        made.append(notifier)
        return notifier

    yield make
    for notifier in made:
        notifier.close(timeout=1)


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens: bound, then closed, so connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def warnings_about(notifier: WebhookNotifier, caplog: pytest.LogCaptureFixture) -> list[str]:
    """This notifier's warnings and errors (a thread of an earlier test may still be logging)."""
    records = [record for record in caplog.records if record.name == "id1.alerts" and record.levelno >= logging.WARNING]
    return [record.getMessage() for record in records if notifier.origin in record.getMessage()]


# ── delivery ────────────────────────────────────────────────────────────────────────────────


def test_an_alert_is_one_json_post_naming_the_instance_and_when(webhook, new_notifier):
    notifier = new_notifier(webhook.url)
    before = datetime.now(timezone.utc).replace(microsecond=0)

    notifier.notify(DEPLOYMENT_FAILED, "core 1.3.0 failed its health check", {"revision": 42, "release": "core@1.3.0"})
    wait_until(lambda: notifier.stats.sent == 1)

    [received] = webhook.received
    body = received.body
    assert set(body) == {"instance_id", "kind", "summary", "details", "at"}
    assert body["instance_id"] == "host-01" and body["kind"] == "deployment-failed"
    assert body["summary"] == "core 1.3.0 failed its health check"
    assert body["details"] == {"revision": 42, "release": "core@1.3.0"}
    assert body["at"].endswith("Z")
    at = datetime.strptime(body["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before <= at <= datetime.now(timezone.utc)
    assert received.headers["Content-Type"] == "application/json"
    assert notifier.stats == AlertStats(sent=1, failed=0, dropped=0)


def test_details_json_cannot_hold_are_sent_as_text_and_none_as_an_empty_object(webhook, new_notifier):
    notifier = new_notifier(webhook.url)
    moment = datetime(2026, 5, 1, 2, 13, tzinfo=timezone.utc)

    notifier.notify(ROLLBACK, "rolled back to revision 16", {"when": moment})
    notifier.notify(FEED_REJECTED, "bad signature")
    wait_until(lambda: notifier.stats.sent == 2)

    assert [seen.body["details"] for seen in webhook.received] == [{"when": str(moment)}, {}]


def test_details_json_cannot_encode_at_all_still_leave_an_alert(webhook, new_notifier):
    notifier = new_notifier(webhook.url)
    cyclic: dict = {}
    cyclic["self"] = cyclic

    notifier.notify(ROLLBACK, "tuple keys", {("core", "auth"): 1})
    notifier.notify(ROLLBACK, "a cycle", cyclic)
    wait_until(lambda: notifier.stats.sent == 2)

    assert webhook.received[0].body["details"] == {"unreadable": "{('core', 'auth'): 1}"}
    assert webhook.received[1].body["summary"] == "a cycle"


def test_alerts_arrive_in_the_order_they_were_raised(webhook, new_notifier):
    notifier = new_notifier(webhook.url)

    for number in range(20):
        notifier.notify(ROLLBACK, f"alert {number}")
    wait_until(lambda: notifier.stats.sent == 20)

    assert webhook.summaries() == [f"alert {number}" for number in range(20)]


def test_an_unknown_kind_is_a_programming_error(webhook, new_notifier):
    notifier = new_notifier(webhook.url)

    with pytest.raises(ValueError, match="deployment-failed"):
        notifier.notify("deploy-failed", "typo")


def test_a_webhook_url_that_is_not_http_is_refused_without_echoing_its_secret():
    with pytest.raises(ValueError) as raised:
        WebhookNotifier("ftp://hooks.example.com/s3cr3t", instance_id="host-01")

    assert "s3cr3t" not in str(raised.value)


# ── retries ─────────────────────────────────────────────────────────────────────────────────


def test_server_errors_are_retried_until_the_webhook_answers(webhook, new_notifier):
    webhook.script(Answer(500), Answer(502), Answer(503))
    notifier = new_notifier(webhook.url, attempts=5)

    notifier.notify(DEPLOYMENT_FAILED, "core 1.3.0 failed")
    wait_until(lambda: notifier.stats.sent == 1)

    assert webhook.summaries() == ["core 1.3.0 failed"] * 4
    assert notifier.stats == AlertStats(sent=1, failed=0, dropped=0)


def test_retries_back_off_exponentially(webhook, new_notifier):
    webhook.script(Answer(500), Answer(500), Answer(500))
    notifier = new_notifier(webhook.url, backoff=0.1, attempts=4)

    notifier.notify(DEPLOYMENT_FAILED, "x")
    wait_until(lambda: notifier.stats.sent == 1)

    times = [seen.at for seen in webhook.received]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    # Equal jitter: attempt n waits between half and all of backoff * 2**(n-1).
    for attempt, gap in enumerate(gaps, start=1):
        ceiling = 0.1 * 2 ** (attempt - 1)
        assert ceiling / 2 <= gap <= ceiling + 0.5, gaps


def test_retry_after_is_honoured_on_429_and_at_stays_the_moment_of_notify(webhook, new_notifier):
    webhook.script(Answer(429, retry_after=1))
    notifier = new_notifier(webhook.url, backoff=0.001)

    notifier.notify(DEPLOYMENT_FAILED, "x")
    wait_until(lambda: notifier.stats.sent == 1)

    first, second = webhook.received
    assert second.at - first.at >= 1.0
    # A second or more apart, yet the same "at": it says when the alert was raised, not sent.
    assert first.body["at"] == second.body["at"]


def test_retry_after_longer_than_max_backoff_is_capped(webhook, new_notifier):
    webhook.script(Answer(503, retry_after=3600))
    notifier = new_notifier(webhook.url, backoff=0.001, max_backoff=0.05)

    notifier.notify(DEPLOYMENT_FAILED, "x")
    wait_until(lambda: notifier.stats.sent == 1, timeout=5)

    assert len(webhook.received) == 2


def test_a_client_error_is_not_retried_and_costs_one_log_line_without_the_secret(webhook, new_notifier, caplog):
    webhook.script(Answer(404))
    notifier = new_notifier(webhook.url)

    with caplog.at_level(logging.INFO, logger="id1.alerts"):
        notifier.notify(DEPLOYMENT_FAILED, "core 1.3.0 failed")
        wait_until(lambda: notifier.stats.failed == 1)

    assert len(webhook.received) == 1
    [line] = warnings_about(notifier, caplog)
    assert "404" in line and "not retried" in line and "deployment-failed" in line
    assert "127.0.0.1" in line and "s3cr3t" not in line


def test_an_absent_webhook_is_given_up_after_the_last_attempt_with_one_log_line(closed_port_url, new_notifier, caplog):
    # Backoffs of at least 1 s and 2 s: a notify() that waited for the attempts would take 3 s or
    # more, far from the bound below whatever the load on the machine.
    notifier = new_notifier(closed_port_url, attempts=3, backoff=2.0)

    with caplog.at_level(logging.INFO, logger="id1.alerts"):
        started = time.perf_counter()
        notifier.notify(DEPLOYMENT_FAILED, "core 1.3.0 failed")
        assert time.perf_counter() - started < 1.5
        wait_until(lambda: notifier.stats.failed == 1, timeout=20)

    [line] = warnings_about(notifier, caplog)
    assert "gave up after 3 attempts" in line and "cannot connect" in line
    assert notifier.stats == AlertStats(sent=0, failed=1, dropped=0)


def test_a_timeout_is_retried(webhook, new_notifier):
    webhook.script(Hang())
    notifier = new_notifier(webhook.url, timeout=0.2)

    notifier.notify(DEPLOYMENT_FAILED, "x")
    wait_until(lambda: notifier.stats.sent == 1)

    assert len(webhook.received) == 2


def test_a_failed_alert_does_not_hold_up_the_next(webhook, new_notifier):
    webhook.script(Answer(400))
    notifier = new_notifier(webhook.url)

    notifier.notify(DEPLOYMENT_FAILED, "refused")
    notifier.notify(ROLLBACK, "delivered")
    wait_until(lambda: notifier.stats.sent == 1 and notifier.stats.failed == 1)

    assert webhook.summaries() == ["refused", "delivered"]


# ── never blocking the caller ───────────────────────────────────────────────────────────────


def test_notify_returns_at_once_while_the_webhook_hangs(webhook, new_notifier):
    webhook.script(*[Hang()] * 5)
    notifier = new_notifier(webhook.url, timeout=30)

    notifier.notify(DEPLOYMENT_FAILED, "first")
    wait_until(lambda: len(webhook.received) == 1)  # the worker is stuck in the request
    for number in range(50):
        started = time.perf_counter()
        notifier.notify(ROLLBACK, f"while hanging {number}")
        assert time.perf_counter() - started < 0.05
    webhook.release.set()


def test_a_full_queue_drops_the_oldest_alert_with_one_counted_warning(webhook, new_notifier, caplog):
    webhook.script(Hang())
    notifier = new_notifier(webhook.url, queue_size=3, timeout=30)
    notifier.notify(DEPLOYMENT_FAILED, "in flight")
    wait_until(lambda: len(webhook.received) == 1)

    with caplog.at_level(logging.INFO, logger="id1.alerts"):
        for number in range(6):
            notifier.notify(ROLLBACK, f"queued {number}")

    assert notifier.stats.dropped == 3
    [warning] = warnings_about(notifier, caplog)
    assert "queue full" in warning and "queued 0" in warning and "dropped so far" in warning
    webhook.release.set()  # the hanging request ends without an answer; its retry and the rest go through
    wait_until(lambda: notifier.stats.sent == 4)
    assert webhook.summaries() == ["in flight", "in flight", "queued 3", "queued 4", "queued 5"]
    assert notifier.stats == AlertStats(sent=4, failed=0, dropped=3)


# ── closing ─────────────────────────────────────────────────────────────────────────────────


def test_close_delivers_what_is_queued(webhook, new_notifier):
    notifier = new_notifier(webhook.url)
    for number in range(10):
        notifier.notify(ROLLBACK, f"alert {number}")

    notifier.close(timeout=5)

    assert notifier.stats == AlertStats(sent=10, failed=0, dropped=0)
    assert len(webhook.summaries()) == 10


def test_close_keeps_its_deadline_while_the_webhook_hangs(webhook, new_notifier, caplog):
    webhook.script(Hang())
    notifier = new_notifier(webhook.url, timeout=30)
    notifier.notify(DEPLOYMENT_FAILED, "stuck")
    wait_until(lambda: len(webhook.received) == 1)
    notifier.notify(ROLLBACK, "never sent")

    with caplog.at_level(logging.INFO, logger="id1.alerts"):
        started = time.perf_counter()
        notifier.close(timeout=0.3)
        took = time.perf_counter() - started

    assert 0.25 <= took < 1.0
    assert notifier.stats.dropped == 1
    assert any("1 alert not sent" in line for line in warnings_about(notifier, caplog))
    webhook.release.set()  # the stuck request ends; its retry is not made after the deadline
    wait_until(lambda: notifier.stats.failed == 1)
    assert len(webhook.received) == 1


def test_close_cuts_a_long_backoff_short(webhook, new_notifier, caplog):
    webhook.script(Answer(503))
    notifier = new_notifier(webhook.url, backoff=60, max_backoff=60)
    notifier.notify(DEPLOYMENT_FAILED, "x")
    wait_until(lambda: len(webhook.received) == 1)  # the next attempt is 30 to 60 s away

    with caplog.at_level(logging.INFO, logger="id1.alerts"):
        started = time.perf_counter()
        notifier.close(timeout=0.5)
        took = time.perf_counter() - started

    assert took < 0.5  # nothing to wait for: the next attempt would fall after the deadline
    assert notifier.stats == AlertStats(sent=0, failed=1, dropped=0)
    [line] = warnings_about(notifier, caplog)
    assert "HTTP 503" in line and "closed before attempt 2" in line


def test_an_alert_after_close_is_counted_as_dropped(webhook, new_notifier):
    notifier = new_notifier(webhook.url)
    notifier.close()

    notifier.notify(ROLLBACK, "too late")

    assert notifier.stats == AlertStats(sent=0, failed=0, dropped=1)


def test_a_transport_can_be_injected_for_failure_shapes(new_notifier):
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if len(requests) == 1:
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return httpx.Response(204)

    notifier = new_notifier("https://hooks.example.com/x", transport=httpx.MockTransport(answer))
    notifier.notify(FEED_REJECTED, "feed serial 7 replayed")
    notifier.close(timeout=5)

    assert notifier.stats == AlertStats(sent=1, failed=0, dropped=0)
    assert len(requests) == 2 and requests[0].url == "https://hooks.example.com/x"

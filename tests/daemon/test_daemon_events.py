"""The event stream clients (the TUI) follow: events arrive as they happen, and an open stream
does not hold up the agent's stop."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.daemon.site import Release, Site, poll_until
from tests.test_engine import SYSTEMCTL3


def test_events_stream_as_things_happen_and_end_when_the_agent_stops():
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    site = Site()
    seen: list[tuple[str, dict]] = []
    opened, ended = threading.Event(), threading.Event()

    def follow():
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(site.socket)), base_url="http://id1",
                          timeout=httpx.Timeout(10, read=None)) as client:
            with client.stream("GET", "/events") as response:
                kind = None
                for line in response.iter_lines():
                    if line.startswith("retry:"):  # sent once the daemon has subscribed this stream
                        opened.set()
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        seen.append((kind, json.loads(line[5:])))
        ended.set()

    try:
        site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
        site.configure("manual-approval")
        site.start()
        site.wait_for(lambda s: s["pending_approval"], what="the first approval")
        threading.Thread(target=follow, daemon=True).start()
        assert opened.wait(10), "the event stream did not open"
        site.ok("approve", "--yes")
        # The approval is marked deployed just after the deployment's own event: wait for both.
        poll_until(lambda: any(kind == "deployment" and data.get("state") == "succeeded" for kind, data in seen)
                   and any(kind == "approval" for kind, _ in seen), timeout=60, what="a deployment event and an approval event")
        assert any(kind == "audit" for kind, _ in seen)

        started = time.monotonic()
        assert site.stop() == 0
        assert time.monotonic() - started < 5, "an open event stream held up the stop"
        assert ended.wait(5) and seen[-1][0] == "shutdown"
    finally:
        site.close()

"""Daemon benchmark (DESIGN.md §10): memory and CPU of the idle daemon polling an unchanged feed.

The real daemon (``tests.api.populated``: two revisions, a pending approval, an advisory, the
feed on a loopback server) is made to poll ``POLLS`` times through ``POST /check``, one after
the other: each is a real conditional GET of the feed, answered 304 by the feed server, then
the agent's reconcile of the unchanged feed. Measured on the daemon's process, from /proc:

- its resident memory (VmRSS) after a warm-up of ``WARM_UP`` polls and after all of them:
  the idle footprint (target ≤ 60 MB) and its growth over the polls (target ≤ 2 MB);
- its CPU time (utime + stime, all threads) over the polls, divided by their number: the
  cost of one unchanged poll (target ≤ 5 ms), the API request that asks for it included.

Beside them, the trivial baseline measured in the same run: the same requests to a FastAPI app
whose ``POST /check`` does nothing, served by the same ``UnixApiServer`` in a process of its
own (``tests.api.baseline``): the memory floor of a Python process serving FastAPI, and the
fixed cost of one request on the socket. Each figure is the median of ``ROUNDS`` rounds of
``POLLS`` polls (memory: the last round's, after every poll of every round).

Targets are asserted with ``ID1_BENCH_ENFORCE=1``, twice them always (bounds.py). Also always
asserted: every poll answered 200 "feed unchanged", the feed server answered each one 304,
and the daemon did not deploy or change anything.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path

import httpx
import pytest

from tests.api.baseline import TrivialServer, cpu_seconds, rss_bytes
from tests.api.populated import api_client, populated_site
from tests.benchmarks.bounds import at_most
from tests.benchmarks.test_api_benchmark import machine

pytestmark = pytest.mark.benchmark

POLLS = 1_000
WARM_UP = 50
ROUNDS = 3
TARGET_RSS = 60 * 2**20
TARGET_GROWTH = 2 * 2**20
TARGET_CPU_S = 0.005
MB = 2**20


def poll(client: httpx.Client, count: int, expect) -> None:
    for _ in range(count):
        response = client.post("/check")
        assert response.status_code == 200, response.text
        expect(response.json())


def cpu_per_request(pid: int, client: httpx.Client, expect) -> float:
    before = cpu_seconds(pid)
    poll(client, POLLS, expect)
    return (cpu_seconds(pid) - before) / POLLS


def test_idle_memory_and_cpu_per_unchanged_poll(request):
    folder = Path(tempfile.mkdtemp(prefix="id1-bench-daemon-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))

    def unchanged(body: dict) -> None:
        assert body["message"].startswith("feed unchanged; "), body

    def trivial(body: dict) -> None:
        assert body == {"message": "nothing to do"}

    with populated_site() as host, TrivialServer(folder / "trivial.sock") as baseline:
        daemon_pid = host.site.process.pid
        with api_client(host.site) as client, \
                httpx.Client(transport=httpx.HTTPTransport(uds=str(baseline.socket)), base_url="http://id1", timeout=30) as other:
            before = client.get("/status").json()
            feed_requests = len(host.site.server.requests)
            poll(client, WARM_UP, unchanged)
            poll(other, WARM_UP, trivial)
            rss_warm, base_rss_warm = rss_bytes(daemon_pid), rss_bytes(baseline.pid)
            cpu, base_cpu = [], []
            for _ in range(ROUNDS):
                cpu.append(cpu_per_request(daemon_pid, client, unchanged))
                base_cpu.append(cpu_per_request(baseline.pid, other, trivial))
            rss_end, base_rss_end = rss_bytes(daemon_pid), rss_bytes(baseline.pid)
            after = client.get("/status").json()
            deployments = client.get("/deployments").json()

        seen = host.site.server.requests[feed_requests:]
        polls = WARM_UP + ROUNDS * POLLS
        assert len(seen) == polls and all(request.path == "/feed.json" for request in seen), len(seen)
        assert all("if-none-match" in request.headers for request in seen)  # conditional: the feed answered 304
        assert (after["revision"], after["feed_serial"], after["pending_approval"]) == \
            (before["revision"], before["feed_serial"], before["pending_approval"])
        assert len(deployments) == 2 and after["deployment"] is None

    cpu_s, base_cpu_s = statistics.median(cpu), statistics.median(base_cpu)
    growth, base_growth = rss_end - rss_warm, base_rss_end - base_rss_warm
    print(f"\nthe idle daemon, {POLLS:,} polls of an unchanged feed per round, medians of {ROUNDS} rounds ({machine()}):\n"
          f"  daemon:   RSS {rss_end / MB:.1f} MB after {polls:,} polls (target ≤ {TARGET_RSS / MB:.0f} MB), "
          f"growth {growth / MB:+.2f} MB since poll {WARM_UP} (target ≤ {TARGET_GROWTH / MB:.0f} MB); "
          f"CPU {cpu_s * 1000:.2f} ms per poll (target ≤ {TARGET_CPU_S * 1000:.0f} ms)\n"
          f"  baseline, a FastAPI app whose POST /check does nothing, on the same UnixApiServer: "
          f"RSS {base_rss_end / MB:.1f} MB, growth {base_growth / MB:+.2f} MB; CPU {base_cpu_s * 1000:.2f} ms per request\n"
          f"  the agent's own share: {(rss_end - base_rss_end) / MB:.1f} MB, {(cpu_s - base_cpu_s) * 1000:.2f} ms per poll "
          f"({cpu_s / base_cpu_s:.1f}× the baseline's CPU)")
    at_most("idle RSS", rss_end, TARGET_RSS, " B")
    at_most("RSS growth over the polls", growth, TARGET_GROWTH, " B")
    at_most("CPU per unchanged poll", cpu_s, TARGET_CPU_S, " s")

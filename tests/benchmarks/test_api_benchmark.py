"""API benchmark (DESIGN.md §10): ``GET /status`` latency with 50 concurrent clients on the socket.

The real daemon (``tests.api.populated``: two revisions, a pending approval, an advisory) is
asked for its status by 50 clients at once, each on its own keep-alive connection, each
sending its next request as soon as the previous answer arrived: ``REQUESTS`` requests per
run, all connections open before the clock starts. A run's figure is the p99 (and p50) of its
latencies; the figures printed are medians over ``ROUNDS`` runs.

Beside it, the trivial baseline measured in the same run, round by round in turn with the
daemon: a FastAPI app with one route returning a constant, served by the same
``UnixApiServer`` in a process of its own (``tests.api.baseline``). The difference is what
the agent's own status costs; the baseline is the floor of HTTP on this socket.

The clients are a few lines of asyncio in this process writing HTTP/1.1 by hand, so that
what is timed is the servers, not an HTTP client library. Target: the daemon's p99 ≤ 1.2 × the
baseline's, measured in the same run (an absolute figure would mostly measure the machine);
asserted with ``ID1_BENCH_ENFORCE=1``, twice it always (tests/benchmarks/bounds.py). Always
asserted: every answer is a 200 with the body each server should give.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import pytest

from tests.api.baseline import TrivialServer
from tests.api.populated import populated_site
from tests.benchmarks.bounds import at_most

pytestmark = pytest.mark.benchmark

CLIENTS = 50
REQUESTS = 400
ROUNDS = 7
TARGET_RATIO = 1.2
"""The daemon's p99 over the one-route baseline's, in the same run."""
REQUEST = b"GET /status HTTP/1.1\r\nHost: id1\r\n\r\n"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown cpu")
    return f"{platform.node()}, {os.cpu_count()} × {model}"


async def _client(path: str, count: int, start: asyncio.Event, latencies: list[float], bodies: list[bytes]) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        await start.wait()
        for _ in range(count):
            began = time.perf_counter()
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - began)
            bodies.append(head.split(b" ", 2)[1] + b" " + body)
    finally:
        writer.close()


async def _round(path: Path) -> tuple[list[float], list[bytes]]:
    latencies: list[float] = []
    bodies: list[bytes] = []
    start = asyncio.Event()
    per_client = REQUESTS // CLIENTS
    clients = [asyncio.create_task(_client(str(path), per_client, start, latencies, bodies)) for _ in range(CLIENTS)]
    await asyncio.sleep(0.2)  # every connection is made before the clock starts
    start.set()
    await asyncio.gather(*clients)
    return latencies, bodies


def measure(path: Path, expect) -> tuple[float, float]:
    """One run against the socket: (p50, p99) in seconds; every answer checked with ``expect``."""
    latencies, answers = asyncio.run(_round(path))
    assert len(latencies) == REQUESTS
    for answer in answers:
        status, _, body = answer.partition(b" ")
        assert status == b"200", answer
        expect(json.loads(body))
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[98]


def test_status_latency_with_50_concurrent_clients(request):
    folder = Path(tempfile.mkdtemp(prefix="id1-bench-api-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))

    def is_the_daemons_status(body: dict) -> None:
        assert body["instance_id"] == "host-01" and body["revision"] == 2 and body["pending_approval"] is not None, body

    def is_the_trivial_answer(body: dict) -> None:
        assert body == {"status": "ok"}

    with populated_site() as host, TrivialServer(folder / "trivial.sock") as trivial:
        measure(host.site.socket, is_the_daemons_status)  # warm-up of both servers
        measure(trivial.socket, is_the_trivial_answer)
        daemon, baseline = [], []
        for _ in range(ROUNDS):
            daemon.append(measure(host.site.socket, is_the_daemons_status))
            baseline.append(measure(trivial.socket, is_the_trivial_answer))

    p50, p99 = (statistics.median(run[i] for run in daemon) for i in (0, 1))
    base_p50, base_p99 = (statistics.median(run[i] for run in baseline) for i in (0, 1))
    print(f"\nGET /status, {CLIENTS} concurrent clients, {REQUESTS} requests per run, medians of {ROUNDS} runs ({machine()}):\n"
          f"  daemon:   p99 {p99 * 1000:.1f} ms, p50 {p50 * 1000:.1f} ms (target p99 ≤ {TARGET_RATIO}× the baseline's)\n"
          f"  baseline, a one-route FastAPI app on the same UnixApiServer: p99 {base_p99 * 1000:.1f} ms, "
          f"p50 {base_p50 * 1000:.1f} ms\n"
          f"  ratio: p99 {p99 / base_p99:.1f}×, p50 {p50 / base_p50:.1f}×; "
          f"per request beyond the baseline ≈ {(p50 - base_p50) / CLIENTS * 1000:.2f} ms of server time")
    # Not reached (issue 12's note: FastAPI/Starlette per-request work, the route itself takes
    # 0.15 ms); it stands at 2.0-2.1x on a quiet machine and 2.4x under load.
    at_most("GET /status p99 under 50 clients / the baseline's", p99 / base_p99, TARGET_RATIO, "x", stands_at=2.1)

"""Ports for services a test starts later (a unit's HTTP server): free now, and not handed out twice.

A port found with ``bind(0)`` and closed again can be handed to another process before the
service binds it, most of all when test workers run in parallel (pytest-xdist). So each worker
takes its ports from its own block below Linux's ephemeral range (32768+), in turn, and only
ones that bind now.
"""

from __future__ import annotations

import itertools
import os
import socket

BASE, BLOCK = 20000, 2000


def _worker_index() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


_start = BASE + (_worker_index() % 6) * BLOCK
_candidates = itertools.cycle(range(_start + os.getpid() % BLOCK, _start + BLOCK))


def free_port() -> int:
    for _ in range(BLOCK):
        port = next(_candidates)
        if port in _ranged:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {_start}-{_start + BLOCK - 1}")


def free_port_range(count: int) -> range:
    """``count`` consecutive ports of this worker's block, all free now (a blue-green test's
    ``switch.ports``), searched from the top of the block down so as to meet ``free_port``'s
    turn as late as possible; a range is not handed out twice by this process."""
    global _next_range_end
    for _ in range(BLOCK // count):
        if _next_range_end - count < _start:
            _next_range_end = _start + BLOCK
        ports = range(_next_range_end - count, _next_range_end)
        _next_range_end -= count
        if all(_binds(port) for port in ports):
            _ranged.update(ports)
            return ports
    raise RuntimeError(f"no {count} free ports in a row in {_start}-{_start + BLOCK - 1}")


# From a point of the block's top half that depends on the process, like free_port's start: two
# pytest sessions on one machine share worker blocks.
_next_range_end = _start + BLOCK - (os.getpid() % (BLOCK // 2))
_ranged: set[int] = set()


def _binds(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True

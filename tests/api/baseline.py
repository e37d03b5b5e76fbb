"""The trivial baseline of the API benchmarks (DESIGN.md §10): a FastAPI app whose routes do
nothing, served by the agent's own ``UnixApiServer`` in a process of its own, so the fixed cost
of HTTP on the socket (uvicorn, h11, FastAPI's routing and validation, the peer-credentials
protocol) can be printed beside the daemon's figures.

    with TrivialServer(folder / "trivial.sock") as server:
        server.pid          # for /proc/PID/status and /proc/PID/stat
        server.socket

``GET /status`` answers a small JSON object; ``POST /check`` too. Both are ``async def`` routes
(no hop to FastAPI's thread pool): the floor of a request on this socket, whatever a route does. Also: ``rss_bytes(pid)`` and ``cpu_seconds(pid)``
of a process, from /proc.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def trivial_app():
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/status")
    async def status() -> dict:
        return {"status": "ok"}

    @app.post("/check")
    async def check() -> dict:
        return {"message": "nothing to do"}

    return app


async def _serve(path: Path) -> None:
    from agent.api.server import UnixApiServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with UnixApiServer(trivial_app(), path):
        await stop.wait()


class TrivialServer:
    def __init__(self, path: Path):
        self.socket = Path(path)
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> TrivialServer:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen([sys.executable, "-m", "tests.api.baseline", str(self.socket)], env=env, cwd=REPO)
        deadline = time.monotonic() + 30
        while not self._accepts():
            if self.process.poll() is not None:
                raise RuntimeError(f"the trivial server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the trivial server did not serve {self.socket} within 30 s")
            time.sleep(0.02)
        return self

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
            return True

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def rss_bytes(pid: int) -> int:
    """Resident set size (VmRSS) of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process (all its threads) has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15 of stat


if __name__ == "__main__":
    asyncio.run(_serve(Path(sys.argv[1])))

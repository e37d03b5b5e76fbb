"""Health: is a freshly restarted capability working? Polled until its ``timeout_s``.

A capability is healthy when every one of its units is active and, if its release names one,
its HTTP URL answers 2xx or its command exits 0. Without ``health`` in the feed, active units
are the whole check. The last reason it was not healthy is kept for the deployment record.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

from agent.tls import shared_ssl_context
from agent.deploy.services import ServiceController
from agent.errors import ServiceError
from agent.feed.model import HealthCheck

DEFAULT_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class HealthResult:
    healthy: bool
    detail: str
    attempts: int


class HealthChecker:
    def __init__(
        self,
        services: ServiceController,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        interval_s: float = POLL_INTERVAL_S,
    ):
        self.services = services
        self.http = http or httpx.Client(timeout=PROBE_TIMEOUT_S, trust_env=False, verify=shared_ssl_context())
        self.clock = clock
        self.sleep = sleep
        self.interval_s = interval_s

    def wait_healthy(self, units: Sequence[str], health: HealthCheck | None, *, timeout_s: float | None = None) -> HealthResult:
        """Probe until healthy or the deadline passes; never raises for an unhealthy service."""
        timeout = timeout_s if timeout_s is not None else (health.timeout_s if health else DEFAULT_TIMEOUT_S)
        deadline = self.clock() + timeout
        attempts = 0
        while True:
            attempts += 1
            problem = self.probe(units, health)
            if problem is None:
                return HealthResult(True, "healthy", attempts)
            if self.clock() >= deadline:
                return HealthResult(False, f"{problem} (still after {timeout:g} s, {attempts} checks)", attempts)
            self.sleep(min(self.interval_s, max(0.0, deadline - self.clock())))

    def probe(self, units: Sequence[str], health: HealthCheck | None) -> str | None:
        """None when healthy, else why not, in words."""
        for unit in units:
            try:
                state = self.services.state(unit)
            except ServiceError as error:
                return str(error)
            if state != "active":
                return f"unit {unit} is {state}"
        if health is None:
            return None
        if health.http:
            return self._probe_http(health.http)
        if health.command:
            return self._probe_command(health.command)
        return None

    def _probe_http(self, url: str) -> str | None:
        try:
            response = self.http.get(url, timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError as error:
            return f"{url} did not answer: {error.__class__.__name__}: {error}"
        if 200 <= response.status_code < 300:
            return None
        return f"{url} answered {response.status_code}"

    def _probe_command(self, command: str | list[str]) -> str | None:
        argv = shlex.split(command) if isinstance(command, str) else list(command)
        shown = " ".join(argv)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except (OSError, ValueError) as error:
            return f"health command {shown} cannot run: {error}"
        except subprocess.TimeoutExpired:
            return f"health command {shown} did not finish within {PROBE_TIMEOUT_S:g} s"
        if done.returncode == 0:
            return None
        said = (done.stderr or done.stdout).strip().splitlines()
        return f"health command {shown} exited {done.returncode}" + (f": {said[-1]}" if said else "")

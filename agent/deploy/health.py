"""Health: is a freshly restarted capability working? Polled until its ``timeout_s``.

A capability is healthy when every one of its units is active and, if its release names one,
its HTTP URL answers 2xx or its command exits 0. Without ``health`` in the feed, active units
are the whole check. The last reason it was not healthy is kept for the deployment record.

One HTTP check waits ``PROBE_TIMEOUT_S`` for an answer, then the next is tried. A health command
may run for what is left of its release's ``timeout_s`` (at least ``PROBE_TIMEOUT_S``, or the
whole timeout when shorter): a check that takes 20 s is slow, not broken. A command still
running then is killed with everything it started (its own process group), and the reason says
it was stopped and why.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
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
"""One HTTP check's wait for an answer; the least a health command is given (see above)."""
_COMMAND_POLL_S = 0.2


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
            problem = self.probe(units, health, time_left=deadline - self.clock())
            if problem is None:
                return HealthResult(True, "healthy", attempts)
            if self.clock() >= deadline:
                return HealthResult(False, f"{problem} (still after {timeout:g} s, {attempts} checks)", attempts)
            self.sleep(min(self.interval_s, max(0.0, deadline - self.clock())))

    def probe(self, units: Sequence[str], health: HealthCheck | None, *, time_left: float | None = None) -> str | None:
        """None when healthy, else why not, in words. ``time_left``: what is left of the wait for
        this release (default: its whole ``timeout_s``), which a health command may use."""
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
            left = health.timeout_s if time_left is None else time_left
            return self._probe_command(health.command, max(left, min(PROBE_TIMEOUT_S, health.timeout_s)), health.timeout_s)
        return None

    def _probe_http(self, url: str) -> str | None:
        try:
            response = self.http.get(url, timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError as error:
            return f"{url} did not answer: {error.__class__.__name__}: {error}"
        if 200 <= response.status_code < 300:
            return None
        return f"{url} answered {response.status_code}"

    def _probe_command(self, command: str | list[str], budget_s: float, timeout_s: float) -> str | None:
        """Run the health command for at most ``budget_s`` (what is left of the release's
        ``timeout_s``), or less if ``_command_deadline`` says so."""
        try:
            argv = shlex.split(command) if isinstance(command, str) else list(command)
            shown = " ".join(argv)
            # Its own session, so that a kill reaches what it started too: a shell's child
            # holding the output pipe would otherwise keep us waiting after the shell is gone.
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, errors="replace", start_new_session=True)
        except (OSError, ValueError) as error:
            return f"health command {command} cannot run: {error}"
        started = self.clock()
        while True:
            limit = self._command_deadline(started, budget_s)
            try:
                stdout, stderr = process.communicate(timeout=max(0.0, min(_COMMAND_POLL_S, limit - self.clock())))
                break
            except subprocess.TimeoutExpired:
                if self.clock() < limit:
                    continue
                _kill_group(process)
                ran = self.clock() - started
                why = (f"the {budget_s:g} s left of the release's health timeout_s ({timeout_s:g} s) ran out"
                       if limit >= started + budget_s else "the agent is stopping")
                return f"health command {shown} was stopped after {ran:.1f} s, still running: {why}"
        if process.returncode == 0:
            return None
        said = (stderr or stdout).strip().splitlines()
        return f"health command {shown} exited {process.returncode}" + (f": {said[-1]}" if said else "")

    def _command_deadline(self, started: float, budget_s: float) -> float:
        """When a health command started at ``started`` is stopped; asked again while it runs."""
        return started + budget_s


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        process.communicate(timeout=5)  # reap it; its pipes close with the group
    except subprocess.TimeoutExpired:  # something left the group and holds them: not waited for
        process.kill()


STOP_GRACE_S = 5.0
"""Once the agent is asked to stop, a health wait gives the service at most this long more: a
release whose ``timeout_s`` is ten minutes must not hold SIGTERM (and systemd's stop) that long."""


class StopAwareHealth(HealthChecker):
    """The engine's health checks, cut short once the agent is stopping.

    A wait that is under way when the stop comes ends ``grace_s`` later at the latest (the
    engine then undoes the unverified change, and the service treats that as interrupted, not
    as a failed release); sleeps between probes wake at once on the stop.
    """

    def __init__(self, services: ServiceController, stopping: threading.Event, *, grace_s: float = STOP_GRACE_S):
        super().__init__(services, sleep=lambda seconds: stopping.wait(seconds))
        self.stopping = stopping
        self.grace_s = grace_s
        self._stop_at: float | None = None

    def wait_healthy(self, units, health, *, timeout_s: float | None = None):
        timeout = timeout_s if timeout_s is not None else (health.timeout_s if health else DEFAULT_TIMEOUT_S)
        started = self.clock()
        deadline = started + timeout
        attempts = 0
        while True:
            attempts += 1
            problem = self.probe(units, health, time_left=deadline - self.clock())
            if problem is None:
                return HealthResult(True, "healthy", attempts)
            now = self.clock()
            if self.stopping.is_set():
                deadline = min(deadline, max(started, self._stop_seen(now)) + self.grace_s)
            if now >= deadline:
                cut = " (cut short: the agent is stopping)" if self.stopping.is_set() and now < started + timeout else ""
                return HealthResult(False, f"{problem} (still after {now - started:.0f} s, {attempts} checks){cut}", attempts)
            self.sleep(min(self.interval_s, max(0.0, deadline - now)))

    def _command_deadline(self, started: float, budget_s: float) -> float:
        # A health command may run for minutes: a stop during it gives it ``grace_s`` more.
        deadline = super()._command_deadline(started, budget_s)
        if self.stopping.is_set():
            deadline = min(deadline, max(started, self._stop_seen(self.clock())) + self.grace_s)
        return deadline

    def _stop_seen(self, now: float) -> float:
        if self._stop_at is None:
            self._stop_at = now
        return self._stop_at

"""How long a health command may run (issue 12): up to what is left of its release's
``timeout_s``, not a silent 5 s per check; a command cut off is said to be, with why, and is
killed with what it started. Real commands, a real clock; the bounds asserted are generous."""

from __future__ import annotations

import threading
import time

from agent.deploy import health as health_module
from agent.deploy.health import HealthChecker, StopAwareHealth
from agent.deploy.services import ServiceController
from agent.feed.model import HealthCheck

NO_UNITS: list[str] = []  # only the command is checked: no systemctl is run


def checker(**options) -> HealthChecker:
    return HealthChecker(ServiceController(["systemctl"]), interval_s=0.1, **options)


def test_a_slow_command_may_use_its_release_timeout(monkeypatch):
    monkeypatch.setattr(health_module, "PROBE_TIMEOUT_S", 0.5)  # one check's old cap, made short for the test
    slow = HealthCheck(command=["/bin/sh", "-c", "sleep 1.5; exit 0"], timeout_s=8)
    result = checker().wait_healthy(NO_UNITS, slow)
    assert result.healthy and result.attempts == 1, result.detail


def test_a_command_still_running_at_the_deadline_is_stopped_and_the_reason_says_so():
    stuck = HealthCheck(command=["/bin/sleep", "60"], timeout_s=1)
    started = time.monotonic()
    result = checker().wait_healthy(NO_UNITS, stuck)
    assert not result.healthy
    assert "health command /bin/sleep 60 was stopped after" in result.detail and "timeout_s (1 s) ran out" in result.detail, result.detail
    assert time.monotonic() - started < 4.5  # not five seconds per check


def test_what_the_command_started_is_stopped_with_it():
    # The shell's child keeps the output pipe open: killing only the shell would leave us waiting 30 s.
    holder = HealthCheck(command=["/bin/sh", "-c", "sleep 30; echo done"], timeout_s=1)
    started = time.monotonic()
    result = checker().wait_healthy(NO_UNITS, holder)
    assert not result.healthy and "was stopped after" in result.detail, result.detail
    assert time.monotonic() - started < 10


def test_a_single_check_of_the_bake_watch_gets_the_whole_timeout(monkeypatch):
    monkeypatch.setattr(health_module, "PROBE_TIMEOUT_S", 0.5)
    slow = HealthCheck(command=["/bin/sh", "-c", "sleep 1; exit 3"], timeout_s=8)
    assert checker().probe(NO_UNITS, slow) == "health command /bin/sh -c sleep 1; exit 3 exited 3"


def test_a_stop_cuts_a_running_command_short_after_the_grace():
    stopping = threading.Event()
    watcher = StopAwareHealth(ServiceController(["systemctl"]), stopping, grace_s=0.5)
    threading.Timer(0.5, stopping.set).start()
    started = time.monotonic()
    result = watcher.wait_healthy(NO_UNITS, HealthCheck(command=["/bin/sleep", "60"], timeout_s=120))
    assert not result.healthy and "the agent is stopping" in result.detail, result.detail
    assert time.monotonic() - started < 4  # the grace after the stop, not a whole check (nor the two minutes)

"""The one thread of a coordinator: what is owed to the lock service, and a periodic task.

A slot given back, a failure recorded, a state published while the lock service is unreachable
is not lost and does not block the agent: it is *owed*, and paid in the order it was owed (a
failure is recorded before the slot it came with is given back, DESIGN §12 Halt), by this
thread with a backoff, or by the next ``acquire`` before it takes a new slot. The periodic task
is etcd's lease renewal.

    owe(what, op)     queue op and pay the queue now (or, with now=False, leave it to the
                      thread); never raises for an unreachable service: the op stays queued
    settle()          pay what is owed now, in this thread; True when nothing is left
    every(task)       task() → seconds until it should run again; run by the thread
    close()           stop the thread (waits at most a few seconds)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

from agent.errors import FleetUnreachable
from agent.fleet.waiting import Backoff

log = logging.getLogger(__name__)


class Background:
    def __init__(self, name: str, *, retry_first: float = 1.0, retry_cap: float = 30.0):
        self._name = name
        self._owed: deque[tuple[str, Callable[[], None]]] = deque()
        self._paying = threading.Lock()
        self._state = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._task: Callable[[], float] | None = None
        self._task_due = 0.0
        self._retry = Backoff(retry_first, retry_cap)
        self._retry_due = 0.0

    @property
    def owing(self) -> list[str]:
        with self._state:
            return [what for what, _ in self._owed]

    def owe(self, what: str, op: Callable[[], None], *, now: bool = True) -> None:
        """Queue ``op``; with ``now``, pay the queue in this thread first (blocking while the
        service is tried), else leave it to the thread."""
        with self._state:
            self._owed.append((what, op))
        if now and self.settle():
            return
        if now:
            log.warning("fleet: %s is owed to the lock service, retried in the background", what)
            with self._state:
                self._retry_due = time.monotonic() + self._retry.next()
        self._start()
        self._wake.set()

    def settle(self) -> bool:
        """Pay what is owed, oldest first; stop at the first that cannot be paid now."""
        with self._paying:
            while True:
                with self._state:
                    if not self._owed:
                        self._retry.reset()
                        return True
                    what, op = self._owed[0]
                try:
                    op()
                except FleetUnreachable as error:
                    log.info("fleet: %s still owed: %s", what, error)
                    return False
                except Exception:  # an owed op that can never succeed must not block the others
                    log.exception("fleet: %s failed and is dropped", what)
                with self._state:
                    if self._owed and self._owed[0][1] is op:
                        self._owed.popleft()

    def every(self, task: Callable[[], float], first_in: float) -> None:
        with self._state:
            self._task = task
            self._task_due = time.monotonic() + first_in
        self._start()
        self._wake.set()

    def stop_task(self) -> None:
        with self._state:
            self._task = None

    def close(self, timeout: float = 5.0) -> None:
        with self._state:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _start(self) -> None:
        with self._state:
            if self._thread is not None or self._stopping:
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._state:
                if self._stopping:
                    return
                now = time.monotonic()
                waits = []
                if self._task is not None:
                    waits.append(self._task_due - now)
                if self._owed:
                    waits.append(self._retry_due - now)
            timeout = max(0.0, min(waits)) if waits else None
            self._wake.wait(timeout)
            self._wake.clear()
            with self._state:
                if self._stopping:
                    return
                owed = bool(self._owed) and time.monotonic() >= self._retry_due
                task = self._task if self._task is not None and time.monotonic() >= self._task_due else None
            if owed and not self.settle():
                with self._state:
                    self._retry_due = time.monotonic() + self._retry.next()
            if task is not None:
                try:
                    again = task()
                except Exception:
                    log.exception("fleet: background task failed")
                    again = 5.0
                with self._state:
                    if self._task is task:
                        self._task_due = time.monotonic() + again

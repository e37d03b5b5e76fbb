"""How every backend waits for a slot: in short ticks, so that SIGTERM (``should_stop``) and the
give-up deadline (``critical_wait`` of a forced security fix) are noticed within a tick, with a
jittered backoff between attempts, and telling the operator only when what it waits for changes.

    WaitLoop    should_stop, give_up_after, pause(seconds, wake) → "stopped" | "timed-out" | None
    Backoff     first, first×2, ... up to cap, each ±20 %: hosts that started together drift apart
    Reporter    calls on_wait with a SlotWait only when it differs from the last one
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from agent.fleet.model import SlotWait

TICK_S = 0.25
"""How often should_stop and the deadline are looked at while waiting."""


class WaitLoop:
    def __init__(self, should_stop: Callable[[], bool], give_up_after: float | None, *,
                 clock: Callable[[], float] = time.monotonic, tick: float = TICK_S):
        self._should_stop = should_stop
        self._clock = clock
        self._tick = tick
        self.started = clock()
        self._deadline = None if give_up_after is None else self.started + max(0.0, give_up_after)

    def stop_reason(self) -> str | None:
        if self._should_stop():
            return "stopped"
        if self._deadline is not None and self._clock() >= self._deadline:
            return "timed-out"
        return None

    def pause(self, seconds: float, wake: threading.Event | None = None) -> str | None:
        """Wait ``seconds`` (or until ``wake`` is set); the reason to stop if one came up first."""
        until = self._clock() + seconds
        while True:
            reason = self.stop_reason()
            if reason is not None:
                return reason
            left = until - self._clock()
            if left <= 0 or (wake is not None and wake.is_set()):
                return None
            step = min(self._tick, left)
            if self._deadline is not None:
                step = min(step, max(0.0, self._deadline - self._clock()) + 0.001)
            if wake is not None:
                wake.wait(step)
            else:
                time.sleep(step)

    def waited(self) -> float:
        return self._clock() - self.started


class Backoff:
    def __init__(self, first: float, cap: float, *, rng: random.Random | None = None):
        self.first, self.cap = first, cap
        self._next = first
        self._rng = rng or random.Random()

    def next(self) -> float:
        value = self._next
        self._next = min(self.cap, self._next * 2)
        return value * self._rng.uniform(0.8, 1.2)

    def reset(self) -> None:
        self._next = self.first


class Reporter:
    def __init__(self, on_wait: Callable[[SlotWait], None]):
        self._on_wait = on_wait
        self.last: SlotWait | None = None

    def __call__(self, wait: SlotWait) -> None:
        if wait != self.last:
            self.last = wait
            self._on_wait(wait)

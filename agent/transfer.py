"""The floor under a transfer's rate: when a feed or artifact download is not worth waiting for.

Timeouts are per read, so a mirror that sends a byte every 29 seconds never trips one and holds
the agent's single worker (and every admin action queued behind it) for as long as the body
lasts. ``TransferPace`` measures a feed or artifact body as it arrives and says when to give up:

    rate floor   fewer than ``min_rate`` bytes per second over a window of at least ``window_s``
                 (windows are back to back; each is judged when a chunk arrives, so a silence
                 is still bounded by the read timeout)
    deadline     longer than ``window_s + size / min_rate`` for a body of at most ``size`` bytes
                 (the artifact's signed size, ``feed.max_bytes`` for the feed): all of it at the
                 floor's rate, plus one window

A body that has arrived whole is never judged. Costs one monotonic clock read per chunk, so a
fast transfer is not slowed down. The floor is ``[download]`` in the agent config.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MIN_RATE = 1024
DEFAULT_RATE_WINDOW_S = 30.0


@dataclass(frozen=True, slots=True)
class TransferFloor:
    """The slowest transfer worth waiting for (``[download]`` in the agent config)."""

    min_rate: int = DEFAULT_MIN_RATE
    """Bytes per second, measured over every ``window_s``."""
    window_s: float = DEFAULT_RATE_WINDOW_S

    def __post_init__(self) -> None:
        if self.min_rate <= 0 or self.window_s <= 0:
            raise ValueError(f"a transfer floor needs a positive rate and window, not {self.min_rate} B/s over {self.window_s} s")

    def deadline_s(self, size: int) -> float:
        """The longest a body of at most ``size`` bytes may take."""
        return self.window_s + size / self.min_rate

    def describe(self) -> str:
        return f"the floor of {format_rate(self.min_rate)}"


class TransferPace:
    """One body's progress against a floor; ``too_slow`` says why to abandon it, or None."""

    def __init__(
        self, floor: TransferFloor, *, size: int, expected: int | None = None, clock: Callable[[], float] = time.monotonic
    ):
        """``size``: the most the body may hold (sets the deadline); ``expected``: its length when
        announced, so that the chunk completing it is never judged."""
        self._floor = floor
        self._size = size
        self._expected = expected
        self._clock = clock
        self._start = self._mark = clock()
        self._deadline = self._start + floor.deadline_s(size)
        self.received = 0
        self._marked = 0

    def too_slow(self, count: int) -> str | None:
        """Count ``count`` more bytes received; the reason to give up, as words, or None."""
        self.received += count
        if self._expected is not None and self.received >= self._expected:
            return None
        now = self._clock()
        if now > self._deadline:
            elapsed = now - self._start
            return (
                f"{self.received} bytes in {elapsed:.0f} s ({format_rate(self.received / elapsed)}), past the "
                f"{self._floor.deadline_s(self._size):.0f} s deadline for {self._size} bytes at {self._floor.describe()}"
            )
        elapsed = now - self._mark
        if elapsed < self._floor.window_s:
            return None
        rate = (self.received - self._marked) / elapsed
        if rate < self._floor.min_rate:
            return f"{format_rate(rate)} over the last {elapsed:.1f} s, below {self._floor.describe()}"
        self._mark, self._marked = now, self.received
        return None


def format_rate(bytes_per_s: float) -> str:
    """``12 B/s``, ``1.0 KiB/s``, ``3.4 MiB/s``."""
    if bytes_per_s < 1024:
        return f"{bytes_per_s:.0f} B/s"
    if bytes_per_s < 1024**2:
        return f"{bytes_per_s / 1024:.1f} KiB/s"
    return f"{bytes_per_s / 1024**2:.1f} MiB/s"

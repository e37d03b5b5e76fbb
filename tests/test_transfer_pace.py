"""The transfer floor on its own, on a clock the test moves: when a body is given up, and why.

The feed client and the artifact cache use it against real trickling servers in
tests/test_feed_client.py and tests/deploy/test_artifacts.py.
"""

from __future__ import annotations

import pytest

from agent.transfer import TransferFloor, TransferPace, format_rate

FLOOR = TransferFloor(min_rate=1024, window_s=30.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def pace(size: int = 10 * 1024**2, expected: int | None = None, floor: TransferFloor = FLOOR) -> tuple[TransferPace, Clock]:
    clock = Clock()
    return TransferPace(floor, size=size, expected=expected, clock=clock), clock


def test_a_byte_every_29_seconds_is_given_up_after_the_first_window():
    meter, clock = pace()
    clock.now += 29
    assert meter.too_slow(1) is None  # no window has passed yet: no verdict, however slow
    clock.now += 29

    assert meter.too_slow(1) == "0 B/s over the last 58.0 s, below the floor of 1.0 KiB/s"


def test_a_transfer_at_the_floor_or_above_goes_on_window_after_window():
    meter, clock = pace()
    for _ in range(100):
        clock.now += 1
        assert meter.too_slow(1024) is None


def test_every_window_is_judged_on_its_own_so_a_fast_start_does_not_pay_for_a_stall():
    meter, clock = pace()
    clock.now += 1
    assert meter.too_slow(1024**2) is None  # a MiB in the first second
    clock.now += 30
    assert meter.too_slow(1024**2) is None  # that window closes at 1 MiB in 31 s: fine
    clock.now += 31

    assert meter.too_slow(100) == "3 B/s over the last 31.0 s, below the floor of 1.0 KiB/s"


def test_the_chunk_that_completes_the_body_is_never_judged():
    meter, clock = pace(size=5000, expected=5000)
    clock.now += 29
    assert meter.too_slow(10) is None
    clock.now += 200  # a long silence, then the rest at once: the body is whole, nothing to give up

    assert meter.too_slow(4990) is None


def test_past_the_deadline_from_the_declared_size_the_transfer_is_given_up():
    # 2 KiB at 1 KiB/s: two seconds, plus one 30 s window.
    meter, clock = pace(size=2048)
    assert FLOOR.deadline_s(2048) == 32
    clock.now += 29
    assert meter.too_slow(2000) is None
    clock.now += 4

    assert meter.too_slow(1) == "2001 bytes in 33 s (61 B/s), past the 32 s deadline for 2048 bytes at the floor of 1.0 KiB/s"


@pytest.mark.parametrize("rate, window", [(0, 30.0), (-1, 30.0), (1024, 0.0)])
def test_a_floor_needs_a_positive_rate_and_window(rate, window):
    with pytest.raises(ValueError, match="positive"):
        TransferFloor(min_rate=rate, window_s=window)


@pytest.mark.parametrize("rate, words", [(0, "0 B/s"), (1023.4, "1023 B/s"), (1024, "1.0 KiB/s"), (3.5 * 1024**2, "3.5 MiB/s")])
def test_rates_are_written_for_people(rate, words):
    assert format_rate(rate) == words

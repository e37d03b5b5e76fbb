"""Maintenance windows: ``"Sat 02:00-05:00"``, ``"Mon-Fri 01:00-03:00"``, ``"Sat,Sun 22:00-02:00"``
or ``"02:00-04:00"`` (every day), in the configured time zone. A window whose end is before its
start runs past midnight into the next day; the days name the day it starts on."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
WINDOW_PATTERN = re.compile(r"^(?:(?P<days>[A-Za-z]{3}(?:[-,][A-Za-z]{3})*)\s+)?(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})$")


def _days(text: str | None) -> set[int]:
    if not text:
        return set(range(7))
    chosen: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        start = DAYS.index(first.capitalize())
        end = DAYS.index(last.capitalize()) if last else start
        chosen.update((start + offset) % 7 for offset in range((end - start) % 7 + 1))
    return chosen


def in_window(windows: list[str], timezone: str, now: datetime) -> bool:
    """Whether ``now`` falls in any of the windows (config validation has checked their form)."""
    local = now.astimezone(ZoneInfo(timezone))
    today, clock = local.weekday(), local.time()
    for window in windows:
        match = WINDOW_PATTERN.match(window.strip())
        days = _days(match["days"])
        start, end = time.fromisoformat(match["start"]), time.fromisoformat(match["end"])
        if start < end:
            if today in days and start <= clock < end:
                return True
        elif (today in days and clock >= start) or ((today - 1) % 7 in days and clock < end):
            return True
    return False


def next_window_start(windows: list[str], timezone: str, now: datetime) -> datetime | None:
    """When the next window opens after ``now`` (``now`` itself if one is open); None without windows."""
    if not windows:
        return None
    if in_window(windows, timezone, now):
        return now
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    starts = []
    for window in windows:
        match = WINDOW_PATTERN.match(window.strip())
        days = _days(match["days"])
        start = time.fromisoformat(match["start"])
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            if day.weekday() not in days:
                continue
            candidate = datetime.combine(day, start, tzinfo=zone)
            if candidate > local:
                starts.append(candidate)
                break
    return min(starts).astimezone(now.tzinfo) if starts else None

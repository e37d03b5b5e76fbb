"""Maintenance windows, evaluated in the configured time zone."""

from datetime import datetime, timezone

import pytest

from agent.window import in_window

SATURDAY_3AM_UTC = datetime(2026, 11, 28, 3, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "windows,zone,expected",
    [
        (["Sat 02:00-05:00"], "UTC", True),
        (["Sat 03:30-05:00"], "UTC", False),
        (["Sun 02:00-05:00"], "UTC", False),
        (["Sat 02:00-05:00"], "America/New_York", False),  # 22:00 on Friday there
        (["Fri 21:00-23:00"], "America/New_York", True),
        (["Fri 22:00-04:00"], "UTC", True),  # past midnight, named by the day it starts
        (["Mon-Fri 01:00-04:00"], "UTC", False),
        (["Fri-Mon 01:00-04:00"], "UTC", True),
        (["Mon 01:00-02:00", "Sat,Sun 02:59-03:01"], "UTC", True),
        (["02:00-04:00"], "UTC", True),
    ],
)
def test_windows(windows, zone, expected):
    assert in_window(windows, zone, SATURDAY_3AM_UTC) is expected

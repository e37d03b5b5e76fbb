"""``[download]``: the transfer floor's keys, their defaults, and bad values named by key path."""

from __future__ import annotations

import pytest

from agent.config import config_from_dict
from agent.errors import ConfigError
from agent.transfer import DEFAULT_MIN_RATE, DEFAULT_RATE_WINDOW_S


def test_the_defaults_are_the_floor_the_clients_use_without_a_config():
    download = config_from_dict({}).download
    assert (download.min_rate, download.rate_window_s) == (DEFAULT_MIN_RATE, DEFAULT_RATE_WINDOW_S) == (1024, 30.0)


def test_a_floor_is_read_from_the_table():
    download = config_from_dict({"download": {"min_rate": 65536, "rate_window": "2m"}}).download
    assert (download.min_rate, download.rate_window_s) == (65536, 120.0)


@pytest.mark.parametrize(
    "table, expected",
    [
        ({"min_rate": 0}, "download.min_rate: Input should be greater than 0"),
        ({"min_rate": "1KiB/s"}, "download.min_rate: Input should be a valid integer"),
        ({"rate_window": "30 seconds"}, "download.rate_window: '30 seconds' is not a duration"),
        ({"rate_window": "0s"}, "download.rate_window: '0s' is not a duration"),
        ({"min_rate_bytes": 1024}, "download.min_rate_bytes: unknown key"),
    ],
)
def test_bad_values_are_refused_by_key_path(table, expected):
    with pytest.raises(ConfigError) as raised:
        config_from_dict({"download": table})
    assert any(str(issue).startswith(expected) for issue in raised.value.issues), raised.value.issues

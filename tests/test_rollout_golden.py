"""Golden values of host wariness: a fleet's rollout order must not change between agent versions.

A host's place in a staged rollout is ``wariness(instance_id)``. If an upgrade changed it (a
different hash, salt, encoding or byte order, or Python's per-process ``hash()``), hosts that had
already taken a release could fall behind hosts that had not, and the same host could land in
another place on each restart. These exact values were computed once and must stay.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from agent.feed.model import Rollout
from agent.planning.rollout import has_reached, wariness

ROOT = Path(__file__).resolve().parents[1]

GOLDEN = {
    "host-01": 0.8309353373210351,
    "host-02": 0.04572559280825318,
    "host-03": 0.6526806104980395,
    "HOST-01": 0.09571550924993004,  # ids are taken as they are: case matters
    "db-eu-west-1.example.com": 0.966080007393095,
    "4c4c4544004d3510804bb4c04f4e4d32": 0.5717589850515038,  # an /etc/machine-id
    "hôte-7": 0.47021962383893423,  # UTF-8
}


@pytest.mark.parametrize(("instance_id", "expected"), GOLDEN.items())
def test_wariness_of_a_fixed_host_is_its_golden_value(instance_id, expected):
    assert wariness(instance_id) == expected


def test_the_fleets_rollout_order_is_fixed():
    assert sorted(GOLDEN, key=wariness) == [
        "host-02", "HOST-01", "hôte-7", "4c4c4544004d3510804bb4c04f4e4d32", "host-03", "host-01",
        "db-eu-west-1.example.com",
    ]


def test_half_way_through_a_rollout_the_same_hosts_have_it():
    start = datetime(2026, 11, 20, tzinfo=timezone.utc)
    rollout = Rollout(start=start, hours=10)

    reached = {host for host in GOLDEN if has_reached(rollout, start + timedelta(hours=5), wariness(host))}

    assert reached == {"host-02", "HOST-01", "hôte-7"}


def test_wariness_does_not_depend_on_the_process():
    """Python salts ``hash()`` per process: a fresh interpreter with another seed gets the same values."""
    script = f"import json; from agent.planning.rollout import wariness; print(json.dumps([wariness(i) for i in {list(GOLDEN)!r}]))"
    for seed in ("0", "12345"):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60,
                              check=True, env={**os.environ, "PYTHONHASHSEED": seed})
        assert json.loads(done.stdout) == list(GOLDEN.values()), seed

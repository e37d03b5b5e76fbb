"""docs/api.md is generated from the app (``python -m agent.api.reference``) and its one shell
example works against the real daemon."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from agent.api.app import create_app
from agent.api.reference import render_reference
from agent.config import RolesConfig
from tests.daemon.site import Release, Site
from tests.test_engine import SYSTEMCTL3

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_reference_is_what_the_code_says():
    assert DOC.read_text(encoding="utf-8") == render_reference(create_app(None, RolesConfig())), \
        "docs/api.md is stale: run `python -m agent.api.reference > docs/api.md`"


def test_the_curl_example_reads_the_status():
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    example = re.search(r"```sh\n(curl [^\n]+)\n```", DOC.read_text(encoding="utf-8"))[1]
    site = Site()
    try:
        site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
        site.configure("manual-approval")
        site.start()
        done = subprocess.run(example.replace("/run/id1/agent.sock", str(site.socket)), shell=True,
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["instance_id"] == "host-01"
    finally:
        site.close()

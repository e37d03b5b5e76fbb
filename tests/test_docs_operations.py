"""docs/operations.md's examples, run in order against the real daemon as they are written.

The host: a manual-approval agent whose feed offers platform releases 1.0.0 and 1.1.0 of
core/auth (real units run by systemctl3). ``id1`` finds the agent through ``$ID1_SOCKET``, as
an admin's shell would after ``export ID1_SOCKET=…``. After each block the test waits until the
agent is idle again (an approval deploys in the background), then checks what the block did.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.site import REPO, Release, Site, poll_until
from tests.test_engine import SYSTEMCTL3

DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


def run_blocks() -> list[str]:
    return re.findall(r"^```sh run\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)


def test_the_operations_guide_runs_as_written(tmp_path):
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    site = Site()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id1").write_text(f"#!/bin/sh\nexec {sys.executable} -m agent.cli.main \"$@\"\n")
    (bin_dir / "id1").chmod(0o755)
    env = {**os.environ, "ID1_SOCKET": str(site.socket), "PYTHONPATH": str(REPO), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    try:
        site.publish(1, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
        site.configure("manual-approval")
        site.start()
        site.wait_for(lambda s: s["pending_approval"], what="the first approval")
        said = []
        for block in run_blocks():
            before = site.status()["revision"] or 0
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
            said.append(done.stdout + done.stderr)
            poll_until(lambda: (lambda s: s["deployment"] is None and s["activity"] == "idle")(site.status()),
                       timeout=120, what="the agent to be idle")
            if "id1 approve" in block:  # an approved update deploys on the worker after approve answers
                site.wait_for(lambda s: (s["revision"] or 0) > before and s["deployment"] is None,
                              timeout=120, what=f"the revision after {before}")
        status = site.status()
        assert status["revision"] == 3 and status["platform"] == "1.1.0"  # rolled back to revision 1's manifest
        assert "approval-1" in said[2]
        assert (tmp_path / "report.md").read_text().startswith("# ID-1 compliance report: host-01")
        assert any("platform@1.0.0" in item["ref"] or "core/auth@1.0.0" in item["ref"] for item in site.get("/blocked").json())
    finally:
        site.close()

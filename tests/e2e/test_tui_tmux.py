"""``id1 tui`` end to end: the real dashboard in a real terminal (tmux, 80x24) against the real
daemon (``tests.daemon.site.Site``: a subprocess on a temp socket, a signed feed from a loopback
server, units run as real processes by systemctl3), driven by keys as an admin would.

The admin approves the pending update from Updates (``2``, ``a``, ``y``) and the daemon deploys
it; a second revision comes (a pin and an approval with the CLI); from History (``3``) the admin
moves to the older revision, ``r``, gives a reason and confirms, and the daemon rolls back to it;
``q`` quits and nothing is left running in the pane. Once with ``TERM=xterm-256color`` and once
with ``TERM=vt100``. The screen is read with ``tmux capture-pane``, polled until a deadline.
"""

from __future__ import annotations

import os
import re
import sys

import pytest

from tests.daemon.site import REPO, Release, Site
from tests.e2e.terminal import Tmux
from tests.test_engine import SYSTEMCTL3


@pytest.fixture
def site():
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    box = Site()
    try:
        box.publish(1, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0"}, notes={"1.0.0": "First release."})
        box.configure("manual-approval")
        box.start()
        box.wait_for(lambda s: s["pending_approval"], what="the first approval")
        yield box
    finally:
        box.stop()
        print(f"--- agent log ---\n{box.log.read_text()[-4000:] if box.log.exists() else '(none)'}")  # shown if it failed
        box.close()


def versions(capabilities: list[dict]) -> dict[str, str]:
    return {item["capability"]: item["version"] for item in capabilities}


def manifest_versions(manifest: dict) -> dict[str, str]:
    return {f"{suite}/{name}": capability["version"]
            for suite, body in manifest["suites"].items() for name, capability in body["capabilities"].items()}


@pytest.mark.parametrize("term", ["xterm-256color", "vt100"])
def test_approve_then_roll_back_from_the_dashboard_in_a_real_terminal(site, term, tmp_path):
    command = [sys.executable, "-m", "agent.cli.main", "tui", "--socket", str(site.socket)]
    with Tmux(tmp_path / "tmux", command, term=term, env={**os.environ, "PYTHONPATH": str(REPO)}) as pane:
        assert pane.field("pane_width") == "80" and pane.field("pane_height") == "24"
        environment = dict(item.split("=", 1) for item in open(f"/proc/{pane.pid}/environ").read().split("\0") if "=" in item)
        assert environment["TERM"] == term

        # 1 Overview: the host and the approval waiting.
        screen = pane.wait_for("approval-1: 1 change AWAIT approval", what="the overview with the pending approval")
        assert re.search(r"host-01 \| root \(admin\) \| agent: idle", screen), screen
        assert "Running    nothing deployed yet" in screen and "[1 Overview]" in screen

        # 2 Updates, a approve, y confirm: the daemon deploys revision 1.
        pane.press("2")
        screen = pane.wait_for(lambda s: re.search(r"approval-1\s+PENDING", s) and "First release." in s,
                               what="approval-1 on Updates")
        assert re.search(r"core/auth\s+\(new\) -> 1\.0\.0\s+latest", screen), screen
        pane.press("a")
        pane.wait_for("Approve approval-1?", what="the approve dialog")
        pane.press("y")
        status = site.wait_for(lambda s: s["revision"] == 1 and s["deployment"] is None, what="revision 1")
        assert versions(status["capabilities"]) == {"core/auth": "1.0.0"} and site.unit_active()
        pane.wait_for(lambda s: re.search(r"approval-1\s+deployed\s+.*root", s), what="approval-1 shown deployed")
        pane.press("1")
        pane.wait_for("Running    revision 1, platform 1.0.0", what="revision 1 on the overview")

        # A second revision, from the CLI: pin 1.1.0 and approve it.
        site.ok("pin", "capability", "core/auth", "1.1.0", "--reason", "try 1.1.0")
        site.wait_for(lambda s: s["pending_approval"], what="the approval of 1.1.0")
        site.ok("approve", "--yes")
        site.wait_for(lambda s: s["revision"] == 2 and s["deployment"] is None, what="revision 2")
        pane.wait_for("Running    revision 2, platform 1.0.0", what="revision 2 on the overview (live events)")

        # 3 History: the newest (running) first; down to revision 1, r, a reason, Enter confirms.
        pane.press("3")
        pane.wait_for(lambda s: re.search(r"\b2\s+.*RUNNING", s) and "Revision   2, platform 1.0.0 (RUNNING)" in s,
                      what="History with revision 2 running")
        pane.press("Down")
        screen = pane.wait_for(lambda s: "from revision 2 it would change 1 capability" in s, what="revision 1's difference")
        assert "Revision   1, platform 1.0.0" in screen and re.search(r"core/auth\s+1\.1\.0 -> 1\.0\.0", screen), screen
        pane.press("r")
        screen = pane.wait_for("Roll back to revision 1?", what="the rollback preview")
        assert "From revision 2 to revision 1" in screen
        pane.type("e2e: back to 1.0.0")
        pane.press("Enter")
        status = site.wait_for(lambda s: s["revision"] == 3 and s["deployment"] is None, what="the rollback (revision 3)")
        revision_1 = site.get("/revisions/1").json()["manifest"]
        revision_3 = site.get("/revisions/3").json()["manifest"]
        assert versions(status["capabilities"]) == manifest_versions(revision_1) == manifest_versions(revision_3) \
            == {"core/auth": "1.0.0"}
        assert revision_3["platform"] == revision_1["platform"] and site.unit_active()
        rollback = site.audit("rollback")[0]
        assert rollback["actor"] == "root" and rollback["why"] == "e2e: back to 1.0.0", rollback
        pane.wait_for(lambda s: re.search(r"\b3\s+.*RUNNING", s), what="revision 3 running on History")

        # q quits: the dashboard has ended, cleanly, and is gone.
        pane.press("q")
        assert pane.wait_exit() == 0, pane.screen()
        with pytest.raises(ProcessLookupError):
            os.kill(pane.pid, 0)
        assert "Traceback" not in pane.screen()

"""The sandbox of id1-agent.service as it is live on systemd, measured from inside it.

A capability whose health command is tests/hosts/sandbox_probe.py is deployed by the installed
agent, so the probe runs under the agent's own sandbox (what its health commands and systemctl
inherit). What it measured must be what docs/security.md says, line for line; and the live
``systemd-analyze security`` exposure of the unit stays at most 3.0.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

from tests.hosts.agent import AGENT
from tests.hosts.vendor import Release

REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "tests" / "hosts" / "sandbox_probe.py"
SECURITY_DOC = REPO / "docs" / "security.md"
REPORT = "/var/lib/id1/sandbox-probe.json"
HOST_TMP_MARKER = "/tmp/id1-host-tmp-marker"
MAX_EXPOSURE = 3.0


def documented_sandbox() -> dict[str, str]:
    """The table between the sandbox markers of docs/security.md: what → allowed | denied (…)."""
    text = SECURITY_DOC.read_text()
    table = text.split("<!-- sandbox-measured:start -->")[1].split("<!-- sandbox-measured:end -->")[0]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] not in ("what the agent (or a command it runs) tries", "") and not set(cells[0]) <= set("-: "):
            rows[cells[0]] = cells[1].strip("*")
    return rows


def test_the_live_sandbox_is_what_the_security_doc_says(make_host, deb, vendor):
    host = make_host("agent-sandbox", agent=True)
    host.install(deb)
    host.run("touch", HOST_TMP_MARKER)
    feed_port = urlsplit(vendor.feed_url).port
    probe = Release("core/probe", "1.0.0", {"probe.py": PROBE.read_text()}, [], {
        "command": ["/usr/bin/python3", "/var/lib/id1/releases/core/probe/current/probe.py", REPORT, HOST_TMP_MARKER, str(feed_port)],
        "timeout_s": 30,
    })
    vendor.publish({"1.0.0": [probe]})
    host.configure(vendor)
    host.systemctl("start", AGENT)
    host.id1("check")
    assert host.wait_idle()["revision"] == 1
    measured = json.loads(host.path(REPORT).read_text())
    print("\n".join(f"{what}: {result}" for what, result in measured.items()))
    assert measured == documented_sandbox()

    analysis = host.run("systemd-analyze", "security", "--no-pager", AGENT).stdout
    score = float(re.search(r"Overall exposure level for id1-agent\.service: (\d+\.\d+)", analysis)[1])
    print(f"live systemd-analyze security {AGENT}: {score}")
    assert score <= MAX_EXPOSURE, analysis[-3000:]

"""SIGKILL of the agent in the middle of a deployment, after the switch, on a real systemd host:
systemd restarts it (Restart=on-failure) and the host converges on the old or the new revision,
healthy, with a store that reads and an audit chain that verifies."""

from __future__ import annotations

import json

from tests.hosts.agent import AGENT
from tests.hosts.vendor import Service
from tests.ports import free_port
from tests.systemd.test_agent_on_systemd import WEB, answer


def test_an_agent_killed_after_the_switch_is_restarted_and_the_host_converges(make_host, deb, vendor):
    host = make_host("agent-crash", agent=True)
    host.install(deb)
    web = Service("core/web", port=free_port())
    vendor.publish({"1.0.0": [web.release("1.0.0")]})
    host.configure(vendor)
    host.systemctl("start", AGENT)
    host.id1("check")
    assert host.wait_idle()["revision"] == 1

    # 1.1.0 takes 20 s to answer: the deployment sits in `verifying`, the new version switched in.
    vendor.publish({"1.0.0": [web.release("1.0.0")], "1.1.0": [web.release("1.1.0", start_delay_s=20)]})
    pid = host.unit_property(AGENT, "MainPID")
    check = host.spawn("id1", "check")
    try:
        def verifying():
            deployment = json.loads(host.id1("status", "--json").stdout).get("deployment")
            return deployment and deployment["state"] == "verifying"
        host.wait_until(verifying, timeout_s=60, what="the deployment to reach verifying")
        assert host.path("/var/lib/id1/releases/core/web/current").readlink().name == "1.1.0"
        host.systemctl("kill", "--signal=KILL", AGENT)
    finally:
        check.kill()
        check.wait()

    host.wait_agent_ready(timeout_s=60, not_pid=pid)  # RestartSec=10s
    assert int(host.unit_property(AGENT, "NRestarts")) == 1
    status = host.wait_idle(timeout_s=120)
    running = {c["capability"]: c["version"] for c in status["capabilities"]}["core/web"]
    assert status["revision"] in (1, 2)
    assert running == {1: "1.0.0", 2: "1.1.0"}[status["revision"]]
    host.wait_until(lambda: answer(web.port) == running, timeout_s=60, what=f"core/web {running} to answer")
    assert host.unit_state(WEB) == "active" and host.enablement(WEB) == "enabled"
    assert host.path("/var/lib/id1/releases/core/web/current").readlink().name == running
    assert host.id1("history", "--json").returncode == 0  # the store reads
    assert host.id1("audit", "verify").returncode == 0
    journal = host.journal()
    assert "Main process exited, code=killed, status=9/KILL" in journal
    assert "Traceback" not in journal, journal[-4000:]

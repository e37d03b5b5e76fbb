"""The metrics file: what it says, that the stock ``promtool`` accepts it, and that it is replaced whole."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from agent.errors import Id1Error
from agent.store import DeploymentStatus, RollbackStatus
from agent.metrics import DEPLOYMENT_STATUSES, AgentInfo, MetricsFileError, MetricsSnapshot, render_metrics, write_textfile

ODD_VALUES = ['say "hi"', "back\\slash", "two\nlines", "ünïcødé ✓", "\udcff lone surrogate", "", "{a=\"b\"},"]


def snapshot(**changes) -> MetricsSnapshot:
    fields = {
        "instance_id": "host-01",
        "agent_info": AgentInfo(version="0.1.0", channel="manual-approval"),
        "policy_compliance_ratio": 0.75,
        "deployments_total": {"succeeded": 6, "failed": 1, "rolled_back": 1},
        "deployment_duration_seconds": [40.0, 12.5, 30.0, 7.25],
        "rollbacks_total": {"automatic": 1, "manual": 2},
        "pending_approvals": 3,
        "exposed_advisories": 2,
        "last_successful_check_timestamp": 1_795_000_000.5,
        "last_deployment_timestamp": 1_794_999_000.0,
        "current_revision": 17,
        "blocked_versions": 1,
    }
    return MetricsSnapshot(**(fields | changes))


def samples(text: str) -> dict[str, str]:
    """``{'name{labels}': 'value'}`` for every sample line (label values here hold no spaces)."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.rsplit(" ", 1) for line in lines)


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: `make test` installs it (Debian package prometheus)")
    return subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60, check=False
    )


# ── what the file says ──────────────────────────────────────────────────────────────────────


def test_every_metric_is_rendered_with_its_labels_and_value():
    values = samples(render_metrics(snapshot()))

    assert values == {
        'id1_agent_info{instance_id="host-01",version="0.1.0",channel="manual-approval"}': "1",
        'id1_deployments_total{status="succeeded"}': "6",
        'id1_deployments_total{status="failed"}': "1",
        'id1_deployments_total{status="rolled_back"}': "1",
        **{f'id1_deployments_total{{status="{status}"}}': "0" for status in DEPLOYMENT_STATUSES[3:]},
        "id1_deployment_success_ratio": "0.75",
        'id1_deployment_duration_seconds{quantile="0.5"}': "12.5",
        'id1_deployment_duration_seconds{quantile="0.9"}': "40.0",
        'id1_deployment_duration_seconds{quantile="0.99"}': "40.0",
        "id1_deployment_duration_seconds_sum": "89.75",
        "id1_deployment_duration_seconds_count": "4",
        "id1_last_deployment_duration_seconds": "7.25",
        'id1_rollbacks_total{trigger="automatic"}': "1",
        'id1_rollbacks_total{trigger="manual"}': "2",
        "id1_policy_compliance_ratio": "0.75",
        "id1_pending_approvals": "3",
        "id1_exposed_advisories": "2",
        "id1_last_successful_check_timestamp_seconds": "1795000000.5",
        "id1_last_deployment_timestamp_seconds": "1794999000.0",
        "id1_current_revision": "17",
        "id1_blocked_versions": "1",
    }


def test_every_family_has_help_and_type_and_the_file_ends_with_a_newline():
    text = render_metrics(snapshot())

    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    families = {name.removesuffix("_sum").removesuffix("_count") for name in names}
    for family in families:
        assert f"\n# HELP {family} " in "\n" + text
        assert f"\n# TYPE {family} " in "\n" + text
    assert all(name.startswith("id1_") for name in names)
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_a_fresh_agent_leaves_out_what_it_does_not_know_instead_of_writing_zero():
    fresh = snapshot(
        deployments_total={},
        deployment_duration_seconds=[],
        rollbacks_total={},
        last_successful_check_timestamp=None,
        last_deployment_timestamp=None,
        current_revision=None,
    )

    text = render_metrics(fresh)
    values = samples(text)

    for absent in (
        "id1_deployment_success_ratio",
        "id1_last_deployment_duration_seconds",
        "id1_last_successful_check_timestamp_seconds",
        "id1_last_deployment_timestamp_seconds",
        "id1_current_revision",
    ):
        assert absent not in text
    assert not any("quantile" in name for name in values)
    assert values["id1_deployment_duration_seconds_count"] == "0"
    assert values['id1_deployments_total{status="failed"}'] == "0"  # counters exist from the start
    assert values['id1_rollbacks_total{trigger="manual"}'] == "0"
    assert promtool_check(text).returncode == 0


def test_every_finished_deployment_status_has_a_counter():
    finished = {status.value for status in DeploymentStatus if status.finished}

    assert DEPLOYMENT_STATUSES[:3] == ("succeeded", "failed", "rolled_back") and set(DEPLOYMENT_STATUSES) == finished
    values = samples(render_metrics(snapshot(deployments_total={})))
    assert {name for name in values if name.startswith("id1_deployments_total")} == {
        f'id1_deployments_total{{status="{status}"}}' for status in finished}


def test_counters_come_from_the_stores_totals_and_a_rolled_back_deployment_is_an_automatic_rollback():
    counted = snapshot().with_totals({"succeeded": 9, "rolled_back": 2}, {"automatic": 1, "manual": 4})

    assert counted.deployments_total == {status: {"succeeded": 9, "rolled_back": 2}.get(status, 0)
                                         for status in DEPLOYMENT_STATUSES}
    assert counted.rollbacks_total == {"automatic": 3, "manual": 4}
    assert counted.pending_approvals == snapshot().pending_approvals, "the rest is left as it was"
    with pytest.raises(ValueError, match="deployments_total"):
        snapshot().with_totals({"succeeded": -1}, {})


def test_the_success_ratio_counts_rolled_back_deployments_as_failures():
    values = samples(render_metrics(snapshot(deployments_total={"succeeded": 1, "rolled_back": 3})))

    assert values["id1_deployment_success_ratio"] == "0.25"


@pytest.mark.parametrize(
    "changes",
    [
        {"policy_compliance_ratio": 1.5},
        {"policy_compliance_ratio": float("nan")},
        {"deployments_total": {"in_progress": 1}},
        {"rollbacks_total": {"automatic": -1}},
        {"pending_approvals": -2},
        {"deployment_duration_seconds": [3.0, float("inf")]},
        {"last_deployment_timestamp": -5.0},
    ],
)
def test_a_snapshot_the_daemon_got_wrong_is_refused_naming_the_field(changes):
    with pytest.raises(ValueError) as raised:
        snapshot(**changes)

    assert next(iter(changes)) in str(raised.value)


def test_a_snapshot_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot().pending_approvals = 0  # type: ignore[misc]


# ── label escaping ──────────────────────────────────────────────────────────────────────────


def test_odd_label_values_are_escaped_as_the_text_format_requires():
    info = AgentInfo(version='1.0 "beta"\\x', channel="two\nlines")
    lines = render_metrics(snapshot(agent_info=info)).splitlines()
    line = next(line for line in lines if line.startswith("id1_agent_info"))

    assert line == 'id1_agent_info{instance_id="host-01",version="1.0 \\"beta\\"\\\\x",channel="two\\nlines"} 1'


@pytest.mark.parametrize("odd", ODD_VALUES)
def test_promtool_parses_odd_label_values(odd):
    text = render_metrics(snapshot(instance_id=odd, agent_info=AgentInfo(version=odd, channel=odd)))

    assert len(text.splitlines()) == len(render_metrics(snapshot()).splitlines())  # no line was split
    result = promtool_check(text)
    assert result.returncode == 0, result.stdout + result.stderr


# ── the real promtool ───────────────────────────────────────────────────────────────────────


def test_promtool_accepts_the_metrics_without_a_lint_warning():
    result = promtool_check(render_metrics(snapshot()))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""


def test_promtool_would_catch_a_broken_file():
    # The check above can fail: promtool refuses a family without HELP and a value that is not a number.
    assert promtool_check("id1_orphan 1\n").returncode != 0
    assert promtool_check("# HELP id1_x x\n# TYPE id1_x gauge\nid1_x one\n").returncode != 0


# ── the file ────────────────────────────────────────────────────────────────────────────────


def test_write_textfile_replaces_the_file_and_leaves_no_temporary_file(tmp_path: Path):
    target = tmp_path / "id1.prom"
    target.write_text("# old\n")
    old_inode = target.stat().st_ino

    write_textfile(target, render_metrics(snapshot()))

    assert target.read_text() == render_metrics(snapshot())
    assert target.stat().st_ino != old_inode  # renamed over, not rewritten in place
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)  # node-exporter runs as another user
    assert sorted(path.name for path in tmp_path.iterdir()) == ["id1.prom"]


def test_a_reader_never_sees_half_a_file(tmp_path: Path):
    target = tmp_path / "id1.prom"
    versions = [render_metrics(snapshot(pending_approvals=n, instance_id="h" * 20_000)) for n in range(2)]
    write_textfile(target, versions[0])
    seen: set[str] = set()
    stop = threading.Event()

    def read_continuously() -> None:
        while not stop.is_set():
            seen.add(target.read_text())

    reader = threading.Thread(target=read_continuously)
    reader.start()
    try:
        for round_number in range(100):
            write_textfile(target, versions[round_number % 2])
    finally:
        stop.set()
        reader.join()

    assert seen <= set(versions) and seen
    assert sorted(path.name for path in tmp_path.iterdir()) == ["id1.prom"]


def test_an_unwritable_folder_is_one_clear_error(tmp_path: Path):
    missing = tmp_path / "no-such-folder" / "id1.prom"

    with pytest.raises(MetricsFileError) as raised:
        write_textfile(missing, "x\n")

    assert isinstance(raised.value, Id1Error)
    assert str(missing) in str(raised.value) and "folder exists" in str(raised.value)
    assert not os.path.exists(missing.parent)


# ── the daemon's counters ───────────────────────────────────────────────────────────────────


def record_deployments(store, clock, statuses) -> None:
    """Finished deployments, in one batch (one write: a thousand of them in well under a second)."""
    with store.batch():
        for status in statuses:
            deployment = store.deployments.create("host-01", {"platform": "1.0.0", "suites": {}})
            store.deployments.save(deployment.record_step("done", clock(), status=status, completed_at=clock()))


def record_rollbacks(store, actors) -> None:
    revision = store.revisions.latest() or store.revisions.add({"platform": "1.0.0", "suites": {}}, 1, None)
    for actor in actors:
        operation = store.rollbacks.add(instance_id="host-01", from_version=None, to_version="1.0.0", from_revision=None,
                                        to_revision=revision.number, reason="test", actor=actor)
        store.rollbacks.save(operation.model_copy(update={"status": RollbackStatus.SUCCEEDED}))


def counter_samples(path: Path) -> dict[str, float]:
    return {name: float(value) for name, value in samples(path.read_text()).items()
            if name.startswith(("id1_deployments_total", "id1_rollbacks_total"))}


def test_the_daemons_counters_never_go_down_when_old_records_are_archived(tmp_path: Path):
    from datetime import datetime, timedelta, timezone

    from agent.config import AgentConfig
    from agent.daemon.service import AgentService

    ticks = iter(range(10**6))
    clock = lambda: datetime(2026, 11, 20, tzinfo=timezone.utc) + timedelta(seconds=next(ticks))  # noqa: E731
    textfile = tmp_path / "id1.prom"
    config = AgentConfig(instance_id="host-01", state_dir=str(tmp_path / "state"), metrics={"textfile": str(textfile)})
    service = AgentService(config, "host-01", clock=clock)
    try:
        # The oldest deployment was rolled back; a thousand later ones succeeded; people rolled back twice.
        record_deployments(service.store, clock, [DeploymentStatus.ROLLED_BACK] + [DeploymentStatus.SUCCEEDED] * 999)
        record_rollbacks(service.store, ["alice", "bob"])
        service.write_metrics()
        before = counter_samples(textfile)
        archived = (tmp_path / "state" / "history" / "deployments.jsonl").read_text().splitlines()
        assert len(archived) == 900, "state.json keeps the newest 100 finished deployments, history/ the rest"

        record_deployments(service.store, clock, [DeploymentStatus.SUCCEEDED])  # and one more moves to history/
        service.write_metrics()
        after = counter_samples(textfile)
    finally:
        service.close()

    assert before['id1_deployments_total{status="rolled_back"}'] == 1 and before['id1_rollbacks_total{trigger="automatic"}'] == 1
    dropped = {name: (before[name], after.get(name)) for name in before if after.get(name, -1) < before[name]}
    assert not dropped, f"counters went down: {dropped}"
    assert after['id1_deployments_total{status="succeeded"}'] == 1000
    assert after['id1_deployments_total{status="rolled_back"}'] == 1
    assert after['id1_rollbacks_total{trigger="automatic"}'] == 1 and after['id1_rollbacks_total{trigger="manual"}'] == 2
    result = promtool_check(textfile.read_text())
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stdout + result.stderr


def test_changes_the_fleet_group_halted_are_counted_only_where_a_group_can_halt():
    assert "id1_fleet_halted_changes" not in render_metrics(snapshot())  # no fleet, or FleetLock: no halts
    text = render_metrics(snapshot(fleet_halted_changes=2))
    assert samples(text)["id1_fleet_halted_changes"] == "2"
    assert promtool_check(text).returncode == 0

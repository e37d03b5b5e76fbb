"""Running totals (the Prometheus counters' source): raised in the same write as what they count,
never lowered by archiving, a failed write, a restart or restoring an older backup."""

from __future__ import annotations

import errno
import json
import os

import pytest

from agent.errors import StoreError
from agent.store import DeploymentStatus, RollbackStatus, Store, StoreLimits, Totals
from tests.store.helpers import manifest, read_state

TINY = StoreLimits(finished_deployments=2, finished_rollbacks=2, finished_approvals=1)


def finish_deployments(store: Store, clock, statuses) -> None:
    """One deployment per status, each created and finished as the deployer does."""
    for status in statuses:
        deployment = store.deployments.create("host-01", manifest())
        store.deployments.save(deployment.record_step("done", clock(), status=status, completed_at=clock()))


def start_rollbacks(store: Store, actors) -> None:
    """One finished rollback per actor (``agent``: automatic), to a kept revision."""
    revision = store.revisions.latest() or store.revisions.add(manifest(), feed_serial=1, deployment_id=None)
    for actor in actors:
        operation = store.rollbacks.add(instance_id="host-01", from_version=None, to_version="2.5.0", from_revision=None,
                                        to_revision=revision.number, reason="test", actor=actor)
        store.rollbacks.save(operation.model_copy(update={"status": RollbackStatus.SUCCEEDED}))


def test_a_new_store_has_zero_totals(store):
    assert store.totals.get() == Totals()
    assert store.totals.get().deployments == {} and store.totals.get().rollbacks == {}


def test_totals_count_every_deployment_and_rollback_and_archiving_never_lowers_them(open_store, clock, state_dir):
    store = open_store(limits=TINY)
    outcomes = [DeploymentStatus.SUCCEEDED] * 6 + [DeploymentStatus.FAILED] * 3 + [DeploymentStatus.ROLLED_BACK] * 2
    seen = []
    for status in outcomes:
        finish_deployments(store, clock, [status])
        seen.append(store.totals.get().deployments)
    start_rollbacks(store, ["agent", "alice", "agent", "bob", "agent"])

    # Most records went to history/: state.json keeps TINY's two of each, the totals all of them.
    state = read_state(state_dir)
    assert len(state["finished_deployments"]) == 2 and len(state["rollbacks"]) == 2
    assert len((state_dir / "history" / "deployments.jsonl").read_text().splitlines()) == len(outcomes) - 2
    expected = Totals(deployments={"succeeded": 6, "failed": 3, "rolled_back": 2}, rollbacks={"automatic": 3, "manual": 2})
    assert store.totals.get() == expected
    for before, after in zip(seen, seen[1:]):  # one step at a time, each count only went up
        assert all(after.get(status, 0) >= count for status, count in before.items())
        assert sum(after.values()) == sum(before.values()) + 1

    store.close()
    assert open_store(limits=TINY).totals.get() == expected, "on disk, in state.json's totals table"
    assert read_state(state_dir)["totals"]["1"] == expected.model_dump(mode="json")


def test_a_deployment_is_counted_when_it_finishes_and_once(store, clock):
    deployment = store.deployments.create("host-01", manifest())
    deployment = store.deployments.save(deployment.record_step("stage", clock(), status=DeploymentStatus.IN_PROGRESS))
    assert store.totals.get().deployments == {}, "not finished yet"

    deployment = store.deployments.save(deployment.record_step("done", clock(), status=DeploymentStatus.FAILED))
    store.deployments.save(deployment.record_step("done", clock(), detail="saved again"))

    assert store.totals.get().deployments == {"failed": 1}


def test_a_write_that_fails_counts_nothing(store, clock, state_dir, monkeypatch):
    finish_deployments(store, clock, [DeploymentStatus.SUCCEEDED])
    deployment = store.deployments.create("host-01", manifest())

    def crash(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", crash)
        with pytest.raises(StoreError):
            store.deployments.save(deployment.record_step("done", clock(), status=DeploymentStatus.SUCCEEDED))

    assert store.totals.get().deployments == {"succeeded": 1}
    assert read_state(state_dir)["totals"]["1"]["deployments"] == {"succeeded": 1}


def test_restoring_an_older_backup_keeps_the_higher_totals(open_store, clock, state_dir):
    store = open_store(limits=TINY)
    finish_deployments(store, clock, [DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED])
    start_rollbacks(store, ["alice"])
    backup = store.backup()
    finish_deployments(store, clock, [DeploymentStatus.SUCCEEDED] * 3)  # lost with the restore, yet they happened
    start_rollbacks(store, ["agent"])
    before = store.totals.get()
    store.close()

    Store.restore_backup(state_dir, backup)

    restored = open_store(limits=TINY)
    assert restored.totals.get() == before == Totals(deployments={"succeeded": 4, "failed": 1},
                                                     rollbacks={"automatic": 1, "manual": 1})
    assert [d.id for d in restored.deployments.recent(2)] == ["dep-2", "dep-1"], "the records went back in time"


def test_restoring_a_backup_into_a_lost_state_dir_counts_its_records_and_history(open_store, clock, state_dir, tmp_path):
    store = open_store(limits=TINY)
    finish_deployments(store, clock, [DeploymentStatus.SUCCEEDED] * 3)
    backup = store.backup()
    store.close()
    state = json.loads((state_dir / "state.json").read_text())
    state["totals"] = {}  # as if the snapshot had never counted: the records still do
    (state_dir / "state.json").unlink()
    snapshot = tmp_path / "state-20261120T120000Z.json"
    snapshot.write_text(json.dumps(state))

    Store.restore_backup(state_dir, snapshot)

    assert open_store(limits=TINY).totals.get().deployments == {"succeeded": 3}
    assert backup is not None


def test_totals_refuse_what_is_not_a_finished_deployment_status():
    with pytest.raises(ValueError, match="not a finished deployment status: in_progress"):
        Totals(deployments={"in_progress": 1})
    with pytest.raises(ValueError):
        Totals(rollbacks={"sometimes": 1})
    with pytest.raises(ValueError):
        Totals(deployments={"failed": -1})

"""Deployments: one unfinished at a time, every step stored, history kept without growing state.json."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from agent.errors import StoreError
from agent.store import DeploymentStatus, StoreLimits
from agent.store.manifests import manifest_sha256
from agent.store.models import JOURNAL_LIMIT
from tests.store.helpers import START, manifest, read_state


def finish(store, deployment, clock, status=DeploymentStatus.SUCCEEDED):
    return store.deployments.save(deployment.record_step("done", clock(), status=status, completed_at=clock()))


def test_a_created_deployment_is_pending_active_and_stored(store, open_store, clock):
    created = store.deployments.create("host-01", manifest(), target_hash="t" * 64, from_revision=3)

    assert created.id == "dep-1"
    assert created.status == DeploymentStatus.PENDING and created.state == "created"
    assert created.created_at == created.updated_at == clock.now > START  # the injected clock
    assert [entry.state for entry in created.journal] == ["created"]
    store.close()
    reopened = open_store()
    assert reopened.deployments.active() == created
    assert reopened.deployments.get("dep-1") == created


def test_each_step_is_journaled_and_resumable_after_a_restart(store, clock, open_store):
    deployment = store.deployments.create("host-01", manifest())
    deployment = store.deployments.save(
        deployment.record_step("download", clock(), "core/auth 1.0.1", status=DeploymentStatus.IN_PROGRESS, started_at=clock())
    )
    deployment = store.deployments.save(deployment.record_step("stage", clock()))
    store.close()

    resumed = open_store().deployments.active()

    assert resumed.state == "stage" and resumed.status == DeploymentStatus.IN_PROGRESS
    assert [(e.state, e.detail) for e in resumed.journal] == [("created", ""), ("download", "core/auth 1.0.1"), ("stage", "")]
    assert resumed.manifest == manifest()
    assert resumed.updated_at > resumed.started_at


def test_only_one_deployment_is_unfinished_at_a_time(store, clock):
    first = store.deployments.create("host-01", manifest())

    with pytest.raises(StoreError, match="deployment dep-1 is still pending: finish or undo it before starting another"):
        store.deployments.create("host-01", manifest(auth="1.0.1"))

    finish(store, first, clock, DeploymentStatus.FAILED)
    assert store.deployments.active() is None
    assert store.deployments.create("host-01", manifest(auth="1.0.1")).id == "dep-2"


def test_a_finished_deployment_cannot_become_unfinished_but_may_change_outcome(store, state_dir, clock):
    failed = finish(store, store.deployments.create("host-01", manifest()), clock, DeploymentStatus.FAILED)

    with pytest.raises(StoreError, match="dep-1 has finished; it cannot become in_progress again"):
        store.deployments.save(failed.record_step("retry", clock(), status=DeploymentStatus.IN_PROGRESS))

    rolled_back = store.deployments.save(failed.record_step("rolled-back", clock(), status=DeploymentStatus.ROLLED_BACK))
    assert store.deployments.get("dep-1").status == DeploymentStatus.ROLLED_BACK == rolled_back.status
    assert read_state(state_dir)["finished_deployments"]["1"]["status"] == "rolled_back"


def test_the_journal_keeps_the_last_200_entries(store, clock, open_store):
    deployment = store.deployments.create("host-01", manifest())
    for step in range(JOURNAL_LIMIT + 30):
        deployment = deployment.record_step(f"step-{step}", clock())
    store.deployments.save(deployment)
    store.close()

    journal = open_store().deployments.active().journal

    assert len(journal) == JOURNAL_LIMIT == 200
    assert journal[0].state == "step-30" and journal[-1].state == f"step-{JOURNAL_LIMIT + 29}"


def test_manifests_are_stored_once_by_hash_outside_state_json(store, state_dir, clock):
    shared = manifest()
    first = finish(store, store.deployments.create("host-01", shared), clock)
    store.deployments.create("host-01", json.loads(json.dumps(shared)))  # equal content, another object
    store.revisions.add(shared, feed_serial=1, deployment_id=first.id)

    digest = manifest_sha256(shared)
    assert [p.name for p in (state_dir / "manifests").iterdir()] == [f"{digest}.json"]
    assert json.loads((state_dir / "manifests" / f"{digest}.json").read_text()) == shared
    state = read_state(state_dir)
    assert "suites" not in json.dumps(state)
    assert state["finished_deployments"]["1"]["manifest_sha256"] == digest


def test_a_changed_manifest_in_a_saved_copy_is_stored(store, state_dir):
    deployment = store.deployments.create("host-01", manifest())

    saved = store.deployments.save(deployment.model_copy(update={"manifest": manifest(auth="9.9.9")}))

    assert store.deployments.get(saved.id).manifest == manifest(auth="9.9.9")
    assert read_state(state_dir)["active_deployments"]["1"]["manifest_sha256"] == manifest_sha256(manifest(auth="9.9.9"))


def test_timestamps_must_be_timezone_aware(store, clock):
    deployment = store.deployments.create("host-01", manifest())

    with pytest.raises(ValueError, match="timezone-aware"):
        deployment.record_step("download", datetime(2026, 11, 20, 12, 0))
    with pytest.raises(StoreError, match="dep-1 cannot be stored: started_at"):
        store.deployments.save(deployment.model_copy(update={"started_at": datetime(2026, 11, 20, 12, 0)}))


def test_unknown_deployments_are_none_or_refused(store):
    assert store.deployments.get("dep-404") is None
    assert store.deployments.get("something-else") is None
    assert store.deployments.active() is None
    ghost = store.deployments.create("host-01", manifest()).model_copy(update={"id": "dep-77"})
    with pytest.raises(StoreError, match="deployment dep-77 is not in the store"):
        store.deployments.save(ghost)


def test_recent_lists_newest_first(store, clock):
    for number in range(3):
        finish(store, store.deployments.create("host-01", manifest(auth=f"1.0.{number}")), clock)
    active = store.deployments.create("host-01", manifest(auth="1.0.9"))

    assert [d.id for d in store.deployments.recent()] == [active.id, "dep-3", "dep-2", "dep-1"]
    assert [d.id for d in store.deployments.recent(limit=2)] == [active.id, "dep-3"]


def test_finished_deployments_beyond_the_limit_move_to_history(state_dir, open_store, clock):
    store = open_store(limits=StoreLimits(finished_deployments=2))
    for number in range(5):
        finish(store, store.deployments.create("host-01", manifest(auth=f"1.0.{number}")), clock)

    state = read_state(state_dir)
    assert sorted(state["finished_deployments"]) == ["4", "5"]
    archived = [json.loads(line) for line in (state_dir / "history" / "deployments.jsonl").read_text().splitlines()]
    assert [record["id"] for record in archived] == ["dep-1", "dep-2", "dep-3"]
    # Still found, newest first, and with their manifests while those files are kept …
    assert [d.id for d in store.deployments.recent(limit=10)] == ["dep-5", "dep-4", "dep-3", "dep-2", "dep-1"]
    assert store.deployments.get("dep-1").manifest == manifest(auth="1.0.0")
    # … which retention then removes: the record stays, without its manifest.
    store.collect_garbage()
    old = store.deployments.get("dep-1")
    assert old.status == DeploymentStatus.SUCCEEDED and old.manifest is None
    assert store.deployments.get("dep-5").manifest == manifest(auth="1.0.4")
    with pytest.raises(StoreError, match="dep-1 is not in the store.*archived"):
        store.deployments.save(old)


def test_a_torn_history_line_from_a_crash_is_skipped(state_dir, open_store, clock):
    store = open_store(limits=StoreLimits(finished_deployments=1))
    for number in range(2):
        finish(store, store.deployments.create("host-01", manifest(auth=f"1.0.{number}")), clock)
    history = state_dir / "history" / "deployments.jsonl"
    with history.open("a") as file:
        file.write('{"id": "dep-2", "stat')  # a crash mid-append
    finish(store, store.deployments.create("host-01", manifest(auth="1.0.5")), clock)

    assert [d.id for d in store.deployments.recent(limit=10)] == ["dep-3", "dep-2", "dep-1"]
    assert all(d.status == DeploymentStatus.SUCCEEDED for d in store.deployments.recent(limit=10))

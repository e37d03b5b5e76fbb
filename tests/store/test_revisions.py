"""Revisions: numbered for good, pruned by retention without taking away a way back."""

from __future__ import annotations

import json

import pytest

from agent.errors import StoreCorrupt, StoreError
from agent.store import DeploymentStatus
from agent.store.manifests import manifest_sha256
from tests.store.helpers import manifest, read_state


def add_revisions(store, count, start=0):
    return [store.revisions.add(manifest(auth=f"1.0.{start + n}"), feed_serial=40 + start + n, deployment_id=f"dep-{n}") for n in range(count)]


def test_revisions_are_numbered_from_one_and_listed_newest_first(store, clock, open_store):
    added = add_revisions(store, 3)

    assert [r.number for r in added] == [1, 2, 3]
    assert added[0].manifest == manifest(auth="1.0.0") and added[0].feed_serial == 40
    assert added[0].manifest_sha256 == manifest_sha256(manifest(auth="1.0.0"))
    store.close()
    reopened = open_store()
    assert [r.number for r in reopened.revisions.list()] == [3, 2, 1]
    assert reopened.revisions.latest() == added[2]
    assert reopened.revisions.get(2) == added[1]
    assert reopened.revisions.get(99) is None


def test_prune_returns_the_removed_revisions_and_numbers_are_never_reused(store, state_dir, open_store):
    add_revisions(store, 5)

    removed = store.revisions.prune(keep=2)

    assert [r.number for r in removed] == [1, 2, 3]
    assert removed[0].manifest == manifest(auth="1.0.0"), "so the caller can find the release folders to delete"
    assert [r.number for r in store.revisions.list()] == [5, 4]
    archived = [json.loads(line)["number"] for line in (state_dir / "history" / "revisions.jsonl").read_text().splitlines()]
    assert archived == [1, 2, 3]
    assert store.revisions.prune(keep=2) == []
    # Pruning everything but the newest, then adding: the numbers go on.
    store.revisions.prune(keep=1)
    store.close()
    assert open_store().revisions.add(manifest(auth="2.0.0"), 50, "dep-9").number == 6


def test_prune_keeps_what_a_running_deployment_would_roll_back_to(store):
    add_revisions(store, 4)
    store.deployments.create("host-01", manifest(auth="3.0.0"), from_revision=1)

    removed = store.revisions.prune(keep=1)

    assert [r.number for r in removed] == [2, 3]
    assert [r.number for r in store.revisions.list()] == [4, 1]


def test_prune_keeps_the_revisions_an_unfinished_rollback_moves_between(store, clock):
    add_revisions(store, 5)
    rollback = store.rollbacks.add(
        instance_id="host-01", from_version="2.5.0", to_version="2.4.0", from_revision=3, to_revision=2, reason="x", actor="root"
    )

    assert [r.number for r in store.revisions.prune(keep=1)] == [1, 4]
    store.rollbacks.save(rollback.model_copy(update={"status": "succeeded", "completed_at": clock()}))
    assert [r.number for r in store.revisions.prune(keep=1)] == [2, 3]


def test_prune_must_keep_the_running_revision(store):
    with pytest.raises(ValueError, match="at least the newest"):
        store.revisions.prune(keep=0)


def test_collect_garbage_removes_only_manifests_nothing_kept_refers_to(store, state_dir, clock):
    revisions = add_revisions(store, 3)
    deployment = store.deployments.create("host-01", manifest(auth="9.0.0"))
    store.deployments.save(deployment.record_step("done", clock(), status=DeploymentStatus.SUCCEEDED))
    store.revisions.prune(keep=1)

    removed = store.collect_garbage()

    assert sorted(p.name for p in removed) == sorted(f"{r.manifest_sha256}.json" for r in revisions[:2])
    kept = {p.name for p in (state_dir / "manifests").iterdir()}
    assert kept == {f"{revisions[2].manifest_sha256}.json", f"{manifest_sha256(manifest(auth='9.0.0'))}.json"}
    assert store.revisions.latest().manifest == manifest(auth="1.0.2")
    assert store.collect_garbage() == []


def test_collect_garbage_is_refused_inside_a_batch(store):
    with pytest.raises(StoreError, match="inside a batch"), store.batch():
        store.collect_garbage()


def test_a_damaged_manifest_file_is_named_not_served(store, state_dir, open_store):
    [revision] = add_revisions(store, 1)
    store.close()
    (state_dir / "manifests" / f"{revision.manifest_sha256}.json").write_text('{"platform": "6.6.6", "suites": {}}')

    with pytest.raises(StoreCorrupt, match=f"the manifest of revision 1 is damaged: .*{revision.manifest_sha256}.json does not match"):
        open_store().revisions.get(1)


def test_a_missing_manifest_file_is_named(store, state_dir, open_store):
    [revision] = add_revisions(store, 1)
    store.close()
    (state_dir / "manifests" / f"{revision.manifest_sha256}.json").unlink()

    with pytest.raises(StoreCorrupt, match="the manifest of revision 1 is missing: .*restore it from a backup"):
        open_store().revisions.latest()


def test_state_json_does_not_hold_manifests(store, state_dir):
    add_revisions(store, 3)
    assert all(set(document) == {"number", "manifest_sha256", "feed_serial", "created_at", "deployment_id"}
               for document in read_state(state_dir)["revisions"].values())

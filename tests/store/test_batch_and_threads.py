"""``store.batch()`` is one write, all or nothing; threads sharing the store never lose a change."""

from __future__ import annotations

import threading

import pytest

from agent.errors import StoreError
from agent.store import BlockSource, DeploymentStatus
from tests.store.helpers import manifest, read_state, state_text


def test_a_batch_writes_once_at_its_end(store, state_dir, clock):
    before = state_text(state_dir)

    with store.batch():
        deployment = store.deployments.create("host-01", manifest())
        deployment = store.deployments.save(deployment.record_step("commit", clock(), status=DeploymentStatus.SUCCEEDED))
        store.revisions.add(manifest(), feed_serial=3, deployment_id=deployment.id)
        store.blocked.add("core/auth@1.0.0", "x", BlockSource.ROLLBACK)
        # Inside, the batch sees its own changes; the disk does not have them yet.
        assert store.revisions.latest().number == 1
        assert state_text(state_dir) == before

    state = read_state(state_dir)
    assert sorted(state["finished_deployments"]) == ["1"] and sorted(state["revisions"]) == ["1"]
    assert [b["ref"] for b in state["blocked"].values()] == ["core/auth@1.0.0"]


def test_a_batch_that_raises_stores_nothing_and_forgets_its_changes(store, state_dir):
    store.blocked.add("core/auth@1.0.0", "x", BlockSource.ROLLBACK)
    before = state_text(state_dir)

    with pytest.raises(RuntimeError, match="planner blew up"), store.batch():
        store.deployments.create("host-01", manifest())
        store.blocked.remove("core/auth@1.0.0")
        raise RuntimeError("planner blew up")

    assert state_text(state_dir) == before
    assert store.deployments.active() is None
    assert store.blocked.refs() == {"core/auth@1.0.0"}
    assert store.deployments.create("host-01", manifest()).id == "dep-1", "the number was not used up"


def test_disk_full_at_the_end_of_a_batch_stores_none_of_it(store, state_dir, monkeypatch):
    store.feed_state.set(serial=1)
    before = state_text(state_dir)

    with pytest.raises(StoreError, match="no space left"):
        with store.batch():
            store.blocked.add("core/auth@1.0.0", "x", BlockSource.ROLLBACK)
            store.feed_state.set(serial=2)
            monkeypatch.setattr("os.write", _full_disk)

    monkeypatch.undo()
    assert state_text(state_dir) == before
    assert store.blocked.refs() == frozenset() and store.feed_state.get().serial == 1


def test_a_call_that_fails_inside_a_batch_leaves_nothing_of_itself(store, state_dir, monkeypatch):
    with store.batch():
        store.blocked.add("core/auth@1.0.0", "x", BlockSource.ROLLBACK)
        with monkeypatch.context() as patch:
            patch.setattr("os.write", _full_disk)
            with pytest.raises(StoreError, match="no space left"):
                store.revisions.add(manifest(), 1, None)  # its manifest file cannot be written
        store.feed_state.set(serial=9)

    state = read_state(state_dir)
    assert state["revisions"] == {} and state["meta"]["1"]["next_revision"] == 1
    assert store.blocked.refs() == {"core/auth@1.0.0"} and store.feed_state.get().serial == 9


def test_a_nested_batch_that_fails_dooms_the_outer_one(store, state_dir):
    before = state_text(state_dir)

    with pytest.raises(StoreError, match="nothing in this batch was stored, because a change in it failed: inner"):
        with store.batch():
            store.blocked.add("core/auth@1.0.0", "x", BlockSource.ROLLBACK)
            try:
                with store.batch():
                    store.feed_state.set(serial=1)
                    raise RuntimeError("inner")
            except RuntimeError:
                pass  # the caller carries on regardless
            store.feed_state.set(serial=2)

    assert state_text(state_dir) == before
    assert store.blocked.refs() == frozenset() and store.feed_state.get().serial is None


def _full_disk(*args):
    raise OSError(28, "No space left on device")


def test_a_refused_call_inside_a_batch_does_not_doom_it(store, state_dir):
    with store.batch():
        store.deployments.create("host-01", manifest())
        with pytest.raises(StoreError, match="still pending"):
            store.deployments.create("host-01", manifest())
        store.blocked.add("core/auth@1.0.0", "x", BlockSource.ROLLBACK)

    assert read_state(state_dir)["active_deployments"]["1"]["id"] == "dep-1"
    assert store.blocked.refs() == {"core/auth@1.0.0"}


def test_nested_batches_write_once_at_the_outermost_end(store, state_dir):
    before = state_text(state_dir)
    with store.batch():
        with store.batch():
            store.feed_state.set(serial=1)
        assert state_text(state_dir) == before
    assert read_state(state_dir)["feed_state"]["1"]["serial"] == 1


def test_threads_sharing_the_store_lose_no_change(store, open_store):
    refs = [f"core/cap{thread}@1.0.{n}" for thread in range(8) for n in range(10)]
    barrier = threading.Barrier(8)
    errors = []

    def block_some(thread: int) -> None:
        try:
            barrier.wait()
            for n in range(10):
                store.blocked.add(f"core/cap{thread}@1.0.{n}", "x", BlockSource.ROLLBACK)
                store.feed_state.set(serial=thread * 100 + n)  # a read-modify-write racing the others
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=block_some, args=(thread,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    store.close()
    assert open_store().blocked.refs() == frozenset(refs)

"""Rollback records, blocked versions and the feed state."""

from __future__ import annotations

import pytest

from agent.errors import StoreError
from agent.store import BlockSource, RollbackStatus, StoreLimits
from tests.store.helpers import manifest, read_state


def rollback(store, to_revision=1, **fields):
    values = dict(instance_id="host-01", from_version="2.5.0", to_version="2.4.0", from_revision=2, reason="auth broken", actor="alice")
    values.update(fields)
    return store.rollbacks.add(to_revision=to_revision, **values)


# ----------------------------------------------------------------------------- rollbacks


def test_a_rollback_is_recorded_with_who_why_and_between_which_revisions(store, clock, open_store):
    store.revisions.add(manifest(), 1, "dep-1")
    store.revisions.add(manifest(auth="1.0.1"), 2, "dep-2")

    started = rollback(store)
    done = store.rollbacks.save(started.model_copy(update={"status": RollbackStatus.SUCCEEDED, "completed_at": clock()}))
    store.close()

    [stored] = open_store().rollbacks.list()
    assert stored == done
    assert (stored.id, stored.from_revision, stored.to_revision, stored.actor, stored.reason) == ("rb-1", 2, 1, "alice", "auth broken")
    assert stored.status == RollbackStatus.SUCCEEDED and stored.completed_at > stored.created_at


def test_a_rollback_to_a_revision_no_longer_kept_is_refused(store):
    with pytest.raises(StoreError, match="cannot roll back to revision 7: it is not kept any more"):
        rollback(store, to_revision=7)


def test_finished_rollbacks_beyond_the_limit_move_to_history(state_dir, open_store, clock):
    store = open_store(limits=StoreLimits(finished_rollbacks=2))
    store.revisions.add(manifest(), 1, "dep-1")
    for _ in range(4):
        operation = rollback(store)
        store.rollbacks.save(operation.model_copy(update={"status": RollbackStatus.FAILED, "completed_at": clock()}))
    pending = rollback(store)

    assert sorted(read_state(state_dir)["rollbacks"]) == ["3", "4", "5"]
    assert [r.id for r in store.rollbacks.list()] == [pending.id, "rb-4", "rb-3"]
    assert [r.id for r in store.rollbacks.list(limit=10)] == [pending.id, "rb-4", "rb-3", "rb-2", "rb-1"]
    assert store.rollbacks.get("rb-1").status == RollbackStatus.FAILED
    assert store.rollbacks.get("rb-99") is None


# ----------------------------------------------------------------------------- blocked versions


def test_blocked_versions_are_added_listed_and_removed(store, open_store):
    store.blocked.add("core/auth@1.0.2", "health check failed", BlockSource.FAILED_DEPLOYMENT)
    store.blocked.add("platform@2.6.0", "rolled back by alice", "rollback")
    store.close()
    store = open_store()

    assert store.blocked.refs() == frozenset({"core/auth@1.0.2", "platform@2.6.0"})
    assert [(b.ref, b.source) for b in store.blocked.list()] == [
        ("core/auth@1.0.2", BlockSource.FAILED_DEPLOYMENT),
        ("platform@2.6.0", BlockSource.ROLLBACK),
    ]
    assert store.blocked.remove("core/auth@1.0.2") is True
    assert store.blocked.remove("core/auth@1.0.2") is False
    assert store.blocked.refs() == {"platform@2.6.0"}


def test_blocking_again_updates_the_reason_without_a_duplicate(store):
    first = store.blocked.add("core/auth@1.0.2", "health check failed", BlockSource.FAILED_DEPLOYMENT)
    again = store.blocked.add("core/auth@1.0.2", "rolled back by bob", BlockSource.ROLLBACK)

    assert store.blocked.list() == [again]
    assert again.blocked_at > first.blocked_at


@pytest.mark.parametrize("ref", ["core/auth", "core/auth@not-a-version", "@1.0.0", "../x@1.0"])
def test_a_malformed_ref_is_refused(store, ref):
    with pytest.raises(StoreError, match=f"cannot block {ref!r}"):
        store.blocked.add(ref, "x", BlockSource.ROLLBACK)
    assert store.blocked.refs() == frozenset()


# ----------------------------------------------------------------------------- feed state


def test_the_feed_state_starts_empty_and_keeps_what_is_set(store, clock, open_store):
    assert store.feed_state.get().serial is None

    checked = clock()
    store.feed_state.set(serial=42, sha256="ab" * 32, etag='"v42"', last_modified="Fri, 20 Nov 2026 12:00:00 GMT",
                         last_check=checked, last_success=checked)
    later = clock()
    state = store.feed_state.set(last_check=later)  # a 304: only the check time changes
    store.close()

    assert open_store().feed_state.get() == state
    assert (state.serial, state.etag, state.last_check, state.last_success) == (42, '"v42"', later, checked)


def test_the_feed_state_refuses_unknown_fields_and_bad_values(store):
    with pytest.raises(TypeError, match="serail"):
        store.feed_state.set(serail=3)
    with pytest.raises(StoreError, match="cannot store the feed state"):
        store.feed_state.set(serial="forty-two")

"""Approvals: bound to one target, at most one pending, decided once, history kept without growing state.json."""

from __future__ import annotations

import json

import pytest

from agent.errors import StoreError
from agent.store import Approval, ApprovalStatus, InvalidTransition, InvalidValue, RecordNotFound, StoreLimits
from agent.store.manifests import manifest_sha256
from tests.store.helpers import manifest, read_state, state_text

NOTES = "ID-1 2.6.0: faster auth, new audit API.\n" * 20


def changes(auth: str = "1.0.1") -> list[dict]:
    return [
        {"capability": "core/auth", "from": "1.0.0", "to": auth, "source": "latest", "action": "await-approval"},
        {"capability": "core/api", "from": "2.1.0", "to": None, "source": "latest", "action": "await-approval"},
    ]


def propose(store, auth: str = "1.0.1", **options):
    target = manifest(auth=auth)
    options = {"feed_serial": 42, "notes": NOTES, "advisories": ["ID1-SA-2026-0007"], **options}
    return store.approvals.propose(f"hash-{auth}", target, changes(auth), **options)


def test_a_proposed_target_is_pending_with_everything_the_approver_sees(store, open_store, clock):
    approval, superseded = propose(store)

    assert superseded == []
    assert isinstance(approval, Approval)
    assert (approval.id, approval.status, approval.target_hash) == ("approval-1", ApprovalStatus.PENDING, "hash-1.0.1")
    assert approval.target == manifest(auth="1.0.1") and approval.changes == changes()
    assert (approval.notes, approval.advisories, approval.feed_serial) == (NOTES, ["ID1-SA-2026-0007"], 42)
    assert approval.created_at == approval.updated_at == clock.now
    assert (approval.decided_at, approval.decided_by, approval.deployment_id) == (None, None, None)
    store.close()
    reopened = open_store()
    assert reopened.approvals.pending() == approval
    assert reopened.approvals.get("approval-1") == approval


def test_the_target_manifest_changes_and_notes_are_files_not_state_json(store, state_dir):
    approval, _ = propose(store)

    text = state_text(state_dir)
    assert "faster auth" not in text and "core-auth-1.0.1.tar.gz" not in text and "await-approval" not in text
    [record] = read_state(state_dir)["approvals"].values()
    assert record["manifest_sha256"] == manifest_sha256(approval.target)
    assert (state_dir / "manifests" / f"{record['manifest_sha256']}.json").exists()
    details = json.loads((state_dir / "manifests" / f"{record['details_sha256']}.json").read_text())
    assert details == {"changes": changes(), "notes": NOTES}


def test_proposing_the_same_target_again_returns_the_same_approval_without_a_write(store, state_dir):
    first, _ = propose(store)
    before = (state_dir / "state.json").stat().st_mtime_ns, state_text(state_dir)

    again, superseded = propose(store, feed_serial=43)

    assert again == first and superseded == []
    assert ((state_dir / "state.json").stat().st_mtime_ns, state_text(state_dir)) == before


def test_a_new_target_supersedes_the_pending_one(store, open_store):
    old, _ = propose(store, "1.0.1")

    new, superseded = propose(store, "1.0.2")

    assert new.id == "approval-2" and new.status == ApprovalStatus.PENDING
    [replaced] = superseded
    assert (replaced.id, replaced.status, replaced.reason) == (old.id, ApprovalStatus.SUPERSEDED, "a newer target replaced it")
    assert replaced.decided_by is None and replaced.decided_at is None, "nobody decided it"
    assert replaced.updated_at == new.created_at
    store.close()
    reopened = open_store()
    assert reopened.approvals.pending() == new
    assert [a.id for a in reopened.approvals.list()] == ["approval-2", "approval-1"]
    assert reopened.approvals.get("approval-1") == replaced


def test_approving_records_who_when_and_why_and_it_waits_for_the_window(store, clock):
    approval, _ = propose(store)

    approved = store.approvals.approve(approval.id, "alice", "tested on staging")

    assert approved.status == ApprovalStatus.APPROVED
    assert (approved.decided_by, approved.comment, approved.decided_at) == ("alice", "tested on staging", clock.now)
    assert store.approvals.pending() is None
    assert store.approvals.approved_waiting() == approved
    assert store.approvals.for_target("hash-1.0.1") == approved


def test_an_approved_or_rejected_target_is_not_asked_for_again(store):
    approval, _ = propose(store, "1.0.1")
    store.approvals.approve(approval.id, "alice")
    again, _ = propose(store, "1.0.1")
    assert again.id == approval.id and again.status == ApprovalStatus.APPROVED

    other, _ = propose(store, "1.0.2")
    store.approvals.reject(other.id, "bob", "breaks the SSO plugin")
    again, _ = propose(store, "1.0.2")
    assert again.id == other.id and again.status == ApprovalStatus.REJECTED
    assert store.approvals.pending() is None


def test_a_new_target_after_a_rejection_is_asked_for(store):
    rejected, _ = propose(store, "1.0.1")
    store.approvals.reject(rejected.id, "bob", "not now")

    new, superseded = propose(store, "1.0.2")

    assert new.status == ApprovalStatus.PENDING and superseded == []
    assert store.approvals.get(rejected.id).status == ApprovalStatus.REJECTED


def test_a_rejection_records_who_and_why(store, clock, open_store):
    approval, _ = propose(store)

    rejected = store.approvals.reject(approval.id, "bob", "breaks the SSO plugin")

    assert (rejected.status, rejected.decided_by, rejected.reason, rejected.decided_at) == (
        ApprovalStatus.REJECTED, "bob", "breaks the SSO plugin", clock.now
    )
    store.close()
    assert open_store().approvals.get(approval.id) == rejected


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_only_a_pending_approval_can_be_decided(store, decide):
    old, _ = propose(store, "1.0.1")
    propose(store, "1.0.2")  # supersedes the first

    with pytest.raises(InvalidTransition) as raised:
        if decide == "approve":
            store.approvals.approve(old.id, "alice")
        else:
            store.approvals.reject(old.id, "alice", "no")

    verb = "approved" if decide == "approve" else "rejected"
    assert str(raised.value) == (
        f"approval approval-1 is superseded (a newer target replaced it): only a pending approval can be {verb}"
    )
    assert isinstance(raised.value, StoreError)
    assert store.approvals.get(old.id).status == ApprovalStatus.SUPERSEDED


def test_approving_twice_names_the_status(store):
    approval, _ = propose(store)
    store.approvals.approve(approval.id, "alice")

    with pytest.raises(InvalidTransition, match="approval approval-1 is approved: only a pending approval can be approved"):
        store.approvals.approve(approval.id, "bob")


def test_deciding_an_unknown_approval_is_not_found(store):
    with pytest.raises(RecordNotFound, match="there is no approval 'approval-3'"):
        store.approvals.approve("approval-3", "alice")
    with pytest.raises(RecordNotFound):
        store.approvals.reject("3", "alice", "no")
    with pytest.raises(RecordNotFound):
        store.approvals.mark("approval-3", "deployed")
    assert store.approvals.get("approval-3") is None


def test_a_rejection_needs_a_reason_and_a_decision_an_actor(store):
    approval, _ = propose(store)

    with pytest.raises(InvalidValue) as raised:
        store.approvals.reject(approval.id, "bob", "  ")
    assert raised.value.field == "reason"
    with pytest.raises(InvalidValue) as raised:
        store.approvals.approve(approval.id, "")
    assert raised.value.field == "actor"
    assert store.approvals.pending() == approval


def test_approving_another_target_supersedes_the_one_still_waiting(store):
    first, _ = propose(store, "1.0.1")
    store.approvals.approve(first.id, "alice")
    second, superseded = propose(store, "1.0.2")
    assert superseded == [], "an approved target is not superseded by a proposal"

    approved = store.approvals.approve(second.id, "bob")

    assert store.approvals.approved_waiting() == approved
    replaced = store.approvals.get(first.id)
    assert (replaced.status, replaced.reason) == (ApprovalStatus.SUPERSEDED, "a newer approved target replaced it")
    assert replaced.decided_by == "alice", "who approved it is kept"


def test_marking_the_deployment_of_an_approved_target(store):
    approval, _ = propose(store)
    store.approvals.approve(approval.id, "alice")

    deployed = store.approvals.mark(approval.id, ApprovalStatus.DEPLOYED, deployment_id="dep-7")

    assert (deployed.status, deployed.deployment_id) == (ApprovalStatus.DEPLOYED, "dep-7")
    assert store.approvals.approved_waiting() is None
    with pytest.raises(InvalidTransition, match="approval approval-1 is deployed: only an approved one can be marked failed"):
        store.approvals.mark(approval.id, "failed")


def test_a_deployment_already_under_way_when_another_target_was_approved_still_records_its_end(store):
    first, _ = propose(store, "1.0.1")
    store.approvals.approve(first.id, "alice")
    second, _ = propose(store, "1.0.2")
    store.approvals.approve(second.id, "bob")  # supersedes the first while the daemon deploys it

    failed = store.approvals.mark(first.id, "failed", deployment_id="dep-3")

    assert failed.status == ApprovalStatus.FAILED
    assert store.approvals.approved_waiting().id == second.id


def test_only_deployed_or_failed_can_be_marked_and_only_on_an_approved_one(store):
    approval, _ = propose(store)

    with pytest.raises(InvalidValue) as raised:
        store.approvals.mark(approval.id, "approved")
    assert raised.value.field == "status"
    with pytest.raises(InvalidTransition, match="approval approval-1 is pending: only an approved one can be marked deployed"):
        store.approvals.mark(approval.id, "deployed")
    old, _ = propose(store, "1.0.2")
    with pytest.raises(InvalidTransition, match=r"is superseded \(a newer target replaced it\)"):
        store.approvals.mark(approval.id, "deployed")


def test_finished_approvals_beyond_the_limit_move_to_history_with_their_changes(state_dir, open_store):
    store = open_store(limits=StoreLimits(finished_approvals=2))
    for patch in range(1, 6):
        propose(store, f"1.0.{patch}")  # each supersedes the one before
    store.approvals.approve("approval-5", "alice")

    assert sorted(read_state(state_dir)["approvals"]) == ["3", "4", "5"]
    lines = [json.loads(line) for line in (state_dir / "history" / "approvals.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["approval-1", "approval-2"]
    assert [a.id for a in store.approvals.list()] == ["approval-5", "approval-4", "approval-3"]
    assert [a.id for a in store.approvals.list(limit=10)] == [f"approval-{n}" for n in range(5, 0, -1)]
    assert [a.id for a in store.approvals.list(limit=4)] == ["approval-5", "approval-4", "approval-3", "approval-2"]

    store.collect_garbage()
    archived = store.approvals.get("approval-1")
    assert archived.status == ApprovalStatus.SUPERSEDED
    assert archived.changes == changes("1.0.1") and archived.notes == NOTES, "kept in the history line"
    assert archived.target is None, "its manifest file went with garbage collection"
    with pytest.raises(InvalidTransition, match="approval approval-1 is superseded"):
        store.approvals.approve("approval-1", "alice")


def test_garbage_collection_keeps_what_kept_approvals_refer_to(store, state_dir):
    approval, _ = propose(store)
    store.approvals.reject(approval.id, "bob", "no")

    removed = store.collect_garbage()

    assert removed == []
    assert store.approvals.get(approval.id).target == manifest(auth="1.0.1")
    assert store.approvals.manifest_hashes() == {
        document[field] for document in read_state(state_dir)["approvals"].values() for field in ("manifest_sha256", "details_sha256")
    }


def test_a_list_without_targets_reads_no_manifest(store, state_dir, open_store):
    propose(store, "1.0.1")
    propose(store, "1.0.2")
    store.close()
    store = open_store()  # nothing cached in memory
    for path in (state_dir / "manifests").iterdir():
        if json.loads(path.read_text()).get("platform"):
            path.unlink()  # were the targets read, this would fail

    listed = store.approvals.list(with_target=False)

    assert [(a.id, a.target, a.changes) for a in listed] == [("approval-2", None, changes("1.0.2")), ("approval-1", None, changes("1.0.1"))]


def test_a_bad_proposal_stores_nothing(store, state_dir):
    before = state_text(state_dir)

    with pytest.raises(InvalidValue) as raised:
        store.approvals.propose("", manifest(), changes(), feed_serial=1)
    assert raised.value.field == "target_hash"
    with pytest.raises(InvalidValue):
        store.approvals.propose("h", manifest(), ["not a change"], feed_serial=1)
    with pytest.raises(StoreError, match="not plain JSON"):
        store.approvals.propose("h", manifest(), [{"capability": object()}], feed_serial=1)

    assert state_text(state_dir) == before
    assert propose(store)[0].id == "approval-1"


def test_a_proposal_in_a_batch_that_fails_is_forgotten(store, state_dir):
    old, _ = propose(store, "1.0.1")

    with pytest.raises(RuntimeError), store.batch():
        propose(store, "1.0.2")
        raise RuntimeError("the deployment could not start")

    assert store.approvals.pending() == old
    assert propose(store, "1.0.2")[0].id == "approval-2"


def test_a_list_stays_newest_first_when_an_old_approval_still_waits(state_dir, open_store):
    store = open_store(limits=StoreLimits(finished_approvals=2))
    waiting, _ = propose(store, "1.0.1")
    store.approvals.approve(waiting.id, "alice")  # approval-1 waits for the window
    for patch in range(2, 6):
        propose(store, f"1.0.{patch}")  # 2, 3 and 4 are superseded; 2 goes to history

    assert sorted(read_state(state_dir)["approvals"]) == ["1", "3", "4", "5"]
    assert [a.id for a in store.approvals.list(limit=4)] == ["approval-5", "approval-4", "approval-3", "approval-2"]
    assert [a.id for a in store.approvals.list(limit=3)] == ["approval-5", "approval-4", "approval-3"]
    assert [a.id for a in store.approvals.list()] == ["approval-5", "approval-4", "approval-3", "approval-1"]
    assert store.approvals.approved_waiting().id == "approval-1"


@pytest.mark.parametrize(("field", "value"), [("advisories", "ID1-SA-2026-0007"), ("changes", {"capability": "core/auth"})])
def test_a_single_value_where_a_list_belongs_is_refused_not_split(store, field, value):
    arguments = {"changes": changes(), "advisories": [], field: value}
    with pytest.raises(InvalidValue) as raised:
        store.approvals.propose("h", manifest(), arguments.pop("changes"), feed_serial=1, **arguments)
    assert raised.value.field == field


def test_a_pending_approval_whose_target_needs_no_approval_any_more_is_superseded(store, clock):
    approval, _ = propose(store)

    superseded = store.approvals.supersede(approval.id, "a pin made it apply")

    assert (superseded.status, superseded.reason, superseded.updated_at) == (ApprovalStatus.SUPERSEDED, "a pin made it apply", clock.now)
    assert store.approvals.pending() is None
    with pytest.raises(InvalidTransition, match=r"is superseded \(a pin made it apply\): only a pending approval can be superseded"):
        store.approvals.supersede(approval.id, "again")
    again, _ = propose(store)
    assert again.id == "approval-2", "the same target needing approval again is asked for again"

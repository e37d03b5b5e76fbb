"""Any sequence of repository operations, restarts and crashes leaves a readable store that a
restarted agent sees exactly as the running one did (STYLE.md "Tests": a state machine for the
store, including "crash before replace").

The model is plain Python: which deployments exist (with their status and step), which
revisions are kept, what is blocked, the feed serial, the pins, the approvals and their status. After every step the store must agree
with it and ``state.json`` must be readable by a fresh agent; ``reopen`` and
``crash_before_replace`` start a new ``Store`` from what is on disk (so may
``folder_sync_fails_after_replace``, whose change is on disk and so must stay), and ``backup_and_restore``
from a backup of it (taken after any garbage collection, so its manifests come from ``backups/``). Limits are tiny so that
archiving to ``history/`` happens within a few steps.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent import files
from agent.errors import StoreError
from agent.store import ApprovalStatus, BlockSource, DeploymentStatus, Store, StoreLimits
from tests.store.helpers import TickingClock, manifest, read_state

MANIFESTS = [manifest(auth=f"1.0.{n}") for n in range(4)]
REFS = ["core/auth@1.0.1", "core/api@2.1.0", "platform@2.6.0"]
STEPS = ["check", "download", "stage", "switch", "health"]
FINISHED = [DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED, DeploymentStatus.ROLLED_BACK]
LIMITS = StoreLimits(finished_deployments=3, finished_rollbacks=3, finished_approvals=3)
PINS = [("platform", "platform"), ("suite", "core"), ("capability", "core/auth")]
KEPT_FOR_THE_SAME_TARGET = (ApprovalStatus.PENDING, ApprovalStatus.APPROVED, ApprovalStatus.REJECTED)


class StoreStateMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="id1-store-machine-"))
        self.clock = TickingClock()
        self.store = self._open()
        # The model.
        self.deployments: dict[str, tuple[DeploymentStatus, str, int]] = {}  # id → status, step, manifest index
        self.active: str | None = None
        self.active_from_revision: int | None = None
        self.revisions: dict[int, int] = {}  # number → manifest index
        self.next_revision = 1
        self.blocked: set[str] = set()
        self.serial: int | None = None
        self.pins: dict[tuple[str, str], tuple[str, str]] = {}  # (level, name) → id, version
        self.next_pin = 1
        self.approvals: dict[str, tuple[int, ApprovalStatus]] = {}  # id → manifest index, status

    def _open(self) -> Store:
        return Store.open(self.folder, clock=self.clock, limits=LIMITS)

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------------------- deployments

    @precondition(lambda self: self.active is None)
    @rule(index=st.integers(0, len(MANIFESTS) - 1))
    def create_deployment(self, index: int) -> None:
        from_revision = max(self.revisions) if self.revisions else None
        created = self.store.deployments.create("host-01", MANIFESTS[index], from_revision=from_revision)
        assert created.id == f"dep-{len(self.deployments) + 1}"
        self.deployments[created.id] = (DeploymentStatus.PENDING, "created", index)
        self.active, self.active_from_revision = created.id, from_revision

    @precondition(lambda self: self.active is not None)
    @rule(step=st.sampled_from(STEPS))
    def take_step(self, step: str) -> None:
        deployment = self.store.deployments.active()
        self.store.deployments.save(deployment.record_step(step, self.clock(), status=DeploymentStatus.IN_PROGRESS))
        self.deployments[deployment.id] = (DeploymentStatus.IN_PROGRESS, step, self.deployments[deployment.id][2])

    @precondition(lambda self: self.active is not None)
    @rule(status=st.sampled_from(FINISHED))
    def finish(self, status: DeploymentStatus) -> None:
        deployment = self.store.deployments.active()
        self.store.deployments.save(deployment.record_step("done", self.clock(), status=status, completed_at=self.clock()))
        self.deployments[deployment.id] = (status, "done", self.deployments[deployment.id][2])
        self.active = self.active_from_revision = None

    # ------------------------------------------------------------------------- revisions

    @rule(index=st.integers(0, len(MANIFESTS) - 1))
    def add_revision(self, index: int) -> None:
        revision = self.store.revisions.add(MANIFESTS[index], feed_serial=index, deployment_id=self.active)
        assert revision.number == self.next_revision
        self.revisions[revision.number] = index
        self.next_revision += 1

    @rule(keep=st.integers(1, 4))
    def prune(self, keep: int) -> None:
        newest = set(sorted(self.revisions, reverse=True)[:keep])
        expected = [n for n in sorted(self.revisions) if n not in newest and n != self.active_from_revision]

        removed = self.store.revisions.prune(keep=keep)

        assert [r.number for r in removed] == expected
        assert [r.manifest for r in removed] == [MANIFESTS[self.revisions[n]] for n in expected]
        for number in expected:
            del self.revisions[number]

    @rule()
    def collect_garbage(self) -> None:
        self.store.collect_garbage()

    # ------------------------------------------------------------------------- blocked, feed

    @rule(ref=st.sampled_from(REFS))
    def block(self, ref: str) -> None:
        self.store.blocked.add(ref, "failed", BlockSource.FAILED_DEPLOYMENT)
        self.blocked.add(ref)

    @rule(ref=st.sampled_from(REFS))
    def unblock(self, ref: str) -> None:
        assert self.store.blocked.remove(ref) == (ref in self.blocked)
        self.blocked.discard(ref)

    @rule(serial=st.integers(0, 10**6), ref=st.sampled_from(REFS))
    def batch(self, serial: int, ref: str) -> None:
        with self.store.batch():
            self.store.feed_state.set(serial=serial)
            self.store.blocked.add(ref, "rolled back", BlockSource.ROLLBACK)
        self.serial = serial
        self.blocked.add(ref)

    # ------------------------------------------------------------------------- pins, approvals

    @rule(key=st.sampled_from(PINS), patch=st.integers(0, 9))
    def set_pin(self, key: tuple[str, str], patch: int) -> None:
        version = "2.5.0" if key[0] == "platform" else f"~=1.{patch}.0"
        pin = self.store.pins.set(*key, version)
        if key not in self.pins:
            assert pin.id == f"pin-{self.next_pin}"
            self.next_pin += 1
        self.pins[key] = (pin.id, version)

    @rule(key=st.sampled_from(PINS))
    def unpin(self, key: tuple[str, str]) -> None:
        removed = self.store.pins.remove(*key)
        assert (removed.id if removed else None) == (self.pins.pop(key, (None,))[0])

    @rule(index=st.integers(0, len(MANIFESTS) - 1))
    def propose(self, index: int) -> None:
        target_hash = f"target-{index}"
        approval, superseded = self.store.approvals.propose(
            target_hash, MANIFESTS[index], [{"capability": "core/auth", "to": f"1.0.{index}"}], feed_serial=index
        )
        in_state = self._approvals_in_state_json()
        same = [i for i in in_state if self.approvals[i][0] == index and self.approvals[i][1] in KEPT_FOR_THE_SAME_TARGET]
        expected_id = same[-1] if same else f"approval-{len(self.approvals) + 1}"
        assert approval.id == expected_id and approval.target == MANIFESTS[index]
        self.approvals.setdefault(approval.id, (index, ApprovalStatus.PENDING))
        others = [i for i, (_, status) in self.approvals.items() if status == ApprovalStatus.PENDING and i != approval.id]
        assert [a.id for a in superseded] == others
        for other in others:
            self.approvals[other] = (self.approvals[other][0], ApprovalStatus.SUPERSEDED)

    def _approvals_in_state_json(self) -> list[str]:
        """Oldest first: the unfinished ones and the newest ``finished_approvals`` finished ones (the rest is history)."""
        finished = [i for i, (_, status) in self.approvals.items() if status.finished]
        archived = set(sorted(finished, key=lambda i: int(i.split("-")[1]))[: -LIMITS.finished_approvals])
        return [i for i in self.approvals if i not in archived]

    @precondition(lambda self: any(status == ApprovalStatus.PENDING for _, status in self.approvals.values()))
    @rule(approve=st.booleans())
    def decide(self, approve: bool) -> None:
        pending = self.store.approvals.pending()
        if approve:
            self.store.approvals.approve(pending.id, "alice")
            for other, (index, status) in self.approvals.items():
                if status == ApprovalStatus.APPROVED:
                    self.approvals[other] = (index, ApprovalStatus.SUPERSEDED)
        else:
            self.store.approvals.reject(pending.id, "bob", "not now")
        self.approvals[pending.id] = (self.approvals[pending.id][0], ApprovalStatus.APPROVED if approve else ApprovalStatus.REJECTED)

    @rule()
    def backup_and_restore(self) -> None:
        self.store.backup()
        [newest, *_] = Store.list_backups(self.folder)
        self.store.close()
        Store.restore_backup(self.folder, newest.path)
        self.store = self._open()
        assert self.store.startup_warnings == []

    # ------------------------------------------------------------------------- restarts and crashes

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = self._open()
        assert self.store.startup_warnings == []

    @rule(data=st.data())
    def crash_before_replace(self, data) -> None:
        actions = {
            "block": lambda: self.store.blocked.add(data.draw(st.sampled_from(REFS)), "x", BlockSource.ROLLBACK),
            "feed": lambda: self.store.feed_state.set(serial=data.draw(st.integers(0, 99))),
            "revision": lambda: self.store.revisions.add(MANIFESTS[data.draw(st.integers(0, 3))], 1, None),
            "batch": self._batch_of_two,
        }
        if self.active is not None:
            deployment = self.store.deployments.active()
            actions["step"] = lambda: self.store.deployments.save(deployment.record_step("stage", self.clock()))
            actions["finish"] = lambda: self.store.deployments.save(
                deployment.record_step("done", self.clock(), status=DeploymentStatus.SUCCEEDED)
            )
        action = data.draw(st.sampled_from(sorted(actions)))
        before = (self.folder / "state.json").read_bytes()

        with mock.patch.object(os, "replace", side_effect=OSError(errno.EIO, "Input/output error")):
            with pytest.raises(StoreError):
                actions[action]()

        assert (self.folder / "state.json").read_bytes() == before
        # The process dies here; the next agent starts from what is on disk.
        self.store.close()
        self.store = self._open()

    @rule(data=st.data(), crash=st.booleans())
    def folder_sync_fails_after_replace(self, data, crash: bool) -> None:
        """``os.replace`` succeeds, the fsync of the folder after it fails: the change is on disk, so
        it is kept (in the model too); whether the process goes on or dies, nothing undoes it."""
        actions = {
            "block": lambda: self.block(data.draw(st.sampled_from(REFS))),
            "batch": lambda: self.batch(data.draw(st.integers(0, 10**6)), data.draw(st.sampled_from(REFS))),
            "pin": lambda: self.set_pin(data.draw(st.sampled_from(PINS)), data.draw(st.integers(0, 9))),
            "revision": lambda: self.add_revision(data.draw(st.integers(0, len(MANIFESTS) - 1))),
        }
        if self.active is None:
            actions["deploy"] = lambda: self.create_deployment(data.draw(st.integers(0, len(MANIFESTS) - 1)))
        else:
            actions["finish"] = lambda: self.finish(data.draw(st.sampled_from(FINISHED)))
        action = data.draw(st.sampled_from(sorted(actions)))
        real, failed = files.fsync_folder, []

        def fails_once_for_the_state_folder(folder) -> None:
            if Path(folder) == self.folder and not failed:
                failed.append(folder)
                raise OSError(errno.EIO, "Input/output error")
            real(folder)

        with mock.patch.object(files, "fsync_folder", fails_once_for_the_state_folder):
            actions[action]()

        assert failed, f"{action} wrote state.json and its folder sync failed"
        if crash:  # the process dies before any other write; the next agent finds the change
            self.store.close()
            self.store = self._open()

    def _batch_of_two(self) -> None:
        with self.store.batch():
            self.store.feed_state.set(serial=12345)
            self.store.blocked.add("core/api@2.1.0", "x", BlockSource.ROLLBACK)

    # ------------------------------------------------------------------------- invariants

    @invariant()
    def store_matches_the_model(self) -> None:
        store = self.store
        active = store.deployments.active()
        assert (active.id if active else None) == self.active
        recent = store.deployments.recent(limit=len(self.deployments) + 1)
        assert [d.id for d in recent] == sorted(self.deployments, key=lambda i: -int(i.split("-")[1]))
        for deployment in recent:
            status, step, index = self.deployments[deployment.id]
            assert (deployment.status, deployment.state) == (status, step)
            assert deployment.manifest in (MANIFESTS[index], None)
        assert [(r.number, r.manifest) for r in store.revisions.list()] == [
            (n, MANIFESTS[self.revisions[n]]) for n in sorted(self.revisions, reverse=True)
        ]
        assert store.blocked.refs() == self.blocked
        assert store.feed_state.get().serial == self.serial
        assert sorted((pin.level, pin.name, pin.id, pin.version) for pin in store.pins.list()) == sorted(
            (*key, *value) for key, value in self.pins.items()
        )
        approvals = store.approvals.list(limit=len(self.approvals) + 1)
        assert [(a.id, a.status) for a in approvals] == [
            (i, self.approvals[i][1]) for i in sorted(self.approvals, key=lambda i: -int(i.split("-")[1]))
        ]
        assert sum(a.status == ApprovalStatus.PENDING for a in approvals) <= 1
        assert sum(a.status == ApprovalStatus.APPROVED for a in approvals) <= 1

    @invariant()
    def state_json_is_readable_and_bounded(self) -> None:
        state = read_state(self.folder)
        assert len(state["finished_deployments"]) <= LIMITS.finished_deployments
        assert len(state["active_deployments"]) <= 1
        # Every manifest a kept record refers to is on disk.
        finished = [a for a in state["approvals"].values() if a["status"] not in ("pending", "approved")]
        assert len(finished) <= LIMITS.finished_approvals
        for table in ("active_deployments", "finished_deployments", "revisions", "approvals"):
            for document in state[table].values():
                assert (self.folder / "manifests" / f"{document['manifest_sha256']}.json").exists()
                if table == "approvals":
                    assert (self.folder / "manifests" / f"{document['details_sha256']}.json").exists()


StoreStateMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_store_state_machine = StoreStateMachine.TestCase

"""Backups (every 5 minutes, kept 30 days) and restoring one: real files, real links, a real second thread."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import threading
import time
from datetime import timedelta

import pytest

from agent.errors import StoreError, StoreLocked
from agent.store import SCHEMA_VERSION, BlockSource, DeploymentStatus, Store
from agent.store.manifests import manifest_sha256
from tests.store.helpers import START, manifest, read_state, state_text


def deploy(store, clock, target, serial=1):
    """A successful deployment of ``target`` and its revision, as the deployer records them."""
    deployment = store.deployments.create("host-01", target)
    deployment = store.deployments.save(deployment.record_step("done", clock(), status=DeploymentStatus.SUCCEEDED))
    return store.revisions.add(target, feed_serial=serial, deployment_id=deployment.id)


def snapshots(state_dir):
    return [info.path for info in Store.list_backups(state_dir)]


# ----------------------------------------------------------------------------- taking backups


def test_a_backup_is_the_state_file_as_written_gzipped_and_is_listed(store, state_dir, clock):
    store.blocked.add("core/auth@1.0.2", "failed", BlockSource.FAILED_DEPLOYMENT)
    for number in range(30):  # some state, so that compressing it shows
        store.pins.set("capability", f"core/cap{number}", "1.0.0", "the same words again and again")

    path = store.backup()

    assert path == state_dir / "backups" / f"state-{clock.now.strftime('%Y%m%dT%H%M%SZ')}.json.gz"
    assert gzip.decompress(path.read_bytes()) == (state_dir / "state.json").read_bytes()
    assert path.stat().st_size * 4 < (state_dir / "state.json").stat().st_size
    [info] = Store.list_backups(state_dir)
    assert (info.path, info.taken_at, info.size) == (path, clock.now.replace(microsecond=0), path.stat().st_size)


def test_an_unchanged_state_is_not_backed_up_again_even_after_a_restart(store, state_dir, open_store):
    first = store.backup()
    assert store.backup() is None

    store.feed_state.set(serial=2)
    second = store.backup()
    assert second is not None and second != first
    store.close()

    reopened = open_store()
    assert reopened.backup() is None, "the newest snapshot on disk already has this state"
    assert snapshots(state_dir) == [second, first]


def test_the_manifests_a_backup_needs_are_linked_once_for_all_backups(store, state_dir, clock):
    revision = deploy(store, clock, manifest())
    store.backup()
    store.feed_state.set(serial=9)
    store.backup()

    linked = state_dir / "backups" / "manifests" / f"{revision.manifest_sha256}.json"
    [only] = (state_dir / "backups" / "manifests").iterdir()
    assert only == linked
    assert os.path.samefile(linked, state_dir / "manifests" / f"{revision.manifest_sha256}.json"), "a hard link, no copy"


def test_where_links_are_not_possible_the_manifest_is_copied(store, state_dir, clock, monkeypatch):
    revision = deploy(store, clock, manifest())

    def cross_device(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    store.backup()

    copy = state_dir / "backups" / "manifests" / f"{revision.manifest_sha256}.json"
    assert not os.path.samefile(copy, state_dir / "manifests" / f"{revision.manifest_sha256}.json")
    assert json.loads(copy.read_text()) == manifest()


def test_two_backups_in_the_same_second_are_both_kept_and_ordered(state_dir):
    store = Store.open(state_dir, clock=lambda: START)
    try:
        first = store.backup()
        store.feed_state.set(serial=1)
        second = store.backup()
    finally:
        store.close()

    assert (first.name, second.name) == ("state-20261120T120000Z.json.gz", "state-20261120T120000Z-2.json.gz")
    assert snapshots(state_dir) == [second, first]


def test_a_backup_is_refused_inside_a_batch(store):
    with store.batch():
        with pytest.raises(StoreError, match="backup cannot run inside a batch"):
            store.backup()


def test_a_backup_during_another_threads_batch_waits_for_it_and_sees_all_of_it(store, state_dir):
    inside, release = threading.Event(), threading.Event()
    taken: list = []

    def long_batch():
        with store.batch():
            store.feed_state.set(serial=1)
            inside.set()
            release.wait(10)
            store.blocked.add("core/auth@1.0.2", "failed", BlockSource.FAILED_DEPLOYMENT)

    batch = threading.Thread(target=long_batch)
    batch.start()
    assert inside.wait(10)
    backup = threading.Thread(target=lambda: taken.append(store.backup()))
    backup.start()
    time.sleep(0.3)
    assert backup.is_alive(), "the backup waits for the batch"
    release.set()
    batch.join(10)
    backup.join(10)

    [path] = taken
    snapshot = json.loads(gzip.decompress(path.read_bytes()))
    assert snapshot["feed_state"]["1"]["serial"] == 1
    assert [document["ref"] for document in snapshot["blocked"].values()] == ["core/auth@1.0.2"]
    assert gzip.decompress(path.read_bytes()) == (state_dir / "state.json").read_bytes()


# ----------------------------------------------------------------------------- older, uncompressed backups


def uncompress(backup):
    """``backup`` as an agent from before compressed snapshots wrote it: plain ``state-<UTC>.json``."""
    plain = backup.with_name(backup.name.removesuffix(".gz"))
    plain.write_bytes(gzip.decompress(backup.read_bytes()))
    backup.unlink()
    return plain


def test_old_uncompressed_backups_are_listed_among_new_ones_and_restored(store, state_dir, clock, open_store):
    store.pins.set("suite", "core", "~=1.1.0")
    old = uncompress(store.backup())
    store.pins.set("suite", "core", "~=1.2.0")
    new = store.backup()

    assert snapshots(state_dir) == [new, old] and old.suffix == ".json" and new.name.endswith(".json.gz")
    store.close()

    summary = Store.restore_backup(state_dir, old)

    assert summary.backup == old
    assert open_store().pins.find("suite", "core").version == "~=1.1.0"


def test_an_old_backup_of_the_same_second_is_not_overwritten_and_sorts_before(state_dir):
    store = Store.open(state_dir, clock=lambda: START)
    try:
        old = uncompress(store.backup())
        store.feed_state.set(serial=1)
        new = store.backup()
    finally:
        store.close()

    assert (old.name, new.name) == ("state-20261120T120000Z.json", "state-20261120T120000Z-2.json.gz")
    assert snapshots(state_dir) == [new, old]


def test_an_old_uncompressed_snapshot_still_counts_as_the_newest(store, state_dir, open_store):
    store.feed_state.set(serial=5)
    uncompress(store.backup())
    store.close()

    assert open_store().backup() is None, "its content is the state: no copy of it is needed"


def test_pruning_reads_old_and_new_snapshots_for_the_manifests_they_need(store, state_dir, clock):
    old_revision = deploy(store, clock, manifest(auth="1.0.1"))
    uncompress(store.backup())
    new_revision = deploy(store, clock, manifest(auth="1.0.2"))
    store.backup()

    assert store.prune_backups(now=clock.now) == []
    kept = {p.name for p in (state_dir / "backups" / "manifests").iterdir()}
    assert kept == {f"{old_revision.manifest_sha256}.json", f"{new_revision.manifest_sha256}.json"}


def test_a_damaged_compressed_backup_is_refused_and_nothing_changes(store, state_dir):
    backup = store.backup()
    store.feed_state.set(serial=3)
    store.close()
    backup.write_bytes(backup.read_bytes()[:-12])  # cut short: the end and its CRC are gone
    before = sorted(os.listdir(state_dir)), state_text(state_dir)

    with pytest.raises(StoreError, match=r"is not a state backup \(damaged gzip: .*\); nothing was changed"):
        Store.restore_backup(state_dir, backup)

    assert (sorted(os.listdir(state_dir)), state_text(state_dir)) == before


# ----------------------------------------------------------------------------- retention


def test_old_backups_go_after_30_days_and_the_newest_always_stays(store, state_dir, clock):
    first = deploy(store, clock, manifest(auth="1.0.1"))
    day_0 = store.backup()
    clock.now += timedelta(days=20)
    second = deploy(store, clock, manifest(auth="1.0.2"))
    store.revisions.prune(keep=1)
    day_20 = store.backup()
    clock.now += timedelta(days=20)
    store.feed_state.set(serial=40)
    day_40 = store.backup()
    backed_up = state_dir / "backups" / "manifests"

    removed = store.prune_backups(now=clock.now + timedelta(days=1))

    assert removed == [day_0], "day 20's snapshot still needs the first manifest (a finished deployment has it)"
    assert snapshots(state_dir) == [day_40, day_20]
    assert {p.name for p in backed_up.iterdir()} == {f"{first.manifest_sha256}.json", f"{second.manifest_sha256}.json"}

    removed = store.prune_backups(now=clock.now + timedelta(days=365))

    assert removed[0] == day_20 and snapshots(state_dir) == [day_40]
    assert store.prune_backups(max_age=timedelta(0), now=clock.now + timedelta(days=365)) == []


def test_pruning_removes_backed_up_manifests_no_snapshot_needs(store, state_dir, clock):
    old = deploy(store, clock, manifest(auth="1.0.1"))
    old_backup = store.backup()
    store.close()
    # A host whose old deployments all went to history: its newest snapshot needs only the new manifest.
    state = json.loads(state_text(state_dir))
    state["finished_deployments"] = {}
    state["revisions"] = {}
    (state_dir / "state.json").write_text(json.dumps(state))
    store = Store.open(state_dir, clock=clock)
    try:
        new = deploy(store, clock, manifest(auth="1.0.2"))
        clock.now += timedelta(days=31)
        store.backup()

        removed = store.prune_backups()
    finally:
        store.close()

    assert removed == [old_backup, state_dir / "backups" / "manifests" / f"{old.manifest_sha256}.json"]
    assert [p.name for p in (state_dir / "backups" / "manifests").iterdir()] == [f"{new.manifest_sha256}.json"]


# ----------------------------------------------------------------------------- restoring


def test_a_backup_restores_after_garbage_collection_removed_its_manifest(store, state_dir, clock, open_store):
    first = deploy(store, clock, manifest(auth="1.0.1"))
    store.pins.set("suite", "core", "~=1.2.0")
    backup = store.backup()
    for patch in range(2, 5):
        deploy(store, clock, manifest(auth=f"1.0.{patch}"))
    store.revisions.prune(keep=1)
    state = json.loads(state_text(state_dir))
    store.close()
    # Retention took revision 1 and its deployment left state.json: collect its manifest.
    state["finished_deployments"] = {key: value for key, value in state["finished_deployments"].items() if key != "1"}
    (state_dir / "state.json").write_text(json.dumps(state))
    store = open_store()
    store.collect_garbage()
    assert not (state_dir / "manifests" / f"{first.manifest_sha256}.json").exists()
    replaced = state_text(state_dir)
    store.close()

    summary = Store.restore_backup(state_dir, backup, now=START + timedelta(days=1))

    assert summary.revisions == (1,) and summary.active_deployment is None and summary.manifests_restored == 1
    assert summary.moved_aside == state_dir / "state.json.before-restore-20261121T120000Z"
    assert summary.moved_aside.read_text() == replaced
    assert "revisions 1" in str(summary) and str(summary.moved_aside) in str(summary)
    restored = open_store()
    assert restored.revisions.get(1).manifest == manifest(auth="1.0.1")
    assert [pin.id for pin in restored.pins.list()] == ["pin-1"]
    [event] = [e for e in restored.events() if e.kind == "restored"]
    assert str(backup) in event.detail and str(summary.moved_aside) in event.detail


def test_ids_handed_out_after_the_backup_are_not_handed_out_again(store, state_dir, clock, open_store):
    deploy(store, clock, manifest(auth="1.0.1"))
    backup = store.backup()
    deploy(store, clock, manifest(auth="1.0.2"))  # dep-2 and revision 2, lost with the restore
    store.pins.set("platform", "platform", "2.5.0")
    store.close()

    Store.restore_backup(state_dir, backup)

    restored = open_store()
    assert restored.revisions.latest().number == 1
    assert deploy(restored, clock, manifest(auth="1.0.3")).number == 3
    assert restored.deployments.active() is None and restored.deployments.recent(1)[0].id == "dep-3"
    assert restored.pins.set("suite", "core", "1.2.0").id == "pin-2"


def test_an_unfinished_deployment_in_the_backup_is_reported(store, state_dir, clock):
    deploy(store, clock, manifest(auth="1.0.1"))
    store.deployments.create("host-01", manifest(auth="1.0.2"), from_revision=1)
    backup = store.backup()
    store.close()

    summary = Store.restore_backup(state_dir, backup)

    assert summary.active_deployment == "dep-2" and "unfinished deployment dep-2" in str(summary)


def test_a_lost_state_dir_is_rebuilt_from_a_copy_of_its_backups(store, state_dir, clock, tmp_path, open_store):
    revision = deploy(store, clock, manifest(auth="1.0.1"))
    backup = store.backup()
    store.close()
    saved = tmp_path / "offsite"
    shutil.copytree(state_dir / "backups", saved)
    shutil.rmtree(state_dir)

    summary = Store.restore_backup(state_dir, saved / backup.name)

    assert summary.moved_aside is None and summary.manifests_restored == 1
    restored = open_store()
    assert restored.revisions.get(1).manifest == revision.manifest
    assert restored.startup_warnings == []


def test_an_older_schema_copy_can_be_restored_and_is_upgraded_at_the_next_open(state_dir, open_store):
    version_1 = open_store(migrations={})
    version_1.blocked.add("core/auth@1.0.2", "failed", BlockSource.ROLLBACK)
    old = version_1.backup()
    version_1.close()
    upgraded = open_store()
    upgraded.pins.set("suite", "core", "1.2.0")
    upgraded.close()

    summary = Store.restore_backup(state_dir, old)

    assert summary.schema_version == 1
    store = open_store()
    assert store.blocked.refs() == {"core/auth@1.0.2"} and store.pins.list() == []
    assert read_state(state_dir)["meta"]["1"]["schema_version"] == SCHEMA_VERSION
    assert store.pins.set("suite", "core", "1.2.0").id == "pin-2", "pin-1 was handed out before the restore"


def test_restoring_is_refused_while_an_agent_has_the_store_open(store, state_dir):
    backup = store.backup()
    store.feed_state.set(serial=3)
    before = state_text(state_dir)

    with pytest.raises(StoreLocked, match="another id1 agent"):
        Store.restore_backup(state_dir, backup)

    assert state_text(state_dir) == before
    assert store.feed_state.set(serial=4).serial == 4, "the running agent is not disturbed"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not a state backup .not JSON"),
        ('{"meta": {"1": {"schema_version": 99}}}', "was written by a newer id1 agent .state schema 99"),
        ('{"meta": {"1": {"schema_version": 2}}, "pins": {"1": {"level": "suite"}}}', "is not a usable state backup .wrong shape: pins.1."),
    ],
)
def test_a_file_that_is_not_a_usable_backup_is_refused_and_nothing_changes(store, state_dir, tmp_path, content, message):
    store.feed_state.set(serial=3)
    store.close()
    before = sorted(os.listdir(state_dir)), state_text(state_dir)
    bad = tmp_path / "state-20261120T120000Z.json"
    bad.write_text(content)

    with pytest.raises(StoreError, match=message) as raised:
        Store.restore_backup(state_dir, bad)

    assert str(raised.value).endswith("nothing was changed")
    assert (sorted(os.listdir(state_dir)), state_text(state_dir)) == before


def test_a_backup_whose_manifest_is_gone_everywhere_is_refused(store, state_dir, clock):
    revision = deploy(store, clock, manifest(auth="1.0.1"))
    backup = store.backup()
    store.close()
    (state_dir / "backups" / "manifests" / f"{revision.manifest_sha256}.json").unlink()
    (state_dir / "manifests" / f"{revision.manifest_sha256}.json").unlink()
    before = state_text(state_dir)

    with pytest.raises(StoreError, match=f"refers to 1 manifest file.s. found neither .*{revision.manifest_sha256[:12]}"):
        Store.restore_backup(state_dir, backup)

    assert state_text(state_dir) == before and not list(state_dir.glob("state.json.before-restore-*"))


def test_a_damaged_backed_up_manifest_is_not_restored(store, state_dir, clock):
    revision = deploy(store, clock, manifest(auth="1.0.1"))
    backup = store.backup()
    store.close()
    kept = state_dir / "backups" / "manifests" / f"{revision.manifest_sha256}.json"
    (state_dir / "manifests" / f"{revision.manifest_sha256}.json").unlink()  # and so the link is the only copy
    kept.write_text(json.dumps(manifest(auth="6.6.6")))

    with pytest.raises(StoreError, match="is damaged .it does not match its sha256.; nothing was changed"):
        Store.restore_backup(state_dir, backup)
    assert manifest_sha256(manifest(auth="6.6.6")) != revision.manifest_sha256


def test_a_backup_of_a_store_missing_a_manifest_says_so_and_writes_nothing(store, state_dir, clock):
    revision = deploy(store, clock, manifest())
    (state_dir / "manifests" / f"{revision.manifest_sha256}.json").unlink()

    with pytest.raises(StoreError, match=f"cannot back up the state: .*{revision.manifest_sha256}.json is missing"):
        store.backup()

    assert Store.list_backups(state_dir) == []

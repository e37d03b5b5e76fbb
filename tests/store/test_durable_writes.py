"""Every write is atomic and durable; a failed one leaves the old file, and memory, as they were.

The only fakes here inject a failure where the real world would: ``os.replace`` (a crash just
before the rename), ``os.write`` (disk full), ``os.fsync`` (an I/O error), and the folder's fsync
after a rename that succeeded (``agent.files.fsync_folder``: an I/O error on the directory).
"""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest

from agent import files
from agent.errors import StoreError
from agent.store import BlockSource, DeploymentStatus
from agent.store.durable import write_atomically
from agent.store.storage import DurableJSONStorage
from tests.store.helpers import manifest, read_state, state_text


def _fail_with(error_number: int):
    def fail(*args, **kwargs):
        raise OSError(error_number, os.strerror(error_number))

    return fail


def test_a_crash_before_replace_leaves_the_previous_state_readable(store, state_dir, open_store, monkeypatch):
    store.blocked.add("core/auth@1.0.2", "health check failed", BlockSource.FAILED_DEPLOYMENT)
    before = state_text(state_dir)

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", _fail_with(errno.EIO))
        with pytest.raises(StoreError, match="state.json.*the previous state is intact"):
            store.blocked.add("platform@2.6.0", "rolled back", BlockSource.ROLLBACK)

    assert state_text(state_dir) == before
    read_state(state_dir)  # a fresh agent can read it
    assert store.blocked.refs() == {"core/auth@1.0.2"}, "memory must not run ahead of the disk"
    assert not [p for p in state_dir.iterdir() if ".tmp-" in p.name], "the temp file is removed"

    store.close()  # the process "dies"; the next agent finds the previous state
    assert open_store().blocked.refs() == {"core/auth@1.0.2"}


def test_a_temp_file_left_by_a_real_crash_is_cleared_at_the_next_open(store, state_dir, open_store):
    store.feed_state.set(serial=4)
    store.close()
    left_over = state_dir / ".state.json.tmp-99999"
    left_over.write_text('{"half": ')

    reopened = open_store()

    assert not left_over.exists()
    assert reopened.feed_state.get().serial == 4


def test_disk_full_while_writing_is_a_store_error_and_the_old_file_stays(store, state_dir, clock, monkeypatch):
    deployment = store.deployments.create("host-01", manifest())
    before = state_text(state_dir)

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", _fail_with(errno.ENOSPC))
        with pytest.raises(StoreError) as raised:
            store.deployments.save(deployment.record_step("download", clock(), status=DeploymentStatus.IN_PROGRESS))

    message = str(raised.value)
    assert "no space left" in message and str(state_dir) in message and "the previous state is intact" in message
    assert state_text(state_dir) == before
    assert store.deployments.get(deployment.id).state == "created"
    # And once there is room again, the same change goes through.
    saved = store.deployments.save(deployment.record_step("download", clock(), status=DeploymentStatus.IN_PROGRESS))
    assert read_state(state_dir)["active_deployments"]["1"]["state"] == saved.state == "download"


def test_an_fsync_error_is_a_store_error_and_nothing_changes(store, state_dir, monkeypatch):
    store.feed_state.set(serial=7)
    before = state_text(state_dir)

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", _fail_with(errno.EIO))
        with pytest.raises(StoreError, match="Input/output error"):
            store.feed_state.set(serial=8)

    assert state_text(state_dir) == before
    assert store.feed_state.get().serial == 7


def test_a_value_that_cannot_be_serialised_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "state.json"
    written = b'{"meta":{"1":{"schema_version":1}},"t":{}}'
    path.write_bytes(written)
    storage = DurableJSONStorage(path, json.loads(written), written)

    with pytest.raises(StoreError, match="cannot store table 't'.*was not changed"):
        storage.write({**storage.read(), "t": {"1": {"when": object()}}})

    assert path.read_bytes() == written
    assert storage.read() == json.loads(written), "memory is back to what is on disk"


def test_state_is_read_once_and_served_from_memory(store, state_dir):
    store.blocked.add("core/auth@1.0.2", "failed", BlockSource.FAILED_DEPLOYMENT)
    # The agent is the only writer: what is on disk is not consulted again for reads.
    (state_dir / "state.json").write_text("not what the agent wrote")

    assert store.blocked.refs() == {"core/auth@1.0.2"}
    assert store.feed_state.get().serial is None


def test_the_state_file_is_replaced_not_rewritten_in_place(store, state_dir):
    store.feed_state.set(serial=1)
    inode = (state_dir / "state.json").stat().st_ino

    store.feed_state.set(serial=2)

    assert (state_dir / "state.json").stat().st_ino != inode
    assert read_state(state_dir)["feed_state"]["1"]["serial"] == 2


def test_write_atomically_keeps_the_old_bytes_when_replace_fails(tmp_path, monkeypatch):
    path = tmp_path / "file.json"
    write_atomically(path, b"old")
    monkeypatch.setattr(os, "replace", _fail_with(errno.EIO))

    with pytest.raises(StoreError):
        write_atomically(path, b"new")

    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.json"]


def _fail_folder_sync_once(monkeypatch, folder):
    """``fsync`` of ``folder`` fails once with EIO, as a disk may after ``os.replace`` succeeded."""
    real = files.fsync_folder
    failed = []

    def fsync_folder(path):
        if Path(path) == folder and not failed:
            failed.append(path)
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(path)

    monkeypatch.setattr(files, "fsync_folder", fsync_folder)
    return failed


def test_a_failed_folder_sync_after_the_rename_keeps_the_change_and_the_next_write_does_not_undo_it(
        store, state_dir, open_store, monkeypatch, caplog):
    store.blocked.add("core/auth@1.0.2", "failed", BlockSource.FAILED_DEPLOYMENT)
    failed = _fail_folder_sync_once(monkeypatch, state_dir)

    with caplog.at_level(logging.WARNING, logger="agent.store"):
        store.blocked.add("platform@2.6.0", "rolled back", BlockSource.ROLLBACK)  # renamed, then the folder sync fails

    assert failed, "the folder sync after the rename was made to fail"
    on_disk = {document["ref"] for document in read_state(state_dir)["blocked"].values()}
    assert on_disk == {"core/auth@1.0.2", "platform@2.6.0"}, "os.replace succeeded: the file holds the change"
    assert store.blocked.refs() == on_disk, "memory agrees with the disk"
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert str(state_dir / "state.json") in warning and "power cut" in warning, warning

    store.feed_state.set(serial=9)  # the next write (its folder sync also makes the earlier rename durable)

    state = read_state(state_dir)
    assert {document["ref"] for document in state["blocked"].values()} == {"core/auth@1.0.2", "platform@2.6.0"}
    assert state["feed_state"]["1"]["serial"] == 9
    store.close()
    reopened = open_store()
    assert reopened.blocked.refs() == {"core/auth@1.0.2", "platform@2.6.0"}
    assert reopened.feed_state.get().serial == 9


def test_a_failed_folder_sync_is_retried_even_when_the_next_transaction_changes_nothing(store, state_dir, monkeypatch):
    failed = _fail_folder_sync_once(monkeypatch, state_dir)
    store.feed_state.set(serial=1)
    assert failed
    synced = []
    real = files.fsync_folder
    monkeypatch.setattr(files, "fsync_folder", lambda folder: (synced.append(Path(folder)), real(folder)))

    with store.batch():
        pass  # nothing to write, but the rename of serial 1 is still to be made durable

    assert synced == [state_dir]
    with store.batch():
        pass
    assert synced == [state_dir], "once durable, nothing more to do"


def test_write_atomically_says_the_new_content_is_in_place_when_only_the_folder_sync_fails(tmp_path, monkeypatch):
    path = tmp_path / "file.json"
    write_atomically(path, b"old")
    _fail_folder_sync_once(monkeypatch, tmp_path)

    with pytest.raises(StoreError) as raised:
        write_atomically(path, b"new")

    assert path.read_bytes() == b"new"
    assert str(raised.value).startswith(f"{path} was replaced with its new content, but syncing {tmp_path} failed")
    assert "power cut may still undo" in str(raised.value) and "intact" not in str(raised.value)

"""``Store``: the agent's state, opened once by the daemon, changed only through its repositories.

    with Store.open(Path("/var/lib/id1")) as store:
        for warning in store.startup_warnings:
            log.warning(warning)
        deployment = store.deployments.create(instance_id, manifest, from_revision=3)
        deployment = store.deployments.save(deployment.record_step("download", now))

Opening takes the agent lock (a second agent gets ``StoreLocked``), clears temp files a crash
left behind, reads ``state.json`` (upgrading or recovering it, see ``state_file``) and keeps it
in memory. Each repository call is one transaction and one durable write; ``batch()`` makes
several calls one write, all or nothing.

Backups (``backups.py``): the daemon's job calls ``backup()`` every 5 minutes and
``prune_backups()`` to keep 30 days; an admin restores one with the agent stopped:

    Store.restore_backup(state_dir, Store.list_backups(state_dir)[0].path)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import TracebackType

from agent.errors import StoreError
from agent.store.approvals import ApprovalRepository
from agent.store.archive import FOLDER_NAME as HISTORY_FOLDER, Archive
from agent.store.backups import BackupInfo, Backups, RestoreSummary, list_backups, restore
from agent.store.blocked import BlockedVersionRepository
from agent.store.colours import ColourRepository
from agent.store.deployments import DeploymentRepository
from agent.store.durable import make_folder, remove_stale_temp_files
from agent.store.feed_state import FeedStateRepository
from agent.store.lock import AgentLock
from agent.store.manifests import FOLDER_NAME as MANIFESTS_FOLDER, ManifestFiles
from agent.store.models import StoreEvent, as_utc
from agent.store.pins import PinRepository
from agent.store.policies import PolicyRepository
from agent.store.records import referenced_manifests
from agent.store.revisions import RevisionRepository
from agent.store.rollbacks import RollbackRepository
from agent.store.schema import MIGRATIONS, Migration
from agent.store.session import Clock, Session, StoreLimits
from agent.store.state_file import BACKUPS_NAME, STATE_NAME, open_state
from agent.store.storage import DurableJSONStorage
from agent.store.totals import TotalsRepository
from agent.store.pending_audit import PendingAuditRepository

BACKUP_RETENTION = timedelta(days=30)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Store:
    def __init__(self, session: Session, lock: AgentLock, startup_warnings: list[str]):
        self._session = session
        self._lock = lock
        self.state_dir = session.state_dir
        self.startup_warnings: list[str] = startup_warnings
        """Problems found while opening (a damaged state file moved aside), one line each, for the log and ``id1 status``."""
        self.deployments = DeploymentRepository(session)
        self.revisions = RevisionRepository(session)
        self.rollbacks = RollbackRepository(session)
        self.blocked = BlockedVersionRepository(session)
        self.feed_state = FeedStateRepository(session)
        self.pins = PinRepository(session)
        self.policies = PolicyRepository(session)
        self.approvals = ApprovalRepository(session)
        self.totals = TotalsRepository(session)
        """Counts that never go down (finished deployments, rollbacks), for the metrics."""
        self.pending_audit = PendingAuditRepository(session)
        """Audit entries stored with the change they describe, until the audit log has them."""
        self.colours = ColourRepository(session)
        """The blue-green capabilities' colours and live colour (agent.deploy.bluegreen)."""
        self._backups = Backups(self.state_dir / BACKUPS_NAME)

    @classmethod
    def open(
        cls,
        state_dir: Path,
        *,
        clock: Clock = utc_now,
        limits: StoreLimits = StoreLimits(),
        migrations: Mapping[int, Migration] = MIGRATIONS,
    ) -> Store:
        """Open (creating if needed) the store in ``state_dir``.

        StoreLocked if another agent has it open; StoreError if it cannot be used (permission
        denied, written by a newer agent, disk full), naming the path and what to do.
        """
        state_dir = Path(state_dir)
        make_folder(state_dir)
        lock = AgentLock.acquire(state_dir)
        try:
            remove_stale_temp_files(state_dir)
            remove_stale_temp_files(state_dir / BACKUPS_NAME)
            remove_stale_temp_files(state_dir / BACKUPS_NAME / MANIFESTS_FOLDER)
            manifests = ManifestFiles(state_dir / MANIFESTS_FOLDER)
            manifests.prepare()
            opened = open_state(state_dir, as_utc(clock()), migrations)
            storage = DurableJSONStorage(state_dir / STATE_NAME, opened.state, opened.written)
            session = Session(state_dir, storage, manifests, Archive(state_dir / HISTORY_FOLDER), clock, limits)
        except BaseException:
            lock.release()
            raise
        return cls(session, lock, opened.warnings)

    @property
    def path(self) -> Path:
        return self.state_dir / STATE_NAME

    @property
    def is_open(self) -> bool:
        return not self._session.closed

    def close(self) -> None:
        """Release the agent lock. Every change is already on disk; closing twice is harmless."""
        if self._session.closed:
            return
        self._session.close()
        self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def batch(self) -> Iterator[Store]:
        """Make every change inside one write of ``state.json``, all or nothing.

        If the block raises, or the write at its end fails, none of the changes is stored (nor
        kept in memory). A call inside that is refused or fails before changing anything (an
        unfinished deployment exists, a manifest file cannot be written) leaves nothing of itself
        and the batch goes on; a nested batch that raises dooms the whole batch. Other threads
        wait for the batch to end: keep it short, no network I/O.
        """
        with self._session.transaction():
            yield self

    def collect_garbage(self) -> list[Path]:
        """Remove manifest files no kept deployment, revision or approval refers to; returns what was removed.

        Called by the retention job after ``revisions.prune``. Not inside a ``batch()``: the
        changes still pending there are not on disk, and the files the disk state refers to must
        stay. Backups keep their own links to the files they need (``backup``).
        """
        session = self._session
        with session.reading():
            if session.in_transaction:
                raise StoreError("collect_garbage cannot run inside a batch: finish the batch first")
            return session.manifests.collect(referenced_manifests(session.storage.read()))

    # ----------------------------------------------------------------------------- backups

    def backup(self) -> Path | None:
        """Snapshot ``state.json`` to ``backups/state-<UTC>.json.gz``; ``None`` if it equals the newest snapshot.

        The snapshot is the last complete write, taken under the store's lock: a batch running
        in another thread is waited for, never caught half-way. The manifest files it refers to
        are linked into ``backups/manifests/`` first, so it stays restorable after retention and
        garbage collection removed them from ``manifests/``. Not inside a ``batch()``.
        """
        session = self._session
        with self._backups.lock:
            with session.reading():
                if session.in_transaction:
                    raise StoreError("backup cannot run inside a batch: finish the batch first")
                data = session.storage.written
                digest = hashlib.sha256(data).hexdigest()
                if self._backups.is_newest(digest):
                    return None
                # Under the store's lock, so garbage collection cannot remove a file between.
                self._backups.keep_manifests(referenced_manifests(json.loads(data)), session.manifests)
                now = session.now()
            return self._backups.write(data, digest, now)

    def prune_backups(self, max_age: timedelta = BACKUP_RETENTION, now: datetime | None = None) -> list[Path]:
        """Remove snapshots older than ``max_age`` (always keeping the newest) and the backed-up
        manifest files no remaining snapshot refers to; returns what was removed."""
        if max_age < timedelta(0):
            raise ValueError("max_age must not be negative")
        with self._session.reading():
            now = self._session.now() if now is None else as_utc(now)
        with self._backups.lock:
            return self._backups.prune(now - max_age)

    @staticmethod
    def list_backups(state_dir: Path) -> list[BackupInfo]:
        """The snapshots in ``state_dir/backups``, newest first (the store need not be open)."""
        return list_backups(Path(state_dir) / BACKUPS_NAME)

    @staticmethod
    def restore_backup(
        state_dir: Path,
        backup_path: Path,
        *,
        now: datetime | None = None,
        migrations: Mapping[int, Migration] = MIGRATIONS,
    ) -> RestoreSummary:
        """Replace ``state_dir/state.json`` with a snapshot, with the agent stopped.

        StoreLocked while an agent has the store open; StoreError, changing nothing, if the
        snapshot is not a state file this agent can read or a manifest it needs is in neither
        ``manifests/`` nor the backup. The current ``state.json`` is kept as
        ``state.json.before-restore-<UTC>``.
        """
        state_dir = Path(state_dir)
        make_folder(state_dir)
        lock = AgentLock.acquire(state_dir)
        try:
            return restore(state_dir, Path(backup_path), as_utc(now or utc_now()), migrations)
        finally:
            lock.release()

    def events(self) -> list[StoreEvent]:
        """What happened to the store itself (a damaged file moved aside, a schema upgrade), oldest first."""
        with self._session.reading():
            return list(self._session.meta().events)

    @property
    def state_size(self) -> int:
        """Bytes of ``state.json`` as last written: what every write rewrites."""
        return self._session.storage.written_bytes

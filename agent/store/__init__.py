"""The agent's state store: TinyDB behind a small repository layer, opened only by the daemon.

On disk, under ``state_dir`` (default ``/var/lib/id1``)::

    agent.lock                  flock'd by the running agent; holds its pid (lock.py)
    state.json                  TinyDB tables, rewritten atomically on every change (records.py):
                                meta, active/finished deployments, revisions, rollbacks,
                                blocked versions, feed state, pins, policies, approvals,
                                totals (counts that never go down, totals.py), the
                                blue-green colours (colours.py) —
                                small and bounded, see below
    state.json.corrupt-<UTC>    a damaged state file, moved aside at open and reported (state_file.py)
    state.json.before-restore-<UTC>  the state a restore replaced (backups.py)
    manifests/<sha256>.json     each distinct manifest once, canonical JSON, named by its hash
                                (manifests.py); referenced from deployments, revisions and
                                approvals (whose changes and release notes are such a file too)
    history/deployments.jsonl   append-only: finished deployments beyond the last 100,
    history/rollbacks.jsonl     finished rollbacks beyond the last 100,
    history/approvals.jsonl     finished approvals beyond the last 100 (with their changes),
    history/revisions.jsonl     and revisions removed by pruning (archive.py)
    backups/state-<UTC>.json.gz the backup job's snapshots of state.json, gzipped (backups.py;
                                older agents wrote them as plain state-<UTC>.json), and
    backups/manifests/          the manifest files they refer to, linked so GC cannot take them;
                                also a copy of state.json before a schema upgrade

Why this shape: TinyDB rewrites its whole file on every change, so the file must not grow with
history. Manifests (~100 KB each) live in their own files, and so do an approval's changes and
release notes (as large as a manifest when a platform upgrade changes every capability);
finished records past a limit move to append-only history; ``revisions.prune`` (retention)
bounds revisions and ``collect_garbage`` removes manifest files nothing kept refers to. The
rest is bounded by what an admin sets, not by time: one pin per level and name (a few dozen at
most), a handful of policies, and at most one pending and one approved-waiting approval beside
the ``StoreLimits.finished_approvals`` finished ones (a few hundred bytes each). What
``state.json`` holds is then bounded by the limits, not by the host's age, and so is the cost of
a write — and of a backup: snapshots that did not change are not written again.

Durability: every write goes through ``write_atomically`` (temp file, fsync, ``os.replace``,
fsync of the folder); history lines are fsynced before the state write that drops them; a
manifest file is on disk before any record refers to it (also in ``backups/``, before the
snapshot). A crash at any point leaves a readable store.

Public API: ``Store`` (``store.py``), the models (``models.py``; pins and policies are
``agent.config``'s ``VersionPin`` and ``UpdatePolicy``) and the repositories' errors (``errors.py``).
"""

from agent.store.backups import BackupInfo, RestoreSummary
from agent.store.errors import InvalidTransition, InvalidValue, RecordNotFound
from agent.store.records import Totals
from agent.store.models import (
    Approval,
    ApprovalStatus,
    BlockedVersion,
    BlockSource,
    Deployment,
    DeploymentStatus,
    FeedState,
    JournalEntry,
    Revision,
    RollbackOperation,
    RollbackStatus,
    StoreEvent,
)
from agent.store.schema import MIGRATIONS, SCHEMA_VERSION
from agent.store.session import StoreLimits
from agent.store.store import Store

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Approval",
    "ApprovalStatus",
    "BackupInfo",
    "BlockSource",
    "BlockedVersion",
    "Deployment",
    "DeploymentStatus",
    "FeedState",
    "InvalidTransition",
    "InvalidValue",
    "JournalEntry",
    "RecordNotFound",
    "RestoreSummary",
    "Revision",
    "RollbackOperation",
    "RollbackStatus",
    "Store",
    "StoreEvent",
    "StoreLimits",
    "Totals",
]

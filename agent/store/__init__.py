"""The agent's state store: TinyDB behind a small repository layer, opened only by the daemon.

On disk, under ``state_dir`` (default ``/var/lib/id1``)::

    agent.lock                  flock'd by the running agent; holds its pid (lock.py)
    state.json                  TinyDB tables, rewritten atomically on every change (records.py):
                                meta, active/finished deployments, revisions, rollbacks,
                                blocked versions, feed state — small and bounded, see below
    state.json.corrupt-<UTC>    a damaged state file, moved aside at open and reported (state_file.py)
    manifests/<sha256>.json     each distinct manifest once, canonical JSON, named by its hash
                                (manifests.py); referenced from deployments and revisions
    history/deployments.jsonl   append-only: finished deployments beyond the last 100,
    history/rollbacks.jsonl     finished rollbacks beyond the last 100,
    history/revisions.jsonl     and revisions removed by pruning (archive.py)
    backups/                    the backup job's copies; a copy of state.json before a schema upgrade

Why this shape: TinyDB rewrites its whole file on every change, so the file must not grow with
history. Manifests (~100 KB each) live in their own files; finished records past a limit move to
append-only history; ``revisions.prune`` (retention) bounds revisions and ``collect_garbage``
removes manifest files nothing kept refers to. What ``state.json`` holds is then bounded by
the limits, not by the host's age, and so is the cost of a write.

Durability: every write goes through ``write_atomically`` (temp file, fsync, ``os.replace``,
fsync of the folder); history lines are fsynced before the state write that drops them; a
manifest file is on disk before any record refers to it. A crash at any point leaves a
readable store.

Public API: ``Store`` (``store.py``) and the models (``models.py``).
"""

from agent.store.models import (
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
    "BlockSource",
    "BlockedVersion",
    "Deployment",
    "DeploymentStatus",
    "FeedState",
    "JournalEntry",
    "Revision",
    "RollbackOperation",
    "RollbackStatus",
    "Store",
    "StoreEvent",
    "StoreLimits",
]

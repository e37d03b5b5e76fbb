"""Backups of the state and restoring one (seed-architecture.md §12: every 5 minutes, kept 30 days).

    backups/state-<UTC>.json.gz           what state.json held on disk when the backup was taken,
                                          gzipped (older agents wrote plain ``state-<UTC>.json``:
                                          both are listed and restored)
    backups/manifests/<sha256>.json       every manifest file a snapshot refers to, once, shared
                                          by all snapshots (a hard link to manifests/, else a copy)
    backups/state-schema-<n>-<UTC>.json   the file as it was before a schema upgrade (state_file.py)

A snapshot is the bytes of the last complete write of ``state.json``, taken under the store's
lock, so it is never half a write nor part of a batch. A snapshot equal to the newest one is not
written again: an idle host does not pile up copies. Snapshots are gzipped (state.json is JSON
with the same keys over and over: it shrinks to a small fraction), written atomically like every
store file. Retention and garbage collection remove manifest files from ``manifests/``; the
backup's own link keeps each one a snapshot needs, so any kept snapshot can be restored. Hard
links cost no space (manifest files are never changed in place, so sharing the inode is safe);
across file systems the file is copied once.

Restoring (``restore``, with the agent stopped) checks the snapshot is a state file this agent
can read, puts the manifests it needs back into ``manifests/``, keeps the current
``state.json`` as ``state.json.before-restore-<UTC>`` and puts the snapshot in its place
atomically. Id counters are raised past every id the replaced state (or ``history/``) already
handed out, so a record made after the backup was taken and lost with the restore never has its
id given to another; the running totals (``totals.py``) are kept at least as high as the replaced
state's, so the metrics' counters do not go down; the restore is recorded in the store's events.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent.errors import StoreCorrupt, StoreError
from agent.store.archive import FOLDER_NAME as HISTORY_FOLDER, Archive
from agent.store.durable import fsync_folder, make_folder, store_error, write_atomically
from agent.store.manifests import FOLDER_NAME as MANIFESTS_FOLDER, ManifestFiles
from agent.store.models import StoreEvent
from agent.store.records import (
    ACTIVE_DEPLOYMENTS,
    APPROVAL_PREFIX,
    COUNTERS,
    DEPLOYMENT_PREFIX,
    EVENTS_KEPT,
    META,
    REVISIONS,
    ROLLBACK_PREFIX,
    SINGLETON_ID,
    TOTALS,
    Totals,
    count_records,
    number_of,
    referenced_manifests,
)
from agent.store.revisions import _ranges as number_ranges
from agent.store.schema import Migration, State, check_state, migrate, parse_state, schema_version
from agent.store.state_file import BACKUPS_NAME, STATE_NAME
from agent.store.storage import encode_json

SNAPSHOT = re.compile(r"^state-(?P<stamp>\d{8}T\d{6}Z)(?:-(?P<seq>[1-9]\d*))?\.json(?:\.gz)?$")
_MANIFEST_NAME = re.compile(r"^[0-9a-f]{64}\.json$")
_STAMP = "%Y%m%dT%H%M%SZ"
_GZIP_MAGIC = b"\x1f\x8b"
COMPRESS_LEVEL = 6

# (archive, counter, prefix of the ids in it; None: the ``number`` field)
_ARCHIVED_IDS = (
    ("deployments", "next_deployment", DEPLOYMENT_PREFIX),
    ("rollbacks", "next_rollback", ROLLBACK_PREFIX),
    ("approvals", "next_approval", APPROVAL_PREFIX),
    ("revisions", "next_revision", None),
)


@dataclass(frozen=True)
class BackupInfo:
    path: Path
    taken_at: datetime
    size: int
    """Bytes of the snapshot's file, compressed or not (its manifest files are shared, not counted)."""


@dataclass(frozen=True)
class RestoreSummary:
    backup: Path
    moved_aside: Path | None
    """Where the replaced ``state.json`` was kept (``None`` if there was none)."""
    schema_version: int
    """The snapshot's; the agent upgrades it when it next opens the store."""
    revisions: tuple[int, ...]
    active_deployment: str | None
    """An unfinished deployment in the snapshot: the agent resumes or undoes it when it starts."""
    manifests_restored: int
    """Manifest files copied back into ``manifests/`` from the backup."""

    def __str__(self) -> str:
        parts = [f"restored {self.backup}", f"revisions {number_ranges(list(self.revisions)) or 'none'}"]
        if self.active_deployment:
            parts.append(f"unfinished deployment {self.active_deployment} (resumed or undone when the agent starts)")
        if self.manifests_restored:
            parts.append(f"{self.manifests_restored} manifest file(s) put back")
        if self.moved_aside:
            parts.append(f"the previous state is kept as {self.moved_aside}")
        return "; ".join(parts)


def list_backups(folder: Path) -> list[BackupInfo]:
    """The snapshots in ``folder`` (``state_dir/backups``), newest first."""
    try:
        names = [entry.name for entry in folder.iterdir()]
    except FileNotFoundError:
        return []
    except OSError as error:
        raise store_error("list", folder, error, intact=True) from error
    found = []
    for name in names:
        match = SNAPSHOT.match(name)
        if not match:
            continue
        path = folder / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        except OSError as error:
            raise store_error("read", path, error, intact=True) from error
        taken_at = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=timezone.utc)
        found.append(((taken_at, int(match["seq"] or 1)), BackupInfo(path=path, taken_at=taken_at, size=size)))
    found.sort(key=lambda item: item[0], reverse=True)
    return [info for _, info in found]


class Backups:
    """The ``backups/`` folder of an open store. Callers hold ``lock`` around every method."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.manifests = folder / MANIFESTS_FOLDER
        self.lock = threading.Lock()
        self._newest: tuple[str, Path] | None = None
        # snapshot → ((size, mtime, inode), the manifests it refers to): read each snapshot once.
        self._references: dict[Path, tuple[tuple[int, int, int], frozenset[str]]] = {}

    def is_newest(self, digest: str) -> bool:
        """Whether the newest snapshot has the content with this sha256."""
        if self._newest is None or not self._newest[1].exists():
            self._newest = None
            newest = next(iter(list_backups(self.folder)), None)
            if newest is None:
                return False
            try:
                self._newest = (hashlib.sha256(read_snapshot(newest.path)).hexdigest(), newest.path)
            except (OSError, StoreError):
                return False
        return self._newest[0] == digest

    def keep_manifests(self, hashes: Iterable[str], source: ManifestFiles) -> None:
        """Make sure ``backups/manifests/`` has each of these manifest files (on disk, durably)."""
        added = False
        for sha256 in sorted(hashes):
            target = self.manifests / f"{sha256}.json"
            if target.exists():
                continue
            if not added:
                make_folder(self.manifests)
            _link_or_copy(source.path(sha256), target, missing="cannot back up the state")
            added = True
        if added:
            fsync_folder(self.manifests)

    def write(self, data: bytes, digest: str, now: datetime) -> Path:
        """``data`` (state.json's bytes, sha256 ``digest``) as a new gzipped snapshot."""
        make_folder(self.folder)
        path = self._free_snapshot_name(now.strftime(_STAMP))
        # mtime=0: the same state always gives the same bytes.
        write_atomically(path, gzip.compress(data, compresslevel=COMPRESS_LEVEL, mtime=0))
        self._newest = (digest, path)
        return path

    def _free_snapshot_name(self, stamp: str) -> Path:
        """``state-<stamp>.json.gz``, or ``-2``, ``-3``… if a snapshot of that second exists, gzipped or not."""
        attempt = 1
        while True:
            stem = f"state-{stamp}" if attempt == 1 else f"state-{stamp}-{attempt}"
            if not (self.folder / f"{stem}.json").exists() and not (self.folder / f"{stem}.json.gz").exists():
                return self.folder / f"{stem}.json.gz"
            attempt += 1

    def prune(self, cutoff: datetime) -> list[Path]:
        """Remove snapshots taken before ``cutoff`` (never the newest), then manifests none of the rest needs."""
        snapshots = list_backups(self.folder)
        doomed = [info.path for info in snapshots[1:] if info.taken_at < cutoff]
        removed = _remove(doomed, self.folder)
        gone = set(doomed)
        kept = [info.path for info in snapshots if info.path not in gone]
        for path in set(self._references) - set(kept):
            del self._references[path]
        needed: set[str] = set()
        for path in kept:
            needed |= self._referenced_by(path)
        try:
            names = [entry.name for entry in self.manifests.iterdir()]
        except FileNotFoundError:
            names = []
        except OSError as error:
            raise store_error("list", self.manifests, error, intact=True) from error
        unneeded = [self.manifests / name for name in sorted(names) if _MANIFEST_NAME.match(name) and name[:-5] not in needed]
        return removed + _remove(unneeded, self.manifests)

    def _referenced_by(self, snapshot: Path) -> frozenset[str]:
        try:
            status = snapshot.stat()
            key = (status.st_size, status.st_mtime_ns, status.st_ino)
            cached = self._references.get(snapshot)
            if cached is not None and cached[0] == key:
                return cached[1]
        except FileNotFoundError:
            return frozenset()
        except OSError as error:
            raise store_error("read", snapshot, error, intact=True) from error
        try:
            state = json.loads(read_snapshot(snapshot))
        except FileNotFoundError:
            return frozenset()
        except OSError as error:
            raise store_error("read", snapshot, error, intact=True) from error
        except (StoreCorrupt, ValueError):
            state = None  # a damaged snapshot cannot be restored: it needs nothing
        hashes = frozenset(referenced_manifests(state)) if isinstance(state, dict) else frozenset()
        self._references[snapshot] = (key, hashes)
        return hashes


def read_snapshot(path: Path) -> bytes:
    """The state a snapshot holds: its bytes, gunzipped if they are gzip (whatever the file's name).

    OSError if it cannot be read; StoreCorrupt if it is gzip but damaged (truncated, bad CRC).
    """
    data = path.read_bytes()
    if not data.startswith(_GZIP_MAGIC):
        return data  # written by an agent from before snapshots were compressed
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise StoreCorrupt(f"damaged gzip: {error}") from None


def restore(state_dir: Path, backup: Path, now: datetime, migrations: Mapping[int, Migration]) -> RestoreSummary:
    """Put ``backup`` in place of ``state_dir/state.json``; the caller holds the agent lock."""
    unchanged = "nothing was changed"
    try:
        data = read_snapshot(backup)
    except OSError as error:
        raise store_error("read", backup, error, intact=False) from error
    except StoreCorrupt as problem:
        raise StoreError(f"{backup} is not a state backup ({problem}); {unchanged}") from None
    try:
        state, found = parse_state(data, backup)
    except StoreCorrupt as problem:
        raise StoreError(f"{backup} is not a state backup ({problem}); {unchanged}") from None
    current = schema_version(migrations)
    if found > current:
        raise StoreError(
            f"{backup} was written by a newer id1 agent (state schema {found}; this agent knows up to {current}): "
            f"restore it with that agent's version or pick an older backup; {unchanged}"
        )
    checked = migrate(copy.deepcopy(state), found, migrations, backup, Archive(state_dir / HISTORY_FOLDER))
    try:
        check_state(checked)
    except StoreCorrupt as problem:
        raise StoreError(f"{backup} is not a usable state backup ({problem}); {unchanged}") from None

    restored = _restore_manifests(state_dir, backup, referenced_manifests(checked))
    _raise_counters(state, _counters_in_use(state_dir))
    _raise_totals(state, _totals_in_use(state_dir, state))
    path = state_dir / STATE_NAME
    aside = _keep_aside(path, now)
    detail = f"restored from {backup}" + (f"; the previous {STATE_NAME} is kept as {aside}" if aside else "")
    meta = state[META][str(SINGLETON_ID)]
    event = StoreEvent(at=now, kind="restored", detail=detail).model_dump(mode="json")
    meta["events"] = [*meta.get("events", []), event][-EVENTS_KEPT:]
    write_atomically(path, encode_json(state))

    active = next(iter(checked[ACTIVE_DEPLOYMENTS].values()), None)
    return RestoreSummary(
        backup=backup,
        moved_aside=aside,
        schema_version=found,
        revisions=tuple(sorted(int(key) for key in checked[REVISIONS])),
        active_deployment=None if active is None else active["id"],
        manifests_restored=restored,
    )


def _restore_manifests(state_dir: Path, backup: Path, needed: set[str]) -> int:
    """Copy the manifests ``needed`` that ``manifests/`` lacks back from the backup; all or nothing."""
    folder = state_dir / MANIFESTS_FOLDER
    places = [backup.parent / MANIFESTS_FOLDER, state_dir / BACKUPS_NAME / MANIFESTS_FOLDER]
    sources: dict[str, Path] = {}
    missing = []
    for sha256 in sorted(needed):
        if (folder / f"{sha256}.json").exists():
            continue
        source = next((place / f"{sha256}.json" for place in places if (place / f"{sha256}.json").exists()), None)
        if source is None:
            missing.append(sha256)
        else:
            sources[sha256] = source
    if missing:
        raise StoreError(
            f"{backup} refers to {len(missing)} manifest file(s) found neither in {folder} nor in {places[0]} "
            f"({', '.join(sha256[:12] for sha256 in missing)}…); nothing was changed"
        )
    contents = {}
    for sha256, source in sources.items():
        try:
            content = source.read_bytes()
        except OSError as error:
            raise store_error("read", source, error, intact=True) from error
        if hashlib.sha256(content).hexdigest() != sha256:
            raise StoreError(f"{source} is damaged (it does not match its sha256); nothing was changed")
        contents[sha256] = content
    if contents:
        make_folder(folder)
        for sha256, content in contents.items():
            write_atomically(folder / f"{sha256}.json", content, sync_folder=False)
        fsync_folder(folder)
    return len(contents)


def _counters_in_use(state_dir: Path) -> dict[str, int]:
    """The lowest value each id counter may take: past every id the current state or history handed out."""
    floor: dict[str, int] = {}
    try:
        current, _ = parse_state((state_dir / STATE_NAME).read_bytes(), state_dir / STATE_NAME)
        meta = current[META][str(SINGLETON_ID)]
        floor = {counter: meta[counter] for counter in COUNTERS if type(meta.get(counter)) is int}
    except (OSError, StoreCorrupt):
        pass  # missing or damaged: history is all there is to go by
    archive = Archive(state_dir / HISTORY_FOLDER)
    for name, counter, prefix in _ARCHIVED_IDS:
        for record in archive.read(name):
            number = record.get("number") if prefix is None else number_of(str(record.get("id")), prefix)
            if type(number) is int:
                floor[counter] = max(floor.get(counter, 1), number + 1)
    return floor


def _raise_counters(state: State, floor: dict[str, int]) -> None:
    meta: dict[str, Any] = state[META][str(SINGLETON_ID)]
    for counter, value in floor.items():
        if value > meta.get(counter, 1):
            meta[counter] = value


def _totals_in_use(state_dir: Path, restoring: State) -> Totals:
    """The lowest totals the restored state may have: the replaced state's, and at least what
    ``history/`` and the snapshot's own records count (all there is when state.json is gone)."""
    archive = Archive(state_dir / HISTORY_FOLDER)
    floor = count_records(
        [*archive.read("deployments"), *_documents(restoring, "finished_deployments")],
        [*archive.read("rollbacks"), *_documents(restoring, "rollbacks")],
    )
    try:
        current, _ = parse_state((state_dir / STATE_NAME).read_bytes(), state_dir / STATE_NAME)
        kept = current.get(TOTALS, {}).get(str(SINGLETON_ID))
        if isinstance(kept, dict):
            floor = floor.at_least(Totals.model_validate(kept))
    except (OSError, StoreCorrupt, ValueError):  # missing, damaged, or totals this agent cannot read
        pass
    return floor


def _documents(state: State, table: str) -> list[Any]:
    documents = state.get(table)
    return list(documents.values()) if isinstance(documents, dict) else []


def _raise_totals(state: State, floor: Totals) -> None:
    """Only a snapshot with the totals table (schema 3 on) has totals to raise; an older one gets
    them from its records and ``history/`` when the agent upgrades it."""
    table = state.get(TOTALS)
    if not isinstance(table, dict):
        return
    kept = table.get(str(SINGLETON_ID))
    totals = floor if kept is None else Totals.model_validate(kept).at_least(floor)
    table[str(SINGLETON_ID)] = totals.model_dump(mode="json")


def _keep_aside(path: Path, now: datetime) -> Path | None:
    """Keep the current state file under another name (it stays in place until replaced)."""
    if not path.exists():
        return None
    name = f"{path.name}.before-restore-{now.strftime(_STAMP)}"
    aside = _free_name(path.with_name(name), lambda attempt: f"{name}-{attempt}")
    _link_or_copy(path, aside, missing="cannot keep the current state")
    fsync_folder(path.parent)
    return aside


def _link_or_copy(source: Path, target: Path, *, missing: str) -> None:
    try:
        os.link(source, target)
        return
    except FileExistsError:
        return
    except FileNotFoundError:
        raise StoreCorrupt(f"{missing}: {source} is missing; restore it from an older backup") from None
    except OSError:
        pass  # another file system, or links not allowed: copy instead
    try:
        content = source.read_bytes()
    except FileNotFoundError:
        raise StoreCorrupt(f"{missing}: {source} is missing; restore it from an older backup") from None
    except OSError as error:
        raise store_error("read", source, error, intact=True) from error
    write_atomically(target, content, sync_folder=False)


def _free_name(first: Path, other: Callable[[int], str]) -> Path:
    """``first``, or ``other(2)``, ``other(3)``… if it is taken (two in the same second)."""
    candidate, attempt = first, 1
    while candidate.exists():
        attempt += 1
        candidate = first.with_name(other(attempt))
    return candidate


def _remove(paths: list[Path], folder: Path) -> list[Path]:
    removed = []
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as error:
            raise store_error("remove", path, error, intact=True) from error
        removed.append(path)
    if removed:
        fsync_folder(folder)
    return removed

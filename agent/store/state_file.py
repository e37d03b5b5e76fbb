"""Opening ``state.json``: read it, upgrade it, or — if it is damaged — move it aside and say so.

A damaged state file is never silently replaced: it is renamed to
``state.json.corrupt-<UTC timestamp>`` (so nothing is lost and an admin can inspect or restore
it), the store starts empty, the reason goes into ``Store.startup_warnings`` and the meta table's
events. What is not damage is an error instead, with the file left alone: permission denied,
a file from a newer agent, a migration that fails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agent.errors import StoreCorrupt, StoreError
from agent.store.archive import FOLDER_NAME as HISTORY_FOLDER, Archive
from agent.store.durable import fsync_folder, make_folder, store_error, write_atomically
from agent.store.models import StoreEvent
from agent.store.records import META, SINGLETON_ID, Meta
from agent.store.schema import Migration, State, check_state, empty_state, migrate, parse_state, schema_version
from agent.store.storage import encode_json

STATE_NAME = "state.json"
BACKUPS_NAME = "backups"


@dataclass
class OpenedState:
    state: State
    written: bytes
    """The bytes now in ``state.json`` (``state`` parsed from them)."""
    warnings: list[str] = field(default_factory=list)


def open_state(state_dir: Path, now: datetime, migrations: Mapping[int, Migration]) -> OpenedState:
    path = state_dir / STATE_NAME
    current = schema_version(migrations)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _write_new(path, empty_state(current))
    except OSError as error:
        raise store_error("read", path, error, intact=True) from error

    try:
        state, found = parse_state(data, path)
        if found == current:
            check_state(state)
            return OpenedState(state=state, written=data)
    except StoreCorrupt as problem:
        return _recover(path, state_dir, now, current, problem)

    state = migrate(state, found, migrations, path, Archive(state_dir / HISTORY_FOLDER))  # StoreError for a newer file or a failing migration
    try:
        check_state(state)
    except StoreCorrupt as problem:
        raise StoreError(
            f"cannot upgrade {path} from state schema {found} to {current}: the result is invalid ({problem}); "
            "the file was not changed"
        ) from None
    copy = _keep_copy(state_dir, data, f"state-schema-{found}-{_stamp(now)}.json")
    _add_event(state, StoreEvent(at=now, kind="migrated", detail=f"state schema {found} → {current}; previous file kept as {copy}"))
    return _write_new(path, state)


def _recover(path: Path, state_dir: Path, now: datetime, version: int, problem: StoreCorrupt) -> OpenedState:
    moved = _move_aside(path, now)
    warning = (
        f"{STATE_NAME} was unreadable ({problem}): moved to {moved}; starting with empty state — "
        f"restore a backup from {state_dir / BACKUPS_NAME} if you have one"
    )
    state = empty_state(version)
    _add_event(state, StoreEvent(at=now, kind="state-moved-aside", detail=warning))
    opened = _write_new(path, state)
    opened.warnings.append(warning)
    return opened


def _move_aside(path: Path, now: datetime) -> Path:
    base = path.with_name(f"{path.name}.corrupt-{_stamp(now)}")
    target, attempt = base, 1
    while target.exists():
        attempt += 1
        target = base.with_name(f"{base.name}-{attempt}")
    try:
        os.rename(path, target)
    except OSError as error:
        raise store_error("move aside", path, error, intact=True) from error
    fsync_folder(path.parent)
    return target


def _keep_copy(state_dir: Path, data: bytes, name: str) -> Path:
    folder = state_dir / BACKUPS_NAME
    make_folder(folder)
    copy = folder / name
    write_atomically(copy, data)
    return copy


def _write_new(path: Path, state: State) -> OpenedState:
    payload = encode_json(state)
    write_atomically(path, payload)
    return OpenedState(state=json.loads(payload), written=payload)


def _add_event(state: State, event: StoreEvent) -> None:
    meta = Meta.model_validate(state[META][str(SINGLETON_ID)])
    meta = meta.model_copy(update={"events": (*meta.events, event)})
    state[META][str(SINGLETON_ID)] = meta.model_dump(mode="json")


def _stamp(now: datetime) -> str:
    return now.strftime("%Y%m%dT%H%M%SZ")

"""The layout version of ``state.json``, the migrations between versions, and checking a file's shape.

``meta.schema_version`` says which layout a file has. ``MIGRATIONS[n]`` turns a version-``n``
state (the raw tables, as parsed JSON) into a version-``n + 1`` one, given the store's
``history/`` (for what was archived out of the file); ``Store.open`` runs the
ones a file needs, in order, keeps a copy of the file as it was in ``backups/``, and writes the
result once all of them succeeded. The current version is one past the last migration. A file
written by a newer agent is refused rather than guessed at: downgrading the agent must not
silently drop what the newer one recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.errors import StoreCorrupt, StoreError
from agent.store.archive import Archive
from agent.store.records import (
    ACTIVE_DEPLOYMENTS,
    APPROVAL_PREFIX,
    APPROVALS,
    COLOURS,
    DEPLOYMENT_PREFIX,
    FINISHED_DEPLOYMENTS,
    META,
    PIN_PREFIX,
    PINS,
    POLICIES,
    POLICY_PREFIX,
    REVISIONS,
    ROLLBACK_PREFIX,
    ROLLBACKS,
    SINGLETON_ID,
    TABLE_MODELS,
    TOTALS,
    PENDING_AUDIT,
    Meta,
    Totals,
    count_records,
    number_of,
)

State = dict[str, dict[str, Any]]
Migration = Callable[[State, Archive], State]
"""``migration(state, history)``: ``history`` is the store's ``history/`` (read it, never write)."""


def _add_pins_policies_approvals(state: State, history: Archive) -> State:
    """1 → 2: the tables of pins, update policies and approvals managed through the API.

    Only empty tables are added (and the meta counters default to 1), but the version goes up
    all the same: an agent that knows only version 1 takes a file with unknown tables or meta
    counters for a damaged one and would move it aside; with the version it refuses the file as
    "written by a newer agent" and leaves it alone (downgrading must not lose pins and approvals).
    """
    for name in (PINS, POLICIES, APPROVALS):
        state.setdefault(name, {})
    return state


def _add_totals(state: State, history: Archive) -> State:
    """2 → 3: the running totals behind the Prometheus counters (``Totals``), and the table of
    audit entries written with the change they describe (``PendingAudit``, empty).

    Until now the counters were counted from the records kept (the newest 1,000), so they could
    go down as records left them. They start from every deployment and rollback the store still
    knows of, in ``state.json`` or archived in ``history/``: at least what the counters said.
    """
    counted = count_records(
        [*history.read("deployments"), *state.get(FINISHED_DEPLOYMENTS, {}).values()],
        [*history.read("rollbacks"), *state.get(ROLLBACKS, {}).values()],
    )
    kept = state.get(TOTALS, {}).get(str(SINGLETON_ID))
    if isinstance(kept, dict):  # already counted as it went: written by this agent under an older layout (tests)
        counted = counted.at_least(Totals.model_validate(kept))
    state[TOTALS] = {str(SINGLETON_ID): counted.model_dump(mode="json")}
    state.setdefault(PENDING_AUDIT, {})
    return state


def _add_colours(state: State, history: Archive) -> State:
    """3 → 4: the blue-green capabilities' colours (``Colours``), empty: until now no release
    could be deployed blue-green. The version goes up for the reason 1 → 2 gives."""
    state.setdefault(COLOURS, {})
    return state


MIGRATIONS: dict[int, Migration] = {1: _add_pins_policies_approvals, 2: _add_totals, 3: _add_colours}
"""Version n → n + 1. Add one here (and a test with a version-n file) whenever the layout changes."""


def schema_version(migrations: Mapping[int, Migration]) -> int:
    if sorted(migrations) != list(range(1, len(migrations) + 1)):
        raise ValueError(f"migrations must go from version 1 upwards without gaps, got {sorted(migrations)}")
    return len(migrations) + 1


SCHEMA_VERSION = schema_version(MIGRATIONS)


def empty_state(version: int) -> State:
    state: State = {name: {} for name in TABLE_MODELS}
    state[META] = {str(SINGLETON_ID): Meta(schema_version=version).model_dump(mode="json")}
    return state


def parse_state(data: bytes, path: Path) -> tuple[State, int]:
    """The tables in ``data`` and their schema version; StoreCorrupt if it is not a state file at all."""
    if not data.strip():
        raise StoreCorrupt("empty file")
    try:
        state = json.loads(data)
    except ValueError as error:
        raise StoreCorrupt(f"not JSON: {error}") from None
    if not isinstance(state, dict) or not all(isinstance(table, dict) for table in state.values()):
        raise StoreCorrupt("wrong shape: not an object of tables")
    meta = state.get(META, {}).get(str(SINGLETON_ID))
    version = meta.get("schema_version") if isinstance(meta, dict) else None
    if type(version) is not int or version < 1:
        raise StoreCorrupt("wrong shape: no meta.schema_version")
    return state, version


def migrate(state: State, found: int, migrations: Mapping[int, Migration], path: Path, history: Archive) -> State:
    """``state`` brought from version ``found`` to the current one, in memory (``history`` only read)."""
    current = schema_version(migrations)
    if found > current:
        raise StoreError(
            f"{path} was written by a newer id1 agent (state schema {found}; this agent knows up to {current}): "
            f"upgrade id1-agent, or move {path} aside to start with empty state"
        )
    for version in range(found, current):
        try:
            state = migrations[version](state, history)
            state[META][str(SINGLETON_ID)]["schema_version"] = version + 1
        except Exception as error:
            raise StoreError(
                f"cannot upgrade {path} from state schema {version} to {version + 1}: {error!r}; the file was not changed"
            ) from error
    return state


def check_state(state: State) -> None:
    """StoreCorrupt naming the first document that does not fit its table."""
    unknown = set(state) - set(TABLE_MODELS)
    if unknown:
        raise StoreCorrupt(f"wrong shape: unknown table(s) {', '.join(sorted(unknown))}")
    for name, model in TABLE_MODELS.items():
        table = state.setdefault(name, {})
        for key, document in table.items():
            where = f"{name}[{key}]"
            if not key.isdigit():
                raise StoreCorrupt(f"wrong shape: {where}: document ids are numbers")
            try:
                record = model.model_validate(document)
            except ValidationError as error:
                first = error.errors()[0]
                location = ".".join(str(part) for part in first["loc"])
                raise StoreCorrupt(f"wrong shape: {where}.{location}: {first['msg']}") from None
            expected = _expected_key(name, record)
            if expected is not None and expected != int(key):
                raise StoreCorrupt(f"wrong shape: {where}: stored under the wrong id")
            if name in (ACTIVE_DEPLOYMENTS, FINISHED_DEPLOYMENTS) and record.finished != (name == FINISHED_DEPLOYMENTS):
                raise StoreCorrupt(f"wrong shape: {where}: a {record.status} deployment in {name}")
    if len(state[ACTIVE_DEPLOYMENTS]) > 1:
        raise StoreCorrupt("wrong shape: more than one unfinished deployment")


def _expected_key(table: str, record: Any) -> int | None:
    if table in (ACTIVE_DEPLOYMENTS, FINISHED_DEPLOYMENTS):
        return number_of(record.id, DEPLOYMENT_PREFIX) or -1
    if table == ROLLBACKS:
        return number_of(record.id, ROLLBACK_PREFIX) or -1
    if table == REVISIONS:
        return record.number
    if table in (TOTALS, COLOURS):
        return SINGLETON_ID
    if table == PENDING_AUDIT:
        return record.number
    prefix = {PINS: PIN_PREFIX, POLICIES: POLICY_PREFIX, APPROVALS: APPROVAL_PREFIX}.get(table)
    if prefix is not None:
        return number_of(record.id, prefix) or -1
    return None

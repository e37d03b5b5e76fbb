"""Opening a state file: upgrade an old one, refuse a newer one, move a damaged one aside and say so,
and explain permission problems instead of failing with a traceback."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from agent.errors import StoreError
from agent.store import MIGRATIONS, SCHEMA_VERSION, BlockSource, DeploymentStatus, Store, StoreLimits
from agent.store.schema import schema_version
from tests.store.helpers import START, read_state, state_text

# ----------------------------------------------------------------------------- schema versions


def test_a_new_store_records_the_schema_version(store, state_dir):
    assert read_state(state_dir)["meta"]["1"]["schema_version"] == SCHEMA_VERSION


def test_migrations_run_in_order_keep_a_copy_and_are_recorded(state_dir, open_store):
    store = open_store(migrations={})  # a version-1 file
    store.blocked.add("core/auth@1.0.2", "failed", BlockSource.FAILED_DEPLOYMENT)
    store.close()
    original = state_text(state_dir)
    ran = []

    def to_2(state, history):
        ran.append(2)
        for document in state["blocked"].values():
            document["reason"] = document["reason"].upper()
        return state

    def to_3(state, history):
        ran.append(3)
        for document in state["blocked"].values():
            document["reason"] += " (migrated)"
        return state

    upgraded = open_store(migrations={1: to_2, 2: to_3})

    assert ran == [2, 3]
    assert [b.reason for b in upgraded.blocked.list()] == ["FAILED (migrated)"]
    assert read_state(state_dir)["meta"]["1"]["schema_version"] == 3
    [copy] = (state_dir / "backups").iterdir()
    assert copy.name.startswith("state-schema-1-") and copy.read_text() == original
    [event] = upgraded.events()
    assert event.kind == "migrated" and "state schema 1 → 3" in event.detail and str(copy) in event.detail
    assert upgraded.startup_warnings == []


def test_a_state_file_from_a_newer_agent_is_refused_and_left_alone(store, state_dir, open_store):
    store.close()
    state = json.loads(state_text(state_dir))
    state["meta"]["1"]["schema_version"] = SCHEMA_VERSION + 1
    (state_dir / "state.json").write_text(json.dumps(state))
    before = state_text(state_dir)

    with pytest.raises(StoreError) as raised:
        open_store()

    assert str(raised.value) == (
        f"{state_dir / 'state.json'} was written by a newer id1 agent (state schema {SCHEMA_VERSION + 1}; "
        f"this agent knows up to {SCHEMA_VERSION}): upgrade id1-agent, or move {state_dir / 'state.json'} aside "
        "to start with empty state"
    )
    assert state_text(state_dir) == before
    assert Store.open(state_dir, migrations={**MIGRATIONS, SCHEMA_VERSION: lambda s, history: s}).is_open  # and the lock was released


def test_a_failing_migration_changes_nothing(state_dir, open_store):
    store = open_store(migrations={})  # a version-1 file
    store.close()
    before = state_text(state_dir)

    def broken(state, history):
        raise KeyError("suites")

    with pytest.raises(StoreError, match="cannot upgrade .*state.json from state schema 1 to 2: KeyError.*not changed"):
        open_store(migrations={1: broken})
    assert state_text(state_dir) == before


def test_a_migration_that_produces_an_invalid_state_changes_nothing(state_dir, open_store):
    store = open_store(migrations={})  # a version-1 file
    store.close()
    before = state_text(state_dir)

    def breaks_blocked(state, history):
        state["blocked"]["1"] = {"ref": "not a ref"}
        return state

    with pytest.raises(StoreError, match="the result is invalid"):
        open_store(migrations={1: breaks_blocked})
    assert state_text(state_dir) == before


def test_migrations_must_not_skip_a_version():
    with pytest.raises(ValueError, match="without gaps"):
        schema_version({1: lambda s: s, 3: lambda s: s})


# ----------------------------------------------------------------------------- damaged files


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{\"meta\": {\"1\": {\"schema_ver", "not JSON: Unterminated string"),
        ("", "empty file"),
        ("[1, 2, 3]", "wrong shape: not an object of tables"),
        ('{"deployments": {}}', "wrong shape: no meta.schema_version"),
        (
            '{"meta": {"1": {"schema_version": %d}}, "blocked": {"1": {"ref": "core/auth@1.0.2"}}}' % SCHEMA_VERSION,
            "wrong shape: blocked[1].reason: Field required",
        ),
    ],
)
def test_a_damaged_state_file_is_moved_aside_and_reported(state_dir, open_store, content, reason):
    state_dir.mkdir()
    (state_dir / "state.json").write_text(content)

    store = open_store()

    [moved] = state_dir.glob("state.json.corrupt-*")
    assert moved.read_text() == content, "kept byte for byte"
    assert moved.name == "state.json.corrupt-20261120T120001Z"
    [warning] = store.startup_warnings
    assert warning.startswith(f"state.json was unreadable ({reason}")
    assert warning.endswith(
        f"): moved to {moved}; starting with empty state — restore a backup from {state_dir / 'backups'} if you have one"
    )
    [event] = store.events()
    assert (event.kind, event.detail) == ("state-moved-aside", warning)
    # The store works, and the event survives a restart.
    store.blocked.add("platform@2.6.0", "rolled back", BlockSource.ROLLBACK)
    store.close()
    reopened = open_store()
    assert reopened.startup_warnings == []
    assert [e.kind for e in reopened.events()] == ["state-moved-aside"]
    assert reopened.blocked.refs() == {"platform@2.6.0"}


def test_two_damaged_files_in_the_same_second_are_both_kept(state_dir):
    state_dir.mkdir()
    for attempt in range(2):
        (state_dir / "state.json").write_text(f"garbage {attempt}")
        Store.open(state_dir, clock=lambda: START).close()

    kept = sorted(p.read_text() for p in state_dir.glob("state.json.corrupt-*"))
    assert kept == ["garbage 0", "garbage 1"]


# ----------------------------------------------------------------------------- permissions


def _open_as_unprivileged(state_dir: Path, queue) -> None:
    try:
        os.setgid(65534)
        os.setuid(65534)
        Store.open(state_dir).close()
        queue.put(("opened", ""))
    except StoreError as error:
        queue.put((type(error).__name__, str(error)))
    except BaseException as error:  # report anything else instead of hanging the test
        queue.put((type(error).__name__, repr(error)))


def open_without_permission(state_dir: Path) -> tuple[str, str]:
    """Open the store as a user without rights on ``state_dir``: ``nobody`` when we are root."""
    if os.geteuid() != 0:
        try:
            Store.open(state_dir).close()
            return ("opened", "")
        except StoreError as error:
            return (type(error).__name__, str(error))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_open_as_unprivileged, args=(state_dir, queue))
    child.start()
    result = queue.get(timeout=60)
    child.join(timeout=60)
    return result


@pytest.fixture
def public_folder():
    """A folder other users can reach (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="id1-store-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def test_a_state_folder_the_agent_may_not_write_is_explained(public_folder):
    state_dir = public_folder / "id1"
    Store.open(state_dir).close()
    state_dir.chmod(0o755)
    (state_dir / "agent.lock").unlink()
    if os.geteuid() != 0:
        state_dir.chmod(0o555)

    kind, message = open_without_permission(state_dir)

    assert kind == "StoreError"
    assert message == (
        f"cannot open {state_dir / 'agent.lock'}: permission denied: run the agent as the user that owns {state_dir} "
        "(usually root), or give that user read and write access to it"
    )


def test_a_state_file_the_agent_may_not_read_is_explained_not_moved_aside(public_folder):
    state_dir = public_folder / "id1"
    Store.open(state_dir).close()
    state_dir.chmod(0o777)
    (state_dir / "manifests").chmod(0o777)
    (state_dir / "agent.lock").chmod(0o666)
    (state_dir / "state.json").chmod(0o000 if os.geteuid() != 0 else 0o600)
    before = (state_dir / "state.json").read_bytes()

    kind, message = open_without_permission(state_dir)

    assert kind == "StoreError"
    assert message.startswith(f"cannot read {state_dir / 'state.json'}: permission denied: run the agent as the user")
    assert (state_dir / "state.json").read_bytes() == before
    assert not list(state_dir.glob("state.json.corrupt-*"))


# ----------------------------------------------------------------------------- schema 1 → 2


VERSION_1_FILE = {
    "meta": {"1": {"schema_version": 1, "next_deployment": 4, "next_rollback": 1, "next_revision": 3, "events": []}},
    "active_deployments": {},
    "finished_deployments": {},
    "revisions": {},
    "rollbacks": {},
    "blocked": {"1": {"ref": "core/auth@1.0.2", "reason": "failed", "blocked_at": "2026-11-01T00:00:00Z", "source": "rollback"}},
    "feed_state": {"1": {"serial": 7}},
}


def test_a_version_1_file_gains_the_pin_policy_and_approval_tables(state_dir, open_store):
    state_dir.mkdir()
    (state_dir / "state.json").write_text(json.dumps(VERSION_1_FILE))

    store = open_store()

    assert store.blocked.refs() == {"core/auth@1.0.2"} and store.feed_state.get().serial == 7
    assert store.pins.list() == [] and store.policies.list() == [] and store.approvals.pending() is None
    assert store.pins.set("suite", "core", "~=1.2.0").id == "pin-1"
    state = read_state(state_dir)
    assert state["meta"]["1"]["schema_version"] == SCHEMA_VERSION and state["meta"]["1"]["next_deployment"] == 4
    assert {"pins", "policies", "approvals"} <= set(state)
    [copy] = (state_dir / "backups").glob("state-schema-1-*.json")
    assert json.loads(copy.read_text()) == VERSION_1_FILE
    assert [event.kind for event in store.events()] == ["migrated"]


@pytest.mark.parametrize("known", range(1, SCHEMA_VERSION))
def test_an_older_agent_refuses_a_newer_file_instead_of_moving_it_aside(store, state_dir, open_store, known):
    store.pins.set("platform", "platform", "2.5.0")
    store.close()
    before = state_text(state_dir)

    with pytest.raises(StoreError, match=f"was written by a newer id1 agent .state schema {SCHEMA_VERSION}; "
                                         f"this agent knows up to {known}."):
        open_store(migrations={version: MIGRATIONS[version] for version in range(1, known)})

    assert state_text(state_dir) == before and not list(state_dir.glob("state.json.corrupt-*"))


# ----------------------------------------------------------------------------- schema 2 → 3


def version_2_file(state_dir, clock, *, deployments, rollbacks, limits):
    """A store written by a version-2 agent: records in state.json and archived in history/, no totals."""
    from tests.store.test_totals import finish_deployments, start_rollbacks

    store = Store.open(state_dir, clock=clock, limits=limits, migrations={1: MIGRATIONS[1]})
    try:
        finish_deployments(store, clock, deployments)
        start_rollbacks(store, rollbacks)
    finally:
        store.close()
    state = json.loads(state_text(state_dir))
    assert state["meta"]["1"]["schema_version"] == 2
    state.pop("totals", None)
    (state_dir / "state.json").write_text(json.dumps(state))


def test_a_version_2_file_starts_its_totals_from_every_record_kept_and_archived(state_dir, clock, open_store):
    outcomes = [DeploymentStatus.SUCCEEDED] * 5 + [DeploymentStatus.FAILED] * 2 + [DeploymentStatus.ROLLED_BACK]
    version_2_file(state_dir, clock, deployments=outcomes, rollbacks=["agent", "alice", "agent"],
                   limits=StoreLimits(finished_deployments=2, finished_rollbacks=1, finished_approvals=1))
    assert (state_dir / "history" / "deployments.jsonl").exists() and (state_dir / "history" / "rollbacks.jsonl").exists()

    store = open_store()

    totals = store.totals.get()
    assert totals.deployments == {"succeeded": 5, "failed": 2, "rolled_back": 1}
    assert totals.rollbacks == {"automatic": 2, "manual": 1}
    assert read_state(state_dir)["meta"]["1"]["schema_version"] == SCHEMA_VERSION == 4
    assert [event.kind for event in store.events()] == ["migrated"]


def test_a_version_3_file_gains_an_empty_colours_table_and_keeps_everything_else(state_dir, clock, open_store):
    store = Store.open(state_dir, clock=clock, migrations={1: MIGRATIONS[1], 2: MIGRATIONS[2]})
    try:
        store.blocked.add("core/auth@1.0.1", "broke SSO", BlockSource.FAILED_DEPLOYMENT)
    finally:
        store.close()
    state = json.loads(state_text(state_dir))
    assert state["meta"]["1"]["schema_version"] == 3
    del state["colours"]  # as an agent that knew version 3 wrote it
    (state_dir / "state.json").write_text(json.dumps(state))

    upgraded = open_store()

    assert read_state(state_dir)["meta"]["1"]["schema_version"] == SCHEMA_VERSION == 4
    assert read_state(state_dir)["colours"] == {} and upgraded.colours.all() == {}
    assert [b.reason for b in upgraded.blocked.list()] == ["broke SSO"]

"""Pins and update policies managed through the API: one pin per level and name, ids never reused,
and a bad value refused with the field it is about (the API's 422)."""

from __future__ import annotations

import json

import pytest

from agent.config import UpdatePolicy, VersionPin
from agent.errors import StoreError
from agent.store import InvalidValue, RecordNotFound
from tests.store.helpers import START, read_state

# ----------------------------------------------------------------------------- pins


def test_a_pin_is_stored_with_an_id_and_times_and_survives_a_restart(store, open_store, clock):
    pin = store.pins.set("suite", "core", "~=1.2.0", reason="certified stack")

    assert isinstance(pin, VersionPin)
    assert (pin.id, pin.level, pin.name, pin.version, pin.reason) == ("pin-1", "suite", "core", "~=1.2.0", "certified stack")
    assert pin.created_at == pin.updated_at == clock.now > START
    store.close()
    reopened = open_store()
    assert reopened.pins.list() == [pin]
    assert reopened.pins.get("pin-1") == pin
    assert reopened.pins.find("suite", "core") == pin


def test_setting_a_pin_again_replaces_version_and_reason_and_keeps_its_id(store, clock):
    first = store.pins.set("capability", "core/auth", "1.0.1", reason="CVE triage")
    store.pins.set("platform", "platform", "2.5.0")

    again = store.pins.set("capability", "core/auth", "1.0.2")

    assert (again.id, again.version, again.reason) == ("pin-1", "1.0.2", None)
    assert again.created_at == first.created_at and again.updated_at > first.updated_at
    assert [(p.id, p.name, p.version) for p in store.pins.list()] == [
        ("pin-1", "core/auth", "1.0.2"),
        ("pin-2", "platform", "2.5.0"),
    ], "one pin per level and name, oldest first"


def test_removing_a_pin_returns_it_and_its_id_is_never_handed_out_again(store, open_store):
    store.pins.set("suite", "core", "1.2.0")
    removed = store.pins.remove("suite", "core")

    assert removed is not None and removed.id == "pin-1"
    assert store.pins.remove("suite", "core") is None
    assert store.pins.get("pin-1") is None and store.pins.list() == []
    store.close()
    assert open_store().pins.set("suite", "core", "1.3.0").id == "pin-2"


def test_the_same_name_at_another_level_is_another_pin(store):
    store.pins.set("suite", "analytics", "3.0.0")
    store.pins.set("capability", "analytics/etl", "3.0.1")

    assert store.pins.remove("suite", "analytics/etl") is None
    assert len(store.pins.list()) == 2


@pytest.mark.parametrize(
    ("level", "name", "version", "field", "message"),
    [
        ("cluster", "core", "1.0.0", "level", "Input should be 'platform', 'suite' or 'capability'"),
        ("suite", "core/auth", "1.0.0", "name", "name 'core/auth' does not fit level suite: expected a suite name such as core"),
        ("capability", "auth", "1.0.0", "name", "expected suite/capability such as core/auth"),
        ("platform", "core", "2.5.0", "name", 'expected "platform"'),
        ("suite", "core", "1.x", "version", "'1.x' is neither a PEP 440 version nor a specifier such as ~=1.2.0"),
    ],
)
def test_a_bad_pin_is_refused_naming_the_field_and_nothing_is_stored(store, state_dir, level, name, version, field, message):
    before = read_state(state_dir)

    with pytest.raises(InvalidValue) as raised:
        store.pins.set(level, name, version)

    error = raised.value
    assert isinstance(error, StoreError) and isinstance(error, ValueError)
    assert error.field == field and message in error.issues[0].message
    assert str(error).startswith(f"invalid pin: {field}: ")
    assert read_state(state_dir) == before
    assert store.pins.set("suite", "core", "1.0.0").id == "pin-1", "the refused pin used no number"


def test_pins_of_unknown_ids_are_none(store):
    assert store.pins.get("pin-7") is None
    assert store.pins.get("policy-1") is None
    assert store.pins.get("pin-01") is None


# ----------------------------------------------------------------------------- policies


def test_a_policy_is_created_listed_and_survives_a_restart(store, open_store, clock):
    instance = store.policies.create("weekly", "manual-approval", description="approve on Mondays")
    analytics = store.policies.create("analytics fast lane", "auto-update", suite="analytics", enabled=False)

    assert isinstance(instance, UpdatePolicy)
    assert (instance.id, instance.channel, instance.enabled, instance.suite) == ("policy-1", "manual-approval", True, None)
    assert (analytics.id, analytics.suite, analytics.enabled) == ("policy-2", "analytics", False)
    assert instance.created_at == instance.updated_at < analytics.created_at
    store.close()
    reopened = open_store()
    assert reopened.policies.list() == [instance, analytics]
    assert reopened.policies.get("policy-2") == analytics


def test_updating_a_policy_changes_only_the_given_fields_and_bumps_updated_at(store):
    created = store.policies.create("weekly", "manual-approval", description="approve on Mondays")

    updated = store.policies.update("policy-1", channel="frozen", enabled=False, suite="core")

    assert (updated.name, updated.channel, updated.enabled, updated.suite, updated.description) == (
        "weekly", "frozen", False, "core", "approve on Mondays"
    )
    assert updated.id == created.id and updated.created_at == created.created_at
    assert updated.updated_at > created.updated_at
    assert store.policies.get("policy-1") == updated
    cleared = store.policies.update("policy-1", suite=None, description=None)
    assert (cleared.suite, cleared.description) == (None, None)


def test_updating_an_unknown_policy_is_a_clear_error(store):
    with pytest.raises(RecordNotFound, match="there is no policy 'policy-9'"):
        store.policies.update("policy-9", channel="frozen")
    with pytest.raises(RecordNotFound):
        store.policies.update("weekly", channel="frozen")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"channel": "yolo"}, "channel"),
        ({"suite": "../etc"}, "suite"),
        ({"enabled": "sometimes"}, "enabled"),
        ({"id": "policy-7"}, "id"),
        ({"created_at": START}, "created_at"),
    ],
)
def test_a_bad_policy_change_is_refused_naming_the_field(store, state_dir, change, field):
    store.policies.create("weekly", "manual-approval")
    before = read_state(state_dir)

    with pytest.raises(InvalidValue) as raised:
        store.policies.update("policy-1", **change)

    assert raised.value.field == field
    assert read_state(state_dir) == before


def test_a_bad_new_policy_is_refused_naming_the_field(store):
    with pytest.raises(InvalidValue) as raised:
        store.policies.create("weekly", "sometimes")
    assert raised.value.field == "channel" and "invalid policy: channel: " in str(raised.value)
    assert store.policies.create("weekly", "frozen").id == "policy-1"


def test_deleting_a_policy(store, open_store):
    store.policies.create("weekly", "manual-approval")
    store.policies.create("freeze", "frozen")

    assert store.policies.delete("policy-1") is True
    assert store.policies.delete("policy-1") is False
    assert store.policies.delete("nonsense") is False
    assert [p.id for p in store.policies.list()] == ["policy-2"]
    store.close()
    assert open_store().policies.create("again", "auto-update").id == "policy-3"


def test_pins_and_policies_in_a_batch_are_one_write_all_or_nothing(store, state_dir):
    before = read_state(state_dir)

    with pytest.raises(RuntimeError), store.batch():
        store.pins.set("suite", "core", "1.2.0")
        store.policies.create("weekly", "manual-approval")
        raise RuntimeError("the API request failed half-way")

    assert read_state(state_dir) == before
    assert store.pins.list() == [] and store.policies.list() == []


def test_a_stored_pin_that_later_rules_refuse_does_not_make_the_state_file_unreadable(store, state_dir, open_store):
    store.pins.set("suite", "core", "~=1.2.0")
    store.blocked.add("core/auth@1.0.2", "failed", "rollback")
    store.close()
    state = read_state(state_dir)
    state["pins"]["1"]["version"] = "1.2.0-legacy-form"  # what a stricter packaging release might refuse
    (state_dir / "state.json").write_text(json.dumps(state))

    reopened = open_store()

    assert reopened.startup_warnings == [] and not list(state_dir.glob("state.json.corrupt-*"))
    assert reopened.blocked.refs() == {"core/auth@1.0.2"}
    assert reopened.pins.set("suite", "core", "~=1.3.0").version == "~=1.3.0", "an admin can set it right"

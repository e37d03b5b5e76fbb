"""7 Fleet at 80x24: the group as ``id1 fleet`` shows it (hosts, who holds and who waits for a
slot, failed and halted changes), kept fresh by this host's events and by a timer for the other
hosts, and the admin's two fleet actions, confirmed, sent once, refused to other roles."""

from __future__ import annotations

import re

import pytest
from textual.widgets import DataTable, Input

from tests.tui.conftest import screen_text
from tests.tui.settle import settle, until
from tui.app import DashboardApp
from tui.screens.confirm import ConfirmDialog
from tui.widgets.nav_bar import NavBar

pytestmark = pytest.mark.asyncio

SIZE = (80, 24)
OBEYED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def rows(app, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(table_id, DataTable)
    return [[cell.plain for cell in table.get_row_at(index)] for index in range(table.row_count)]


def messages(app) -> list[str]:
    return [notification.message for notification in app._notifications]


async def test_key_7_shows_the_group_its_slots_and_the_line_and_what_failed(make_app):
    app, _fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("7")
        await settle(pilot)
        assert app.screen.NAME == "fleet" and app.screen.query_one(NavBar).current == "fleet"
        text = screen_text(app)
        assert "[7 Fleet]" in text and "1 Overview" in text and "6 Audit" in text  # the seven fit in 80 columns
        for expected in ("prod (etcd), this host host-01", "2 of 2 held; a change is halted once it failed on 2 hosts",
                         "host-03 (first in line first)", "core/api@2.2.1: no host of the group deploys it"):
            assert expected in text, expected
        assert rows(app, "#fleet-hosts") == [
            ["host-01*", "host-01", "2.5.0", "4", "-", "08:04:41", "idle"],
            ["host-02", "host-02", "2.6.0", "9", "HOLDS", "08:04:52", "deploying"],
            ["host-03", "host-03", "2.5.0", "4", "waits #1", "08:04:37",
             "waiting for a fleet slot (group prod: 2/2 held by host-02, host-04)"],
            ["host-04", "-", "-", "-", "HOLDS", "-", "NO STATE: gone?"],  # holds a slot, publishes nothing
        ]
        assert rows(app, "#fleet-changes") == [["core/api@2.2.1", "HALTED", "host-04, host-05"],
                                               ["search/indexer@1.0.1", "no", "host-05"]]
        assert isinstance(app.screen.focused, DataTable) and app.screen.focused.id == "fleet-hosts"


async def test_the_selected_hosts_state_is_shown_in_full_below_the_table(make_app):
    app, _fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        assert "host-01: instance host-01; platform 2.5.0, revision 4" in screen_text(app)
        await pilot.press("down", "down")
        await settle(pilot)
        text = " ".join(screen_text(app).split())  # the state may wrap
        assert "waiting for a fleet slot (group prod: 2/2 held by host-02, host-04) since 2026-11-21 08:03 UTC" in text
        await pilot.press("down")
        await settle(pilot)
        assert "host-04: instance -; HOLDS slot 1 since 2026-11-21 06:12 UTC" in screen_text(app)


async def test_this_hosts_activity_event_refreshes_the_fleet(make_app):
    app, fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        fake.set_activity("deploying: approval-3 (platform 2.6.0)")
        await until(pilot, lambda: rows(app, "#fleet-hosts")[0][-1] == "deploying: approval-3 (platform 2.6.0)",
                    what="host-01's new state in the fleet")


async def test_other_hosts_changes_show_up_by_the_screens_timer_and_only_while_it_shows(fakes, monkeypatch):
    from tests.tui.fake import FakeClient

    monkeypatch.setattr("tui.screens.fleet.FLEET_REFRESH_S", 0.2)
    fake = FakeClient()
    fakes.append(fake)
    app = DashboardApp(fake, refresh_s=60, live=False, coalesce_s=0.02)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        with fake._lock:  # host-02 is done and gives its slot back: no event reaches this host
            fake.fleet_holders = [holder for holder in fake.fleet_holders if holder["host_id"] != "host-02"]
        await until(pilot, lambda: rows(app, "#fleet-hosts")[1][4] == "-", what="host-02's slot to be shown free")
        await pilot.press("1")
        await settle(pilot)
        reads = len([call for call in fake.calls if call[0] == "fleet"])
        await pilot.pause(0.6)
        assert len([call for call in fake.calls if call[0] == "fleet"]) == reads  # not read while not shown


async def test_an_admin_frees_the_slot_of_a_host_that_is_gone(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("down", "down", "down", "f")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        text = screen_text(app)
        assert "Free this fleet slot?" in text and "host-04 holds slot 1 since 2026-11-21 06:12 UTC" in text
        assert "It publishes no state: it looks gone." in text
        await pilot.press("tab", *["space" if c == " " else c for c in "power supply died"], "enter")
        await settle(pilot)
        assert [call for call in fake.calls if call[0] == "fleet_release"] == [
            ("fleet_release", ("host-04", "power supply died"), {})]
        assert "the slot of host-04 is free" in messages(app)
        assert [row[0] for row in rows(app, "#fleet-hosts")] == ["host-01*", "host-02", "host-03"]
        assert "1 of 2 held" in screen_text(app)


async def test_freeing_the_slot_of_a_host_that_still_publishes_warns_and_n_sends_nothing(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("down", "f")
        await settle(pilot)
        text = " ".join(screen_text(app).split())
        assert "It still publishes its state (deploying, seen 08:04:52)" in text
        await pilot.press("n")
        await settle(pilot)
        assert app.screen.NAME == "fleet"
        assert not [call for call in fake.calls if call[0] == "fleet_release"]


async def test_an_admin_resumes_the_selected_halted_change(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("u")
        await settle(pilot)
        text = " ".join(screen_text(app).split())
        assert "core/api@2.2.1 failed on host-04, host-05 and is halted." in text
        assert "Resuming removes its failure records: every host of group prod may" in text
        await pilot.press("y")
        await settle(pilot)
        assert [call for call in fake.calls if call[0] == "fleet_resume"] == [("fleet_resume", ("core/api@2.2.1", None), {})]
        assert "core/api@2.2.1 resumed for the group (it had failed on host-04, host-05)" in messages(app)
        assert rows(app, "#fleet-changes") == [["search/indexer@1.0.1", "no", "host-05"]]
        assert "Halted" not in screen_text(app)


async def test_the_agents_refusal_is_shown_and_nothing_else_changes(make_app):
    from tui.client import ApiError

    app, fake = make_app(role="admin")
    fake.refuse("fleet_resume", ApiError(503, "failed", "the lock service is unreachable: connection refused"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("u", "y")
        await settle(pilot)
        assert "the lock service is unreachable: connection refused" in messages(app)
        assert rows(app, "#fleet-changes")[0][0] == "core/api@2.2.1"


@pytest.mark.parametrize("role", ["viewer", "approver"])
async def test_the_fleet_actions_are_the_admins(make_app, role):
    app, fake = make_app(role=role)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        assert "DISABLED u resume, f free slot: needs the admin role (group id1-admin)" in screen_text(app)
        await pilot.press("down", "down", "down", "f", "u")
        await settle(pilot)
        assert app.screen.NAME == "fleet"  # no dialog
        assert "f free slot: needs the admin role (group id1-admin)" in messages(app)
        assert not [call for call in fake.calls if call[0] in ("fleet_release", "fleet_resume")]


async def test_free_slot_is_disabled_on_a_host_that_holds_none(make_app):
    app, _fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        assert "DISABLED f free slot: host-01 holds no slot" in screen_text(app)
        await pilot.press("down")
        await settle(pilot)
        assert "DISABLED" not in screen_text(app)


@pytest.mark.parametrize(("backend", "note", "reason"), [
    ("none", "fleet coordination is off (fleet.backend = none)", "fleet coordination is off on this host"),
    ("fleetlock", "FleetLock gives slots only: no view of the other hosts, no halt",
     "FleetLock gives slots only: use the lock server's own tools"),
])
async def test_a_backend_without_a_view_says_so(make_app, backend, note, reason):
    app, fake = make_app(role="admin")
    fake.fleet_backend = backend
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        text = " ".join(screen_text(app).split())
        assert note in text and f"DISABLED u resume, f free slot: {reason}" in text
        assert rows(app, "#fleet-hosts") == [] and rows(app, "#fleet-changes") == []


async def test_what_hosts_publish_is_drawn_escaped_and_not_as_markup(make_app):
    app, fake = make_app()
    fake.fleet_hosts[1].update(agent_state="[bold]deploying[/bold] \x1b[2K\rOK", instance_id="\u202ehost-02")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("down")
        await settle(pilot)
        text = screen_text(app)
    assert "[bold]deploying[/bold] \\x1b[2K\\rOK" in text and "\\u202ehost-02" in text, text
    assert not OBEYED.findall(text)


async def test_the_nav_bar_marks_a_change_halted_for_this_host(make_app):
    app, fake = make_app()
    original = fake._problems
    fake._problems = lambda: [*original(), {"code": "fleet-halted", "detail": "core/api 2.2.1 is halted for this host's fleet group"}]
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "7 Fleet (1!)" in screen_text(app)


async def test_typing_in_the_reason_field_does_not_trigger_the_screens_keys(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("u", "tab", *["space" if c == " " else c for c in "fixed in 2.2.2 (use f and u)"])
        await settle(pilot)
        assert app.screen.query_one(Input).value == "fixed in 2.2.2 (use f and u)"
        await pilot.press("enter")
        await settle(pilot)
        assert [call[1] for call in fake.calls if call[0] == "fleet_resume"] == [("core/api@2.2.1", "fixed in 2.2.2 (use f and u)")]


async def test_the_palette_goes_to_the_fleet_and_resumes_by_name(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"resume")
        await until(pilot, lambda: "Resume a halted change for the fleet group" in screen_text(app), what="the palette's hit")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the resume dialog")
        assert app.screen_stack[-2].NAME == "fleet"
        await pilot.press("y")
        await settle(pilot)
        assert [call[1] for call in fake.calls if call[0] == "fleet_resume"] == [("core/api@2.2.1", None)]

"""The seven screens at 80x24: the keys of DESIGN.md §9 switch them, and each shows what an admin
needs to understand the host (from the fake agent's realistic state)."""

from __future__ import annotations


import pytest
from textual import events
from textual.widgets import DataTable, Tree

from tests.tui.conftest import screen_text
from tests.tui.fake import fake_with_history
from tests.tui.settle import settle
from tui.app import DashboardApp
from tui.screens.help import HelpScreen
from tui.widgets.nav_bar import NavBar

pytestmark = pytest.mark.asyncio

SIZE = (80, 24)


async def test_keys_1_to_6_switch_the_screens_in_the_contracts_order(make_app):
    app, _fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.screen.NAME == "overview"
        for key, name in (("2", "updates"), ("3", "history"), ("4", "pins"), ("5", "security"), ("6", "audit"),
                          ("1", "overview"), ("6", "audit")):
            await pilot.press(key)
            await settle(pilot)
            assert app.screen.NAME == name
            assert app.screen.query_one(NavBar).current == name
        text = screen_text(app)
        assert "[6 Audit]" in text  # the current screen in brackets, not by colour alone


async def test_overview_says_the_state_in_words_and_shows_the_capability_tree(make_app):
    app, _fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        for expected in (
            "host-01 | alice (approver) | agent: idle | events: live",
            "manual-approval; analytics: auto-update",
            "Sat 02:00-05:00 (UTC); next opens 2026-11-28 02:00 UTC",
            "revision 4, platform 2.5.0, 6 capabilities",
            "last 2026-11-21 08:00 UTC, next 2026-11-21 08:15 UTC",
            "approval-3: 3 changes AWAIT approval (press 2)",
            "1 advisory EXPOSED",
            "ID-1 platform 2.5.0  revision 4",
            "core 1.2.0",  # suite versions come from the running revision's manifest
            "auth 1.0.1  [security fix ID1-SA-2026-0001, overrides pin:suite]",
            "ingest 1.4.0  [pinned (capability)]",
            "indexer 0.9.0  [latest]",
        ):
            assert expected in text, expected
        assert isinstance(app.screen.focused, Tree)


async def test_updates_shows_the_pending_approval_changes_notes_and_advisories(make_app):
    app, _fake = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await settle(pilot)
        text = screen_text(app)
        assert "approval-3  PENDING" in text
        assert "approval-2  deployed" in text and "approval-1  rejected" in text
        assert "core/api        2.1.0 -> 2.2.0  pinned (suite)  awaits approval" in text
        assert "search/indexer  0.9.0 -> 1.0.0  latest          awaits approval" in text
        assert "faster search indexing" in text
        assert "ID1-SA-2026-0003" in text
        assert "deploys when the window opens (2026-11-28 02:00 UTC)" in text
        # The security fix the agent forced, whatever the channel:
        assert "applied  core/auth 1.0.1 (security fix ID1-SA-2026-0001, overrides pin:suite)" in text


async def test_history_lists_revisions_newest_first_with_the_cursor_on_the_newest(make_app):
    app, _fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#revisions", DataTable)
        numbers = [int(table.get_row_at(index)[0].plain) for index in range(table.row_count)]
        assert numbers == [4, 3, 2, 1]
        assert table.cursor_row == 0 and app.screen.selected == 4
        assert "RUNNING" in screen_text(app)
        await pilot.press("down")
        await settle(pilot)
        text = screen_text(app)
        assert "from revision 4 it would change 1 capability" in text
        assert "core/auth   1.0.1 -> 1.0.0" in text


async def test_scrolling_a_long_history_fetches_only_where_the_cursor_rests_and_never_resizes_the_list(fakes, monkeypatch):
    # The 41 key presses are queued at once; a rest of 2 s between two of them (which would
    # fetch on the way) cannot happen by load alone, as a 0.1 s one could on a busy machine.
    monkeypatch.setattr("tui.screens.history.DETAIL_DELAY_S", 2.0)
    fake = fake_with_history(300)
    fakes.append(fake)
    app = DashboardApp(fake, refresh_s=0, live=False, coalesce_s=0.02)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#revisions", DataTable)
        fetched_before = [call for call in fake.calls if call[0] == "revision"]
        for _ in range(41):  # a held key: faster than the pane waits for the cursor to rest
            app._driver.send_message(events.Key("down", None))
        await settle(pilot)
        fetched = [call[1] for call in fake.calls if call[0] == "revision"][len(fetched_before):]
        assert fetched == [(259,)]  # only the revision the cursor rested on
        assert app.screen.selected == 259 and app.screen.detail_shown == 259
        text = screen_text(app)
        list_height = table.outer_size.height  # (on the running revision, a line says why r is disabled)
        assert "Revision   259, platform 2.5.0" in text and "from revision 300 it would change 1 capability" in text
        assert "core/auth   1.0.1 -> 1.0.0" in text
        await pilot.press("down")  # five changes: more than the pane's rows at 80x24
        await settle(pilot)
        text = screen_text(app)
        assert "from revision 300 it would change 5 capabilities" in text and "... and 3 more (r lists them all)" in text
        assert table.outer_size.height == list_height  # the details never resized the list


async def test_pins_mark_config_pins_read_only_and_show_the_policy(make_app):
    app, _fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        text = screen_text(app)
        assert "core              ~=1.2.0  config [read-only]  certified stack" in text
        assert "analytics/ingest  1.4.0    api" in text
        assert "analytics: auto-update" in text
        assert "security fixes of severity high and above" in text


async def test_security_lists_every_advisory_status_on_this_host(make_app):
    app, _fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        text = screen_text(app)
        for status in ("EXPOSED", "FIX-PENDING", "AFFECTED", "not-affected", "not-installed"):
            assert status in text, status
        assert "EXPOSED: affected and no fixed version in the feed" in text  # the selected (first) one's details
        await pilot.press("down")
        await settle(pilot)
        assert "Rate limits bypassed with chunked requests" in screen_text(app)


async def test_audit_shows_the_log_newest_first(make_app):
    app, _fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await settle(pilot)
        table = app.screen.query_one("#entries", DataTable)
        seqs = [int(table.get_row_at(index)[0].plain) for index in range(table.row_count)]
        assert seqs == sorted(seqs, reverse=True) and seqs[0] == 7
        assert "7 approval-proposed by agent" in screen_text(app)


async def test_question_mark_shows_the_keys_and_escape_closes_them(make_app):
    app, _fake = make_app(role="viewer")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        assert "approve the selected update" in text
        assert "DISABLED: needs the approver role" in text
        assert "You are alice, role: viewer" in text
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen.NAME == "overview"


async def test_q_quits(make_app):
    app, _fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0
        assert not app.is_running or app._exit_renderables is not None


async def test_q_quits_from_the_help_screen_too(make_app):
    app, _fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark", "q")
        await pilot.pause()
        assert app.return_code == 0

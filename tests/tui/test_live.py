"""What happens without a key being pressed: the agent's events refresh what changed (and only
that), and an agent that is down is a clear screen that retries until it answers."""

from __future__ import annotations

import re

import pytest
from textual.widgets import DataTable

from tests.tui.conftest import screen_text
from tests.tui.settle import settle, until
from tui.screens.unreachable import UnreachableScreen

pytestmark = pytest.mark.asyncio

SIZE = (80, 24)


async def test_an_approval_made_elsewhere_shows_up_by_itself(make_app):
    app, fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert "approval-3  PENDING" in screen_text(app)
        fake.user = "bob"
        fake.approve("approval-3", "from the CLI")  # another admin, `id1 approve`: the agent publishes events
        await until(pilot, lambda: "approval-3  deployed" in screen_text(app), what="the approval to show")
        await settle(pilot)
        text = screen_text(app)
        assert "approved by bob 2026-11-21 08:06 UTC: from the CLI" in text
        assert "Updates (1)" not in text


async def test_activity_events_update_the_status_bar(make_app):
    app, fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        fake.set_activity("deploying: approval-3 (platform 2.6.0)")
        await until(pilot, lambda: "agent: deploying: approval-3" in screen_text(app), what="the activity")


async def test_an_event_refreshes_only_the_resources_it_touches_and_equal_answers_redraw_nothing(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        table = app.screen.query_one("#revisions", DataTable)
        cleared = []
        original_clear = table.clear
        table.clear = lambda *args, **kwargs: (cleared.append(1), original_clear(*args, **kwargs))[1]
        reads_before = len(fake.calls)
        fake.publish("audit", {"seq": 8, "action": "pin"})
        fake.publish("status", {"activity": "idle"})
        await pilot.pause(0.2)
        await settle(pilot)
        reads = [call[0] for call in fake.calls[reads_before:]]
        assert "revisions" not in reads and "updates" not in reads  # an audit event reloads the audit only
        assert "status" in reads
        assert cleared == []  # the same status: the history table is not rebuilt, the cursor not moved
        fake.publish("revision", {"revision": 4})
        await pilot.pause(0.2)
        await settle(pilot)
        assert "revisions" in [call[0] for call in fake.calls[reads_before:]]
        assert cleared == []  # same revisions: still nothing redrawn


async def test_a_burst_of_activity_ticks_costs_few_reloads(make_app):
    app, fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        before = sum(1 for call in fake.calls if call[0] == "status")
        for step in range(50):
            fake.set_activity(f"downloading {step}/50")
        await until(pilot, lambda: "downloading 49/50" in screen_text(app), what="the last tick")
        await settle(pilot)
        reloads = sum(1 for call in fake.calls if call[0] == "status") - before
        assert reloads <= 10, reloads


async def test_an_agent_down_at_start_is_a_clear_screen_and_r_retries(make_app):
    app, fake = make_app(down=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "NOT ANSWERING" in screen_text(app), what="the agent-down screen")
        assert isinstance(app.screen, UnreachableScreen)
        text = screen_text(app)
        assert "THE ID1 AGENT IS NOT ANSWERING" in text
        assert "no socket at /run/id1/agent.sock" in text
        assert "Retrying in 30 s (attempt 1)." in text
        await pilot.press("2")  # the screens are out of reach while it is down
        await pilot.press("r")  # still down: counts again
        await until(pilot, lambda: "attempt 2" in screen_text(app), what="the second attempt")
        fake.down = False
        await pilot.press("r")
        await until(pilot, lambda: not isinstance(app.screen, UnreachableScreen), what="the recovery")
        await settle(pilot)
        assert app.screen.NAME == "overview"
        assert "revision 4, platform 2.5.0" in screen_text(app)
        assert "The agent answers again." in [n.message for n in app._notifications]


async def test_an_agent_that_goes_away_is_noticed_and_the_dashboard_recovers_by_itself(make_app):
    app, fake = make_app(retry_s=1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        fake.down = True  # the event stream breaks: the dashboard notices without a key press
        await until(pilot, lambda: "NOT ANSWERING" in screen_text(app), what="the agent-down screen")
        assert "Retrying in 1 s" in screen_text(app) or "Retrying now" in screen_text(app)
        fake.down = False
        await until(pilot, lambda: not isinstance(app.screen, UnreachableScreen), timeout=6, what="the recovery")
        await settle(pilot)
        assert app.screen.NAME == "history"
        assert re.search(r"dep-4 +RUNNING", screen_text(app)), screen_text(app)


async def test_q_quits_from_the_agent_down_screen(make_app):
    app, fake = make_app(down=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, UnreachableScreen), what="the agent-down screen")
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0

"""Every change from the dashboard: confirmed with ``y``, cancelled with ``n`` or Escape, sent to
the agent once, and the screens show the agent's new state afterwards."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input

from tests.tui.conftest import screen_text
from tests.tui.settle import settle
from tui.client import ApiError
from tui.screens.channel_form import ChannelForm
from tui.screens.confirm import ConfirmDialog
from tui.screens.pin_form import PinForm
from tui.screens.rollback import RollbackDialog

pytestmark = pytest.mark.asyncio

SIZE = (80, 24)
READS = {"status", "updates", "approvals", "approval", "revisions", "revision", "rollback_check", "versions",
         "policy", "advisories", "audit", "events"}


def changes_sent(fake) -> list[tuple]:
    return [call for call in fake.calls if call[0] not in READS]


async def type_text(pilot, text: str) -> None:
    await pilot.press(*["space" if c == " " else c for c in text])


def messages(app) -> list[str]:
    return [notification.message for notification in app._notifications]


# --- approve and reject -----------------------------------------------------------------------

async def test_a_then_y_approves_the_selected_update_and_the_screens_follow(make_app):
    app, fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        text = screen_text(app)
        assert "Approve approval-3?" in text and "core/api  2.1.0 -> 2.2.0" in text
        await pilot.press("y")
        await settle(pilot)
        assert changes_sent(fake) == [("approve", ("approval-3", None), {})]
        assert "approval-3 approved by alice; deploying now" in messages(app)
        assert "approval-3  deployed" in screen_text(app)
        assert "Updates (1)" not in screen_text(app)  # nothing pending any more
        await pilot.press("3")
        await settle(pilot)
        assert app.screen.query_one("#revisions", DataTable).get_row_at(0)[0].plain == "5"
        assert "2.6.0" in screen_text(app)


async def test_a_new_approval_arriving_after_a_deployment_takes_the_cursor_and_a_approves_it(make_app):
    """Seen over tmux: approval-3 deployed, approval-4 arrived on the event stream, and `a` still
    acted on the entry under the cursor, approval-3, so approval-4 was never approved."""
    app, fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert "approval-3  deployed" in screen_text(app)
        with fake._lock:  # the next feed: a new target awaits approval
            fake.approvals_kept.append(fake._approval(4, "pending", "2026-11-22T08:00:00Z"))
        fake.publish("approval", {"id": "approval-4", "status": "pending"})
        await settle(pilot)
        assert "approval-4  PENDING" in screen_text(app)
        assert app.screen.selected == "approval-4"
        await pilot.press("a")
        await settle(pilot)
        assert "Approve approval-4?" in screen_text(app)
        await pilot.press("y")
        await settle(pilot)
        assert changes_sent(fake)[-1] == ("approve", ("approval-4", None), {})


async def test_an_approval_comment_is_typed_after_tab_and_enter_confirms(make_app):
    app, fake = make_app(deploy_on_approve=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("a", "tab")
        await type_text(pilot, "ok for tonight")
        await pilot.press("enter")
        await settle(pilot)
        assert changes_sent(fake) == [("approve", ("approval-3", "ok for tonight"), {})]
        assert "approved by alice 2026-11-21 08:06 UTC: ok for tonight" in screen_text(app)


@pytest.mark.parametrize("cancel", ["n", "escape"])
async def test_n_or_escape_cancels_without_asking_the_agent(make_app, cancel):
    app, fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        await pilot.press(cancel)
        await settle(pilot)
        assert app.screen.NAME == "updates"
        assert changes_sent(fake) == []
        assert "approval-3  PENDING" in screen_text(app)


async def test_reject_requires_a_reason(make_app):
    app, fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("x")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog) and isinstance(app.screen.focused, Input)
        await pilot.press("enter")  # no reason yet
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        assert "reason for rejecting: required" in screen_text(app)
        await type_text(pilot, "not before the audit")
        await pilot.press("tab", "y")  # out of the text field, y confirms
        await settle(pilot)
        assert changes_sent(fake) == [("reject", ("approval-3", "not before the audit"), {})]
        text = screen_text(app)
        assert "approval-3  rejected" in text
        assert "rejected by alice 2026-11-21 08:06 UTC: not before the audit" in text


async def test_a_decided_approval_cannot_be_decided_again(make_app):
    app, fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("down", "a")  # approval-2, deployed
        await settle(pilot)
        assert app.screen.NAME == "updates"
        assert "a approve: approval-2 is deployed: only a pending update can be decided" in messages(app)
        assert "DISABLED a approve, x reject: approval-2 is deployed" in screen_text(app)
        assert changes_sent(fake) == []


async def test_the_apis_refusal_is_shown_as_it_is(make_app):
    app, fake = make_app()
    refusal = "alice may not approve or reject updates: that needs the approver role (group ops-approvers)"
    fake.refuse("approve", ApiError(403, "forbidden", refusal))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert refusal in messages(app)
        error = [n for n in app._notifications if n.message == refusal][0]
        assert error.severity == "error" and error.title == "Could not approve approval-3"
        assert "approval-3  PENDING" in screen_text(app)


# --- rollback ---------------------------------------------------------------------------------

async def test_r_previews_the_rollback_asks_a_reason_and_force_then_rolls_back(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("down", "r")  # revision 3: brings back an enforced advisory
        await settle(pilot)
        assert isinstance(app.screen, RollbackDialog)
        text = screen_text(app)
        assert "Roll back to revision 3?" in text
        assert "core/auth   1.0.1 -> 1.0.0" in text
        assert "ENFORCED ADVISORIES it brings back: ID1-SA-2026-0001" in text
        await pilot.press("enter")
        await settle(pilot)
        assert "reason for the rollback: required" in screen_text(app)
        await type_text(pilot, "auth 1.0.1 breaks SSO")
        await pilot.press("enter")
        await settle(pilot)
        assert "press f to force" in screen_text(app)
        assert changes_sent(fake) == []
        await pilot.press("tab", "f", "y")
        await settle(pilot)
        assert changes_sent(fake) == [("rollback", (3,), {"reason": "auth 1.0.1 breaks SSO", "force": True})]
        assert "rolled back to revision 3 (now running revision 5)" in messages(app)
        table = app.screen.query_one("#revisions", DataTable)
        assert [table.get_row_at(i)[0].plain for i in range(table.row_count)] == ["5", "4", "3", "2", "1"]
        assert table.get_row_at(0)[5].plain == "RUNNING"


async def test_an_allowed_rollback_needs_only_a_reason_and_y(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("down", "down", "r")  # revision 2
        await settle(pilot)
        text = screen_text(app)
        assert "Roll back to revision 2?" in text and "ENFORCED" not in text
        assert "search/indexer" not in text or "0.9.0 -> 0.9.0" not in text
        await type_text(pilot, "back to 2.4.1")
        await pilot.press("tab", "y")
        await settle(pilot)
        assert changes_sent(fake) == [("rollback", (2,), {"reason": "back to 2.4.1", "force": False})]


async def test_a_rollback_the_agent_would_refuse_cannot_be_confirmed(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("down", "down", "down", "r")  # revision 1: an artifact is gone
        await settle(pilot)
        text = screen_text(app)
        assert "PROBLEM: core/api 2.0.0: the artifact is neither" in text
        assert "n or Esc close" in text
        await pilot.press("y")
        await settle(pilot)
        assert isinstance(app.screen, RollbackDialog)
        await pilot.press("n")
        await settle(pilot)
        assert app.screen.NAME == "history"
        assert changes_sent(fake) == []


async def test_the_running_revision_cannot_be_rolled_back_to(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("r")
        await settle(pilot)
        assert app.screen.NAME == "history"
        assert "r roll back: revision 4 is the one running" in messages(app)
        assert not [call for call in fake.calls if call[0] == "rollback_check"]


# --- pins and channel -------------------------------------------------------------------------

async def test_a_pin_is_checked_locally_before_it_is_sent(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, PinForm)
        await type_text(pilot, "core/auth")
        await pilot.press("tab")
        await type_text(pilot, "1.0.x")
        await pilot.press("enter")
        await settle(pilot)
        assert "'1.0.x' is neither a PEP 440 version nor a specifier" in screen_text(app)
        await pilot.press("backspace")
        await type_text(pilot, "9")  # 1.0.9: a version the feed does not have
        await pilot.press("enter")
        await settle(pilot)
        assert "the feed has no core/auth 1.0.9" in screen_text(app)
        assert isinstance(app.screen, PinForm) and changes_sent(fake) == []
        await pilot.press("backspace", "1", "tab")
        await type_text(pilot, "hold for SSO")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        assert "Pin capability core/auth to 1.0.1 (hold for SSO)." in screen_text(app)
        await pilot.press("y")
        await settle(pilot)
        assert changes_sent(fake) == [("pin", ("capability", "core/auth", "1.0.1", "hold for SSO"), {})]
        assert "core/auth         1.0.1    api" in screen_text(app)


async def test_a_pin_of_an_unknown_capability_is_refused_in_place(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("p")
        await type_text(pilot, "core/nope")
        await pilot.press("tab")
        await type_text(pilot, "~=1.0")
        await pilot.press("enter")
        await settle(pilot)
        assert "the feed has no capability core/nope" in screen_text(app)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen.NAME == "pins" and changes_sent(fake) == []


async def test_d_removes_an_api_pin_but_config_pins_are_read_only(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        assert "DISABLED d remove pin: core is pinned in the config file (read-only)" in screen_text(app)
        await pilot.press("d")
        await settle(pilot)
        assert app.screen.NAME == "pins"
        assert any("pinned in the config file" in message for message in messages(app))
        await pilot.press("down", "d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmDialog)
        assert "Remove the capability pin analytics/ingest 1.4.0." in screen_text(app)
        await pilot.press("y")
        await settle(pilot)
        assert changes_sent(fake) == [("unpin", ("capability", "analytics/ingest", None), {})]
        assert "analytics/ingest" not in screen_text(app).split("Policy")[0]


async def test_c_changes_the_channel_instance_wide_and_per_suite(make_app):
    app, fake = make_app(role="admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        # Instance-wide: the first choice; manual-approval -> frozen.
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, ChannelForm)
        await pilot.press("tab", "enter", "down", "enter", "tab")
        await type_text(pilot, "release freeze")
        await pilot.press("enter")
        await settle(pilot)
        assert "Set the channel of the instance to frozen (release freeze)." in screen_text(app)
        await pilot.press("y")
        await settle(pilot)
        # For suite search: (instance-wide), analytics, core, search.
        await pilot.press("c", "enter", "down", "down", "down", "enter", "tab", "enter", "up", "enter", "tab", "enter")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert changes_sent(fake) == [("set_channel", ("frozen", None, "release freeze"), {}),
                                      ("set_channel", ("manual-approval", "search", None), {})]
        text = screen_text(app)
        assert "Channel     frozen" in text
        assert "analytics: auto-update, search: manual-approval" in text


async def test_audit_filters_by_actor_and_action(make_app):
    app, fake = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await settle(pilot)
        await pilot.press("slash")
        await type_text(pilot, "root")
        await pilot.press("enter")
        await settle(pilot)
        table = app.screen.query_one("#entries", DataTable)
        assert {table.get_row_at(i)[2].plain for i in range(table.row_count)} == {"root"}
        assert table.row_count == 2
        assert ("audit", (), {"actor": "root", "action": None, "limit": 200, "before_seq": None}) in fake.calls
        await pilot.press("slash", "tab")
        await type_text(pilot, "pin")
        await pilot.press("enter")
        await settle(pilot)
        assert table.row_count == 1 and table.get_row_at(0)[3].plain == "pin"
        assert app.screen.focused is table  # back on the log: the number keys work again
        await pilot.press("1")
        await settle(pilot)
        assert app.screen.NAME == "overview"

"""Who may do what: actions the caller's role lacks are shown disabled with the reason (in words,
and dimmed in the footer), pressing them says why; the command palette names every action."""

from __future__ import annotations

import pytest

from tests.tui.conftest import screen_text
from tests.tui.settle import settle, until
from tui.roles import refusal
from tui.screens.confirm import ConfirmDialog
from tui.screens.pin_form import PinForm

SIZE = (80, 24)


@pytest.mark.parametrize(("role", "needed", "expected"), [
    ("viewer", "approver", "needs the approver role (group id1-approver or id1-admin)"),
    (None, "approver", "needs the approver role (group id1-approver or id1-admin)"),
    ("approver", "admin", "needs the admin role (group id1-admin)"),
    ("approver", "approver", None),
    ("admin", "approver", None),
])
def test_refusal_names_the_role_and_the_groups_that_grant_it(role, needed, expected):
    assert refusal({"role": role}, needed) == expected


def test_the_status_may_name_the_configured_groups():
    status = {"role": "viewer", "role_groups": {"approver": ["ops"], "admin": ["wheel", "ops"]}}
    assert refusal(status, "approver") == "needs the approver role (group ops or wheel)"


@pytest.mark.asyncio
async def test_a_viewer_sees_approve_and_reject_disabled_with_the_reason(make_app):
    app, fake = make_app(role="viewer")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        text = screen_text(app)
        assert "DISABLED a approve, x reject: needs the approver role (group id1-approver or" in text
        bindings = app.screen.active_bindings
        assert bindings["a"].enabled is False and bindings["x"].enabled is False  # dimmed in the footer
        await pilot.press("a")
        await settle(pilot)
        assert app.screen.NAME == "updates"  # no dialog
        assert "a approve: needs the approver role (group id1-approver or id1-admin)" in [
            n.message for n in app._notifications]
        assert not [call for call in fake.calls if call[0] in ("approve", "reject")]


@pytest.mark.asyncio
async def test_an_approver_sees_the_admin_actions_disabled(make_app):
    app, _fake = make_app(role="approver")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        assert "DISABLED p add pin, d remove pin, c channel: needs the admin role" in screen_text(app)
        await pilot.press("p")
        await settle(pilot)
        assert not isinstance(app.screen, PinForm)
        await pilot.press("3")
        await settle(pilot)
        assert "DISABLED r roll back: needs the admin role (group id1-admin)" in screen_text(app)
        await pilot.press("2")
        await settle(pilot)
        assert "DISABLED" not in screen_text(app)  # approving is theirs


@pytest.mark.asyncio
async def test_the_palette_runs_an_action_by_name(make_app):
    app, fake = make_app(role="approver")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"approve")
        await until(pilot, lambda: "Approve the selected update" in screen_text(app), what="the palette's hit")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ConfirmDialog), what="the approve dialog")
        assert app.screen_stack[-2].NAME == "updates"
        await pilot.press("y")
        await settle(pilot)
        assert [call for call in fake.calls if call[0] == "approve"] == [("approve", ("approval-3", None), {})]


@pytest.mark.asyncio
async def test_the_palette_says_why_an_action_is_disabled(make_app):
    app, fake = make_app(role="viewer")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"roll back")
        await until(pilot, lambda: "DISABLED: needs the admin role" in screen_text(app), what="the disabled hit")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen.NAME == "history"
        assert "r roll back: needs the admin role (group id1-admin)" in [n.message for n in app._notifications]
        assert not [call for call in fake.calls if call[0] == "rollback_check"]

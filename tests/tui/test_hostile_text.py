"""The dashboard draws the agent's words as text (issue 12, item 3): a control character in a
reason, the release notes or an error is shown as its escape, never sent to the terminal, and
square brackets are shown, never read as Textual markup."""

from __future__ import annotations

import re

import pytest

from tests.tui.conftest import screen_text
from tests.tui.settle import settle
from tui.client import ApiError

SIZE = (100, 30)
OBEYED = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
FORGED = "\x1b[2K\rOK verified"


@pytest.mark.asyncio
async def test_audit_entries_are_drawn_escaped_and_not_as_markup(make_app):
    app, fake = make_app()
    fake.audit_log[-1].update(what="[bold]approval-3[/bold] \x1b]0;owned\x07", why=FORGED)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("6")
        await settle(pilot)
        text = screen_text(app)
    assert "[bold]approval-3[/bold] \\x1b]0;owned\\x07" in text and "\\x1b[2K\\rOK verified" in text, text
    assert not OBEYED.findall(text)


@pytest.mark.asyncio
async def test_release_notes_are_drawn_escaped(make_app):
    app, fake = make_app()
    fake.approvals_kept[-1]["notes"] = f"Fixes \u202e the login.\n{FORGED}\n[link=file:///etc]click[/link]"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        text = screen_text(app)
    assert "Fixes \\u202e the login." in text and "\\x1b[2K\\rOK verified" in text, text
    assert "[link=file:///etc]click[/link]" in text
    assert not OBEYED.findall(text)


@pytest.mark.asyncio
async def test_a_refusal_is_notified_as_plain_escaped_text(make_app):
    app, fake = make_app()
    fake.refuse("approve", ApiError(409, "conflict", "[b]approval-3[/b] is decided \x1b[2J"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        [shown] = [n for n in app._notifications if "is decided" in n.message]
    assert shown.message == "[b]approval-3[/b] is decided \\x1b[2J" and not shown.markup, shown

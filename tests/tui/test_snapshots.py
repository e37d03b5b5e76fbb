"""The look of every screen and dialog, pinned as SVG snapshots at 80x24 (the SSH minimum) and
120x40, against the fake agent (fixed times, no clock in the render, no spinner).

After an intended change of the look: ``pytest tests/tui/test_snapshots.py --snapshot-update``,
then look at the SVGs under ``__snapshots__/`` before keeping them.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tests.tui.settle import settle

SIZES = [(80, 24), (120, 40)]

# name: (role, keys, text typed at the end, agent down)
VIEWS = {
    "overview": ("approver", [], "", False),
    "updates": ("approver", ["2"], "", False),
    "history": ("admin", ["3"], "", False),
    "history_difference": ("admin", ["3", "down", "down"], "", False),
    "pins": ("admin", ["4"], "", False),
    "security": ("approver", ["5"], "", False),
    "audit": ("approver", ["6"], "", False),
    "fleet": ("approver", ["7"], "", False),
    "fleet_free_slot_dialog": ("admin", ["7", "down", "down", "down", "f"], "", False),
    "help": ("approver", ["question_mark"], "", False),
    "approve_dialog": ("approver", ["2", "a"], "", False),
    "reject_dialog_needs_a_reason": ("approver", ["2", "x", "enter"], "", False),
    "rollback_preview": ("admin", ["3", "down", "r"], "auth 1.0.1 breaks SSO", False),
    "pin_form_invalid": ("admin", ["4", "p"], "core/auth\t1.0.x\n", False),
    "channel_form": ("admin", ["4", "c"], "", False),
    "viewer_updates_disabled": ("viewer", ["2"], "", False),
    "agent_down": ("approver", [], "", True),
}


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
@pytest.mark.parametrize("view", list(VIEWS))
def test_snapshot(snap_compare, make_app, view, size):
    role, keys, typed, down = VIEWS[view]
    app, _fake = make_app(role=role, down=down)

    async def run_before(pilot) -> None:
        if down:
            await pilot.pause(0.3)
        else:
            await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        for char in typed:
            await pilot.press({" ": "space", "\t": "tab", "\n": "enter"}.get(char, char))
        await settle(pilot)
        for field in app.screen.query(Input):
            field.cursor_blink = False  # a blinking cursor would make the picture a coin toss
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=run_before)

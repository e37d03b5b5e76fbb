"""``?``: every key, and which actions your role allows here (with the reason when not)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tui.roles import describe_role, refusal

KEYS = (
    ("1 ... 7", "screens: 1 overview, 2 updates, 3 history, 4 pins & policy, 5 security, 6 audit, 7 fleet"),
    ("up/down", "move the selection (PgUp/PgDn, Ctrl+Home/Ctrl+End too); Tab moves between panes"),
    ("a", "approve the selected update (2 Updates)", "approver"),
    ("x", "reject the selected update, with a reason (2 Updates)", "approver"),
    ("r", "roll back to the selected revision, after a preview (3 History)", "admin"),
    ("p", "add a pin (4 Pins & policy)", "admin"),
    ("d / Del", "remove the selected pin (4 Pins & policy)", "admin"),
    ("c", "change the update channel, per suite too (4 Pins & policy)", "admin"),
    ("/", "filter the audit log by actor and action (6 Audit)"),
    ("u", "resume the selected failed change for the fleet group (7 Fleet)", "admin"),
    ("f", "free the fleet slot of the selected host, one that is gone (7 Fleet)", "admin"),
    ("y", "confirm a dialog"),
    ("n / Esc", "cancel a dialog"),
    ("Ctrl+P", "command palette: every action by name"),
    ("?", "this help"),
    ("q", "quit"),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,question_mark,n", "close", "Close"),
        Binding("q", "quit_app", "Quit"),
    ]

    def __init__(self, status: dict[str, Any] | None) -> None:
        super().__init__(id="help", classes="dialog-screen")
        self.status = status

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text("id1 tui: keys", style="bold"), id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(self._keys(), id="help-keys")
            yield Static(Text.assemble(("Esc", "bold"), " or ", ("?", "bold"), " close  ", ("q", "bold"), " quit"),
                         id="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#dialog-body").focus()

    def _keys(self) -> Group:
        status = self.status or {}
        table = Table(box=None, padding=(0, 1), show_header=False, expand=True)
        table.add_column(style="bold", no_wrap=True, width=8)
        table.add_column(ratio=1)
        for key, what, *needed in KEYS:
            text = Text(what)
            if needed:
                reason = refusal(self.status, needed[0])
                if reason:
                    text.append(f"\nDISABLED: {reason}", style="bold")
            table.add_row(key, text)
        who = Text(f"You are {status.get('user', '?')}, role: {describe_role(self.status)}. "
                   "The agent checks every change itself and says why when it refuses.")
        return Group(who, Text(""), table)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_quit_app(self) -> None:
        self.app.exit()

"""6 Audit: who did what, when and why, newest first; filtered by actor and action (the API
matches them exactly: type one, Enter). ``/`` goes to the filter, Escape back to the log."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import var
from textual.widget import Widget
from textual.widgets import DataTable, Input

from tui.screens.base import DashboardScreen
from tui.text import plain, when
from tui.widgets.facts import Facts


@dataclass
class AuditFilter(Message):
    """The audit screen asks for the log filtered so (None: any)."""

    actor: str | None
    action: str | None


class AuditScreen(DashboardScreen):
    NAME = "audit"
    MAIN = "#entries"
    RESOURCES = ("status", "audit")
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("escape", "focus_log", "Log", show=False),
    ]

    audit: var[list[dict[str, Any]] | None] = var(None, init=False)
    selected: var[int | None] = var(None, init=False)
    _rows_shown: list[tuple[str, ...]] | None = None

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="audit-filters"):
            actor = Input(placeholder="actor, e.g. alice (Enter)", id="filter-actor")
            actor.border_title = "actor"
            yield actor
            action = Input(placeholder="action, e.g. approve (Enter)", id="filter-action")
            action.border_title = "action"
            yield action
        table = DataTable(cursor_type="row", id="entries")
        table.border_title = "Audit log, newest first"
        yield table
        yield Facts(id="entry-facts")

    def on_mount(self) -> None:
        table = self.query_one("#entries", DataTable)
        for label, key in (("seq", "seq"), ("at", "at"), ("actor", "actor"), ("action", "action"), ("what", "what")):
            table.add_column(label, key=key)
        super().on_mount()

    def action_focus_filter(self) -> None:
        self.query_one("#filter-actor", Input).focus()

    def action_focus_log(self) -> None:
        self.query_one("#entries", DataTable).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        actor = self.query_one("#filter-actor", Input).value.strip() or None
        action = self.query_one("#filter-action", Input).value.strip() or None
        self.post_message(AuditFilter(actor, action))
        self.query_one("#entries", DataTable).focus()

    def show_all(self) -> None:
        self._show_list()
        self._show_detail()

    def watch_audit(self) -> None:
        if self.is_mounted:
            self._show_list()
            self._show_detail()

    def watch_selected(self) -> None:
        if self.is_mounted:
            self._show_detail()

    def _show_list(self) -> None:
        table = self.query_one("#entries", DataTable)
        tz = (self.status or {}).get("timezone")
        entries = sorted(self.audit or [], key=lambda e: -e["seq"])
        rows = [(str(e["seq"]), when(e.get("at"), tz), e.get("actor", "?"), e.get("action", "?"), e.get("what", ""))
                for e in entries]
        if rows == self._rows_shown:
            return
        on_newest = table.cursor_row <= 0 or self._rows_shown is None
        self._rows_shown = rows
        keep = self.selected
        table.clear()
        for row in rows:
            table.add_row(*plain(row), key=row[0])
        numbers = [int(row[0]) for row in rows]
        if numbers:
            table.move_cursor(row=0 if on_newest or keep not in numbers else numbers.index(keep), animate=False)
            self.selected = numbers[max(table.cursor_row, 0)]
        else:
            self.selected = None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "entries" and event.row_key.value is not None:
            self.selected = int(event.row_key.value)

    def _show_detail(self) -> None:
        facts = self.query_one("#entry-facts", Facts)
        entry = next((e for e in self.audit or [] if e["seq"] == self.selected), None)
        if entry is None:
            facts.show([("Entry", "no entries match" if self.audit is not None else "loading...")])
            return
        facts.show([
            ("Entry", Text(f"{entry['seq']} {entry.get('action')} by {entry.get('actor')}", style="bold")),
            ("What", entry.get("what") or ""),
            ("Why", entry.get("why") or "-"),
        ])

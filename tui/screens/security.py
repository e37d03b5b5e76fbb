"""5 Security: every advisory in the feed and what it means for this host, the ones needing
attention first (exposed, affected, fix pending), with the selected one's summary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.reactive import var
from textual.widget import Widget
from textual.widgets import DataTable

from tui.screens.base import DashboardScreen
from tui.text import plain, when
from tui.widgets.facts import Facts

STATUS_WORDS = {
    "exposed": "EXPOSED: affected and no fixed version in the feed",
    "affected": "AFFECTED: below the enforced severity, follows the policy",
    "fix-pending": "FIX PENDING: a fixed version is planned",
    "not-affected": "not affected: the installed version is outside the range",
    "not-installed": "not installed here",
}


class SecurityScreen(DashboardScreen):
    NAME = "security"
    MAIN = "#advisories"
    RESOURCES = ("status", "advisories")

    advisories: var[list[dict[str, Any]] | None] = var(None, init=False)
    selected: var[str | None] = var(None, init=False)
    _rows_shown: list[tuple[str, ...]] | None = None

    def compose_body(self) -> Iterable[Widget]:
        table = DataTable(cursor_type="row", id="advisories")
        table.border_title = "Advisories"
        yield table
        yield Facts(id="advisory-facts")

    def on_mount(self) -> None:
        table = self.query_one("#advisories", DataTable)
        for label, key in (("advisory", "id"), ("severity", "severity"), ("capability", "capability"),
                           ("here", "status"), ("version", "installed")):
            table.add_column(label, key=key)
        super().on_mount()

    def show_all(self) -> None:
        self._show_list()
        self._show_detail()

    def watch_advisories(self) -> None:
        if self.is_mounted:
            self._show_list()
            self._show_detail()

    def watch_selected(self) -> None:
        if self.is_mounted:
            self._show_detail()

    def _show_list(self) -> None:
        table = self.query_one("#advisories", DataTable)
        rows = [(a["id"], a.get("severity", "?"), a.get("capability", "?"),
                 a.get("status", "?").upper() if a.get("status") in ("exposed", "affected", "fix-pending") else a.get("status", "?"),
                 a.get("installed_version") or "-")
                for a in self.advisories or []]
        if rows == self._rows_shown:
            return
        self._rows_shown = rows
        keep = self.selected
        table.clear()
        for row in rows:
            table.add_row(*plain(row), key=row[0])
        ids = [row[0] for row in rows]
        if ids:
            table.move_cursor(row=ids.index(keep) if keep in ids else 0, animate=False)
            self.selected = ids[max(table.cursor_row, 0)]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "advisories" and event.row_key.value is not None:
            self.selected = event.row_key.value

    def _show_detail(self) -> None:
        facts = self.query_one("#advisory-facts", Facts)
        advisory = next((a for a in self.advisories or [] if a["id"] == self.selected), None)
        if advisory is None:
            facts.show([("Advisory", "none in the feed" if self.advisories is not None else "loading...")])
            return
        tz = (self.status or {}).get("timezone")
        facts.show([
            ("Advisory", Text(f"{advisory['id']} ({advisory.get('severity')}) {advisory.get('capability')} "
                              f"{advisory.get('affected')}", style="bold")),
            ("Summary", advisory.get("summary") or ""),
            ("Here", STATUS_WORDS.get(advisory.get("status", ""), advisory.get("status", "?"))
             + (f" (installed {advisory['installed_version']})" if advisory.get("installed_version") else "")),
            ("Enforced", "yes: a fix is deployed at once whatever the channel, window or pins (if the feed has one)"
             if advisory.get("enforced")
             else "no: below the policy's enforce_severity"),
            ("Published", when(advisory.get("published_at"), tz, default="-")),
        ])

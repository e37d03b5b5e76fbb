"""A table of version moves: capability, from -> to, where the new version comes from, what happens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.widgets import DataTable

from tui.text import action_words, move, plain, source_words


class ChangeTable(DataTable):
    """Rows are the API's changes (``{capability, from, to, source, action}``) or rollback moves
    (``{capability, from_version, to_version}``); columns without data are left out."""

    def __init__(self, *, with_action: bool = True, **kwargs: Any) -> None:
        # Read-only: no cursor to suggest something could be picked here (it still scrolls).
        super().__init__(cursor_type="none", zebra_stripes=False, **kwargs)
        self.with_action = with_action
        self._shown: tuple | None = None

    def on_mount(self) -> None:
        self.add_column("capability", key="capability")
        self.add_column("from -> to", key="move")
        self.add_column("source", key="source")
        if self.with_action:
            self.add_column("action", key="action")

    def show(self, changes: Iterable[dict[str, Any]]) -> None:
        rows = tuple(_row(change, self.with_action) for change in changes)
        if rows == self._shown:
            return
        self._shown = rows
        self.clear()
        for index, row in enumerate(rows):
            self.add_row(*plain(row), key=f"{index}:{row[0]}")


def _row(change: dict[str, Any], with_action: bool) -> tuple[str, ...]:
    if "from_version" in change or "to_version" in change:
        from_version, to_version = change.get("from_version"), change.get("to_version")
    else:
        from_version, to_version = change.get("from"), change.get("to")
    row = (change["capability"], move(from_version, to_version),
           source_words(change.get("source"), change.get("overrides")) if change.get("source") else "-")
    return row + (action_words(change.get("action")),) if with_action else row

"""Label/value lines (``Channel   manual-approval``), as one Static: cheap to redraw, no flicker."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

Fact = tuple[str, "str | Text"]


class Facts(Static):
    def __init__(self, *, label_width: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.label_width = label_width
        self._shown: Sequence[Fact] | None = None

    def show(self, facts: Sequence[Fact]) -> None:
        facts = tuple((label, value if isinstance(value, Text) else Text(str(value))) for label, value in facts)
        if facts == self._shown:
            return
        self._shown = facts
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(width=self.label_width, no_wrap=True, style="bold")
        grid.add_column(ratio=1, overflow="fold")
        for label, value in facts:
            grid.add_row(label, value)
        self.update(grid)

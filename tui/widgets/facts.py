"""Label/value lines (``Channel   manual-approval``), as one Static: cheap to redraw, no flicker."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

Fact = tuple[str, "str | Text"]


def as_texts(facts: Sequence[Fact]) -> tuple[tuple[str, Text], ...]:
    """Values as Text (a bracket in an agent's words is shown, not taken as markup); comparable."""
    return tuple((label, value if isinstance(value, Text) else Text(str(value))) for label, value in facts)


def facts_grid(facts: Sequence[tuple[str, Text]], label_width: int = 10) -> Table:
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(width=label_width, no_wrap=True, style="bold")
    grid.add_column(ratio=1, overflow="fold")
    for label, value in facts:
        grid.add_row(label, value)
    return grid


class Facts(Static):
    def __init__(self, *, label_width: int = 10, **kwargs) -> None:
        super().__init__(**kwargs)
        self.label_width = label_width
        self._shown: Sequence[Fact] | None = None

    def show(self, facts: Sequence[Fact]) -> None:
        texts = as_texts(facts)
        if texts == self._shown:
            return
        self._shown = texts
        self.update(facts_grid(texts, self.label_width))

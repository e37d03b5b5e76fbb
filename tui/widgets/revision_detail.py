"""The selected revision on the History screen: its facts and what rolling back to it would
change, in a pane of fixed height.

One Static whose height the stylesheet fixes, redrawn without a layout pass: it changes on every
cursor move through the list above, and a layout pass would reflow the whole screen each time
(with a thousand revisions and a held arrow key, that is what a frame would cost). Changes that
do not fit are counted; the rollback preview (``r``) lists them all.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual import events
from textual.widgets import Static

from tui.manifests import Difference
from tui.text import move, plain
from tui.widgets.facts import Fact, as_texts, facts_grid


class RevisionDetail(Static):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._wanted: tuple[tuple[tuple[str, Text], ...], tuple[Difference, ...]] = ((), ())
        self._drawn: tuple | None = None

    def show(self, facts: Sequence[Fact], moves: Sequence[Difference] = ()) -> None:
        """``facts`` first, then a table of ``moves`` (none: no table)."""
        self._wanted = (as_texts(facts), tuple(moves))
        self._draw()

    def on_resize(self, event: events.Resize) -> None:
        self._draw()  # how many changes fit depends on the size

    def _draw(self) -> None:
        size = self.content_region.size
        key = (self._wanted, size)
        if key == self._drawn:
            return
        self._drawn = key
        facts, moves = self._wanted
        grid = facts_grid(facts)
        parts: list = [grid]
        if moves:
            rows = self._rows_for_moves(grid, len(moves))
            if rows:
                parts.append(Padding(_moves_table(moves[:rows]), (0, 0, 0, 1)))
            if rows < len(moves):
                parts.append(Text(f" ... and {len(moves) - rows} more (r lists them all)"))
        self.update(Group(*parts), layout=False)

    def _rows_for_moves(self, grid: Table, count: int) -> int:
        """How many changes to list: all that fit under the facts and the table's header."""
        width, height = self.content_region.size
        if not width or not height:
            return count
        console = self.app.console
        room = height - len(console.render_lines(grid, console.options.update_width(width), pad=False)) - 1
        return count if count <= room else max(room - 1, 0)  # the last line says how many more


def _moves_table(moves: Sequence[Difference]) -> Table:
    table = Table(box=None, padding=(0, 2, 0, 0), pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("capability", no_wrap=True)
    table.add_column("from -> to", no_wrap=True)
    for difference in moves:
        table.add_row(*plain((difference.capability, move(difference.from_version, difference.to_version))))
    return table

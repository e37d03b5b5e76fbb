"""3 History: the kept revisions, newest first with the cursor on the newest; the selected one's
details and what rolling back to it would change from the running revision. ``r`` asks the
agent for the rollback check, shows it, asks for a reason, and ``y`` rolls back.

A cursor move must stay cheap with a thousand revisions (tests/benchmarks/test_tui_benchmark.py):
the screen follows the cursor as it moves (not a message later), so one frame shows the cursor
and the details together; the details pane has a fixed height and is redrawn without a layout
pass; a revision's manifest is fetched only once the cursor rests on it, and kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.reactive import var
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable

from tui.changes import Rollback
from tui.manifests import Difference, difference
from tui.messages import ChangeRequested
from tui.screens.base import DashboardScreen
from tui.screens.confirm import Confirmed
from tui.screens.rollback import RollbackDialog
from tui.text import plain, when
from tui.widgets.revision_detail import RevisionDetail

DETAIL_DELAY_S = 0.1
"""Fetch a revision's manifest once the cursor has rested this long: longer than a held key's
repeat interval (25-40 ms), so scrolling through the list asks for nothing on the way."""


class HistoryScreen(DashboardScreen):
    NAME = "history"
    MAIN = "#revisions"
    RESOURCES = ("status", "revisions", "current")
    BINDINGS = [Binding("r", "rollback", "Roll back")]
    GATED = {"rollback": ("r roll back", "admin")}

    revisions: var[list[dict[str, Any]] | None] = var(None, init=False)
    current: var[dict[str, Any] | None] = var(None, init=False)
    """The running revision, manifest included."""
    selected: var[int | None] = var(None, init=False)
    details: var[dict[int, dict[str, Any]]] = var(dict, init=False)
    """Revisions with their manifests, by number: kept, since a revision never changes."""
    detail_shown: int | None = None
    """The revision whose details are complete on screen (its difference to the running one
    included), or None while they are loading."""
    _rows_shown: list[tuple[str, ...]] | None = None
    _listed: dict[int, dict[str, Any]] = {}
    _detail_timer: Timer | None = None

    def compose_body(self) -> Iterable[Widget]:
        table = DataTable(cursor_type="row", id="revisions")
        table.border_title = "Revisions, newest first"
        yield table
        yield RevisionDetail(id="revision-detail")

    def on_mount(self) -> None:
        table = self.query_one("#revisions", DataTable)
        for label, key in (("rev", "rev"), ("deployed", "created"), ("platform", "platform"),
                           ("feed", "feed"), ("deployment", "deployment"), ("", "running")):
            table.add_column(label, key=key)
        # Called as the cursor moves, before the frame that shows it is drawn.
        self.watch(table, "cursor_coordinate", self._cursor_moved, init=False)
        super().on_mount()

    def running(self) -> int | None:
        return (self.status or {}).get("revision")

    # --- drawing ----------------------------------------------------------------------------

    def show_all(self) -> None:
        self._show_list()
        self._show_detail()

    def watch_revisions(self) -> None:
        if self.is_mounted:
            self._show_list()
            self._show_detail()

    def status_changed(self) -> None:
        self._show_list()
        self._show_detail()

    def watch_current(self) -> None:
        if self.is_mounted:
            self._show_detail()

    def watch_details(self) -> None:
        if self.is_mounted:
            self._show_detail()

    def watch_selected(self, number: int | None) -> None:
        if not self.is_mounted:
            return
        if self._detail_timer is not None:
            self._detail_timer.stop()
            self._detail_timer = None
        if number is not None and self.manifest_of(number) is None:
            # Fetched once the cursor rests: holding an arrow key over 1,000 revisions asks for one.
            self._detail_timer = self.set_timer(DETAIL_DELAY_S, lambda: self._rested_on(number))
        self._show_detail()

    def _rested_on(self, number: int) -> None:
        self._detail_timer = None
        self.load_revision(number)

    @property
    def detail_pending(self) -> bool:
        """A manifest will be fetched once the cursor has rested (tests wait for it)."""
        return self._detail_timer is not None

    def _show_list(self) -> None:
        table = self.query_one("#revisions", DataTable)
        revisions = sorted(self.revisions or [], key=lambda r: -r["number"])
        self._listed = {revision["number"]: revision for revision in revisions}
        tz = (self.status or {}).get("timezone")
        rows = [(str(r["number"]), when(r.get("created_at"), tz), r.get("platform") or "?",
                 str(r.get("feed_serial") if r.get("feed_serial") is not None else "-"),
                 r.get("deployment_id") or "-", "RUNNING" if r["number"] == self.running() else "")
                for r in revisions]
        if rows == self._rows_shown:
            return
        on_newest = table.cursor_row <= 0 or self._rows_shown is None
        self._rows_shown = rows
        keep = self.selected
        table.clear()
        for row in rows:
            table.add_row(*plain(row), key=row[0])
        if not rows:
            self.selected = None
            return
        numbers = [int(row[0]) for row in rows]
        # The newest stays under the cursor when it was there (a new deployment lands on top).
        table.move_cursor(row=0 if on_newest or keep not in numbers else numbers.index(keep), animate=False)
        self.selected = numbers[max(table.cursor_row, 0)]

    def _cursor_moved(self, coordinate: Coordinate) -> None:
        table = self.query_one("#revisions", DataTable)
        if table.is_valid_coordinate(coordinate):
            self.selected = int(table.coordinate_to_cell_key(coordinate).row_key.value)

    def manifest_of(self, number: int | None) -> dict[str, Any] | None:
        if number is None:
            return None
        if number in self.details:
            return self.details[number].get("manifest")
        if self.current is not None and self.current.get("number") == number:
            return self.current.get("manifest")
        return None

    def _show_detail(self) -> None:
        pane = self.query_one(RevisionDetail)
        number, running = self.selected, self.running()
        self.detail_shown = None
        revision = self._listed.get(number) if number is not None else None
        if revision is None:
            pane.show([("Revision", "none kept yet" if self.revisions is not None else "loading...")])
            self.update_notice()
            return
        tz = (self.status or {}).get("timezone")
        facts: list[tuple[str, Any]] = [
            ("Revision", Text(f"{number}, platform {revision.get('platform') or '?'}"
                              f"{' (RUNNING)' if number == running else ''}", style="bold")),
            ("Deployed", f"{when(revision.get('created_at'), tz)} ({revision.get('deployment_id') or 'no deployment'}), "
                         f"feed serial {revision.get('feed_serial', '?')}"),
        ]
        moves: list[Difference] = []
        if number == running:
            facts.append(("Rollback", "this revision is running"))
            self.detail_shown = number
        else:
            selected, current = self.manifest_of(number), self.manifest_of(running)
            if selected is None or current is None:
                facts.append(("Rollback", "loading the manifests..."))
            else:
                moves = difference(current, selected)
                facts.append(("Rollback", f"from revision {running} it would change {len(moves)} "
                                          f"capabilit{'y' if len(moves) == 1 else 'ies'}:" if moves
                              else f"the same versions as the running revision {running}"))
                self.detail_shown = number
        pane.show(facts, moves)
        self.update_notice()

    @work(exclusive=True, exit_on_error=False, group="revision")
    async def load_revision(self, number: int) -> None:
        revision = await self.dashboard.fetch(self.dashboard.client.revision, number)
        if revision is not None:
            self.details = {**self.details, number: revision}

    # --- rolling back -----------------------------------------------------------------------

    def unavailable(self, action: str) -> str | None:
        if self.selected is None:
            return "no revision selected"
        if self.selected == self.running():
            return f"revision {self.selected} is the one running"
        return None

    def action_rollback(self) -> None:
        if self.selected is not None:
            self.preview_rollback(self.selected)

    @work(exclusive=True, exit_on_error=False, group="preview")
    async def preview_rollback(self, number: int) -> None:
        preview = await self.dashboard.fetch(self.dashboard.client.rollback_check, number)
        if preview is None:
            return
        self.app.push_screen(RollbackDialog(preview, self.running()), lambda answer: self._confirmed(answer, number))

    def _confirmed(self, answer: Confirmed | None, number: int) -> None:
        if answer is not None:
            self.post_message(ChangeRequested(Rollback(number, answer.text, force=answer.force)))

"""3 History: the kept revisions, newest first with the cursor on the newest; the selected one's
details and what rolling back to it would change from the running revision. ``r`` asks the
agent for the rollback check, shows it, asks for a reason, and ``y`` rolls back."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.reactive import var
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable

from tui.changes import Rollback
from tui.manifests import difference
from tui.messages import ChangeRequested
from tui.screens.base import DashboardScreen
from tui.screens.confirm import Confirmed
from tui.screens.rollback import RollbackDialog
from tui.text import plain, when
from tui.widgets.change_table import ChangeTable
from tui.widgets.facts import Facts


DETAIL_DELAY_S = 0.12


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
    _rows_shown: list[tuple[str, ...]] | None = None
    _detail_timer: Timer | None = None

    def compose_body(self) -> Iterable[Widget]:
        table = DataTable(cursor_type="row", id="revisions")
        table.border_title = "Revisions, newest first"
        yield table
        yield Facts(id="revision-facts")
        yield ChangeTable(with_action=False, id="difference")

    def on_mount(self) -> None:
        table = self.query_one("#revisions", DataTable)
        for label, key in (("rev", "rev"), ("deployed", "created"), ("platform", "platform"),
                           ("feed", "feed"), ("deployment", "deployment"), ("", "running")):
            table.add_column(label, key=key)
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
        if number is not None and number not in self.details and number != (self.current or {}).get("number"):
            # Fetched once the cursor rests: holding an arrow key over 1,000 revisions asks for one.
            if self._detail_timer is not None:
                self._detail_timer.stop()
            self._detail_timer = self.set_timer(DETAIL_DELAY_S, lambda: self.load_revision(number))
        self._show_detail()
        self.update_notice()

    def _show_list(self) -> None:
        table = self.query_one("#revisions", DataTable)
        revisions = sorted(self.revisions or [], key=lambda r: -r["number"])
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

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "revisions" and event.row_key.value is not None:
            self.selected = int(event.row_key.value)

    def manifest_of(self, number: int | None) -> dict[str, Any] | None:
        if number is None:
            return None
        if number in self.details:
            return self.details[number].get("manifest")
        if self.current is not None and self.current.get("number") == number:
            return self.current.get("manifest")
        return None

    def _show_detail(self) -> None:
        facts = self.query_one("#revision-facts", Facts)
        table = self.query_one("#difference", ChangeTable)
        number, running = self.selected, self.running()
        listed = {r["number"]: r for r in self.revisions or []}
        if number is None or number not in listed:
            facts.show([("Revision", "none kept yet" if self.revisions is not None else "loading...")])
            table.display = False
            return
        revision = listed[number]
        tz = (self.status or {}).get("timezone")
        facts_list: list[tuple[str, Any]] = [
            ("Revision", Text(f"{number}, platform {revision.get('platform') or '?'}"
                              f"{' (RUNNING)' if number == running else ''}", style="bold")),
            ("Deployed", f"{when(revision.get('created_at'), tz)} ({revision.get('deployment_id') or 'no deployment'}), "
                         f"feed serial {revision.get('feed_serial', '?')}"),
        ]
        if number == running:
            facts_list.append(("Rollback", "this revision is running"))
            table.display = False
        else:
            selected, current = self.manifest_of(number), self.manifest_of(running)
            if selected is None or current is None:
                facts_list.append(("Rollback", "loading the manifests..."))
                table.display = False
            else:
                moves = difference(current, selected)
                facts_list.append(("Rollback", f"from revision {running} it would change {len(moves)} "
                                               f"capabilit{'y' if len(moves) == 1 else 'ies'}:" if moves
                                   else f"the same versions as the running revision {running}"))
                table.display = bool(moves)
                table.show([{"capability": m.capability, "from_version": m.from_version, "to_version": m.to_version}
                            for m in moves])
        facts.show(facts_list)
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

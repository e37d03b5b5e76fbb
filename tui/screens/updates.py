"""2 Updates: the approvals (pending first) and, for the selected one, its changes from -> to with
their source, the release notes, the advisories it fixes, and the security fixes the agent
applies (or applied) whatever the channel. ``a`` approves, ``x`` rejects, after a confirmation."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Group
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.reactive import var
from textual.widget import Widget
from textual.widgets import DataTable, Static

from tui.changes import Approve, Reject
from tui.messages import ChangeRequested
from tui.screens.base import DashboardScreen
from tui.screens.confirm import ConfirmDialog, Confirmed, TextField
from tui.text import move, plain, plural, source_words, when
from tui.widgets.change_table import ChangeTable
from tui.widgets.facts import Facts


class UpdatesScreen(DashboardScreen):
    NAME = "updates"
    MAIN = "#approvals"
    RESOURCES = ("status", "updates", "approvals")
    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("x", "reject", "Reject"),
    ]
    GATED = {"approve": ("a approve", "approver"), "reject": ("x reject", "approver")}

    updates: var[dict[str, Any] | None] = var(None, init=False)
    approvals: var[list[dict[str, Any]] | None] = var(None, init=False)
    selected: var[str | None] = var(None, init=False)
    _rows_shown: list[tuple[str, ...]] | None = None

    def compose_body(self) -> Iterable[Widget]:
        table = DataTable(cursor_type="row", id="approvals")
        table.border_title = "Approvals"
        yield table
        with VerticalScroll(id="approval-detail"):
            yield Facts(id="approval-facts")
            yield ChangeTable(id="changes")
            yield Static(id="approval-notes")

    def on_mount(self) -> None:
        table = self.query_one("#approvals", DataTable)
        for label, key in (("approval", "id"), ("status", "status"), ("proposed", "created"),
                           ("changes", "changes"), ("decided by", "decided")):
            table.add_column(label, key=key)
        super().on_mount()

    # --- drawing ----------------------------------------------------------------------------

    def show_all(self) -> None:
        self._show_list()
        self._show_detail()

    def watch_approvals(self) -> None:
        if self.is_mounted:
            self._show_list()
            self._show_detail()

    def watch_updates(self) -> None:
        if self.is_mounted:
            self._show_list()
            self._show_detail()

    def status_changed(self) -> None:
        self._show_detail()

    def watch_selected(self) -> None:
        if self.is_mounted:
            self._show_detail()
            self.update_notice()

    def listed(self) -> list[dict[str, Any]]:
        """Approvals, pending first then newest first; the plan's own one even if not yet listed."""
        items = {item["id"]: item for item in (self.approvals or [])}
        current = (self.updates or {}).get("approval")
        if current:
            items[current["id"]] = {**items.get(current["id"], {}), **current}
        return sorted(items.values(), key=lambda a: (a.get("status") != "pending", -_number(a["id"])))

    def _show_list(self) -> None:
        table = self.query_one("#approvals", DataTable)
        listed = self.listed()
        rows = [(a["id"], a.get("status", "?").upper() if a.get("status") == "pending" else a.get("status", "?"),
                 when(a.get("created_at"), self._tz()), str(len(a.get("changes") or [])), a.get("decided_by") or "-")
                for a in listed]
        if rows == self._rows_shown:
            return
        # A pending approval that was not shown before takes the cursor: the one on the cursor
        # may have just been deployed or superseded, and `a` must act on what now waits.
        shown_before = {row[0] for row in self._rows_shown or []}
        arrived = [a["id"] for a in listed if a.get("status") == "pending" and a["id"] not in shown_before]
        keep = arrived[0] if self._rows_shown is not None and arrived else self.selected
        table.clear()
        for row in rows:
            table.add_row(*plain(row), key=row[0])
        self._rows_shown = rows
        if rows:
            ids = [row[0] for row in rows]
            table.move_cursor(row=ids.index(keep) if keep in ids else 0)
            self.selected = ids[table.cursor_row]
        else:
            self.selected = None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "approvals" and event.row_key.value is not None:
            self.selected = event.row_key.value

    def selected_approval(self) -> dict[str, Any] | None:
        for approval in self.listed():
            if approval["id"] == self.selected:
                return approval
        return None

    def _tz(self) -> str | None:
        return (self.status or {}).get("timezone")

    def _show_detail(self) -> None:
        approval = self.selected_approval()
        facts = self.query_one("#approval-facts", Facts)
        changes = self.query_one("#changes", ChangeTable)
        notes = self.query_one("#approval-notes", Static)
        updates = self.updates or {}
        if approval is None:
            facts.show([("Updates", "nothing awaits approval" if self.updates is not None else "loading...")])
            changes.display = False
        else:
            facts.show(approval_facts(approval, updates, self._tz()))
            changes.display = bool(approval.get("changes"))
            changes.show(approval.get("changes") or [])
        notes.update(Group(*detail_sections(approval, updates, self.status)))
        self.update_notice()

    # --- actions ----------------------------------------------------------------------------

    def unavailable(self, action: str) -> str | None:
        approval = self.selected_approval()
        if approval is None:
            return "nothing awaits approval"
        if approval.get("status") != "pending":
            return f"{approval['id']} is {approval.get('status')}: only a pending update can be decided"
        return None

    def action_approve(self) -> None:
        approval = self.selected_approval()
        if approval is None:
            return
        dialog = ConfirmDialog(f"Approve {approval['id']}?", _summary(approval, "approve"), verb="approve",
                               field=TextField("comment (optional)"), id="approve-dialog")
        self.app.push_screen(dialog, lambda answer: self._decided(answer, approval["id"], approve=True))

    def action_reject(self) -> None:
        approval = self.selected_approval()
        if approval is None:
            return
        dialog = ConfirmDialog(f"Reject {approval['id']}?", _summary(approval, "reject"), verb="reject",
                               field=TextField("reason for rejecting", required=True), id="reject-dialog")
        self.app.push_screen(dialog, lambda answer: self._decided(answer, approval["id"], approve=False))

    def _decided(self, answer: Confirmed | None, approval_id: str, *, approve: bool) -> None:
        if answer is None:
            return
        change = Approve(approval_id, answer.text or None) if approve else Reject(approval_id, answer.text)
        self.post_message(ChangeRequested(change))


def _number(approval_id: str) -> int:
    tail = approval_id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


def approval_facts(approval: dict[str, Any], updates: dict[str, Any], tz: str | None) -> list[tuple[str, Any]]:
    status = approval.get("status", "?")
    facts: list[tuple[str, Any]] = [
        ("Approval", Text(f"{approval['id']} {status.upper()}", style="bold")),
        ("Proposed", f"{when(approval.get('created_at'), tz)}, feed serial {approval.get('feed_serial', '?')}"),
    ]
    if approval.get("decided_by"):
        verb = "rejected" if status == "rejected" else "approved"
        decided = f"{verb} by {approval['decided_by']} {when(approval.get('decided_at'), tz)}"
        if approval.get("comment"):
            decided += f": {approval['comment']}"
        if approval.get("reason"):
            decided += f": {approval['reason']}"
        facts.append(("Decided", decided))
    elif approval.get("reason"):
        facts.append(("Reason", approval["reason"]))
    if status == "pending":
        window = updates.get("next_window")
        facts.append(("Once OK", f"deploys when the window opens ({when(window, tz)})" if window else "deploys at once"))
    facts.append(("Changes", plural(len(approval.get("changes") or []), "capability", "capabilities")))
    return facts


def detail_sections(approval: dict[str, Any] | None, updates: dict[str, Any], status: dict[str, Any] | None) -> list[Any]:
    sections: list[Any] = []
    if approval is not None:
        sections.append(Text("Release notes", style="bold underline"))
        sections.append(Text(approval.get("notes") or "(none)"))
        advisories = approval.get("advisories") or []
        sections.append(Text("Fixes advisories", style="bold underline"))
        sections.append(Text(", ".join(advisories) if advisories else "(none)"))
    forced_now = [c for c in updates.get("changes") or []
                  if c.get("action") == "apply" and str(c.get("source", "")).startswith("security:")]
    forced_done = [c for c in (status or {}).get("capabilities") or [] if str(c.get("source", "")).startswith("security:")]
    if forced_now or forced_done:
        sections.append(Text("Security fixes forced whatever the channel", style="bold underline"))
        for change in forced_now:
            sections.append(Text(f"APPLYING {change['capability']} {move(change.get('from'), change.get('to'))} "
                                 f"({source_words(change.get('source'), change.get('overrides'))})"))
        for item in forced_done:
            sections.append(Text(f"applied  {item['capability']} {item['version']} "
                                 f"({source_words(item.get('source'), item.get('overrides'))})"))
    for problem in updates.get("problems") or []:
        sections.append(Text(f"PROBLEM {problem.get('code')}: {problem.get('detail')}", style="bold"))
    return sections


def _summary(approval: dict[str, Any], verb: str) -> Group:
    lines: list[Any] = [Text(f"{verb.capitalize()} these changes ({approval['id']}):")]
    for change in approval.get("changes") or []:
        lines.append(Text(f"  {change['capability']}  {move(change.get('from'), change.get('to'))}  "
                          f"[{source_words(change.get('source'), change.get('overrides'))}]"))
    if approval.get("notes"):
        lines.append(Text(f"Notes: {approval['notes']}"))
    if approval.get("advisories"):
        lines.append(Text(f"Fixes: {', '.join(approval['advisories'])}"))
    return Group(*lines)

"""The rollback preview: what going back to a revision changes, what stands in the way
(problems), which enforced advisories it would bring back (then ``f`` forces it, recorded),
and the reason, required. ``y`` rolls back."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.binding import Binding

from tui.screens.confirm import ConfirmDialog, Confirmed, TextField
from tui.text import move, plain


class RollbackDialog(ConfirmDialog):
    BINDINGS = [Binding("f", "toggle_force", "Force", show=False)]

    def __init__(self, preview: dict[str, Any], running: int | None) -> None:
        self.preview = preview
        self.force = False
        blocked = None
        if not preview.get("allowed") and not preview.get("needs_force"):
            blocked = "cannot roll back: " + "; ".join(preview.get("problems") or ["the agent refuses it"])
        target = preview.get("to_revision")
        super().__init__(
            f"Roll back to revision {target}?",
            Group(*self._body(running)),
            verb="roll back",
            field=TextField("reason for the rollback", required=True),
            blocked=blocked,
            id="rollback-dialog",
        )

    def _body(self, running: int | None) -> list[Any]:
        preview = self.preview
        parts: list[Any] = [Text(f"From revision {preview.get('from_revision') or running or '?'} "
                                 f"to revision {preview.get('to_revision')}; the agent deploys it and verifies health.")]
        changes = preview.get("changes") or []
        if changes:
            table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
            table.add_column("capability")
            table.add_column("from -> to")
            for change in changes:
                table.add_row(*plain((change["capability"], move(change.get("from_version"), change.get("to_version")))))
            parts.append(table)
        else:
            parts.append(Text("No capability changes (the same versions run now)."))
        for problem in preview.get("problems") or []:
            parts.append(Text(f"PROBLEM: {problem}", style="bold"))
        advisories = preview.get("advisories") or []
        if advisories:
            parts.append(Text(f"ENFORCED ADVISORIES it brings back: {', '.join(advisories)}", style="bold"))
        if preview.get("needs_force"):
            parts.append(Text("Press f to force it anyway (recorded in the audit log).", style="bold"))
        return parts

    def on_mount(self) -> None:
        super().on_mount()
        self._show_force()

    def hint(self) -> Text:
        hint = super().hint()
        if self.preview.get("needs_force") and not self.blocked:
            hint.append("  ")
            hint.append("f", style="bold")
            hint.append(" force")
        return hint

    def action_toggle_force(self) -> None:
        if self.preview.get("needs_force"):
            self.force = not self.force
            self._show_force()

    def _show_force(self) -> None:
        if self.preview.get("needs_force") and not self.blocked:
            self.query_one("#dialog-error").update(Text(f"force: {'ON' if self.force else 'off'}", style="bold"))

    def refusal(self) -> str | None:
        problem = super().refusal()
        if problem is None and self.preview.get("needs_force") and not self.force:
            return "this revision is affected by an enforced advisory: press f to force it, or n to cancel"
        return problem

    def result(self) -> Confirmed:
        return Confirmed(self.entered_text(), force=self.force)

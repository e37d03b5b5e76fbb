"""The confirmation every change goes through: what will happen, an optional or required text
(comment, reason), ``y`` confirms, ``n`` or Escape cancels.

While the text field has the focus it takes the letters you type (``y`` and ``n`` too): Enter
then confirms, Tab leaves the field so ``y``/``n`` work again, Escape always cancels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Input, Static


@dataclass(frozen=True)
class TextField:
    placeholder: str
    required: bool = False
    max_length: int = 2000


@dataclass(frozen=True)
class Confirmed:
    text: str = ""
    force: bool = False


class ConfirmDialog(ModalScreen[Confirmed | None]):
    BINDINGS = [
        Binding("y", "confirm", "Confirm"),
        Binding("n", "cancel", "Cancel"),
        Binding("escape", "cancel", "Cancel", show=False),
    ]

    def __init__(self, title: str, body: RenderableType, *, verb: str = "confirm", field: TextField | None = None,
                 blocked: str | None = None, id: str | None = None) -> None:
        super().__init__(id=id, classes="dialog-screen")
        self.title_text = title
        self.body = body
        self.verb = verb
        self.field = field
        self.blocked = blocked

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text(self.title_text, style="bold"), id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(self.body, id="dialog-text")
                yield from self.compose_extra()
            if self.field is not None and not self.blocked:
                yield Input(placeholder=self.field.placeholder, max_length=self.field.max_length, id="dialog-input")
            yield Static("", id="dialog-error")
            yield Static(self.hint(), id="dialog-hint")

    def compose_extra(self) -> Iterable[Widget]:
        return ()

    def on_mount(self) -> None:
        if self.field is not None and self.field.required and not self.blocked:
            self.query_one(Input).focus()
        else:
            self.query_one("#dialog-body").focus()

    def hint(self) -> Text:
        if self.blocked:
            return Text.assemble(("n", "bold"), " or ", ("Esc", "bold"), " close")
        hint = Text.assemble(("y", "bold"), f" {self.verb}  ", ("n", "bold"), "/", ("Esc", "bold"), " cancel")
        if self.field is not None:
            hint.append("  ")
            hint.append("Tab", style="bold")
            hint.append(" text field (")
            hint.append("Enter", style="bold")
            hint.append(" there = y)")
        return hint

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "confirm" and self.blocked:
            return None
        return True

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_confirm()

    def entered_text(self) -> str:
        if self.field is None or self.blocked:
            return ""
        return self.query_one(Input).value.strip()

    def refusal(self) -> str | None:
        """Why the dialog cannot be confirmed as it is filled in (shown, the dialog stays)."""
        if self.blocked:
            return self.blocked
        if self.field is not None and self.field.required and not self.entered_text():
            return f"{self.field.placeholder}: required"
        return None

    def result(self) -> Confirmed:
        return Confirmed(self.entered_text())

    def action_confirm(self) -> None:
        problem = self.refusal()
        if problem:
            self.query_one("#dialog-error", Static).update(Text(f"! {problem}", style="bold"))
            if self.field is not None and not self.blocked:
                self.query_one(Input).focus()
            return
        self.dismiss(self.result())

    def action_cancel(self) -> None:
        self.dismiss(None)

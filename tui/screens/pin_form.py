"""The form for a new pin: level, name, version (or specifier) and a reason. Enter checks it
locally (``tui.validation``) and, if it holds, hands it on to be confirmed; Escape cancels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Select, Static

from tui.validation import LEVELS, PinInput, pin_problems


class PinForm(ModalScreen[PinInput | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, available: Mapping[str, Sequence[str]] | None) -> None:
        super().__init__(id="pin-form", classes="dialog-screen")
        self.available = available

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text("Add a pin", style="bold"), id="dialog-title")
            yield Select([(level, level) for level in LEVELS], value="capability", allow_blank=False, id="pin-level")
            yield self._field("pin-name", "core/auth", "Name: platform, a suite (core) or suite/capability")
            yield self._field("pin-version", "~=1.2.0", "Version: exact (1.2.0) or a specifier (~=1.2.0)")
            yield self._field("pin-reason", "why (shown in the audit log)", "Reason (optional)")
            yield Static("", id="dialog-error")
            yield Static(Text.assemble(("Enter", "bold"), " check and continue  ", ("Tab", "bold"), " next field  ",
                                       ("Esc", "bold"), " cancel"), id="dialog-hint")

    @staticmethod
    def _field(id: str, placeholder: str, title: str) -> Input:
        field = Input(placeholder=placeholder, id=id)
        field.border_title = title
        return field

    def on_mount(self) -> None:
        self.query_one("#pin-level SelectCurrent").border_title = "Level"
        self.query_one("#pin-name", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        name = self.query_one("#pin-name", Input)
        if event.value == "platform" and not name.value:
            name.value = "platform"

    def entered(self) -> PinInput:
        return PinInput(
            level=str(self.query_one("#pin-level", Select).value),
            name=self.query_one("#pin-name", Input).value.strip(),
            version=self.query_one("#pin-version", Input).value.strip(),
            reason=self.query_one("#pin-reason", Input).value.strip(),
        )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        pin = self.entered()
        problems = pin_problems(pin, self.available)
        if problems:
            self.query_one("#dialog-error", Static).update(Text("\n".join(f"! {p}" for p in problems), style="bold"))
            return
        self.dismiss(pin)

    def action_cancel(self) -> None:
        self.dismiss(None)

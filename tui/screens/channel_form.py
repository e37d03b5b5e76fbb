"""The form to change the update channel, instance-wide or for one suite, with a reason.
Enter hands it on to be confirmed; Escape cancels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Select, Static

CHANNELS = ("auto-update", "manual-approval", "frozen")
INSTANCE = "(instance-wide)"


@dataclass(frozen=True)
class ChannelChoice:
    channel: str
    suite: str | None
    reason: str


class ChannelForm(ModalScreen[ChannelChoice | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", show=False)]

    def __init__(self, current: str | None, suites: Sequence[str]) -> None:
        super().__init__(id="channel-form", classes="dialog-screen")
        self.current = current if current in CHANNELS else CHANNELS[1]
        self.suites = list(suites)

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(Text("Change the update channel", style="bold"), id="dialog-title")
            yield Select([(INSTANCE, INSTANCE)] + [(f"suite {s}", s) for s in self.suites],
                         value=INSTANCE, allow_blank=False, id="channel-suite")
            yield Select([(c, c) for c in CHANNELS], value=self.current, allow_blank=False, id="channel-value")
            reason = Input(placeholder="why (shown in the audit log)", id="channel-reason")
            reason.border_title = "Reason (optional)"
            yield reason
            yield Static(Text.assemble(("Enter", "bold"), " (in the reason) continue  ", ("Tab", "bold"),
                                       " next field  ", ("Esc", "bold"), " cancel"), id="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#channel-suite SelectCurrent").border_title = "For"
        self.query_one("#channel-value SelectCurrent").border_title = "Channel"
        self.query_one("#channel-suite", Select).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        suite = self.query_one("#channel-suite", Select).value
        self.dismiss(ChannelChoice(
            channel=str(self.query_one("#channel-value", Select).value),
            suite=None if suite == INSTANCE else str(suite),
            reason=event.value.strip(),
        ))

    def action_cancel(self) -> None:
        self.dismiss(None)

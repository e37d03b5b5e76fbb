"""The agent is down or unreachable: say so plainly, what to do, and retry on a countdown; the
app takes this screen away by itself as soon as the agent answers again."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Static


@dataclass
class RetryNow(Message):
    """Ask the app to try the agent again."""


class UnreachableScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("r", "retry", "Retry now"),
        Binding("q", "quit_app", "Quit"),
    ]

    reason: reactive[str] = reactive("")
    countdown: reactive[int] = reactive(0)
    attempts: reactive[int] = reactive(1)

    def __init__(self, reason: str, retry_s: float) -> None:
        super().__init__(id="unreachable")
        self.retry_s = max(1, round(retry_s))
        self.set_reactive(UnreachableScreen.reason, reason)
        self.set_reactive(UnreachableScreen.countdown, self.retry_s)

    def compose(self) -> ComposeResult:
        with Vertical(id="unreachable-box"):
            yield Static(id="unreachable-text")

    def on_mount(self) -> None:
        self._show()
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        if self.countdown > 1:
            self.countdown -= 1
        elif self.countdown == 1:
            self.countdown = 0  # "retrying now" until the answer comes
            self.post_message(RetryNow())

    def failed_again(self, reason: str) -> None:
        """The retry failed too: show why, count down again."""
        self.reason = reason
        self.attempts += 1
        self.countdown = self.retry_s

    def watch_reason(self) -> None:
        if self.is_mounted:
            self._show()

    def watch_countdown(self) -> None:
        if self.is_mounted:
            self._show()

    def _show(self) -> None:
        retry = (f"Retrying in {self.countdown} s (attempt {self.attempts})." if self.countdown
                 else f"Retrying now (attempt {self.attempts})...")
        self.query_one("#unreachable-text", Static).update(Group(
            Text("THE ID1 AGENT IS NOT ANSWERING", style="bold"),
            Text(""),
            Text(self.reason or "no answer"),
            Text(""),
            Text("Nothing is lost: the agent keeps its state, and this screen goes away by itself "
                 "as soon as the agent answers."),
            Text("Look at it with:  systemctl status id1-agent"),
            Text("and its log:      journalctl -u id1-agent"),
            Text(""),
            Text(retry, style="bold"),
            Text.assemble(("r", "bold"), " retry now   ", ("q", "bold"), " quit"),
        ))

    def action_retry(self) -> None:
        self.countdown = 0
        self.post_message(RetryNow())

    def action_quit_app(self) -> None:
        self.app.exit()

"""What every one of the seven screens has: the status and nav bars, its body, the disabled-action
notice and the footer; and how its actions are gated by the caller's role.

The app hands data down by setting the screen's attributes named after the resources it lists
in ``RESOURCES`` (``status``, ``updates``…); a watcher redraws only what depends on the one that
changed, and reactive attributes skip equal values, so an unchanged answer draws nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.reactive import var
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input

from tui.roles import refusal
from tui.widgets.action_notice import ActionNotice
from tui.widgets.nav_bar import NavBar
from tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from tui.app import DashboardApp


class DashboardScreen(Screen):
    NAME: ClassVar[str] = ""
    MAIN: ClassVar[str] = "#body"
    """The widget that has the focus when the screen shows (arrows move its selection)."""
    AUTO_FOCUS = None
    RESOURCES: ClassVar[tuple[str, ...]] = ("status",)
    GATED: ClassVar[dict[str, tuple[str, str]]] = {}
    """action name -> (``"a approve"`` as the notice names it, the role it needs)."""

    status: var[dict[str, Any] | None] = var(None, init=False)
    events_state: var[str] = var("connecting", init=False)
    _disabled_shown: list[tuple[str, str]] | None = None

    @property
    def dashboard(self) -> DashboardApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status-bar")
        yield NavBar(self.NAME, id="nav-bar")
        with Vertical(id="body"):
            yield from self.compose_body()
        yield ActionNotice(id="action-notice")
        yield Footer()

    def compose_body(self) -> Iterable[Widget]:
        return ()

    def on_mount(self) -> None:
        self._show_status()
        self.show_all()

    def on_screen_resume(self) -> None:
        # Back from a dialog the focus stays where it was; arriving by a number key, the main
        # widget takes it, never a text field (which would swallow the next key).
        if self.focused is None or isinstance(self.focused, Input):
            self.query_one(self.MAIN).focus()
        self.dashboard.screen_shown(self)

    # --- data coming down -------------------------------------------------------------------

    def watch_status(self) -> None:
        if self.is_mounted:
            self._show_status()
            self.status_changed()

    def watch_events_state(self, state: str) -> None:
        if self.is_mounted:
            self.query_one(StatusBar).events_state = state

    def _show_status(self) -> None:
        self.query_one(StatusBar).status = self.status
        self.query_one(StatusBar).events_state = self.events_state
        self.query_one(NavBar).status = self.status
        self.update_notice()

    def show_all(self) -> None:
        """Draw everything from the current attributes (on mount)."""

    def status_changed(self) -> None:
        """The status changed: redraw what depends on it."""

    # --- what the caller may do -------------------------------------------------------------

    def unavailable(self, action: str) -> str | None:
        """Why ``action`` cannot be done on the current selection, whatever the role (or None)."""
        return None

    def disabled_reason(self, action: str) -> str | None:
        if action not in self.GATED:
            return None
        return refusal(self.status, self.GATED[action][1]) or self.unavailable(action)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.GATED:
            return None if self.disabled_reason(action) else True  # None: shown, dimmed
        return True

    def update_notice(self) -> None:
        """Say in words which actions are disabled and why; let the footer dim them."""
        disabled = []
        for action, (label, _needed) in self.GATED.items():
            reason = self.disabled_reason(action)
            if reason:
                disabled.append((label, reason))
        if disabled == self._disabled_shown:  # the footer is rebuilt on a refresh: only when it changes
            return
        self._disabled_shown = disabled
        self.query_one(ActionNotice).show(disabled)
        self.refresh_bindings()

    def on_key(self, event: events.Key) -> None:
        # A disabled binding lets its key through: answer it with the reason instead of silence.
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and event.key in binding.key.split(","):
                reason = self.disabled_reason(binding.action)
                if reason:
                    event.stop()
                    self.notify(f"{self.GATED[binding.action][0]}: {reason}", title="Not available", severity="warning")
                    return

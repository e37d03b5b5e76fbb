"""``id1 tui``: the dashboard app. It owns the API client and every read and change goes
through it, in workers; screens get their data as attributes and ask for changes by message.

    DashboardApp(client).run()          # client: anything that is a tui.client.DashboardClient

Data flow::

    workers ──Loaded(resource)──▶ app.data ──setattr(screen, resource)──▶ screens redraw what changed
    GET /events ──AgentEvent──▶ resources made stale ──(coalesced, 0.1 s)──▶ reloaded
    screens ──ChangeRequested(change)──▶ app worker ──ChangeDone──▶ notification, stale reloaded
    AgentUnreachable anywhere ──AgentDown──▶ the "agent down" screen, which retries until it answers

Everything the agent answers passes ``tui.text.visible`` on its way in (its words, escaped for
the terminal), and every notification is plain text, never markup (``notify``).

Only resources a shown screen asked for are kept fresh; the others load when their screen shows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from textual.app import App
from textual.binding import Binding
from textual.command import CommandPalette
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.worker import Worker, WorkerState

from tui.blocking import off_thread
from tui.changes import Change, CheckNow, Rollback
from tui.client import AgentUnreachable, ApiError, DashboardClient
from tui.messages import AgentDown, AgentEvent, ChangeDone, ChangeRequested, EventsState, Loaded
from tui.palette import AsciiCommandPalette, DashboardCommands
from tui.roles import refusal
from tui.screens.audit import AuditFilter, AuditScreen
from tui.screens.base import DashboardScreen
from tui.screens.fleet import FleetScreen
from tui.screens.help import HelpScreen
from tui.screens.history import HistoryScreen
from tui.screens.overview import OverviewScreen
from tui.screens.pins import PinsScreen
from tui.screens.security import SecurityScreen
from tui.screens.unreachable import RetryNow, UnreachableScreen
from tui.screens.updates import UpdatesScreen
from tui.text import visible

T = TypeVar("T")
STYLES = Path(__file__).parent / "styles"

SCREENS_IN_ORDER: tuple[type[DashboardScreen], ...] = (
    OverviewScreen, UpdatesScreen, HistoryScreen, PinsScreen, SecurityScreen, AuditScreen, FleetScreen,
)
AUDIT_LIMIT = 200
APPROVALS_LIMIT = 20


def _current(client: DashboardClient, app: DashboardApp) -> dict[str, Any] | None:
    number = (app.data.get("status") or {}).get("revision")
    return client.revision(number) if number is not None else None


FETCHERS: dict[str, Callable[[DashboardClient, DashboardApp], Any]] = {
    "status": lambda client, app: client.status(),
    "updates": lambda client, app: client.updates(),
    "approvals": lambda client, app: client.approvals(APPROVALS_LIMIT),
    "revisions": lambda client, app: client.revisions(),
    "current": _current,
    "versions": lambda client, app: client.versions(),
    "policy": lambda client, app: client.policy(),
    "advisories": lambda client, app: client.advisories(),
    "audit": lambda client, app: client.audit(actor=app.audit_filter[0], action=app.audit_filter[1], limit=AUDIT_LIMIT),
    "fleet": lambda client, app: client.fleet(),
}

# What each server-sent event kind makes stale ("current" follows the status's revision by itself).
# This host's activity is its state in the fleet view; other hosts' changes come by the Fleet
# screen's own timer (tui/screens/fleet.py), as they send no events here.
STALE_AFTER: dict[str, tuple[str, ...]] = {
    "status": ("status", "fleet"),
    "approval": ("status", "updates", "approvals"),
    "deployment": ("status", "updates", "revisions", "fleet"),
    "revision": ("status", "updates", "revisions", "advisories", "versions", "fleet"),
    "audit": ("audit",),
    "feed": ("status", "updates", "approvals", "advisories", "versions"),
}


class DashboardApp(App[None]):
    CSS_PATH = [STYLES / "app.tcss", STYLES / "screens.tcss", STYLES / "dialogs.tcss"]
    TITLE = "id1 tui"
    COMMANDS = App.COMMANDS | {DashboardCommands}
    BINDINGS = [
        *(Binding(str(number), f"show('{screen.NAME}')", screen.NAME, show=False)
          for number, screen in enumerate(SCREENS_IN_ORDER, 1)),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, client: DashboardClient, *, refresh_s: float = 30.0, retry_s: float = 5.0,
                 live: bool = True, coalesce_s: float = 0.1) -> None:
        """``refresh_s``: reload the status this often even without events (0: never);
        ``retry_s``: wait between attempts when the agent is down; ``live``: follow ``GET /events``."""
        super().__init__()
        self.client = client
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self.live = live
        self.coalesce_s = coalesce_s
        self.data: dict[str, Any] = {}
        self.audit_filter: tuple[str | None, str | None] = (None, None)
        self.events_state = "connecting" if live else "off"
        self.screens_by_name: dict[str, DashboardScreen] = {}
        self._wanted: set[str] = {"status"}
        self._stale: set[str] = set()
        self._flush_timer: Timer | None = None
        self._unreachable: UnreachableScreen | None = None
        self._retrying = False
        self._load_errors: dict[str, str] = {}

    # --- start ------------------------------------------------------------------------------

    def on_mount(self) -> None:
        for screen_class in SCREENS_IN_ORDER:
            screen = screen_class()
            screen.set_reactive(DashboardScreen.events_state, self.events_state)
            self.screens_by_name[screen.NAME] = screen
            self.install_screen(screen, screen.NAME)
        self.push_screen("overview")
        self.load("status")
        if self.live:
            self.run_worker(self._follow_events, name="events", group="events", exclusive=True, exit_on_error=False)
        if self.refresh_s:
            self.set_interval(self.refresh_s, lambda: self.mark_stale(["status"]))

    def screen_shown(self, screen: DashboardScreen) -> None:
        """A screen became the active one: give it what is known, fetch it fresh."""
        for resource in screen.RESOURCES:
            if resource in self.data:
                setattr(screen, resource, self.data[resource])
            if resource == "current" and "status" not in self.data:
                self._wanted.add(resource)  # loaded once the status says which revision runs
            elif not self.loading(resource):  # one on its way is as fresh (at start: the first status)
                self.load(resource)

    def loading(self, resource: str) -> bool:
        return any(not worker.is_finished and worker.group == f"load:{resource}" for worker in self.workers)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Textual's notification, but plain text by default and escaped: a message quotes the
        agent's words (an error naming what it was given), never markup to be obeyed."""
        super().notify(visible(message), title=visible(title), severity=severity, timeout=timeout, markup=markup)

    # --- reading ----------------------------------------------------------------------------

    def load(self, resource: str) -> None:
        """Fetch ``resource`` now; a newer request for the same one cancels an older one."""
        self._wanted.add(resource)
        # A callable, not a coroutine: a load cancelled before it started then never exists.
        self.run_worker(partial(self._load, resource), name=f"load {resource}", group=f"load:{resource}",
                        exclusive=True, exit_on_error=False)

    async def _load(self, resource: str) -> None:
        try:
            value = visible(await off_thread(FETCHERS[resource], self.client, self))
        except AgentUnreachable as error:
            self.post_message(AgentDown(visible(str(error))))
        except ApiError as error:
            self._load_failed(resource, str(error))
        except Exception as error:  # a bug or a surprise answer: say it, never a traceback
            self._load_failed(resource, f"{type(error).__name__}: {error}")
        else:
            self.post_message(Loaded(resource, value))

    def _load_failed(self, resource: str, message: str) -> None:
        if self._load_errors.get(resource) != message:  # once, not on every refresh
            self._load_errors[resource] = message
            self.notify(message, title=f"Could not read {resource}", severity="error", timeout=8)

    async def fetch(self, call: Callable[..., T], *args: Any) -> T | None:
        """One call for a screen's own worker (a revision, a rollback preview): its answer, or
        None after the failure was shown (the agent-down screen, or the API's message)."""
        try:
            return visible(await off_thread(call, *args))
        except AgentUnreachable as error:
            self.post_message(AgentDown(visible(str(error))))
        except ApiError as error:
            self.notify(str(error), title="The agent refused", severity="error", timeout=8)
        except Exception as error:
            self.notify(f"{type(error).__name__}: {error}", title="Unexpected answer", severity="error", timeout=8)
        return None

    def on_loaded(self, message: Loaded) -> None:
        if self._unreachable is not None:
            self._agent_back()
        resource, value = message.resource, message.value
        self.data[resource] = value
        self._load_errors.pop(resource, None)
        if resource == "status":
            current = self.data.get("current") or {}
            if "current" in self._wanted and value.get("revision") != current.get("number"):
                self.load("current")
        for screen in self.screens_by_name.values():
            if resource in screen.RESOURCES:
                setattr(screen, resource, value)

    def mark_stale(self, resources: Iterable[str]) -> None:
        """Reload these soon, once however often they are marked meanwhile."""
        self._stale.update(resource for resource in resources if resource in self._wanted)
        if self._stale and self._flush_timer is None:
            self._flush_timer = self.set_timer(self.coalesce_s, self._reload_stale)

    def _reload_stale(self) -> None:
        self._flush_timer = None
        stale, self._stale = self._stale, set()
        for resource in sorted(stale):
            if resource != "current":
                self.load(resource)
        if "current" in stale and "status" not in stale:
            self.load("current")

    # --- live events ------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        """Follow ``GET /events`` for as long as the app runs, reconnecting after a break."""
        broken = False
        while True:
            try:
                stream = self.client.events()
                self.post_message(EventsState("live"))
                if broken:  # events may have been missed meanwhile
                    self.mark_stale(self._wanted)
                while True:
                    item = await off_thread(next, stream, None)
                    if item is None:
                        break
                    self.post_message(AgentEvent(*item))
            except AgentUnreachable as error:
                self.post_message(AgentDown(str(error)))
            except Exception:  # an ApiError or a broken line: the stream is retried, reads go on
                pass
            broken = True
            self.post_message(EventsState("reconnecting"))
            await asyncio.sleep(self.retry_s)

    def on_agent_event(self, message: AgentEvent) -> None:
        self.mark_stale(STALE_AFTER.get(message.kind, tuple(self._wanted)))

    def on_events_state(self, message: EventsState) -> None:
        self.events_state = message.state
        for screen in self.screens_by_name.values():
            screen.events_state = message.state

    # --- the agent down ---------------------------------------------------------------------

    def on_agent_down(self, message: AgentDown) -> None:
        if self._unreachable is None:
            self._unreachable = UnreachableScreen(message.reason, self.retry_s)
            self.push_screen(self._unreachable)
        elif self._retrying:
            self._retrying = False
            self._unreachable.failed_again(message.reason)

    def on_retry_now(self, message: RetryNow) -> None:
        self._retrying = True
        self.load("status")

    def _agent_back(self) -> None:
        screen, self._unreachable, self._retrying = self._unreachable, None, False
        if screen is not None and self.screen is screen:  # nothing can open over it (it is modal)
            screen.dismiss()
        self.notify("The agent answers again.", title="Reconnected")
        self.mark_stale(self._wanted)

    # --- changes ----------------------------------------------------------------------------

    def on_change_requested(self, message: ChangeRequested) -> None:
        change = message.change
        if isinstance(change, Rollback):
            self.notify(f"Rolling back to revision {change.to_revision}: the agent deploys it and checks its health...",
                        title="Rollback started", timeout=10)
        self.run_worker(partial(self._send, change), name=change.title, group="change", exit_on_error=False)

    async def _send(self, change: Change) -> None:
        try:
            text = visible(await off_thread(change.send, self.client))
        except AgentUnreachable as error:
            self.post_message(AgentDown(visible(str(error))))
            self.post_message(ChangeDone(change, str(error), error="unreachable"))
        except ApiError as error:
            self.post_message(ChangeDone(change, str(error), error=error.code))
        except Exception as error:
            self.post_message(ChangeDone(change, f"{type(error).__name__}: {error}", error="failed"))
        else:
            self.post_message(ChangeDone(change, text))

    def on_change_done(self, message: ChangeDone) -> None:
        if message.error:
            self.notify(message.message, title=f"Could not {message.change.title}", severity="error", timeout=12)
        else:
            self.notify(message.message, title="Done", timeout=6)
        self.mark_stale(message.change.stale)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Workers catch what the agent may answer; anything else is a bug: show it, do not hide it.
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{type(error).__name__}: {error}", title=f"Internal error in {event.worker.name}",
                        severity="error", timeout=15)

    def on_audit_filter(self, message: AuditFilter) -> None:
        self.audit_filter = (message.actor, message.action)
        self.load("audit")

    # --- keys and palette -------------------------------------------------------------------

    def action_show(self, name: str) -> Awaitable[None] | None:
        screen = self.screens_by_name.get(name)
        if screen is None or self.screen is screen:
            return None
        return self.switch_screen(screen)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.data.get("status")))

    def action_command_palette(self) -> None:
        # Not over a dialog or the agent-down screen: an entry switching screens would replace them.
        if isinstance(self.screen, ModalScreen):
            return
        if self.use_command_palette and not CommandPalette.is_open(self):
            self.push_screen(AsciiCommandPalette(id="--command-palette"))

    def palette_action(self, screen_name: str, action: str | None) -> None:
        """Run a palette entry: go to its screen, and once that has its data, do the action."""
        if action == "help":
            self.action_help()
        elif action == "check":
            reason = refusal(self.data.get("status"), CheckNow.needs)
            if reason:
                self.notify(f"check the feed now: {reason}", title="Not available", severity="warning")
            else:
                self.post_message(ChangeRequested(CheckNow()))
        else:
            self.run_worker(partial(self._go_and_do, screen_name, action), group="palette", exclusive=True,
                            exit_on_error=False)

    async def _go_and_do(self, screen_name: str, action: str | None) -> None:
        screen = self.screens_by_name[screen_name]
        switching = self.action_show(screen_name)
        if switching is not None:
            await switching
        if action is None:
            return
        # The selection an action applies to exists once the screen's data has arrived.
        for _ in range(250):
            if all(resource in self.data for resource in screen.RESOURCES):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0)
        reason = screen.disabled_reason(action)
        if reason:
            self.notify(f"{screen.GATED[action][0]}: {reason}", title="Not available", severity="warning")
        else:
            await screen.run_action(action)

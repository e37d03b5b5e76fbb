"""The command palette (Ctrl+P): an entry for every action, by name (disabled ones say why), in a
palette drawn without wide glyphs."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import CommandPalette, DiscoveryHit, Hit, Hits, Provider, SearchIcon

from tui.roles import refusal

if TYPE_CHECKING:
    from tui.app import DashboardApp

# (title, help, screen, screen action or None to just go there, role needed)
ENTRIES: tuple[tuple[str, str, str, str | None, str | None], ...] = (
    ("Approve the selected update", "2 Updates, then a", "updates", "approve", "approver"),
    ("Reject the selected update", "2 Updates, then x (a reason is required)", "updates", "reject", "approver"),
    ("Roll back to the selected revision", "3 History, then r (preview first)", "history", "rollback", "admin"),
    ("Add a pin", "4 Pins & policy, then p", "pins", "add_pin", "admin"),
    ("Remove the selected pin", "4 Pins & policy, then d", "pins", "remove_pin", "admin"),
    ("Change the update channel", "4 Pins & policy, then c (per suite too)", "pins", "change_channel", "admin"),
    ("Filter the audit log", "6 Audit, then /", "audit", "focus_filter", None),
    ("Resume a halted change for the fleet group", "7 Fleet, then u", "fleet", "resume_change", "admin"),
    ("Free the fleet slot of a host that is gone", "7 Fleet, then f", "fleet", "free_slot", "admin"),
    ("Check the feed now", "ask the agent to poll its feed at once", "", "check", "approver"),
    ("Go to the overview", "1", "overview", None, None),
    ("Go to updates", "2", "updates", None, None),
    ("Go to history", "3", "history", None, None),
    ("Go to pins & policy", "4", "pins", None, None),
    ("Go to security advisories", "5", "security", None, None),
    ("Go to the audit log", "6", "audit", None, None),
    ("Go to the fleet", "7", "fleet", None, None),
    ("Show the keys", "?", "", "help", None),
)


class DashboardCommands(Provider):
    def _entries(self):
        app: DashboardApp = self.app  # type: ignore[assignment]
        status = app.data.get("status")
        for title, help_text, screen, action, needed in ENTRIES:
            reason = refusal(status, needed) if needed else None
            text = f"{help_text}  -  DISABLED: {reason}" if reason else help_text
            yield title, text, partial(app.palette_action, screen, action)

    async def discover(self) -> Hits:
        for title, help_text, callback in self._entries():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._entries():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, text=title, help=help_text)

class AsciiCommandPalette(CommandPalette):
    """Textual's palette with its magnifier emoji (two cells wide, or a blank in a vt100) as ``>``."""

    def on_mount(self) -> None:
        self.query_one(SearchIcon).icon = ">"

"""The second line: the six screens and their keys, the current one in brackets (not colour alone)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

PAGES = (
    ("1", "overview", "Overview"),
    ("2", "updates", "Updates"),
    ("3", "history", "History"),
    ("4", "pins", "Pins"),
    ("5", "security", "Security"),
    ("6", "audit", "Audit"),
)


class NavBar(Static):
    current: reactive[str] = reactive("overview")
    status: reactive[dict[str, Any] | None] = reactive(None)

    def __init__(self, current: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_reactive(NavBar.current, current)

    def render(self) -> Text:
        status = self.status or {}
        line = Text(no_wrap=True, overflow="ellipsis")
        for key, name, label in PAGES:
            if name == "updates" and status.get("pending_approval"):
                label += " (1)"
            if name == "security" and status.get("exposed_advisories"):
                label += f" ({status['exposed_advisories']}!)"
            if name == self.current:
                line.append(f"[{key} {label}]", style="bold reverse")
            else:
                line.append(f" {key} {label} ")
            line.append(" ")
        return line

"""The second line: the seven screens and their keys, the current one in brackets (not colour alone).

At 80 columns the seven do not fit with a blank on each side of every name, so the line is drawn
as wide as it fits: padded, then two spaces between names, then one (and cut with an ellipsis
only if even that does not fit)."""

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
    ("7", "fleet", "Fleet"),
)


class NavBar(Static):
    current: reactive[str] = reactive("overview")
    status: reactive[dict[str, Any] | None] = reactive(None)

    def __init__(self, current: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.set_reactive(NavBar.current, current)

    def labels(self) -> list[tuple[str, str, bool]]:
        """(key, label with what waits for you, current?) for each screen."""
        status = self.status or {}
        halted = sum(1 for problem in status.get("problems") or [] if problem.get("code") == "fleet-halted")
        found = []
        for key, name, label in PAGES:
            if name == "updates" and status.get("pending_approval"):
                label += " (1)"
            if name == "security" and status.get("exposed_advisories"):
                label += f" ({status['exposed_advisories']}!)"
            if name == "fleet" and halted:
                label += f" ({halted}!)"
            found.append((key, label, name == self.current))
        return found

    def render(self) -> Text:
        labels = self.labels()
        width = self.content_size.width
        for padded, gap in ((True, " "), (False, "  "), (False, " ")):
            line = Text(no_wrap=True, overflow="ellipsis")
            for key, label, current in labels:
                if current:
                    line.append(f"[{key} {label}]", style="bold reverse")
                else:
                    line.append(f" {key} {label} " if padded else f"{key} {label}")
                line.append(gap)
            line.rstrip()
            if not width or line.cell_len <= width:
                break
        return line

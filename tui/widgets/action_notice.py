"""One line under a screen saying which of its actions are disabled right now, and why.

The footer dims a disabled key, which a monochrome terminal cannot show: this says it in words.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import Static


class ActionNotice(Static):
    def show(self, disabled: Sequence[tuple[str, str]]) -> None:
        """``disabled``: (``"a approve"``, reason) pairs; actions with the same reason are grouped."""
        grouped: dict[str, list[str]] = {}
        for action, reason in disabled:
            grouped.setdefault(reason, []).append(action)
        line = Text()
        for reason, actions in grouped.items():
            if line:
                line.append("; ")
            line.append("DISABLED ", style="bold")
            line.append(", ".join(actions), style="bold")
            line.append(f": {reason}")
        self.display = bool(grouped)
        self.update(line)

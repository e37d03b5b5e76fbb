"""The top line: which host, who you are (user and role) and what the agent is doing."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from tui.roles import describe_role


class StatusBar(Static):
    status: reactive[dict[str, Any] | None] = reactive(None)
    events_state: reactive[str] = reactive("connecting")

    def render(self) -> Text:
        status = self.status
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(" ID-1 ", style="bold reverse")
        if status is None:
            line.append(" waiting for the agent...")
            return line
        line.append(f" {status.get('instance_id', '?')} ", style="bold")
        line.append("| ")
        line.append(f"{status.get('user', '?')} ({describe_role(status)})")
        line.append(" | agent: ")
        activity = status.get("activity") or "unknown"
        line.append(activity, style="bold")
        deployment = status.get("deployment")
        if deployment and deployment.get("state") and deployment.get("state") not in activity:
            line.append(f" ({deployment['state']})")
        line.append(f" | events: {self.events_state}")
        return line

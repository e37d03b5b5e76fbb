"""1 Overview: the host at a glance, and the running platform as a tree."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.text import Text
from textual.reactive import var
from textual.widget import Widget

from tui.screens.base import DashboardScreen
from tui.text import plural, when
from tui.widgets.capability_tree import CapabilityTree
from tui.widgets.facts import Facts


class OverviewScreen(DashboardScreen):
    NAME = "overview"
    MAIN = "#tree"
    RESOURCES = ("status", "current")

    current: var[dict[str, Any] | None] = var(None, init=False)
    """The running revision, manifest included (suite versions are only there)."""

    def compose_body(self) -> Iterable[Widget]:
        yield Facts(id="facts")
        yield CapabilityTree(id="tree")

    def show_all(self) -> None:
        self.status_changed()

    def status_changed(self) -> None:
        self.query_one(Facts).show(overview_facts(self.status))
        self._show_tree()

    def watch_current(self) -> None:
        if self.is_mounted:
            self._show_tree()

    def _show_tree(self) -> None:
        current, status = self.current or {}, self.status or {}
        # Until the running revision's manifest arrives, the status's capability list stands in.
        manifest = current.get("manifest") if current.get("number") == status.get("revision") else None
        self.query_one(CapabilityTree).show(manifest, self.status)


def overview_facts(status: dict[str, Any] | None) -> list[tuple[str, str | Text]]:
    if status is None:
        return [("Agent", "waiting for the agent's answer...")]
    tz = status.get("timezone")
    facts: list[tuple[str, str | Text]] = []
    facts.append(("Instance", f"{status.get('instance_id')} (agent {status.get('agent_version', '?')}), "
                              f"feed serial {status.get('feed_serial') if status.get('feed_serial') is not None else 'none yet'}"))

    agent = Text(status.get("activity") or "unknown", style="bold")
    agent.append(f" since {when(status.get('activity_since'), tz)}")
    deployment = status.get("deployment")
    if deployment:
        agent.append(f"; deployment {deployment.get('id')} {deployment.get('status')} at step {deployment.get('state')}")
    facts.append(("Agent", agent))
    if status.get("last_error"):
        facts.append(("Last error", Text(status["last_error"], style="bold")))

    channel = status.get("channel", "?")
    overrides = status.get("suites") or {}
    if overrides:
        channel += "; " + ", ".join(f"{suite}: {value}" for suite, value in sorted(overrides.items()))
    facts.append(("Channel", channel))

    window = status.get("maintenance_window") or []
    if window:
        text = f"{', '.join(window)} ({tz or 'UTC'}); "
        text += "OPEN now" if status.get("in_window") else f"next opens {when(status.get('next_window'), tz, default='-')}"
    else:
        text = "none: changes apply as soon as they are allowed"
    facts.append(("Window", text))

    if status.get("revision") is not None:
        running = f"revision {status['revision']}, platform {status.get('platform') or '?'}, " \
                  f"{plural(len(status.get('capabilities') or []), 'capability', 'capabilities')}"
    else:
        running = "nothing deployed yet"
    facts.append(("Running", running))

    checks = f"last {when(status.get('last_check'), tz)}"
    if status.get("last_check") and status.get("last_success") != status.get("last_check"):
        checks += f" (FAILED; last success {when(status.get('last_success'), tz)})"
    checks += f", next {when(status.get('next_check'), tz, default='not scheduled')}"
    facts.append(("Checks", checks))

    pending = status.get("pending_approval")
    if pending:
        facts.append(("Pending", Text(f"{pending['id']}: {plural(pending.get('changes', 0), 'change')} "
                                      f"AWAIT approval (press 2)", style="bold")))
    else:
        facts.append(("Pending", "nothing awaits approval"))

    exposed = status.get("exposed_advisories") or 0
    security = Text(f"{plural(exposed, 'advisory', 'advisories')} EXPOSED, no fix in the feed (press 5)",
                    style="bold") if exposed else Text("no exposed advisories")
    if status.get("blocked_versions"):
        security.append(f"; {plural(status['blocked_versions'], 'version')} blocked")
    facts.append(("Security", security))

    for problem in status.get("problems") or []:
        if problem.get("code") != "exposed":
            facts.append(("Problem", f"{problem.get('code')}: {problem.get('detail')}"))
    for warning in status.get("warnings") or []:
        facts.append(("Warning", warning))
    return facts

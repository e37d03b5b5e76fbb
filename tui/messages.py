"""Messages of the dashboard: workers report what they fetched or did, screens ask for changes.

Workers post these to the app (the only owner of the client); screens post ``ChangeRequested``
up to the app. Frequent ones (the agent's activity ticks) replace an unhandled predecessor
(``can_replace``), so a burst of events costs one refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message

from tui.changes import Change


@dataclass
class Loaded(Message):
    """A resource (``status``, ``updates``…) as the agent answered it."""

    resource: str
    value: Any

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Loaded) and message.resource == self.resource


@dataclass
class LoadFailed(Message):
    """The agent answered a read with an error (not unreachable: that is ``AgentDown``)."""

    resource: str
    error: str


@dataclass
class AgentDown(Message):
    """The agent did not answer: no socket, nobody listening, no permission."""

    reason: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AgentDown)


@dataclass
class AgentBack(Message):
    """The agent answers again (the unreachable screen's retry worked)."""


@dataclass
class AgentEvent(Message):
    """One server-sent event: ``status``, ``deployment``, ``approval``, ``revision``, ``audit``, ``feed``, ``resync``."""

    kind: str
    data: dict[str, Any]

    def can_replace(self, message: Message) -> bool:
        # Activity ticks coalesce; every other kind is kept (each may touch another resource).
        return isinstance(message, AgentEvent) and message.kind == self.kind == "status"


@dataclass
class EventsState(Message):
    """The live stream is ``live`` or ``reconnecting``: shown in the status bar."""

    state: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EventsState)


@dataclass
class ChangeRequested(Message):
    """A screen asks the app to send a confirmed change to the agent."""

    change: Change


@dataclass
class ChangeDone(Message):
    """The agent carried out (``error`` None) or refused a change; ``message`` is its answer."""

    change: Change
    message: str
    error: str | None = None

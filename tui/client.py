"""What the dashboard needs from the agent: the part of ``agent.client.AgentClient`` it calls.

The app is given any object with these methods (``DashboardApp(client)``), so tests pass a fake
one and the real one is ``AgentClient.connect(socket)``. Answers are the API's JSON (dicts and
lists, see ``agent/api/schemas.py``). Every method may raise:

    AgentUnreachable   no daemon on the socket: the dashboard shows its "agent down" screen
    ApiError           the daemon refused (403 lacks the role, 409 conflict, 422 invalid…):
                       its ``message`` is shown as it is, it is the authority
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from agent.client import AgentUnreachable, ApiError

__all__ = ["AgentUnreachable", "ApiError", "DashboardClient"]

Json = dict[str, Any]


class DashboardClient(Protocol):
    # --- reading ----------------------------------------------------------------------------
    def status(self) -> Json: ...

    def updates(self) -> Json: ...

    def approvals(self, limit: int = 50) -> list[Json]: ...

    def approval(self, approval_id: str) -> Json: ...

    def revisions(self, *, manifests: bool = False) -> list[Json]: ...

    def revision(self, number: int) -> Json: ...

    def rollback_check(self, to_revision: int | None = None) -> Json: ...

    def versions(self) -> Json: ...

    def policy(self) -> Json: ...

    def advisories(self) -> list[Json]: ...

    def audit(self, *, actor: str | None = None, action: str | None = None, limit: int = 100,
              before_seq: int | None = None) -> list[Json]: ...

    def events(self) -> Iterator[tuple[str, Json]]: ...

    # --- deciding ---------------------------------------------------------------------------
    def check(self) -> Json: ...

    def approve(self, approval_id: str, comment: str | None = None) -> Json: ...

    def reject(self, approval_id: str, reason: str) -> Json: ...

    def rollback(self, to_revision: int | None = None, *, reason: str = "", force: bool = False) -> Json: ...

    def pin(self, level: str, name: str, version: str, reason: str | None = None) -> Json: ...

    def unpin(self, level: str, name: str, reason: str | None = None) -> Json: ...

    def set_channel(self, channel: str, suite: str | None = None, reason: str | None = None) -> Json: ...

"""The changes an admin can ask of the agent from the dashboard, once confirmed.

Each one knows the role it needs (to show it disabled beforehand; the API's 403 stays the
authority), how to send itself, what to call it in a notification, and which resources it
makes stale so only those are fetched again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from tui.client import DashboardClient


@dataclass(frozen=True)
class Change:
    needs: ClassVar[str] = "admin"
    stale: ClassVar[tuple[str, ...]] = ("status",)

    def send(self, client: DashboardClient) -> str:
        raise NotImplementedError

    @property
    def title(self) -> str:
        raise NotImplementedError


def _message(answer: Any, fallback: str) -> str:
    if isinstance(answer, dict) and isinstance(answer.get("message"), str):
        return answer["message"]
    return fallback


@dataclass(frozen=True)
class Approve(Change):
    approval_id: str
    comment: str | None = None
    needs: ClassVar[str] = "approver"
    stale: ClassVar[tuple[str, ...]] = ("status", "updates", "approvals", "audit")

    @property
    def title(self) -> str:
        return f"approve {self.approval_id}"

    def send(self, client: DashboardClient) -> str:
        return _message(client.approve(self.approval_id, self.comment or None), f"{self.approval_id} approved")


@dataclass(frozen=True)
class Reject(Change):
    approval_id: str
    reason: str
    needs: ClassVar[str] = "approver"
    stale: ClassVar[tuple[str, ...]] = ("status", "updates", "approvals", "audit")

    @property
    def title(self) -> str:
        return f"reject {self.approval_id}"

    def send(self, client: DashboardClient) -> str:
        return _message(client.reject(self.approval_id, self.reason), f"{self.approval_id} rejected")


@dataclass(frozen=True)
class Rollback(Change):
    to_revision: int
    reason: str
    force: bool = False
    stale: ClassVar[tuple[str, ...]] = ("status", "updates", "revisions", "advisories", "audit")

    @property
    def title(self) -> str:
        return f"roll back to revision {self.to_revision}"

    def send(self, client: DashboardClient) -> str:
        outcome = client.rollback(self.to_revision, reason=self.reason, force=self.force)
        if outcome.get("error"):
            return f"rollback to revision {self.to_revision} {outcome.get('deployment_status', 'failed')}: {outcome['error']}"
        return f"rolled back to revision {self.to_revision} (now running revision {outcome.get('revision')})"


@dataclass(frozen=True)
class Pin(Change):
    level: str
    name: str
    version: str
    reason: str | None = None
    stale: ClassVar[tuple[str, ...]] = ("status", "updates", "versions", "audit")

    @property
    def title(self) -> str:
        return f"pin {self.level} {self.name} to {self.version}"

    def send(self, client: DashboardClient) -> str:
        client.pin(self.level, self.name, self.version, self.reason or None)
        return f"pinned {self.level} {self.name} to {self.version}"


@dataclass(frozen=True)
class Unpin(Change):
    level: str
    name: str
    reason: str | None = None
    stale: ClassVar[tuple[str, ...]] = ("status", "updates", "versions", "audit")

    @property
    def title(self) -> str:
        return f"remove the {self.level} pin of {self.name}"

    def send(self, client: DashboardClient) -> str:
        client.unpin(self.level, self.name, self.reason or None)
        return f"removed the {self.level} pin of {self.name}"


@dataclass(frozen=True)
class SetChannel(Change):
    channel: str
    suite: str | None = None
    reason: str | None = None
    stale: ClassVar[tuple[str, ...]] = ("status", "updates", "policy", "audit")

    @property
    def title(self) -> str:
        return f"set the channel of {self.scope} to {self.channel}"

    @property
    def scope(self) -> str:
        return f"suite {self.suite}" if self.suite else "the instance"

    def send(self, client: DashboardClient) -> str:
        client.set_channel(self.channel, self.suite, self.reason or None)
        return f"channel of {self.scope} set to {self.channel}"


@dataclass(frozen=True)
class CheckNow(Change):
    needs: ClassVar[str] = "approver"
    stale: ClassVar[tuple[str, ...]] = ("status", "updates", "approvals", "advisories", "versions")

    @property
    def title(self) -> str:
        return "check the feed now"

    def send(self, client: DashboardClient) -> str:
        return _message(client.check(), "feed checked")


@dataclass(frozen=True)
class FleetResume(Change):
    ref: str
    reason: str | None = None
    stale: ClassVar[tuple[str, ...]] = ("status", "updates", "fleet", "audit")

    @property
    def title(self) -> str:
        return f"resume {self.ref} for the fleet group"

    def send(self, client: DashboardClient) -> str:
        return _message(client.fleet_resume(self.ref, self.reason or None), f"{self.ref} resumed for the group")


@dataclass(frozen=True)
class FleetRelease(Change):
    host_id: str
    reason: str | None = None
    stale: ClassVar[tuple[str, ...]] = ("fleet", "audit")

    @property
    def title(self) -> str:
        return f"free the fleet slot of {self.host_id}"

    def send(self, client: DashboardClient) -> str:
        return _message(client.fleet_release(self.host_id, self.reason or None), f"the slot of {self.host_id} is free")

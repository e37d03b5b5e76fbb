"""An admin's (or approver's) decisions: approvals, pins, policies, blocked versions.

Each change and its audit entry are stored in one write (``_audited``), then the plan is made
again on the worker (``later(reconcile)``).
"""

from __future__ import annotations

import logging
from typing import Any

from agent.config import VersionPin
from agent.errors import Conflict, NotFound

logger = logging.getLogger("id1.agent")


class AdminVerbs:
    """Part of ``AgentService`` (agent.daemon.service): what approvers and admins decide."""

    def approve(self, approval_id: str, actor: str, comment: str | None) -> Any:
        approval = self._approval(approval_id)
        if self.plan is not None and self.plan.target_hash != approval.target_hash and approval.status == "pending":
            raise Conflict(f"{approval_id} is for a target that has changed since; look at `id1 updates` again")
        with self._audited(actor, "approve", approval_id, comment or ""):
            approval = self.store.approvals.approve(approval_id, actor, comment)
        self.later(self.reconcile)
        return approval

    def reject(self, approval_id: str, actor: str, reason: str) -> Any:
        self._approval(approval_id)
        with self._audited(actor, "reject", approval_id, reason):
            approval = self.store.approvals.reject(approval_id, actor, reason)
        return approval

    def _approval(self, approval_id: str):
        approval = self.store.approvals.get(approval_id)
        if approval is None:
            raise NotFound(f"there is no approval {approval_id}")
        return approval

    def set_pin(self, actor: str, level: str, name: str, version: str, reason: str | None) -> VersionPin:
        if any(pin.key == (level, name) for pin in self.config.pins):
            raise Conflict(f"{level} {name} is pinned in the config file, which the API does not change; edit {self.config_source}")
        with self._audited(actor, "pin", why=reason or "") as entry:
            pin = self.store.pins.set(level, name, version, reason)
            entry.what = pin.describe()
        self.later(self.reconcile)
        return pin

    def remove_pin(self, actor: str, level: str, name: str, reason: str | None = None) -> VersionPin:
        if any(pin.key == (level, name) for pin in self.config.pins):
            raise Conflict(f"{level} {name} is pinned in the config file, which the API does not change; edit {self.config_source}")
        with self._audited(actor, "unpin", why=reason or "") as entry:
            pin = self.store.pins.remove(level, name)
            if pin is None:
                raise NotFound(f"{level} {name} is not pinned")
            entry.what = pin.describe()
        self.later(self.reconcile)
        return pin

    def create_policy(self, actor: str, **fields: Any):
        with self._audited(actor, "policy") as entry:
            policy = self.store.policies.create(**fields)
            entry.what = f"created {policy.id}: {policy.channel}" + (f" for suite {policy.suite}" if policy.suite else "")
            entry.why = policy.description or ""
        self.later(self.reconcile)
        return policy

    def update_policy(self, actor: str, policy_id: str, **fields: Any):
        if self.store.policies.get(policy_id) is None:
            raise NotFound(f"there is no policy {policy_id}")
        with self._audited(actor, "policy") as entry:
            policy = self.store.policies.update(policy_id, **fields)
            entry.what = f"updated {policy.id}: {', '.join(f'{k}={v}' for k, v in fields.items())}"
        self.later(self.reconcile)
        return policy

    def delete_policy(self, actor: str, policy_id: str) -> None:
        with self._audited(actor, "policy", f"deleted {policy_id}"):
            if not self.store.policies.delete(policy_id):
                raise NotFound(f"there is no policy {policy_id}")
        self.later(self.reconcile)

    def set_channel(self, actor: str, channel: str, suite: str | None, reason: str | None = None):
        """``id1 policy set``: the newest enabled policy for this scope, created if there is none."""
        scope = f"suite {suite}" if suite else "the instance"
        before = self.planning_policy(windowed=False)
        was = before.suites[suite].channel if suite and suite in before.suites else before.channel
        existing = [p for p in self.store.policies.list() if p.suite == suite and p.enabled]
        with self._audited(actor, "policy", why=reason or "") as entry:
            if existing:
                newest = max(existing, key=lambda p: (p.updated_at, p.id))
                policy = self.store.policies.update(newest.id, channel=channel)
            else:
                policy = self.store.policies.create(name=f"{suite or 'instance'} channel", channel=channel, suite=suite, description=reason)
            entry.what = f"channel of {scope}: {was} → {channel} ({policy.id})"
            entry.details = {"policy": policy.id, "suite": suite, "channel": channel, "was": was}
        self.later(self.reconcile)
        return policy

    def unblock(self, actor: str, ref: str, reason: str | None = None) -> None:
        with self._audited(actor, "unblock", ref, reason or ""):
            if not self.store.blocked.remove(ref):
                raise NotFound(f"{ref} is not blocked")
        self.later(self.reconcile)


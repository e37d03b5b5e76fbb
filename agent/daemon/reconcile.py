"""The feed and the plan: poll, plan, keep the pending approval in step, deploy what may go now.

    poll()       fetch the feed (conditional GET), then reconcile()
    reconcile()  finish an interrupted deployment; plan; propose what awaits approval; deploy
                 what may be applied now (forced security fixes always; approved or
                 auto-update changes in the window)
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from agent.alerts import FEED_REJECTED, FORCED_PATCH
from agent.config import PolicyConfig, SuitePolicy, VersionPin
from agent.errors import Conflict, FeedRejected, Id1Error
from agent.planning import APPLY, AWAIT_APPROVAL, Manifest, make_plan
from agent.planning.model import Plan
from agent.planning.policy import effective_policy
from agent.store import DeploymentStatus
from agent.store.errors import InvalidTransition
from agent.versions import parse_version
from agent.window import in_window, next_window_start
from agent.daemon.recorder import AGENT

logger = logging.getLogger("id1.agent")


class Reconciler:
    """Part of ``AgentService`` (agent.daemon.service): feed, plan and approvals."""

    def poll(self, actor: str = AGENT) -> str:
        """Check the feed and act on it; one line saying what happened."""
        if not self.config.feed.url:
            raise Conflict("feed.url is not set in the config: there is no feed to check")
        self.set_activity("checking the feed")
        now = self.clock()
        try:
            check = self.feed.check(now)
        except FeedRejected as error:
            self.last_check = now
            self._decided(AGENT, "feed-rejected", "the feed was rejected", str(error), alert=FEED_REJECTED)
            self.set_activity("idle")
            raise
        except Id1Error:
            self.last_check = now
            self.set_activity("idle")
            raise
        self.last_check = self.last_success = now
        if check.changed:  # an unchanged feed costs no store write (polls are frequent)
            self.store.feed_state.set(last_check=now, last_success=now, serial=check.serial)
        self.catalog = check.catalog
        if check.changed:
            self.events.publish("feed", {"serial": check.serial})
        outcome = self.reconcile()
        return ("feed unchanged" if check.not_modified else f"feed serial {check.serial}") + f"; {outcome}"

    def planning_policy(self, *, windowed: bool) -> PolicyConfig:
        policy = effective_policy(self.config.policy, self.store.policies.list())
        if windowed and policy.maintenance_window and not in_window(policy.maintenance_window, policy.timezone, self.clock()):
            policy = policy.model_copy(update={"channel": "frozen", "suites": {s: SuitePolicy(channel="frozen") for s in policy.suites}})
        return policy

    def pins(self) -> list[VersionPin]:
        return [*self.config.pins, *self.store.pins.list()]

    def make_plan(self, *, windowed: bool, approved_target: str | None = None) -> Plan | None:
        if self.catalog is None:
            return None
        latest = self.store.revisions.latest()
        installed = Manifest.model_validate(latest.manifest) if latest else None
        return make_plan(self.catalog, self.planning_policy(windowed=windowed), self.pins(), installed,
                         now=self.clock(), instance_id=self.instance_id, blocked=self.store.blocked.refs(),
                         approved_target=approved_target, halted=self.fleet_halted)

    def reconcile(self) -> str:
        """Plan, keep the pending approval in step with the target, deploy what may go now."""
        if self.catalog is None:
            return "no feed accepted yet"
        if self.store.deployments.active() is not None:  # left by a start-up that did not finish
            self.set_activity("finishing an interrupted deployment")
            resumed = self.engine.resume()
            if resumed is not None:
                self._after_deployment(resumed, "an interrupted deployment", actor=AGENT)
        self.set_activity("planning")
        self.refresh_halted()
        self.plan = plan = self.make_plan(windowed=False)
        self._propose(plan)
        approved = self.store.approvals.approved_waiting()
        now_plan = self.make_plan(windowed=True, approved_target=approved.target_hash if approved else None)
        applies = [change for change in now_plan.changes if change.action == APPLY]
        if not applies or now_plan.next is None:
            self.set_activity("idle")
            self.write_metrics()
            return self._waiting_words(plan)
        forced = [change for change in applies if change.source.startswith("security:")]
        for change in forced:
            self._decided(AGENT, "forced-patch", f"{change.capability} {change.from_version} → {change.to_version}",
                          f"{change.source.removeprefix('security:')} is enforced whatever the policy", alert=FORCED_PATCH,
                          details={"capability": change.capability, "from": change.from_version, "to": change.to_version})
        why = ", ".join(f"{c.capability} {c.from_version or '(none)'} → {c.to_version or '(removed)'}" for c in applies)
        result = self.deploy(now_plan.next, target_hash=now_plan.target_hash, what=why, forced=bool(forced))
        if approved is not None and not self.interrupted(result):  # an interrupted one is retried at the next start
            running = self.store.revisions.latest()
            if result.status == DeploymentStatus.SUCCEEDED and now_plan.target is not None and running and \
                    Manifest.model_validate(running.manifest).content_hash() == approved.target_hash:
                self.store.approvals.mark(approved.id, "deployed", deployment_id=result.deployment_id)
            elif result.status != DeploymentStatus.SUCCEEDED and now_plan.target_hash == approved.target_hash:
                self.store.approvals.mark(approved.id, "failed", deployment_id=result.deployment_id)
            self.events.publish("approval", {"id": approved.id})
        self.plan = self.make_plan(windowed=False)
        self.set_activity("idle")
        return (f"deployed revision {result.revision}" if result.status == DeploymentStatus.SUCCEEDED
                else f"deployment {result.status.value}: {result.error}")

    def _settle_approval(self) -> None:
        """An approval whose target runs is deployed, even if the agent stopped between the
        deployment's commit and marking it (it would otherwise stay "approved" for ever)."""
        approved = self.store.approvals.approved_waiting()
        latest = self.store.revisions.latest()
        if approved is None or latest is None or Manifest.model_validate(latest.manifest).content_hash() != approved.target_hash:
            return
        self.store.approvals.mark(approved.id, "deployed", deployment_id=latest.deployment_id)
        self.events.publish("approval", {"id": approved.id, "status": "deployed"})

    def _propose(self, plan: Plan | None) -> None:
        if plan is None or not plan.valid:
            return
        waiting = [change for change in plan.changes if change.action == AWAIT_APPROVAL]
        if not waiting:
            pending = self.store.approvals.pending()
            if pending is not None:  # its target (even the same one) now applies by policy, or already runs
                if not self._supersede(pending.id, "the target no longer needs an approval"):
                    return
                self._decided(AGENT, "approval-superseded", pending.id, "the target no longer needs an approval")
                self.events.publish("approval", {"id": pending.id, "status": "superseded"})
            return
        platform = self.catalog.platforms.get(parse_version(plan.target.platform)) if plan.target and plan.target.platform else None
        advisories = sorted({change.source.removeprefix("security:") for change in plan.changes if change.source.startswith("security:")})
        approval, superseded = self.store.approvals.propose(
            plan.target_hash, plan.target.to_json(), [change.to_json() for change in waiting],
            feed_serial=self.catalog.serial, notes=platform.notes if platform else None, advisories=advisories,
        )
        for old in superseded:
            self._decided(AGENT, "approval-superseded", old.id, f"a newer target replaced it: {approval.id}")
        if approval.status == "pending" and not superseded and approval.created_at >= self.clock() - timedelta(seconds=1):
            self.events.publish("approval", {"id": approval.id, "status": "pending"})

    def _supersede(self, approval_id: str, reason: str) -> bool:
        """pending → superseded, when the target no longer needs anyone's approval (a pin or a
        policy made it apply, or it is what runs now); one decided in between is left as it is."""
        try:
            self.store.approvals.supersede(approval_id, reason)
        except InvalidTransition:
            return False
        return True

    def _waiting_words(self, plan: Plan | None) -> str:
        if plan is None:
            return "nothing to do"
        waiting = sum(1 for change in plan.changes if change.action == AWAIT_APPROVAL)
        held = sum(1 for change in plan.changes if change.action not in (APPLY, AWAIT_APPROVAL))
        approved = self.store.approvals.approved_waiting()
        if approved is not None:
            opens = self.next_window()
            return f"{approved.id} approved; deploys when the maintenance window opens" + (f" ({opens:%a %H:%M %Z})" if opens else "")
        if waiting:
            return f"{waiting} change(s) await approval"
        return f"{held} change(s) held by policy" if held else "up to date"

    def next_window(self) -> datetime | None:
        policy = self.planning_policy(windowed=False)
        return next_window_start(policy.maintenance_window, policy.timezone, self.clock())


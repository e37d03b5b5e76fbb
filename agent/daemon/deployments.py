"""Deployments and what follows them: the bake watch, rollbacks, an admin's deployment now.

    deploy()          one manifest through the engine, then audited, watched, retained
    watch_health()    the bake period: roll back a capability that keeps failing its checks
    rollback()        an admin's (or the watch's) rollback to a kept revision
    deploy_target()   POST /deployments: the current target now, with the planner's safeguards
    enforce()         POST /security/enforce: one advisory's fix now
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.alerts import DEPLOYMENT_FAILED, FORCED_PATCH, ROLLBACK
from agent.config import SuitePolicy, parse_duration
from agent.deploy.engine import DeployResult, RollbackRefused, RollbackResult
from agent.deploy.rollback import RollbackCheck
from agent.errors import Conflict, NotFound
from agent.planning import Manifest, make_plan
from agent.planning.rollout import wariness
from agent.planning.security import enforce_advisory, enforced_advisories
from agent.planning.selection import Selection
from agent.planning.plan import parse_blocked
from agent.store import DeploymentStatus
from agent.daemon.recorder import AGENT

logger = logging.getLogger("id1.agent")


@dataclass
class BakeWatch:
    """Capabilities changed by the last deployment, watched until ``until`` (health watch job)."""

    revision: int
    previous: int | None
    """The revision the deployment replaced: where an automatic rollback goes."""
    capabilities: tuple[str, ...]
    until: datetime
    failures: int = 0
    """Failed checks in a row; a passing check resets it."""



class Deployments:
    """Part of ``AgentService`` (agent.daemon.service): deployments, bake watch, rollbacks."""

    def deploy(self, manifest: Manifest, *, target_hash: str | None, what: str, actor: str = AGENT,
               forced: bool = False) -> DeployResult:
        """``forced``: a security fix enforced whatever the policy, which waits for a fleet slot
        ``fleet.critical_wait`` at most."""
        self.set_activity(f"deploying: {what}")
        self.events.publish("deployment", {"state": "started", "what": what})
        serial = self.catalog.serial if self.catalog else None
        if self.engine.fleet is not None:
            self.engine.fleet.critical_wait_s = self.config.fleet.critical_wait_s if forced else None
        try:
            result = self.engine.deploy(manifest, feed_serial=serial, target_hash=target_hash)
        finally:
            self.slot_wait = None
        if self.engine.fleet is not None:  # a halt found while in line must show in this plan, not the next poll's
            self.refresh_halted()
        self.plan = self.make_plan(windowed=False)  # at once: a reader must not see the new revision with the old plan
        self._after_deployment(result, what, actor=actor)
        return result

    def interrupted(self, result: DeployResult) -> bool:
        """A deployment that ended unfinished because the agent is stopping (SIGTERM), not because
        the release is bad."""
        return result.status != DeploymentStatus.SUCCEEDED and self.stopping.is_set()

    def _after_deployment(self, result: DeployResult, what: str, *, actor: str, rollback: bool = False) -> None:
        self.outcomes.append(result)
        if self.interrupted(result):
            # Nothing is known against these versions (the engine blocks nothing when stopping),
            # so the next start deploys them again.
            undone = "undone" if result.status == DeploymentStatus.ROLLED_BACK else "stopped before it changed anything"
            self._decided(AGENT, "deployment-interrupted", what, f"the agent was stopping; the deployment was {undone} "
                          "and is tried again at the next start", details={"deployment": result.deployment_id, "error": result.error or ""})
        elif result.status == DeploymentStatus.SUCCEEDED:
            self._decided(actor, "deployed", f"revision {result.revision}: {what}", "", audit_only=rollback)
            # A rollback is not watched: going "back" from it would be going forward onto what
            # was just left.
            if not rollback:
                deployment = self.store.deployments.get(result.deployment_id)
                self.bake = BakeWatch(result.revision, deployment.from_revision if deployment else None, result.changed,
                                      self.clock() + parse_duration(self.config.health.bake_period))
            else:
                self.bake = None
            self.retention()
        elif result.status == DeploymentStatus.ROLLED_BACK:
            self._decided(AGENT, "automatic-rollback", what, result.error or "", alert=ROLLBACK)
        elif result.status == DeploymentStatus.UNDO_FAILED:
            self._decided(AGENT, "undo-failed", what, (result.error or "") + "; an admin must act: id1 status, then "
                          "id1 rollback --to a kept revision", alert=DEPLOYMENT_FAILED)
        else:
            self._decided(AGENT, "deployment-failed", what, result.error or "", alert=DEPLOYMENT_FAILED)
        self.events.publish("deployment", {"state": result.status.value, "id": result.deployment_id, "revision": result.revision})
        self.events.publish("revision", {"revision": result.revision})
        self.write_metrics()

    def watch_health(self) -> str | None:
        """Health watch during the bake period: roll back a capability that turned unhealthy."""
        bake = self.bake
        if bake is None:
            return None
        if self.clock() >= bake.until:
            self.bake = None
            return None
        latest = self.store.revisions.latest()
        if latest is None or latest.number != bake.revision:
            self.bake = None
            return None
        entries = Manifest.model_validate(latest.manifest).capabilities()
        problem = failing = None
        for ref in bake.capabilities:
            entry = entries.get(ref)
            if entry is not None and (found := self.engine.probe(ref, entry)) is not None:
                problem = f"{ref} {entry.version} turned unhealthy within the bake period: {found}"
                failing = f"{ref}@{entry.version}"
                break
        if problem is None:
            bake.failures = 0
            return None
        bake.failures += 1
        needed = self.config.health.bake_failures
        if bake.failures < needed:
            logger.warning("health watch: %s (check %d of %d in a row before a rollback)", problem, bake.failures, needed)
            return None
        self.bake = None
        reason = f"{problem} ({bake.failures} checks in a row)"
        if bake.previous is None or self.store.revisions.get(bake.previous) is None:
            self._decided(AGENT, "health-failed", reason, "no earlier revision to roll back to", alert=DEPLOYMENT_FAILED)
            return reason
        blocked = sorted(self.store.blocked.refs() & _release_refs(self.store.revisions.get(bake.previous).manifest))
        if blocked:  # the agent never puts a blocked version back by itself
            self._decided(AGENT, "health-failed", reason, f"revision {bake.previous} has blocked versions ({', '.join(blocked)}): "
                          "not rolled back automatically; an admin decides (id1 rollback --to)", alert=DEPLOYMENT_FAILED)
            return reason
        if self.engine.fleet is not None:  # the group hears of it before this host's rollback takes a slot
            self.engine.fleet.record_failures([failing])
        try:
            result = self.engine.rollback(bake.previous, catalog=self.catalog, reason=reason, actor=AGENT,
                                          enforce_severity=self.config.policy.enforce_severity)
        except RollbackRefused as refused:  # e.g. onto a version an enforced advisory affects
            self._decided(AGENT, "health-failed", reason, f"not rolled back automatically: {refused}", alert=DEPLOYMENT_FAILED)
            return reason
        self._after_rollback(result, AGENT, automatic=True)
        return reason

    def check_rollback(self, to_revision: int | None) -> RollbackCheck:
        return self.engine.check_rollback(self._rollback_target(to_revision), catalog=self.catalog,
                                          enforce_severity=self.config.policy.enforce_severity)

    def _rollback_target(self, to_revision: int | None) -> int:
        if to_revision is not None:
            if self.store.revisions.get(to_revision) is None:
                raise NotFound(f"revision {to_revision} is not kept")
            return to_revision
        kept = [revision.number for revision in self.store.revisions.list()]
        if len(kept) < 2:
            raise Conflict("there is no earlier revision to roll back to")
        return kept[1]

    def rollback(self, actor: str, to_revision: int | None, reason: str, force: bool) -> RollbackResult:
        def work() -> RollbackResult:
            target = self._rollback_target(to_revision)
            self.set_activity(f"rolling back to revision {target}")
            try:
                result = self.engine.rollback(target, catalog=self.catalog, reason=reason, actor=actor, force=force,
                                              enforce_severity=self.config.policy.enforce_severity)
            finally:
                self.set_activity("idle")
            self._after_rollback(result, actor, automatic=False)
            return result
        return self.exclusive(work)

    def _after_rollback(self, result: RollbackResult, actor: str, *, automatic: bool) -> None:
        operation = result.operation
        what = f"revision {operation.from_revision} → {operation.to_revision} ({operation.status.value})"
        self._decided(actor, "automatic-rollback" if automatic else "rollback", what, operation.reason, alert=ROLLBACK,
                      details={"operation": operation.id, "trigger": "automatic" if automatic else "manual"})
        self._after_deployment(result.deployment, f"rollback to revision {operation.to_revision}", actor=actor, rollback=True)
        self.plan = self.make_plan(windowed=False)

    def deploy_target(self, actor: str, target_hash: str, *, force: bool = False) -> DeployResult:
        """An admin deploys the current target now, whatever the channel and window (``POST
        /deployments``), with the planner's safeguards: what ``next`` holds back (a change that
        would break a capability staying put) stays held, and a target that an enforced advisory
        affects (exposed) needs ``force``, which is audited."""
        def work() -> DeployResult:
            plan = self.make_plan(windowed=False)
            if plan is None or plan.target_hash != target_hash:
                raise Conflict("the target has changed since it was shown; look at `id1 updates` again")
            if not plan.valid or plan.target is None:
                raise Conflict("the target is invalid: " + "; ".join(p.detail for p in plan.problems))
            severity = self.config.policy.enforce_severity
            exposed = [f"{ref} {entry.version} ({', '.join(a.id for a in advisories)})"
                       for ref, entry in sorted(plan.target.capabilities().items())
                       if (advisories := enforced_advisories(self.catalog, ref, entry.version, severity))]
            if exposed and not force:
                raise Conflict(f"the target is exposed: {'; '.join(exposed)} affected by an enforced advisory with no fix; "
                               "deploy it anyway with force")
            if exposed:
                manifest, why = plan.target, f"deployed now by an admin, forced past {'; '.join(exposed)}"
            else:
                everything = self.planning_policy(windowed=False)
                everything = everything.model_copy(update={"channel": "auto-update", "suites": {
                    suite: SuitePolicy(channel="auto-update") for suite in everything.suites}})
                latest = self.store.revisions.latest()
                now_plan = make_plan(self.catalog, everything, self.pins(), Manifest.model_validate(latest.manifest) if latest else None,
                                     now=self.clock(), instance_id=self.instance_id, blocked=self.store.blocked.refs(),
                                     halted=self.fleet_halted)
                manifest, why = now_plan.next, "deployed now by an admin"
                held = [p.detail for p in now_plan.problems if p.code == "deferred"]
                if held:
                    why += f"; held back: {'; '.join(held)}"
            self._decided(actor, "deploy", f"target {target_hash[:12]}", why)
            result = self.deploy(manifest, target_hash=plan.target_hash, what="the current target", actor=actor)
            self.plan = self.make_plan(windowed=False)
            return result
        return self.exclusive(work)

    def enforce(self, actor: str, advisory_id: str) -> DeployResult:
        def work() -> DeployResult:
            if self.catalog is None:
                raise Conflict("no feed has been accepted yet")
            advisory = next((a for items in self.catalog.advisories.values() for a in items if a.id == advisory_id), None)
            if advisory is None:
                raise NotFound(f"the feed has no advisory {advisory_id}")
            latest = self.store.revisions.latest()
            if latest is None:
                raise Conflict("nothing is deployed yet")
            selection = Selection(catalog=self.catalog, allow_prerelease=self.config.policy.allow_prerelease,
                                  blocked=parse_blocked(self.store.blocked.refs()), now=self.clock(),
                                  host_wariness=wariness(self.instance_id))
            outcome = enforce_advisory(Manifest.model_validate(latest.manifest), selection, advisory)
            if outcome is None:
                raise Conflict(f"{advisory.capability} is not affected by {advisory_id} on this host")
            if not isinstance(outcome, tuple):
                raise Conflict(outcome.detail)
            manifest, enforcement = outcome
            what = f"{enforcement.capability} {enforcement.from_version} → {enforcement.fix.version}"
            self._decided(actor, "enforce", what, f"{advisory_id} enforced by {actor}", alert=FORCED_PATCH)
            result = self.deploy(manifest, target_hash=None, what=what, actor=actor, forced=True)
            self.plan = self.make_plan(windowed=False)
            return result
        return self.exclusive(work)


def _release_refs(manifest: dict[str, Any]) -> set[str]:
    return {f"{ref}@{entry.version}" for ref, entry in Manifest.model_validate(manifest).capabilities().items()}

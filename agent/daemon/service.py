"""The agent's decisions in one place: what the scheduler's jobs and the API's routes call.

    poll()       fetch the feed (conditional GET), then reconcile()
    reconcile()  plan; propose what awaits approval; deploy what may be applied now (forced
                 security fixes always; approved or auto-update changes in the window)
    approve() · reject() · set_pin() · remove_pin() · policies · rollback() · enforce() · unblock()
                 an admin's decisions, each audited with who, what and why, then reconcile()

Every deployment, rollback and feed check runs on one worker at a time (``exclusive``): the
engine is never entered twice. Reads (status, history, audit) never wait for it. Every change
is audited, published on the event bus for clients, and the metrics file is rewritten.

Stopping (``stopping`` set on SIGTERM): the engine stops a deployment at its next step, and a
health check under way is cut short (``StopAwareHealth``); a deployment that ends unfinished
that way is ``deployment-interrupted``, not failed: its versions are not blocked and an
approval it carried out stays approved, so the next start deploys it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from agent import __version__
from agent.alerts import DEPLOYMENT_FAILED, FEED_REJECTED, FORCED_PATCH, ROLLBACK, WebhookNotifier
from agent.audit import AuditLog
from agent.config import AgentConfig, PolicyConfig, SuitePolicy, VersionPin, parse_duration
from agent.daemon.events import EventBus
from agent.deploy.artifacts import ArtifactCache
from agent.deploy.engine import DeployResult, Engine, RollbackRefused, RollbackResult
from agent.deploy.health import DEFAULT_TIMEOUT_S as DEFAULT_HEALTH_TIMEOUT_S
from agent.deploy.health import HealthChecker, HealthResult
from agent.deploy.releases import ReleaseLayout
from agent.deploy.retention import RetentionReport, apply_retention
from agent.deploy.rollback import RollbackCheck
from agent.deploy.services import ServiceController
from agent.errors import Conflict, FeedRejected, Id1Error, NotFound, StoreError
from agent.feed.catalog import Catalog
from agent.feed.client import FeedClient
from agent.feed.verify import trusted_keys_from_config
from agent.metrics import AgentInfo, MetricsSnapshot, render_metrics, write_textfile
from agent.planning import APPLY, AWAIT_APPROVAL, Manifest, make_plan
from agent.planning.model import Plan
from agent.planning.policy import effective_policy
from agent.planning.rollout import wariness
from agent.planning.security import enforce_advisory, enforced_advisories
from agent.planning.selection import Selection
from agent.planning.plan import parse_blocked
from agent.store import DeploymentStatus, Store
from agent.store.records import PendingAudit
from agent.store.errors import InvalidTransition
from agent.store.store import utc_now
from agent.transfer import TransferFloor
from agent.versions import parse_version
from agent.window import in_window, next_window_start

logger = logging.getLogger("id1.agent")
AGENT = "agent"
STOP_GRACE_S = 5.0
"""Once the agent is asked to stop, a health wait gives the service at most this long more: a
release whose ``timeout_s`` is ten minutes must not hold SIGTERM (and systemd's stop) that long."""


@dataclass
class Activity:
    """What the agent is doing, in words (sd_notify STATUS, ``id1 status``)."""

    text: str = "starting"
    since: datetime = field(default_factory=utc_now)


@dataclass
class _Entry:
    """An audit entry being written with the change it describes (``AgentService._audited``)."""

    what: str = ""
    why: str = ""
    details: dict[str, Any] = field(default_factory=dict)


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


class StopAwareHealth(HealthChecker):
    """The engine's health checks, cut short once the agent is stopping.

    A wait that is under way when the stop comes ends ``grace_s`` later at the latest (the
    engine then undoes the unverified change, and the service treats that as interrupted, not
    as a failed release); sleeps between probes wake at once on the stop.
    """

    def __init__(self, services: ServiceController, stopping: threading.Event, *, grace_s: float = STOP_GRACE_S):
        super().__init__(services, sleep=lambda seconds: stopping.wait(seconds))
        self.stopping = stopping
        self.grace_s = grace_s
        self._stop_at: float | None = None

    def wait_healthy(self, units, health, *, timeout_s: float | None = None):
        timeout = timeout_s if timeout_s is not None else (health.timeout_s if health else DEFAULT_HEALTH_TIMEOUT_S)
        started = self.clock()
        deadline = started + timeout
        attempts = 0
        while True:
            attempts += 1
            problem = self.probe(units, health)
            if problem is None:
                return HealthResult(True, "healthy", attempts)
            now = self.clock()
            if self.stopping.is_set():
                deadline = min(deadline, max(started, self._stop_seen(now)) + self.grace_s)
            if now >= deadline:
                cut = " (cut short: the agent is stopping)" if self.stopping.is_set() and now < started + timeout else ""
                return HealthResult(False, f"{problem} (still after {now - started:.0f} s, {attempts} checks){cut}", attempts)
            self.sleep(min(self.interval_s, max(0.0, deadline - now)))

    def _stop_seen(self, now: float) -> float:
        if self._stop_at is None:
            self._stop_at = now
        return self._stop_at


class AgentService:
    config_source = "the agent config (/etc/id1/agent.toml)"
    """Named when the API refuses to change what the config file decides (the daemon sets the real path)."""

    def __init__(
        self,
        config: AgentConfig,
        instance_id: str,
        *,
        clock: Callable[[], datetime] = utc_now,
        events: EventBus | None = None,
        submit: Callable[[Callable[[], Any]], Future] | None = None,
    ):
        self.config = config
        self.instance_id = instance_id
        self.clock = clock
        self.events = events or EventBus()
        self._submit = submit
        self.activity = Activity()
        self.stopping = threading.Event()
        self._exclusive = threading.RLock()
        self._worker_state = threading.local()
        self._busy = 0
        self.on_activity: Callable[[str], None] = lambda text: None
        """Told what the agent is doing, in words (the daemon passes it to systemd's STATUS)."""
        self.on_decision: Callable[[str], None] = lambda line: None
        """Told each decision in the one line the log gets (``id1 agent run --once`` prints them)."""
        state_dir = Path(config.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store.open(state_dir, clock=clock)
        try:
            self.audit = AuditLog(state_dir / "audit", clock=clock)
            self.feed = _feed_client(config, self.store)
            self.cache = ArtifactCache(state_dir / "cache", floor=_transfer_floor(config))
        except BaseException:
            self.store.close()
            raise
        self.notifier = WebhookNotifier(config.alerts.webhook, instance_id=instance_id) if config.alerts.webhook else None
        self.services = ServiceController.from_config(config.services)
        self.layout = ReleaseLayout(state_dir)
        self.engine = self._make_engine()
        self.catalog: Catalog | None = None
        self.plan: Plan | None = None
        self.last_check: datetime | None = None
        self.next_check: datetime | None = None
        """Set by the scheduler: when the next feed poll runs."""
        self.last_success: datetime | None = self.store.feed_state.get().last_success
        self.last_error: str | None = None
        self.bake: BakeWatch | None = None
        self.outcomes: list[DeployResult] = []
        """Every deployment this service ended, in order (``id1 agent run --once`` reads its pass's)."""
        self.warnings: list[str] = [*self.store.startup_warnings, *self.audit.warnings]

    def _make_engine(self) -> Engine:
        return Engine(
            store=self.store, layout=self.layout, artifacts=self.cache, services=self.services,
            health=StopAwareHealth(self.services, self.stopping), unit_dir=Path(self.config.services.unit_dir),
            instance_id=self.instance_id, resolve_url=self.feed.resolve_url if self.feed else (lambda url: url), clock=self.clock,
            should_stop=self.stopping.is_set,
        )

    def close(self) -> None:
        if self.notifier is not None:
            self.notifier.close()
        self.cache.close()
        if self.feed is not None:
            self.feed.close()
        self.audit.close()
        self.store.close()

    # --- running work one at a time -----------------------------------------------------------

    def exclusive(self, work: Callable[[], Any]) -> Any:
        """Run ``work`` with the engine to itself, on the worker when the daemon gave one, and wait."""
        if self._submit is None or getattr(self._worker_state, "inside", False):
            return self.locked(work)
        return self._submit(lambda: self.locked(work)).result()

    def later(self, work: Callable[[], Any]) -> None:
        """Run ``work`` on the worker once it is free, without waiting (reconcile after a decision)."""
        if self._submit is None:
            self.locked(work)
        else:
            self._submit(lambda: self._quietly(work))

    def locked(self, work: Callable[[], Any]) -> Any:
        with self._exclusive:
            outer = not getattr(self._worker_state, "inside", False)
            self._worker_state.inside = True
            self._busy += 1
            try:
                return work()
            except Id1Error as error:
                self.last_error = str(error)
                raise
            finally:
                self._busy -= 1
                if outer:  # a nested call (exclusive inside exclusive) must not end the outer one's claim
                    self._worker_state.inside = False

    @property
    def busy(self) -> bool:
        """True while a job holds the engine (a deployment, a poll): light jobs skip a turn then."""
        return self._busy > 0

    def _quietly(self, work: Callable[[], Any]) -> None:
        try:
            self.locked(work)
        except Id1Error as error:
            logger.error("%s", error)
        except Exception:  # a bug must not kill the worker; it is logged with its traceback
            logger.exception("unexpected error in the agent's worker")

    def apply_config(self, config: AgentConfig) -> None:
        """A reloaded config (SIGHUP): feed, services and policy take effect now; then replan."""
        old = self.config
        self.config = config
        if (config.feed, config.download) != (old.feed, old.download):
            if self.feed is not None:
                self.feed.close()
            self.feed = _feed_client(config, self.store)
        if config.download != old.download:
            self.cache.close()
            self.cache = ArtifactCache(Path(config.state_dir) / "cache", floor=_transfer_floor(config))
        if config.alerts.webhook != old.alerts.webhook:
            if self.notifier is not None:
                self.notifier.close()
            self.notifier = WebhookNotifier(config.alerts.webhook, instance_id=self.instance_id) if config.alerts.webhook else None
        self.services = ServiceController.from_config(config.services)
        self.engine = self._make_engine()
        if self.catalog is not None:
            self.later(self.reconcile)  # the reload is done once applied; a deployment it allows comes after

    def set_activity(self, text: str) -> None:
        if text == self.activity.text:
            return
        self.activity = Activity(text, self.clock())
        self.on_activity(text)
        self.events.publish("status", {"activity": text})

    # --- start ----------------------------------------------------------------------------------

    def start(self) -> None:
        """Finish or undo what a killed agent left, load the feed in force and plan. A failure
        is kept in ``warnings`` (``id1 status``) and raised; the agent goes on serving."""
        try:
            self._start()
        except Exception as error:
            words = str(error) if isinstance(error, Id1Error) else f"unexpected {type(error).__name__}: {error}"
            self.warnings.append(f"the start-up did not finish ({words}); the agent serves the API, "
                                 "and finishes an interrupted deployment at the next poll")
            raise
        finally:
            self.set_activity("idle")

    def _start(self) -> None:
        for warning in self.warnings:
            logger.warning("%s", warning)
        self.settle_pending_audit()
        self.set_activity("finishing an interrupted deployment")
        result = self.engine.resume()
        if result is not None:
            self._after_deployment(result, "an interrupted deployment", actor=AGENT)
        self._settle_approval()
        drift = self.engine.drift()
        if drift:
            latest = self.store.revisions.latest()
            what = ", ".join(f"{ref} runs {disk or 'nothing'} (revision {latest.number} says {wanted})" for ref, (disk, wanted) in drift.items())
            self.warnings.append(f"the host does not run what the agent's state says: {what}; "
                                 f"redeploy with `id1 rollback --to` an earlier revision, or restore the matching state backup")
            self._decided(AGENT, "drift", what, "found at start: the release links differ from the running revision")
        try:
            enabled = self.engine.enable_running_units()
        except Id1Error as error:
            self.warnings.append(f"the running revision's units could not be enabled (they may not start after a reboot): {error}")
        else:
            if enabled:
                self._decided(AGENT, "units-enabled", ", ".join(enabled),
                              "found disabled at start: the running revision's units start at boot")
        try:
            self.catalog = self.feed.last_accepted(self.clock()) if self.feed is not None else None
        except FeedRejected as error:
            self.warnings.append(f"the kept feed is not usable: {error}")
        except Id1Error as error:
            self.warnings.append(f"the kept feed cannot be read: {error}")
        if self.catalog is not None:
            self.reconcile()
        self.write_metrics()
        self.set_activity("idle")

    # --- the feed and the plan ---------------------------------------------------------------

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
                         approved_target=approved_target)

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
        result = self.deploy(now_plan.next, target_hash=now_plan.target_hash, what=why)
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

    # --- deploying ----------------------------------------------------------------------------

    def deploy(self, manifest: Manifest, *, target_hash: str | None, what: str, actor: str = AGENT) -> DeployResult:
        self.set_activity(f"deploying: {what}")
        self.events.publish("deployment", {"state": "started", "what": what})
        serial = self.catalog.serial if self.catalog else None
        result = self.engine.deploy(manifest, feed_serial=serial, target_hash=target_hash)
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
        problem = None
        for ref in bake.capabilities:
            entry = entries.get(ref)
            if entry is not None and (found := self.engine.health.probe(entry.units, entry.health)) is not None:
                problem = f"{ref} {entry.version} turned unhealthy within the bake period: {found}"
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
        try:
            result = self.engine.rollback(bake.previous, catalog=self.catalog, reason=reason, actor=AGENT,
                                          enforce_severity=self.config.policy.enforce_severity)
        except RollbackRefused as refused:  # e.g. onto a version an enforced advisory affects
            self._decided(AGENT, "health-failed", reason, f"not rolled back automatically: {refused}", alert=DEPLOYMENT_FAILED)
            return reason
        self._after_rollback(result, AGENT, automatic=True)
        return reason

    # --- an admin's decisions -----------------------------------------------------------------

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
                                     now=self.clock(), instance_id=self.instance_id, blocked=self.store.blocked.refs())
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
            result = self.deploy(manifest, target_hash=None, what=what, actor=actor)
            self.plan = self.make_plan(windowed=False)
            return result
        return self.exclusive(work)

    # --- housekeeping ----------------------------------------------------------------------

    def retention(self) -> RetentionReport:
        report = apply_retention(self.store, self.layout, self.cache, keep=self.config.retention.revisions)
        if report.revisions or report.releases or report.artifacts:
            logger.info("retention: %s", report.describe())
        return report

    def backup(self) -> Path | None:
        path = self.store.backup()
        self.store.prune_backups(max_age=parse_duration(self.config.retention.backups), now=self.clock())
        return path

    def write_metrics(self) -> None:
        if not self.config.metrics.textfile:
            return
        try:
            write_textfile(Path(self.config.metrics.textfile), render_metrics(self.metrics_snapshot()))
        except Id1Error as error:
            logger.warning("%s", error)

    def metrics_snapshot(self) -> MetricsSnapshot:
        # Counters from the store's running totals: counted from the records still kept, they
        # would go down as old records move to history/ (and after a restore).
        totals = self.store.totals.get()
        recent = [d for d in self.store.deployments.recent(50) if d.finished]
        durations = [(d.completed_at - d.started_at).total_seconds() for d in reversed(recent) if d.completed_at and d.started_at]
        latest = self.store.revisions.latest()
        return MetricsSnapshot(
            instance_id=self.instance_id,
            agent_info=AgentInfo(__version__, self.planning_policy(windowed=False).channel),
            policy_compliance_ratio=self.compliance(),
            deployments_total={},
            deployment_duration_seconds=durations,
            rollbacks_total={},
            pending_approvals=1 if self.store.approvals.pending() else 0,
            exposed_advisories=sum(1 for p in (self.plan.problems if self.plan else ()) if p.code == "exposed"),
            last_successful_check_timestamp=self.last_success.timestamp() if self.last_success else None,
            last_deployment_timestamp=recent[0].completed_at.timestamp() if recent and recent[0].completed_at else None,
            current_revision=latest.number if latest else None,
            blocked_versions=len(self.store.blocked.refs()),
        ).with_totals(totals.deployments, totals.rollbacks)

    def compliance(self) -> float:
        """Share of capabilities running what the policy says they should (a forced fix not yet
        applied is the only way to be out of line: waiting and held changes are the policy)."""
        plan = self.plan
        if plan is None or plan.installed is None:
            return 1.0
        installed = plan.installed.capabilities()
        if not installed:
            return 1.0
        off = {change.capability for change in plan.changes if change.action == APPLY}
        return (len(installed) - len(off & set(installed))) / len(installed)

    # --- audit ------------------------------------------------------------------------------

    @contextmanager
    def _audited(self, actor: str, action: str, what: str = "", why: str = "") -> Iterator[_Entry]:
        """An admin's change and its audit entry, stored in one write (the block's store calls
        and the entry); then the entry goes to the audit log. The block may fill in the entry."""
        entry = _Entry(what, why)
        with self.store.batch():
            yield entry
            pending = self.store.pending_audit.add(actor=actor, action=action, what=entry.what, why=entry.why, details=entry.details)
        self._audit_pending(pending)

    def _audit_pending(self, pending: PendingAudit, *, late: bool = False) -> None:
        why = pending.why + (" (audited at start: the agent stopped before it wrote this entry)" if late else "")
        self._decided(pending.actor, pending.action, pending.what, why, details={**pending.details, "pending": pending.ref})
        self.store.pending_audit.remove(pending)

    def settle_pending_audit(self) -> None:
        """Audit the changes stored by a run that stopped before their entries reached the log."""
        pending = self.store.pending_audit.list()
        if not pending:
            return
        logged = {entry.details.get("pending") for entry in self.audit.entries(limit=500)}
        for entry in pending:
            if entry.ref in logged:
                self.store.pending_audit.remove(entry)
            else:
                self._audit_pending(entry, late=True)

    def _decided(self, actor: str, action: str, what: str, why: str, *, alert: str | None = None,
                 details: dict[str, Any] | None = None, audit_only: bool = False) -> None:
        entry = self.audit.record(actor=actor, action=action, what=what, why=why, details=details)
        self.events.publish("audit", {"seq": entry.seq, "action": action})
        if alert is not None and self.notifier is not None and not audit_only:
            self.notifier.notify(alert, f"{what}: {why}" if why else what, {"actor": actor, "action": action, **(details or {})})
        line = f"{action}: {what}" + (f" ({why})" if why else "")
        logger.info("%s", line)
        self.on_decision(line)


def _transfer_floor(config: AgentConfig) -> TransferFloor:
    return TransferFloor(config.download.min_rate, config.download.rate_window_s)


def _release_refs(manifest: dict[str, Any]) -> set[str]:
    return {f"{ref}@{entry.version}" for ref, entry in Manifest.model_validate(manifest).capabilities().items()}


def _feed_client(config: AgentConfig, store: Store) -> FeedClient | None:
    """The feed client, or None without ``feed.url`` (the daemon then serves the API and checks no feed).

    Its rollback floor is also the highest serial the store has seen (the last accepted feed's,
    and the one each kept revision was deployed from), so that losing ``<state_dir>/feed`` does
    not let an older, still unexpired feed back in.
    """
    if not config.feed.url:
        return None
    known = [store.feed_state.get().serial]
    try:
        known += [revision.feed_serial for revision in store.revisions.list()]
    except StoreError as error:  # a revision's manifest unreadable: keep the floor we have, start anyway
        logger.warning("the feed's rollback floor leaves out the kept revisions: %s", error)
    return FeedClient(config.feed.url, Path(config.state_dir) / "feed", trusted_keys_from_config(config.feed.trusted_keys),
                      max_bytes=config.feed.max_bytes, min_serial=max((s for s in known if s is not None), default=None),
                      floor=_transfer_floor(config))

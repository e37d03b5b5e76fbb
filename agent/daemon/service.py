"""The agent service: what the scheduler's jobs and the API's routes call, one part per module.

    service.py       AgentService: the store, feed, engine and worker; start-up; config reload
    reconcile.py     poll() and reconcile(): feed → plan → approvals → deploy what may go now
    deployments.py   deploy(), the bake watch, rollbacks, an admin's deployment now, enforce()
    admin.py         approvals, pins, policies, blocked versions: an admin's decisions
    housekeeping.py  retention, state backups, the metrics file
    fleet.py         the fleet group: the slot deployments hold, halted changes, the host's state
    recorder.py      each decision audited, published, logged (and alerted)

The parts are mixins of one ``AgentService``: they share its state (``store``, ``plan``,
``catalog``…), which ``AgentService.__init__`` sets up, and call each other through ``self``.

Every deployment, rollback and feed check runs on one worker at a time (``exclusive``): the
engine is never entered twice. Reads (status, history, audit) never wait for it. Every change
is audited, published on the event bus for clients, and the metrics file is rewritten.

Stopping (``stopping`` set on SIGTERM): the engine stops a deployment at its next step, and a
health check under way is cut short (``StopAwareHealth``); a deployment that ends unfinished
that way is ``deployment-interrupted``, not failed: its versions are not blocked, and the next
start deploys it again.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.alerts import WebhookNotifier
from agent.audit import AuditLog
from agent.config import AgentConfig
from agent.daemon.events import EventBus
from agent.deploy.artifacts import ArtifactCache
from agent.deploy.bluegreen import BlueGreen
from agent.deploy.engine import DeployResult, Engine
from agent.deploy.health import StopAwareHealth
from agent.deploy.releases import ReleaseLayout
from agent.deploy.proxy import NginxProxy
from agent.deploy.services import ServiceController
from agent.deploy.units import UnitFolder
from agent.errors import FeedRejected, Id1Error, StoreError
from agent.feed.catalog import Catalog
from agent.feed.client import FeedClient
from agent.feed.verify import trusted_keys_from_config
from agent.planning.model import Plan
from agent.store import Store
from agent.store.store import utc_now
from agent.transfer import TransferFloor
from agent.daemon.admin import AdminVerbs
from agent.daemon.deployments import BakeWatch, Deployments
from agent.daemon.fleet import MACHINE_ID, FleetPart
from agent.daemon.housekeeping import Housekeeping
from agent.daemon.reconcile import Reconciler
from agent.daemon.recorder import AGENT, DecisionRecorder

__all__ = ["AGENT", "Activity", "AgentService"]

logger = logging.getLogger("id1.agent")


@dataclass
class Activity:
    """What the agent is doing, in words (sd_notify STATUS, ``id1 status``)."""

    text: str = "starting"
    since: datetime = field(default_factory=utc_now)


class AgentService(DecisionRecorder, Reconciler, Deployments, AdminVerbs, Housekeeping, FleetPart):
    config_source = "the agent config (/etc/id1/agent.toml)"
    """Named when the API refuses to change what the config file decides (the daemon sets the real path)."""
    machine_id_path = MACHINE_ID
    """Read for this host's fleet id when ``fleet.id`` is empty."""

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
        try:
            self.open_fleet()
        except BaseException:
            self.close_files()
            raise
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
        health = StopAwareHealth(self.services, self.stopping)
        unit_dir = Path(self.config.services.unit_dir)
        bluegreen = BlueGreen(
            self.store, self.layout, UnitFolder(unit_dir, self.layout.state_dir), self.services, health,
            NginxProxy.from_config(self.config.switch), self.config.switch, wait=self.stopping.wait,
        )
        return Engine(
            store=self.store, layout=self.layout, artifacts=self.cache, services=self.services,
            health=health, unit_dir=unit_dir,
            instance_id=self.instance_id, resolve_url=self.feed.resolve_url if self.feed else (lambda url: url), clock=self.clock,
            should_stop=self.stopping.is_set, fleet=self.fleet_slot(), bluegreen=bluegreen,
            on_step=_failpoint(os.environ.get(FAILPOINT_ENV)),
        )

    def close(self) -> None:
        self.coordinator.close()
        self.close_files()

    def close_files(self) -> None:
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
        if config.fleet != old.fleet:
            self.coordinator.close()  # a slot it holds is taken over or freed by the new one
            self.open_fleet()
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
        self.publish_state()

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
        self.settle_fleet_slot()
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
        self.publish_state()


def _transfer_floor(config: AgentConfig) -> TransferFloor:
    return TransferFloor(config.download.min_rate, config.download.rate_window_s)


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


FAILPOINT_ENV = "ID1_FAILPOINT_KILL_AT"
"""A deployment step (``draining``, or ``switching core/api`` inside one) at which the agent
kills itself with SIGKILL: how the crash tests cut a real daemon off at an exact step (as etcd's
gofail does). Unset in production, where this is a no-op."""


def _failpoint(step: str | None) -> Callable[[str], None]:
    if not step:
        return lambda state: None

    def kill_at(state: str) -> None:
        if state == step:
            logger.warning("%s=%s: the agent kills itself here (a crash test)", FAILPOINT_ENV, step)
            os.kill(os.getpid(), signal.SIGKILL)

    return kill_at

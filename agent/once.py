"""``id1 agent run --once``: one pass of the agent — check, plan, deploy per policy — then exit.

    0  the host is steady (nothing to do, or the deployment succeeded; changes awaiting
       approval or held by the policy are reported, not applied)
    1  a deployment failed and was rolled back (or an interrupted one had to be undone)
    3  the feed was rejected (signature, expiry, format, replayed serial)

A run that finds an interrupted deployment first finishes or undoes it. Outside the maintenance
window only forced security fixes are applied. One line per change goes to stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from agent.config import AgentConfig, SuitePolicy
from agent.deploy.artifacts import ArtifactCache
from agent.deploy.engine import Engine
from agent.deploy.health import HealthChecker
from agent.deploy.releases import ReleaseLayout
from agent.deploy.retention import apply_retention
from agent.deploy.services import ServiceController
from agent.errors import FeedRejected, UsageError
from agent.feed.client import FeedClient
from agent.feed.verify import trusted_keys_from_config
from agent.planning import APPLY, Manifest, make_plan
from agent.window import in_window
from agent.store import DeploymentStatus, Store

EXIT_STEADY, EXIT_ROLLED_BACK, EXIT_FEED_REJECTED = 0, 1, 3


@dataclass
class Once:
    config: AgentConfig
    instance_id: str
    now: Callable[[], datetime]
    out: TextIO | None = None
    """Where the lines go; None: ``sys.stderr`` as it is when a line is written (not at import)."""

    def run(self) -> int:
        config = self.config
        if not config.feed.url:
            raise UsageError("feed.url is not set in the config: the agent has no feed to check")
        state_dir = Path(config.state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        services = ServiceController.from_config(config.services)
        with Store.open(state_dir) as store, FeedClient(
            config.feed.url, state_dir / "feed", trusted_keys_from_config(config.feed.trusted_keys),
            max_bytes=config.feed.max_bytes,
        ) as feed, ArtifactCache(state_dir / "cache") as cache:
            for warning in store.startup_warnings:
                self.say(warning)
            engine = Engine(
                store=store, layout=ReleaseLayout(state_dir), artifacts=cache, services=services,
                health=HealthChecker(services), unit_dir=Path(config.services.unit_dir),
                instance_id=self.instance_id, resolve_url=feed.resolve_url,
            )
            status = EXIT_STEADY
            resumed = engine.resume()
            if resumed is not None:
                self.say(f"finished an interrupted deployment {resumed.deployment_id}: {resumed.status.value}"
                         + (f" ({resumed.error})" if resumed.error else ""))
                status = EXIT_STEADY if resumed.status == DeploymentStatus.SUCCEEDED else EXIT_ROLLED_BACK
            try:
                catalog = feed.check(self.now()).catalog
            except FeedRejected as error:
                self.say(f"feed rejected: {error}")
                return EXIT_FEED_REJECTED
            latest = store.revisions.latest()
            installed = Manifest.model_validate(latest.manifest) if latest else None
            now = self.now()
            policy = config.policy
            if policy.maintenance_window and not in_window(policy.maintenance_window, policy.timezone, now):
                # Outside the window only forced fixes apply: plan as if every suite were frozen.
                policy = policy.model_copy(update={"channel": "frozen", "suites": {s: SuitePolicy(channel="frozen") for s in policy.suites}})
            plan = make_plan(catalog, policy, config.pins, installed, now=now, instance_id=self.instance_id,
                             blocked=store.blocked.refs())
            for problem in plan.problems:
                self.say(f"problem ({problem.code}): {problem.detail}")
            applies = [change for change in plan.changes if change.action == APPLY]
            for change in plan.changes:
                if change.action != APPLY:
                    self.say(f"{_describe(change)}: {'awaiting approval' if change.action == 'await-approval' else 'held by policy'}")
            if not applies or plan.next is None:
                return status
            result = engine.deploy(plan.next, feed_serial=catalog.serial, target_hash=plan.target_hash)
            outcome = {DeploymentStatus.SUCCEEDED: "applied", DeploymentStatus.ROLLED_BACK: "rolled back",
                       DeploymentStatus.FAILED: "not applied"}[result.status]
            for change in applies:
                self.say(f"{_describe(change)}: {outcome}" + (f" ({result.error})" if result.error else ""))
            if result.status == DeploymentStatus.SUCCEEDED:
                self.say(f"revision {result.revision} is running")
                report = apply_retention(store, engine.layout, cache, keep=config.retention.revisions)
                if report.revisions or report.releases or report.artifacts:
                    self.say(f"retention: {report.describe()}")
                return status
            return EXIT_ROLLED_BACK

    def say(self, line: str) -> None:
        print(f"id1: {line}", file=self.out or sys.stderr, flush=True)


def _describe(change) -> str:
    return f"{change.capability} {change.from_version or '(none)'} → {change.to_version or '(removed)'} [{change.source}]"

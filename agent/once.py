"""``id1 agent run --once``: one pass of the agent — check, plan, deploy per policy — then exit.

    0  the host is steady (nothing to do, or the deployment succeeded; changes awaiting
       approval or held by the policy are reported, not applied)
    1  a deployment failed and was rolled back (or an interrupted one had to be undone)
    3  the feed was rejected (signature, expiry, format, replayed serial)

It is one pass of the daemon's own ``AgentService``, not a second decision path: the same start
(an interrupted deployment finished or undone first, the running units checked), the same plan
inputs (pins and policies set through the API, blocked versions, the maintenance window), the
same audit entries and alerts. Every decision it takes is one line on stderr, as the daemon
logs it; then what still waits (approval, policy) and the plan's problems.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

from agent.config import AgentConfig
from agent.daemon.service import AgentService
from agent.errors import FeedRejected, UsageError
from agent.planning import APPLY, AWAIT_APPROVAL
from agent.store import DeploymentStatus

EXIT_STEADY, EXIT_ROLLED_BACK, EXIT_FEED_REJECTED = 0, 1, 3


@dataclass
class Once:
    config: AgentConfig
    instance_id: str
    now: Callable[[], datetime]
    out: TextIO | None = None
    """Where the lines go; None: ``sys.stderr`` as it is when a line is written (not at import)."""

    def run(self) -> int:
        if not self.config.feed.url:
            raise UsageError("feed.url is not set in the config: the agent has no feed to check")
        service = AgentService(self.config, self.instance_id, clock=self.now)
        service.on_decision = self.say
        try:
            for warning in service.warnings:
                self.say(warning)
            service.start()
            try:
                service.poll()
            except FeedRejected:  # said already, as the decision it is (feed-rejected)
                return EXIT_FEED_REJECTED
            for change in service.plan.changes if service.plan else ():
                if change.action != APPLY:
                    waits = "awaiting approval" if change.action == AWAIT_APPROVAL else "held by policy"
                    self.say(f"{change.capability} {change.from_version or '(none)'} → {change.to_version or '(removed)'} "
                             f"[{change.source}]: {waits}")
            for problem in service.plan.problems if service.plan else ():
                self.say(f"problem ({problem.code}): {problem.detail}")
            failed = [result for result in service.outcomes if result.status != DeploymentStatus.SUCCEEDED]
            return EXIT_ROLLED_BACK if failed else EXIT_STEADY
        finally:
            service.close()

    def say(self, line: str) -> None:
        print(f"id1: {line}", file=self.out or sys.stderr, flush=True)


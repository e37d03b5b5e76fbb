"""Housekeeping: retention of revisions and releases, state backups, the metrics file."""

from __future__ import annotations

import logging
from pathlib import Path

from agent import __version__
from agent.config import parse_duration
from agent.deploy.retention import RetentionReport, apply_retention
from agent.errors import Id1Error
from agent.metrics import AgentInfo, MetricsSnapshot, render_metrics, write_textfile
from agent.planning import APPLY

logger = logging.getLogger("id1.agent")


class Housekeeping:
    """Part of ``AgentService`` (agent.daemon.service): retention, backups, metrics."""

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
            fleet_halted_changes=(sum(1 for p in (self.plan.problems if self.plan else ()) if p.code == "fleet-halted")
                                  if self.config.fleet.backend == "etcd" else None),
            live_colours={ref: record.live for ref, record in self.store.colours.all().items()},
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


"""The daemon's jobs (APScheduler 3, AsyncIOScheduler), built from the config at start and on reload.

    poll          every ``feed.poll_interval`` with jitter, first one at start
    window-<n>    when each maintenance window opens: deploy what was approved (and auto-updates)
    health-watch  every ``health.watch_interval`` while a deployment bakes
    backup        every ``retention.backup_interval``; snapshots older than ``retention.backups`` go
    retention     every 6 hours (and after each deployment)
    metrics       every minute (and after each change)

Each job hands its work to the service's single worker, so jobs never overlap a deployment;
``coalesce`` and ``max_instances=1`` keep a slow job from piling up runs behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from agent.config import AgentConfig, parse_duration
from agent.errors import Id1Error
from agent.window import WINDOW_PATTERN

logger = logging.getLogger("id1.scheduler")
JOB_DEFAULTS = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}


def build_scheduler(config: AgentConfig, run: Callable[[str, Callable[[], object]], Awaitable[object]], service) -> AsyncIOScheduler:
    """A scheduler (not started) whose jobs call ``run(name, work)`` with the service's methods."""
    scheduler = AsyncIOScheduler(timezone=timezone.utc, job_defaults=JOB_DEFAULTS)
    scheduler.add_listener(_log_error, EVENT_JOB_ERROR)
    add_jobs(scheduler, config, run, service)
    return scheduler


def add_jobs(scheduler: AsyncIOScheduler, config: AgentConfig, run, service) -> None:
    """(Re)create every job from ``config``; existing jobs with the same ids are replaced."""
    for job in scheduler.get_jobs():
        job.remove()

    def job(name: str, work: Callable[[], object]) -> Callable[[], Awaitable[None]]:
        async def execute() -> None:
            try:
                await run(name, work)
            except Id1Error as error:  # said once in the log; the next run tries again
                logger.error("%s: %s", name, error)
        execute.__name__ = name
        return execute

    interval = parse_duration(config.feed.poll_interval)
    if config.feed.url:
        scheduler.add_job(job("poll", service.poll), IntervalTrigger(seconds=interval.total_seconds(),
                          jitter=int(min(interval.total_seconds() / 10, 300))), id="poll", name="feed poll",
                          next_run_time=datetime.now(timezone.utc))
    for index, window in enumerate(config.policy.maintenance_window):
        scheduler.add_job(job(f"window-{index}", service.reconcile), window_trigger(window, config.policy.timezone),
                          id=f"window-{index}", name=f"maintenance window {window}")
    watch = parse_duration(config.health.watch_interval).total_seconds()
    scheduler.add_job(job("health-watch", service.watch_health), IntervalTrigger(seconds=watch), id="health-watch", name="health watch")
    backup = parse_duration(config.retention.backup_interval).total_seconds()
    scheduler.add_job(job("backup", service.backup), IntervalTrigger(seconds=backup), id="backup", name="state backup")
    scheduler.add_job(job("retention", service.retention), IntervalTrigger(hours=6), id="retention", name="retention")
    if config.metrics.textfile:
        scheduler.add_job(job("metrics", service.write_metrics), IntervalTrigger(minutes=1), id="metrics", name="metrics")


def window_trigger(window: str, timezone_name: str) -> CronTrigger:
    """A cron trigger firing when ``window`` opens (``"Sat 02:00-05:00"`` → Saturdays at 02:00)."""
    match = WINDOW_PATTERN.match(window.strip())
    hour, minute = match["start"].split(":")
    days = (match["days"] or "mon-sun").lower()
    return CronTrigger(day_of_week=days, hour=int(hour), minute=int(minute), timezone=timezone_name)


def next_poll(scheduler: AsyncIOScheduler) -> datetime | None:
    job = scheduler.get_job("poll")
    return job.next_run_time if job is not None else None


def _log_error(event: JobExecutionEvent) -> None:
    logger.error("job %s failed: %r", event.job_id, event.exception, exc_info=event.exception)

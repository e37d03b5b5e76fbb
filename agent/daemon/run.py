"""``id1 agent run``: the daemon — API on the Unix socket, scheduled jobs, one deployment worker.

    start     open the store (a second agent is refused), serve the API, start the jobs, tell
              systemd READY=1; then, as the worker's first job, finish or undo an interrupted
              deployment and reconcile (``id1 status`` shows it meanwhile). A start-up that
              fails or hangs there never keeps the API down: an admin can always look and act
    SIGTERM   stop taking work; a deployment that has not switched yet stops at its next step,
              one already switching is finished, except that its health check is cut short
              (STOP_GRACE_S) and the unverified change undone, to be tried again at the next
              start; queued work is dropped; remove the socket; exit 0 (also during start-up)
    SIGHUP    reload the config: a bad one is refused (logged, audited) and the old one kept
    watchdog  WATCHDOG=1 at half of systemd's WatchdogSec, from the event loop, so a hung loop
              gets the daemon restarted

All blocking work (feed, deployments, store writes of decisions) runs on one worker thread; the
event loop only serves the API and the scheduler.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from agent.api.app import create_app
from agent.api.auth import install_roles
from agent.api.server import UnixApiServer
from agent.config import AgentConfig, load_config
from agent.daemon.events import EventBus
from agent.daemon.notify import SystemdNotifier
from agent.daemon.scheduler import add_jobs, build_scheduler, next_poll
from agent.daemon.service import AGENT, AgentService
from agent.errors import Id1Error

logger = logging.getLogger("id1.agent")
RESTART_KEYS = ("state_dir", "socket", "instance_id")
SKIPPED_WHILE_BUSY = ("health-watch", "metrics")
"""Frequent light jobs: while the worker is busy they skip a turn instead of queueing behind it."""
RELOAD_REFUSED = "config reload refused"


class Daemon:
    def __init__(self, config_path: Path, config: AgentConfig, instance_id: str, *, notifier: SystemdNotifier | None = None):
        self.config_path = config_path
        self.config = config
        self.instance_id = instance_id
        self.notifier = notifier or SystemdNotifier.from_environment()
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="id1-worker")
        self.stop_requested = asyncio.Event()
        self.service: AgentService | None = None
        self.scheduler = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        # Signals are ours from the first moment: a SIGTERM while an interrupted deployment is
        # being finished at start must stop it safely too, not kill the process mid-step.
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        watchdog = asyncio.ensure_future(self._watchdog())  # also while start-up finishes a deployment
        try:
            self.service = service = await loop.run_in_executor(self.worker, self._open_service)
        except BaseException:
            watchdog.cancel()
            self._release_signals(loop)
            await loop.run_in_executor(None, self.worker.shutdown, True)
            raise
        try:
            service.on_activity = self._report_activity
            service.config_source = str(self.config_path)
            if self.stop_requested.is_set():
                service.stopping.set()
            else:
                await self._serve(service)
        finally:
            # The current step ends first; work queued behind it (a reconcile, a poll) is dropped.
            await loop.run_in_executor(None, functools.partial(self.worker.shutdown, wait=True, cancel_futures=True))
            watchdog.cancel()
            self._release_signals(loop)
            service.close()
        logger.info("id1 agent stopped")
        return 0

    async def _serve(self, service: AgentService) -> None:
        self.app = create_app(service, self.config.roles)
        self.server = UnixApiServer(self.app, Path(self.config.socket))
        await self.server.start()
        try:
            scheduler = build_scheduler(self.config, self._run_job, service)
            scheduler.start()
            self.scheduler = scheduler
            service.next_check = next_poll(scheduler)
            service.set_activity("starting: finishing what the last run left, then planning")
            service.later(service.start)  # the worker's first job: polls and API actions queue behind it
            self.notifier.ready()
            self._report_activity(service.activity.text)
            logger.info("id1 agent %s serving on %s", self.instance_id, self.config.socket)
            await self.stop_requested.wait()
            self.notifier.stopping()
            self.notifier.status("stopping: finishing or safely undoing the current step")
            logger.info("stopping: finishing or safely undoing the current step")
        finally:
            if self.scheduler is not None:
                self.scheduler.shutdown(wait=False)
            service.events.close()  # open event streams end, so the API stops at once
            await self.server.stop()

    def _request_stop(self) -> None:
        if self.service is not None:
            self.service.stopping.set()  # at once: a deployment checks it between its steps
        self.stop_requested.set()

    def _request_reload(self) -> None:
        if self.stop_requested.is_set() or self.scheduler is None:
            logger.warning("SIGHUP ignored: the agent is %s", "stopping" if self.stop_requested.is_set() else "starting")
            return
        asyncio.ensure_future(self.reload())

    @staticmethod
    def _release_signals(loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(signum)

    def _open_service(self) -> AgentService:
        return AgentService(self.config, self.instance_id, events=EventBus(), submit=self.worker.submit)

    async def _run_job(self, name: str, work: Callable[[], object]) -> object:
        service = self.service
        if name in SKIPPED_WHILE_BUSY and service.busy:
            return None  # a deployment or a poll holds the worker: this job's next turn comes soon
        try:
            return await asyncio.wrap_future(self.worker.submit(service.locked, work))
        finally:
            service.next_check = next_poll(self.scheduler)

    async def _watchdog(self) -> None:
        interval = self.notifier.watchdog_interval()
        if interval is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    def _report_activity(self, text: str) -> None:
        self.notifier.status(text)

    async def reload(self) -> bool:
        """SIGHUP: take the new config if it is valid; otherwise keep running on the old one."""
        self.notifier.reloading()
        service = self.service
        try:
            new = load_config(self.config_path)
            unchangeable = [key for key in RESTART_KEYS if getattr(new, key) != getattr(self.config, key)]
            if unchangeable:
                raise Id1Error(f"{', '.join(unchangeable)} changed: restart the agent to apply that (nothing was reloaded)")
        except Id1Error as error:
            words = " ".join(str(error).split())  # a ConfigError lists its issues on several lines
            logger.error("%s, the old config stays in force: %s", RELOAD_REFUSED, words)
            # The warning first, then the audit entry: whoever sees the entry sees the warning.
            service.warnings[:] = [w for w in service.warnings if not w.startswith(RELOAD_REFUSED)]
            service.warnings.append(f"{RELOAD_REFUSED} (the previous config stays in force): {words}")
            service._decided(AGENT, "config-rejected", str(self.config_path), words)
            self.notifier.ready()
            return False
        service.warnings[:] = [w for w in service.warnings if not w.startswith(RELOAD_REFUSED)]
        await asyncio.wrap_future(self.worker.submit(service.locked, lambda: service.apply_config(new)))
        self.config = new
        install_roles(self.app, new.roles)
        add_jobs(self.scheduler, new, self._run_job, service)
        service.next_check = next_poll(self.scheduler)
        service._decided(AGENT, "config-reloaded", str(self.config_path), "SIGHUP")
        self.notifier.ready()
        return True


def run_daemon(config_path: Path, instance_id_for: Callable[[AgentConfig], str]) -> int:
    config = load_config(config_path)
    if not config.feed.url:
        logger.warning("feed.url is not set: the agent serves the API but has no feed to check")
    return asyncio.run(Daemon(config_path, config, instance_id_for(config)).run())

"""The deployment state machine: a ``next`` manifest → running services, or the old ones back.

    checking → downloading → staging → installing-units → switching → restarting → verifying
        → committed                                        (a new revision)
    any failure after units or links changed → rolling-back → rolled-back (the failed versions
        blocked) ; a failure before that → failed (nothing on the host changed)

Every step is recorded in the store before it is taken, so an agent killed anywhere finds the
deployment in ``store.deployments.active()`` on its next start; ``resume()`` then retries it from
the start when nothing had been switched yet (every step up to staging is idempotent: artifacts
are cached by digest, release folders appear whole or not at all), and otherwise undoes it. A
deployment that keeps re-entering the same step is stopped by a loop guard and undone.

Only capabilities whose version or artifact changes are touched and restarted, in dependency
order (a capability after those it requires). A capability owns exactly the units its release
lists (agent.deploy.units): they are checked at staging, installed, and enabled before the
restart, so they come back after a reboot; a unit a new version no longer lists, and every unit
of a removed capability, is stopped, disabled and its file removed at the switch. An undo does
the same in reverse: units only the failed version had go, the previous version's come back.

``rollback()`` goes back to a kept revision: checked first (rollback.py), recorded as a
``RollbackOperation``, then deployed like any target; the versions it leaves are blocked for
automatic updates. A rollback interrupted by a crash is settled by ``resume()`` from what the
host runs afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent.deploy.artifacts import ArtifactCache
from agent.deploy.extract import extract_archive
from agent.deploy.health import HealthChecker
from agent.deploy.releases import ReleaseLayout
from agent.deploy.rollback import RollbackCheck, check_rollback
from agent.deploy.services import ServiceController
from agent.deploy.units import UnitFolder, release_unit_files
from agent.errors import Id1Error
from agent.feed.catalog import Catalog
from agent.feed.units import unit_file_name
from agent.planning.manifest import DeployedCapability, Manifest
from agent.store import BlockSource, Deployment, DeploymentStatus, RollbackOperation, RollbackStatus, Store
from agent.store.store import utc_now

CHECKING, DOWNLOADING, STAGING, INSTALLING_UNITS = "checking", "downloading", "staging", "installing-units"
SWITCHING, RESTARTING, VERIFYING, COMMITTED = "switching", "restarting", "verifying", "committed"
ROLLING_BACK, ROLLED_BACK, FAILED = "rolling-back", "rolled-back", "failed"
STEPS = (CHECKING, DOWNLOADING, STAGING, INSTALLING_UNITS, SWITCHING, RESTARTING, VERIFYING)
# Up to here nothing a running service sees has changed: a killed deployment is simply retried.
RETRYABLE = (CHECKING, DOWNLOADING, STAGING)
# A stop request (SIGTERM) is honoured on entering these: before anything running has switched.
STOPPABLE = (DOWNLOADING, STAGING, INSTALLING_UNITS, SWITCHING)
LOOP_GUARD = 3
UNPACK_FACTOR = 64  # an artifact may unpack to this many times its size (plus a floor): bombs stop
UNPACK_FLOOR = 64 * 1024**2


@dataclass(frozen=True)
class DeployResult:
    deployment_id: str
    status: DeploymentStatus
    revision: int | None
    error: str | None = None
    changed: tuple[str, ...] = ()


class AgentStopping(Id1Error):
    """The deployment stopped at a step boundary because the agent is shutting down."""


class RollbackRefused(Id1Error):
    """The rollback check failed (or needs ``force``): nothing was changed."""

    def __init__(self, message: str, check: RollbackCheck):
        super().__init__(message)
        self.check = check


@dataclass(frozen=True)
class RollbackResult:
    operation: RollbackOperation
    deployment: DeployResult


@dataclass
class Engine:
    store: Store
    layout: ReleaseLayout
    artifacts: ArtifactCache
    services: ServiceController
    health: HealthChecker
    unit_dir: Path
    instance_id: str
    resolve_url: Callable[[str], str] = lambda url: url
    clock: Callable[[], datetime] = utc_now
    on_step: Callable[[str], None] = lambda state: None
    """Called after a step is recorded and before it is taken (tests kill the agent here)."""
    should_stop: Callable[[], bool] = lambda: False
    """True once the agent is asked to stop (SIGTERM): a deployment that has not switched yet
    stops (undone if units were installed); one already switching is finished."""

    def __post_init__(self) -> None:
        self.units = UnitFolder(self.unit_dir, self.layout.state_dir)

    # --- entry points -------------------------------------------------------------------------

    def deploy(self, next_manifest: Manifest, *, feed_serial: int | None, target_hash: str | None = None) -> DeployResult:
        """Deploy ``next_manifest``; on any failure put every changed capability back."""
        if self.store.deployments.active() is not None:
            raise Id1Error("a deployment is already in progress; resume() it first")
        previous = self.store.revisions.latest()
        deployment = self.store.deployments.create(
            self.instance_id,
            next_manifest.to_json(),
            state=CHECKING,
            target_hash=target_hash,
            from_revision=previous.number if previous else None,
        )
        return self._run(deployment, feed_serial)

    def resume(self, *, feed_serial: int | None = None) -> DeployResult | None:
        """Finish or undo the deployment a killed agent left behind; None when there is none."""
        deployment = self.store.deployments.active()
        result = None
        if deployment is not None:
            entered = sum(1 for entry in deployment.journal if entry.state == deployment.state)
            if deployment.state in RETRYABLE and entered < LOOP_GUARD:
                result = self._run(deployment, feed_serial, resumed=True)
            else:
                reason = (
                    f"the agent stopped during {deployment.state}"
                    if entered < LOOP_GUARD
                    else f"loop guard: {deployment.state} was entered {entered} times"
                )
                result = self._undo(deployment, reason)
        self._settle_interrupted_rollbacks()
        return result

    def drift(self) -> dict[str, tuple[str | None, str]]:
        """Capabilities whose ``current`` link is not what the running revision says (a state
        backup restored over a newer host, a link changed by hand): ref → (on disk, in the revision)."""
        latest = self.store.revisions.latest()
        if latest is None:
            return {}
        found = {}
        for ref, entry in sorted(Manifest.model_validate(latest.manifest).capabilities().items()):
            on_disk = self.layout.current_version(ref)
            if on_disk != entry.version:
                found[ref] = (on_disk, entry.version)
        return found

    def enable_running_units(self) -> list[str]:
        """Enable the running revision's units found ``disabled`` (deployed by an agent from before
        units were enabled, or disabled by hand): without it they stay down after a reboot. A
        masked unit is the admin's explicit choice and is left alone. The units enabled now."""
        latest = self.store.revisions.latest()
        if latest is None:
            return []
        units = [unit for entry in Manifest.model_validate(latest.manifest).capabilities().values() for unit in entry.units]
        disabled = [unit for unit in units if self.services.is_enabled(unit) == "disabled"]
        self.services.enable(disabled)
        return disabled

    def check_rollback(self, to_revision: int, *, catalog: Catalog | None, enforce_severity: str = "critical") -> RollbackCheck:
        """What rolling back to ``to_revision`` would change and what stands in its way (no side effects)."""
        self.store.revisions.require(to_revision)
        target = self._manifest_of(to_revision)
        running = self.store.revisions.latest()
        return check_rollback(
            target, Manifest.model_validate(running.manifest) if running else None,
            to_revision=to_revision, from_revision=running.number if running else None,
            has_release=self._has_release, catalog=catalog, enforce_severity=enforce_severity,
        )

    def rollback(
        self, to_revision: int, *, catalog: Catalog | None, reason: str, actor: str,
        force: bool = False, enforce_severity: str = "critical",
    ) -> RollbackResult:
        """Deploy kept revision ``to_revision`` again; RollbackRefused when the check fails.

        On success the versions left behind are blocked for automatic updates; a failed
        rollback is undone like any deployment, leaving the running revision in place.
        """
        if self.store.deployments.active() is not None:
            raise Id1Error("a deployment is in progress; roll back once it has finished")
        check = self.check_rollback(to_revision, catalog=catalog, enforce_severity=enforce_severity)
        refusal = check.refusal(force=force)
        if refusal:
            raise RollbackRefused(refusal, check)
        if check.advisories:
            reason = f"{reason} (forced past {', '.join(check.advisories)})"
        operation = self.store.rollbacks.add(
            instance_id=self.instance_id, from_version=check.from_platform, to_version=check.to_platform,
            from_revision=check.from_revision, to_revision=to_revision, reason=reason, actor=actor,
            status=RollbackStatus.IN_PROGRESS,
        )
        revision = self.store.revisions.get(to_revision)
        target = Manifest.model_validate(revision.manifest)
        result = self.deploy(target, feed_serial=revision.feed_serial, target_hash=target.content_hash())
        return RollbackResult(self._settle(operation, check, result.status == DeploymentStatus.SUCCEEDED, result.error), result)

    # --- the steps ----------------------------------------------------------------------------

    def _run(self, deployment: Deployment, feed_serial: int | None, *, resumed: bool = False) -> DeployResult:
        target = Manifest.model_validate(deployment.manifest)
        before = self._manifest_of(deployment.from_revision)
        changed, removed = _differences(before, target)
        wanted = target.capabilities()
        had = before.capabilities() if before else {}
        try:
            deployment = self._step(deployment, CHECKING, "resumed after a restart" if resumed else f"{len(changed)} to change, {len(removed)} to remove",
                                    status=DeploymentStatus.IN_PROGRESS, started_at=deployment.started_at or self.clock())
            deployment = self._step(deployment, DOWNLOADING)
            # A release folder already unpacked (a rollback, a retried deployment) needs no download.
            archives = {ref: self.artifacts.fetch(self.resolve_url(wanted[ref].artifact.url), wanted[ref].artifact.sha256, wanted[ref].artifact.size)
                        for ref in changed if not self.layout.release_dir(ref, wanted[ref].version).is_dir()}
            deployment = self._step(deployment, STAGING)
            unit_texts = {}
            for ref in changed:
                self._stage(ref, wanted[ref], archives.get(ref))
                # Refused here, before anything on the host changes: units the release does not
                # own, and files in the unit folder that are somebody else's.
                unit_texts[ref] = release_unit_files(self.layout.release_dir(ref, wanted[ref].version), ref, wanted[ref].version, wanted[ref].units)
                self.units.check_free(ref, unit_texts[ref], owned=_unit_files(had.get(ref)))
        except Id1Error as error:  # nothing running has changed yet
            return self._finish(deployment, DeploymentStatus.FAILED, FAILED, str(error), changed)
        try:
            deployment = self._step(deployment, INSTALLING_UNITS)
            written = []
            for ref in changed:
                written += self.units.install(ref, unit_texts[ref], current=self.layout.current_link(ref), owned=_unit_files(had.get(ref)))
            if written:
                self.units.sync()
                self.services.daemon_reload()
            deployment = self._step(deployment, SWITCHING)
            retired = False
            for ref in [*removed, *changed]:
                if ref in had:
                    retired |= self._retire_units(ref, had[ref].units, keep=wanted.get(ref), owned=had[ref])
            if retired:
                self.services.daemon_reload()
            for ref in removed:
                self.layout.remove_current(ref)
            for ref in changed:
                self.layout.switch_current(ref, wanted[ref].version)
            deployment = self._step(deployment, RESTARTING)
            ordered = _dependency_order(changed, wanted)
            self._enable_and_restart(ordered, wanted)
            deployment = self._step(deployment, VERIFYING)
            for ref in ordered:
                result = self.health.wait_healthy(wanted[ref].units, wanted[ref].health)
                if not result.healthy:
                    raise Id1Error(f"{ref} {wanted[ref].version} is not healthy: {result.detail}")
        except Id1Error as error:
            return self._undo(deployment, str(error), failed=[(ref, wanted[ref].version) for ref in changed])
        with self.store.batch():
            revision = self.store.revisions.add(target.to_json(), feed_serial, deployment.id)
            deployment = self.store.deployments.save(deployment.record_step(
                COMMITTED, self.clock(), f"revision {revision.number}",
                status=DeploymentStatus.SUCCEEDED, completed_at=self.clock()))
        return DeployResult(deployment.id, deployment.status, revision.number, None, tuple(changed))

    def _undo(self, deployment: Deployment, reason: str, failed: list[tuple[str, str]] | None = None) -> DeployResult:
        """Put every capability the deployment touched back as the previous revision had it."""
        target = Manifest.model_validate(deployment.manifest)
        before = self._manifest_of(deployment.from_revision)
        changed, removed = _differences(before, target)
        if failed is None:
            wanted = target.capabilities()
            failed = [(ref, wanted[ref].version) for ref in changed]
        deployment = self._step(deployment, ROLLING_BACK, reason)
        problems = []
        had = before.capabilities() if before else {}
        for ref in [*changed, *removed]:
            try:
                self._restore(ref, had.get(ref), target.capabilities().get(ref))
            except Id1Error as error:
                problems.append(str(error))
        for ref in _dependency_order([r for r in [*changed, *removed] if r in had], had):
            result = self.health.wait_healthy(had[ref].units, had[ref].health)
            if not result.healthy:
                problems.append(f"{ref} {had[ref].version} is not healthy after the rollback: {result.detail}")
        for ref, version in failed:
            self.store.blocked.add(f"{ref}@{version}", f"deployment {deployment.id} failed: {reason}", BlockSource.FAILED_DEPLOYMENT)
        error = reason + (f"; rollback problems: {'; '.join(problems)}" if problems else "")
        return self._finish(deployment, DeploymentStatus.ROLLED_BACK, ROLLED_BACK, error, changed)

    def _settle(self, operation: RollbackOperation, check: RollbackCheck | None, succeeded: bool, error: str | None) -> RollbackOperation:
        status = RollbackStatus.SUCCEEDED if succeeded else RollbackStatus.FAILED
        reason = operation.reason if succeeded else f"{operation.reason}; failed: {error}"
        with self.store.batch():  # the blocks and the outcome are one decision: one write
            if succeeded and check is not None:
                for ref in check.rolled_back_from():
                    self.store.blocked.add(ref, f"rolled back from by {operation.actor} ({operation.id}): {operation.reason}", BlockSource.ROLLBACK)
            return self.store.rollbacks.save(operation.model_copy(update={"status": status, "completed_at": self.clock(), "reason": reason}))

    def _settle_interrupted_rollbacks(self) -> None:
        """A rollback the agent died in succeeded if the host now runs its revision's manifest."""
        running = self.store.revisions.latest()
        for operation in self.store.rollbacks.list():
            if operation.finished:
                continue
            wanted = self.store.revisions.get(operation.to_revision)
            succeeded = (running is not None and wanted is not None and running.number > operation.to_revision
                         and running.manifest_sha256 == wanted.manifest_sha256 and running.created_at >= operation.created_at)
            check = None
            if succeeded and operation.from_revision is not None and self.store.revisions.get(operation.from_revision):
                before = self._manifest_of(operation.from_revision)
                check = check_rollback(Manifest.model_validate(wanted.manifest), before, to_revision=operation.to_revision,
                                       from_revision=operation.from_revision, has_release=lambda ref, entry: True,
                                       catalog=None, enforce_severity="critical")
            self._settle(operation, check, succeeded, None if succeeded else "the agent stopped before the rollback finished; the host was left on the revision it ran before")

    def _has_release(self, ref: str, entry: DeployedCapability) -> bool:
        return self.layout.release_dir(ref, entry.version).is_dir() or self.artifacts.has(entry.artifact.sha256)

    def _restore(self, ref: str, previous: DeployedCapability | None, attempted: DeployedCapability | None) -> None:
        reload = False
        if attempted is not None:  # units only the failed version has go; shared ones are restarted below
            reload = self._retire_units(ref, attempted.units, keep=previous, owned=previous)
        if previous is None:  # new in the failed deployment: take it away again
            if reload:
                self.services.daemon_reload()
            self.layout.remove_current(ref)
            return
        release = self.layout.release_dir(ref, previous.version)
        if not release.is_dir():
            raise Id1Error(f"cannot roll {ref} back: its release folder {release} is gone")
        # Not strict: a release deployed by an older agent may carry files it does not list.
        texts = release_unit_files(release, ref, previous.version, previous.units, strict=False)
        if self.units.install(ref, texts, current=self.layout.current_link(ref), owned=_unit_files(previous)):
            self.units.sync()
            reload = True
        if reload:
            self.services.daemon_reload()
        self.layout.switch_current(ref, previous.version)
        self._enable_and_restart([ref], {ref: previous})

    def _retire_units(self, ref: str, units: list[str], *, keep: DeployedCapability | None, owned: DeployedCapability | None) -> bool:
        """Stop, disable and remove the units of ``ref`` that ``keep`` (its version from now on,
        None when it goes) does not list; True when a unit file was removed (reload systemd)."""
        kept = set(keep.units) if keep else set()
        going = [unit for unit in units if unit not in kept]
        if not going:
            return False
        # A unit whose file is gone was retired already (an undo or retry after a crash).
        loaded = [unit for unit in going if (self.unit_dir / unit_file_name(unit)).is_file()]
        self.services.stop(loaded)
        self.services.disable(loaded)
        files = {unit_file_name(unit) for unit in going} - {unit_file_name(unit) for unit in kept}
        return bool(self.units.remove(ref, files, owned=_unit_files(owned)))

    def _enable_and_restart(self, ordered: list[str], entries: dict[str, DeployedCapability]) -> None:
        """Enable (back after a reboot) and restart the capabilities' units, in ``ordered`` order.
        One enable and one reset-failed for all: each systemctl call costs a process."""
        units = [unit for ref in ordered for unit in entries[ref].units]
        self.services.enable(units)
        self.services.reset_failed(units)
        for ref in ordered:
            self.services.restart(entries[ref].units)

    def _stage(self, ref: str, entry: DeployedCapability, archive: Path | None) -> None:
        destination = self.layout.release_dir(ref, entry.version)
        if destination.is_dir():
            return  # extraction publishes the folder whole: present means complete
        if archive is None:  # the folder vanished between download and staging
            archive = self.artifacts.fetch(self.resolve_url(entry.artifact.url), entry.artifact.sha256, entry.artifact.size)
        destination.parent.mkdir(parents=True, exist_ok=True)
        extract_archive(archive, destination, max_bytes=entry.artifact.size * UNPACK_FACTOR + UNPACK_FLOOR)

    def _step(self, deployment: Deployment, state: str, detail: str = "", **changes) -> Deployment:
        if state in STOPPABLE and self.should_stop():
            raise AgentStopping("the agent was asked to stop before the deployment switched anything")
        deployment = self.store.deployments.save(deployment.record_step(state, self.clock(), detail, **changes))
        self.on_step(state)
        return deployment

    def _finish(self, deployment: Deployment, status: DeploymentStatus, state: str, error: str, changed) -> DeployResult:
        deployment = self.store.deployments.save(deployment.record_step(
            state, self.clock(), error, status=status, error=error, completed_at=self.clock()))
        return DeployResult(deployment.id, status, None, error, tuple(changed))

    def _manifest_of(self, revision: int | None) -> Manifest | None:
        if revision is None:
            return None
        stored = self.store.revisions.get(revision)
        return Manifest.model_validate(stored.manifest) if stored else None


def _differences(before: Manifest | None, after: Manifest) -> tuple[list[str], list[str]]:
    """Capabilities whose version or artifact changes (or that are new), and those removed."""
    had = before.capabilities() if before else {}
    wants = after.capabilities()
    changed = sorted(ref for ref, entry in wants.items()
                     if ref not in had or (had[ref].version, had[ref].artifact.sha256) != (entry.version, entry.artifact.sha256))
    removed = sorted(ref for ref in had if ref not in wants)
    return changed, removed


def _unit_files(entry: DeployedCapability | None) -> set[str]:
    return {unit_file_name(unit) for unit in entry.units} if entry else set()


def _dependency_order(refs: list[str], entries: dict[str, DeployedCapability]) -> list[str]:
    """``refs`` with each after the capabilities it requires (name order otherwise)."""
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(ref: str) -> None:
        if ref in ordered or ref in visiting:
            return
        visiting.add(ref)
        requires = entries[ref].requires
        for needed in sorted(requires.capabilities if requires else ()):
            if needed in refs:
                visit(needed)
        ordered.append(ref)

    for ref in sorted(refs):
        visit(ref)
    return ordered

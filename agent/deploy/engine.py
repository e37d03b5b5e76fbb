"""The deployment state machine: a ``next`` manifest → running services, or the old ones back.

    created → checking → downloading → staging [→ waiting-for-slot → slot-held] → installing-units
        → switching → restarting → verifying [→ slot-released] → committed   (a new revision)
    a failure after units or links changed → rolling-back → rolled-back (the failed versions
        blocked), or undo-failed when not everything came back healthy
    a failure before that → failed (nothing on the host changed)

Every step is recorded in the store before it is taken, so an agent killed anywhere finds the
deployment in ``store.deployments.active()`` on its next start. A crash is not a bad release:
``resume()`` runs the deployment again from the start, whatever step it was cut off in (every
step is idempotent: artifacts are cached by digest, release folders appear whole and are
verified before re-use, unit files and links are only written when they differ). Each run
journals one ``checking`` entry; after LOOP_GUARD runs cut off the same way the deployment is
undone and its versions blocked as ``interrupted`` (repeated interruption is evidence). An undo
cut off is resumed as an undo; after UNDO_ATTEMPTS it ends ``undo-failed`` without trying again,
so a host whose undo crashes the agent still comes up and an admin can act. Any error, foreseen
or not, ends or undoes the deployment: none stays "in progress".

With a fleet (``fleet``: agent.deploy.slot.FleetSlot, DESIGN §12) a deployment that changes what
runs takes a slot of its group after staging, before units or links change, and gives it back
once verified healthy, or once undone and healthy (``slot-released``); an automatic undo records
the failed versions for the group first. Taking and giving back are journaled like every step:
a resumed deployment takes its slot again (the coordinator takes over the one its earlier run
held), a stop while waiting ends the deployment with nothing changed, and a change the group
halted meanwhile is not deployed.

Only capabilities whose version or artifact changes are touched and restarted, in dependency
order (a capability after those it requires). A capability owns exactly the units its release
lists (agent.deploy.units): they are checked at staging, installed, and enabled before the
restart, so they come back after a reboot; a unit a new version no longer lists, and every unit
of a removed capability, is stopped, disabled and its file removed at the switch. An undo does
the same in reverse: units only the failed version had go, the previous version's come back.

A release folder is re-used only if it still holds the artifact the manifest names, unchanged
(agent.deploy.releases records what it was unpacked from); otherwise it is unpacked again from
the verified artifact. A folder that is running (``current``) and holds other bytes is never
replaced in place: the deployment fails before anything changes.

``rollback()`` goes back to a kept revision: checked first (rollback.py), recorded as a
``RollbackOperation``, then deployed like any target; the versions it leaves are blocked for
automatic updates. A rollback interrupted by a crash is settled by ``resume()`` from what the
host runs afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from agent.deploy.artifacts import ArtifactCache
from agent.deploy.bluegreen import BlueGreen, Move, is_blue_green
from agent.deploy.extract import extract_archive
from agent.deploy.health import HealthChecker
from agent.deploy.releases import ReleaseLayout
from agent.deploy.rollback import RollbackCheck, check_rollback
from agent.deploy.services import ServiceController
from agent.deploy.slot import FleetSlot
from agent.deploy.units import UnitFolder, release_unit_files
from agent.errors import Id1Error, ReleaseError, SwitchError
from agent.feed.catalog import Catalog
from agent.feed.units import unit_file_name
from agent.planning.manifest import DeployedCapability, Manifest
from agent.store import BlockSource, Deployment, DeploymentStatus, RollbackOperation, RollbackStatus, Store
from agent.store.store import utc_now

logger = logging.getLogger("id1.agent")

CREATED = "created"
CHECKING, DOWNLOADING, STAGING, INSTALLING_UNITS = "checking", "downloading", "staging", "installing-units"
SWITCHING, RESTARTING, VERIFYING, COMMITTED = "switching", "restarting", "verifying", "committed"
WAITING_FOR_SLOT, SLOT_HELD, SLOT_RELEASED = "waiting-for-slot", "slot-held", "slot-released"
# A blue-green capability's switch (agent.deploy.bluegreen).
STARTING_IDLE, CHECKING_IDLE, SWITCHING_TRAFFIC = "starting-idle", "checking-idle", "switching-traffic"
VERIFYING_PUBLIC, DRAINING, STOPPING_OLD = "verifying-public", "draining", "stopping-old"
ROLLING_BACK, ROLLED_BACK, FAILED, UNDO_FAILED = "rolling-back", "rolled-back", "failed", "undo-failed"
STEPS = (CHECKING, DOWNLOADING, STAGING, WAITING_FOR_SLOT, SLOT_HELD, INSTALLING_UNITS, STARTING_IDLE, CHECKING_IDLE,
         SWITCHING_TRAFFIC, VERIFYING_PUBLIC, SWITCHING, RESTARTING, VERIFYING, DRAINING, STOPPING_OLD, SLOT_RELEASED)
# Up to here nothing a running service sees has changed.
RETRYABLE = (CREATED, CHECKING, DOWNLOADING, STAGING, WAITING_FOR_SLOT, SLOT_HELD)
# A stop request (SIGTERM) is honoured on entering these: before anything running has switched
# (a blue-green idle colour started is stopped again by the undo; users were never on it).
STOPPABLE = (DOWNLOADING, STAGING, WAITING_FOR_SLOT, INSTALLING_UNITS, STARTING_IDLE, CHECKING_IDLE, SWITCHING_TRAFFIC, SWITCHING)
LOOP_GUARD = 3
"""Runs of one deployment (the first, and each retry after the agent was cut off) before it is undone."""
UNDO_ATTEMPTS = 3
"""Undo attempts cut off by a crash before the deployment ends ``undo-failed`` without another."""
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
    """Called after a step is recorded and before it is taken, and inside the switch and restart
    steps after each capability (``"switching core/api"``): tests kill the agent there."""
    should_stop: Callable[[], bool] = lambda: False
    """True once the agent is asked to stop (SIGTERM): a deployment that has not switched yet
    stops (undone if units were installed); one already switching is finished."""
    fleet: FleetSlot | None = None
    """The fleet slot a deployment that changes what runs holds (None: this host acts alone)."""
    bluegreen: BlueGreen | None = None
    """Switches blue-green capabilities behind nginx (None: a blue-green release fails at staging)."""

    def __post_init__(self) -> None:
        self.units = UnitFolder(self.unit_dir, self.layout.state_dir)
        if self.bluegreen is not None:
            self.bluegreen.on_step = self.on_step  # tests stop the agent inside the switch too

    # --- entry points -------------------------------------------------------------------------

    def deploy(self, next_manifest: Manifest, *, feed_serial: int | None, target_hash: str | None = None) -> DeployResult:
        """Deploy ``next_manifest``; on any failure put every changed capability back."""
        if self.store.deployments.active() is not None:
            raise Id1Error("a deployment is already in progress: it is finished (or undone) first, at the next start or poll")
        previous = self.store.revisions.latest()
        deployment = self.store.deployments.create(
            self.instance_id,
            next_manifest.to_json(),
            state=CREATED,
            target_hash=target_hash,
            from_revision=previous.number if previous else None,
        )
        return self._run(deployment, feed_serial)

    def resume(self, *, feed_serial: int | None = None) -> DeployResult | None:
        """Finish or undo the deployment a killed agent left behind; None when there is none."""
        deployment = self.store.deployments.active()
        result = None
        if deployment is not None:
            runs = _entries(deployment, CHECKING)
            if _entries(deployment, ROLLING_BACK):  # an undo was under way: it is finished first
                result = self._undo(deployment, f"the agent stopped during {deployment.state} while undoing the deployment")
            elif runs < LOOP_GUARD:
                result = self._run(deployment, feed_serial, resumed=True)
            else:
                target = Manifest.model_validate(deployment.manifest).capabilities()
                changed, _ = _differences(self._manifest_of(deployment.from_revision), Manifest.model_validate(deployment.manifest))
                result = self._undo(deployment, f"loop guard: the deployment was cut off {runs} times (last during {deployment.state})",
                                    failed=[(ref, target[ref].version) for ref in changed], source=BlockSource.INTERRUPTED)
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
        units = [unit for ref, entry in Manifest.model_validate(latest.manifest).capabilities().items()
                 for unit in self.units_of(ref, entry)]
        disabled = [unit for unit in units if self.services.is_enabled(unit) == "disabled"]
        self.services.enable(disabled)
        return disabled

    def units_of(self, ref: str, entry: DeployedCapability) -> list[str]:
        """The units that run ``entry`` now: its units, or a blue-green one's live colour's."""
        if not is_blue_green(entry):
            return list(entry.units)
        return self.bluegreen.live_units(ref, entry) if self.bluegreen else []

    def probe(self, ref: str, entry: DeployedCapability) -> str | None:
        """Is ``ref`` healthy now (the bake watch)? None when it is, else why not; a blue-green
        capability is asked through nginx, as its users reach it."""
        if is_blue_green(entry):
            return self.bluegreen.probe(ref, entry) if self.bluegreen else f"{ref} is blue-green and [switch] is not set up"
        return self.health.probe(entry.units, entry.health)

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
            runs = _entries(deployment, CHECKING) + 1
            deployment = self._step(deployment, CHECKING, f"run {runs}, after the agent stopped during {deployment.state}" if resumed
                                    else f"{len(changed)} to change, {len(removed)} to remove",
                                    status=DeploymentStatus.IN_PROGRESS, started_at=deployment.started_at or self.clock())
            deployment = self._step(deployment, DOWNLOADING)
            # A release folder that holds this artifact unchanged (a rollback, a retried
            # deployment) needs no download; any other is unpacked again from a verified one.
            stale = {ref: self._release_problem(ref, wanted[ref]) for ref in changed}
            archives = {ref: self._fetch(wanted[ref]) for ref in changed if stale[ref]}
            deployment = self._step(deployment, STAGING)
            unit_texts = {}
            for ref in changed:
                if stale[ref]:
                    self._stage(ref, wanted[ref], archives[ref], stale[ref])
            # Refused here, before anything on the host changes: units the release does not
            # own, files in the unit folder that are somebody else's, colours without ports.
            blue_green = [ref for ref in changed if is_blue_green(wanted[ref])]
            plain = [ref for ref in changed if ref not in blue_green]
            for ref in plain:
                unit_texts[ref] = release_unit_files(self.layout.release_dir(ref, wanted[ref].version), ref, wanted[ref].version, wanted[ref].units)
                self.units.check_free(ref, unit_texts[ref], owned=_unit_files(had.get(ref)))
            if blue_green or any(is_blue_green(had.get(ref)) for ref in changed):
                if self.bluegreen is None:
                    raise Id1Error(f"{', '.join(blue_green)}: a blue-green release needs the agent's [switch] set up")
                self.bluegreen.check(wanted, blue_green)
            if self.fleet is not None and (changed or removed):
                deployment = self._take_slot(deployment, [f"{ref}@{wanted[ref].version}" for ref in changed])
        except Id1Error as error:  # nothing running has changed yet
            return self._finish(deployment, DeploymentStatus.FAILED, FAILED, str(error), changed)
        except Exception as error:  # a bug or an error not foreseen: the deployment still ends
            return self._finish(deployment, DeploymentStatus.FAILED, FAILED, _unforeseen(error), changed)
        try:
            deployment = self._step(deployment, INSTALLING_UNITS)
            written = []
            for ref in plain:
                written += self.units.install(ref, unit_texts[ref], current=self.layout.current_link(ref), owned=_unit_files(had.get(ref)))
            if written:
                self.units.sync()
                self.services.daemon_reload()
            moves: list[Move] = []
            if blue_green:
                colours = self.bluegreen
                switching = {ref: wanted[ref] for ref in blue_green}
                deployment = self._step(deployment, STARTING_IDLE)
                moves = colours.start_idle(switching)
                deployment = self._step(deployment, CHECKING_IDLE, _moves(moves))
                colours.check_idle(moves, switching)
                deployment = self._step(deployment, SWITCHING_TRAFFIC, _moves(moves))
                # A restart capability turning blue-green: its service gives the public port up first.
                turning = [ref for ref in blue_green if ref in had and not is_blue_green(had[ref])]
                if any([self._retire_units(ref, had[ref].units, keep=None, owned=had[ref]) for ref in turning]):
                    self.services.daemon_reload()
                colours.switch(moves)
                deployment = self._step(deployment, VERIFYING_PUBLIC)
                colours.verify(moves, switching)
            if plain or removed:
                deployment = self._step(deployment, SWITCHING)
                retired = False
                for ref in [*removed, *plain]:
                    if is_blue_green(had.get(ref)):
                        retired |= self.bluegreen.take_away(ref)
                    elif ref in had:
                        retired |= self._retire_units(ref, had[ref].units, keep=wanted.get(ref), owned=had[ref])
                if retired:
                    self.services.daemon_reload()
                for ref in removed:
                    self.layout.remove_current(ref)
                for ref in plain:
                    self.layout.switch_current(ref, wanted[ref].version)
                    self.on_step(f"{SWITCHING} {ref}")
            if plain:
                deployment = self._step(deployment, RESTARTING)
                ordered = _dependency_order(plain, wanted)
                self._enable_and_restart(ordered, wanted)
                deployment = self._step(deployment, VERIFYING)
                for ref in ordered:
                    result = self.health.wait_healthy(wanted[ref].units, wanted[ref].health)
                    if not result.healthy:
                        raise Id1Error(f"{ref} {wanted[ref].version} is not healthy: {result.detail}")
            if blue_green:
                draining = self.bluegreen.must_drain(moves)
                deployment = self._step(deployment, DRAINING, f"{self.bluegreen.config.drain_s:g} s" if draining else "nothing to drain")
                self.bluegreen.drain(moves)
                deployment = self._step(deployment, STOPPING_OLD)
                self.bluegreen.stop_others(blue_green)
            deployment = self._give_back_slot(deployment)
        except Exception as error:
            reason = str(error) if isinstance(error, Id1Error) else _unforeseen(error)
            # Stopping (SIGTERM) is not evidence against the release: nothing is blocked then. Nor
            # is the host's nginx failing (stopped, its own config broken, a port taken): the
            # release is tried again once the operator has fixed it.
            host_side = isinstance(error, (AgentStopping, SwitchError))
            failed = [] if host_side or self.should_stop() else [(ref, wanted[ref].version) for ref in changed]
            return self._undo(deployment, reason, failed=failed)
        with self.store.batch():
            revision = self.store.revisions.add(target.to_json(), feed_serial, deployment.id)
            deployment = self.store.deployments.save(deployment.record_step(
                COMMITTED, self.clock(), f"revision {revision.number}",
                status=DeploymentStatus.SUCCEEDED, completed_at=self.clock()))
        return DeployResult(deployment.id, deployment.status, revision.number, None, tuple(changed))

    def _undo(self, deployment: Deployment, reason: str, failed: list[tuple[str, str]] = (),
              source: BlockSource = BlockSource.FAILED_DEPLOYMENT) -> DeployResult:
        """Put every capability the deployment touched back as the previous revision had it.

        The failed versions are blocked first, in the same store write as the step: an undo cut
        off by a crash is resumed without them, and they stay blocked.
        """
        deployment = self._latest(deployment)
        target = Manifest.model_validate(deployment.manifest)
        before = self._manifest_of(deployment.from_revision)
        changed, removed = _differences(before, target)
        attempt = _entries(deployment, ROLLING_BACK) + 1
        first = next((entry.detail for entry in deployment.journal if entry.state == ROLLING_BACK), None)
        cause = first or reason
        if attempt > UNDO_ATTEMPTS:
            return self._finish(deployment, DeploymentStatus.UNDO_FAILED, UNDO_FAILED,
                                f"{cause}; the undo was cut off {attempt - 1} times and is not tried again: the host may run "
                                "a mix of versions (see id1 status; id1 rollback --to a kept revision)", changed)
        with self.store.batch():
            for ref, version in failed:
                self.store.blocked.add(f"{ref}@{version}", f"deployment {deployment.id} failed: {reason}", source)
            deployment = self.store.deployments.save(deployment.record_step(
                ROLLING_BACK, self.clock(), reason if attempt == 1 else f"attempt {attempt}: {reason}"))
        self.on_step(ROLLING_BACK)  # once the batch is on disk
        if self.fleet is not None and failed:  # the group hears of it before the slot goes back
            self.fleet.record_failures([f"{ref}@{version}" for ref, version in failed])
        problems = []
        had = before.capabilities() if before else {}
        for ref in [*changed, *removed]:
            try:
                self._restore(ref, had.get(ref), target.capabilities().get(ref))
            except Exception as error:
                problems.append(str(error) if isinstance(error, Id1Error) else _unforeseen(error))
        # A blue-green capability put back was checked by its switch (BlueGreen.put_back).
        for ref in _dependency_order([r for r in [*changed, *removed] if r in had and not is_blue_green(had[r])], had):
            try:
                result = self.health.wait_healthy(had[ref].units, had[ref].health)
            except Exception as error:
                problems.append(_unforeseen(error))
                continue
            if not result.healthy:
                problems.append(f"{ref} {had[ref].version} is not healthy after the rollback: {result.detail}")
        if problems:
            return self._finish(deployment, DeploymentStatus.UNDO_FAILED, UNDO_FAILED,
                                f"{cause}; the undo did not put everything back: {'; '.join(problems)}", changed)
        return self._finish(deployment, DeploymentStatus.ROLLED_BACK, ROLLED_BACK, cause, changed)

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
        return self.artifacts.has(entry.artifact.sha256) or self._release_problem(ref, entry) is None

    def _restore(self, ref: str, previous: DeployedCapability | None, attempted: DeployedCapability | None) -> None:
        reload = False
        if attempted is not None and not is_blue_green(attempted):  # units only the failed version has go; shared ones are restarted below
            reload = self._retire_units(ref, attempted.units, keep=None if is_blue_green(previous) else previous, owned=previous)
        if is_blue_green(previous):  # the previous release made live again by the switch's own steps
            if reload:
                self.services.daemon_reload()
            self._colours(ref).put_back(ref, previous)
            return
        if self.bluegreen is not None:  # a blue-green form the failed deployment gave it goes
            reload |= self.bluegreen.take_away(ref)
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

    def _colours(self, ref: str) -> BlueGreen:
        if self.bluegreen is None:
            raise Id1Error(f"cannot put {ref} back: it is blue-green and the agent's [switch] is not set up")
        return self.bluegreen

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
            self.on_step(f"{RESTARTING} {ref}")

    def _release_problem(self, ref: str, entry: DeployedCapability) -> str | None:
        """None when the release folder holds ``entry``'s artifact unchanged, else why not. A
        folder unpacked by an agent from before the records is adopted when a kept revision
        says it was deployed from this very artifact."""
        problem = self.layout.holds(ref, entry.version, entry.artifact.sha256)
        if problem and self.layout.release_dir(ref, entry.version).is_dir() and self.layout.read_record(ref, entry.version) is None:
            for revision in self.store.revisions.list():
                kept = Manifest.model_validate(revision.manifest).capabilities().get(ref)
                if kept is not None and (kept.version, kept.artifact.sha256) == (entry.version, entry.artifact.sha256):
                    self.layout.write_record(ref, entry.version, entry.artifact.sha256)
                    return None
        return problem

    def _fetch(self, entry: DeployedCapability) -> Path:
        return self.artifacts.fetch(self.resolve_url(entry.artifact.url), entry.artifact.sha256, entry.artifact.size)

    def _stage(self, ref: str, entry: DeployedCapability, archive: Path, why: str) -> None:
        """Unpack ``archive`` as the release folder of ``ref``; a folder there that does not hold
        it (``why``) is removed first, unless it is running."""
        destination = self.layout.release_dir(ref, entry.version)
        if destination.is_dir():
            if self.layout.current_version(ref) == entry.version:
                raise ReleaseError(f"{ref} {entry.version} runs from {destination}, which does not hold the artifact the manifest "
                                   f"names ({why}); a running release is never replaced in place: the vendor must publish a new version")
            self.layout.remove_release(ref, entry.version)
        destination.parent.mkdir(parents=True, exist_ok=True)
        extract_archive(archive, destination, max_bytes=entry.artifact.size * UNPACK_FACTOR + UNPACK_FLOOR)
        self.layout.write_record(ref, entry.version, entry.artifact.sha256)

    def _step(self, deployment: Deployment, state: str, detail: str = "", **changes) -> Deployment:
        if state in STOPPABLE and self.should_stop():
            raise AgentStopping("the agent was asked to stop before the deployment switched anything")
        deployment = self.store.deployments.save(deployment.record_step(state, self.clock(), detail, **changes))
        self.on_step(state)
        return deployment

    def _take_slot(self, deployment: Deployment, changes: list[str]) -> Deployment:
        """Wait for a slot of the fleet group (journaled), or raise: stopping (nothing changed),
        or a change the group halted while this host waited."""
        slot = self.fleet
        deployment = self._step(deployment, WAITING_FOR_SLOT, slot.describe())
        grant = slot.acquire(should_stop=self.should_stop)
        if not grant.held and grant.reason == "stopped":
            raise AgentStopping("the agent was asked to stop while it waited for a fleet slot; nothing was changed")
        halted = [ref for ref in changes if ref in grant.halted]
        if halted:
            raise Id1Error("; ".join(f"{ref} was halted for fleet group {slot.group} after it failed on "
                                     f"{', '.join(grant.halted[ref])} (id1 fleet resume {ref} lifts it)" for ref in halted))
        if grant.held:
            return self._step(deployment, SLOT_HELD, f"group {slot.group}, after {grant.waited_s:.0f} s")
        detail = (f"no slot of group {slot.group} after {grant.waited_s:.0f} s: a forced security fix goes ahead "
                  f"without one ({grant.last_wait.describe() if grant.last_wait else 'the lock service did not answer'})")
        deployment = self._step(deployment, SLOT_HELD, detail)
        slot.went_ahead(detail)
        return deployment

    def _give_back_slot(self, deployment: Deployment) -> Deployment:
        """Give the fleet slot back once the host is healthy again (journaled; idempotent)."""
        if self.fleet is None or not _entries(deployment, WAITING_FOR_SLOT) or deployment.state == SLOT_RELEASED:
            return deployment
        # Journaled first: the entry's time is before any other host can take the slot, so the
        # journals of a group never show two holders at once (a crash in between: the next start
        # settles the slot, agent.daemon.fleet).
        deployment = self._step(deployment, SLOT_RELEASED, f"group {self.fleet.group}")
        self.fleet.release()
        return deployment

    def _finish(self, deployment: Deployment, status: DeploymentStatus, state: str, error: str, changed) -> DeployResult:
        deployment = self._latest(deployment)
        if status != DeploymentStatus.UNDO_FAILED:  # a host left unhealthy keeps its slot: the group waits for an admin
            deployment = self._give_back_slot(deployment)
        deployment = self.store.deployments.save(deployment.record_step(
            state, self.clock(), error, status=status, error=error, completed_at=self.clock()))
        return DeployResult(deployment.id, status, None, error, tuple(changed))

    def _latest(self, deployment: Deployment) -> Deployment:
        """The deployment as last saved: a step may have been journaled by a call that then raised
        (the slot's), and saving an older copy would drop it."""
        return self.store.deployments.get(deployment.id) or deployment

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


def _moves(moves: list[Move]) -> str:
    return ", ".join(f"{m.ref} {m.was} → {m.to}" if m.switches and m.was else f"{m.ref} {m.to}" for m in moves)


def _entries(deployment: Deployment, state: str) -> int:
    return sum(1 for entry in deployment.journal if entry.state == state)


def _unforeseen(error: Exception) -> str:
    """One line for an error no code path expected (a bug, or an OSError not translated): the
    deployment still ends; the traceback goes to the debug log."""
    logger.debug("unexpected error in a deployment", exc_info=error)
    return f"unexpected error: {type(error).__name__}: {error}"


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

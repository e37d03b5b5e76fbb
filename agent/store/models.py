"""What the store holds, as frozen pydantic models: deployments, revisions, rollbacks, blocked
versions, approvals and the feed's state (the seed's data models, seed-architecture.md §8, plus
what the journaled deployer, rollback to a kept revision and approvals need, DESIGN.md §5–§7).
Pins and update policies are ``agent.config``'s ``VersionPin`` and ``UpdatePolicy``.

Models are frozen so a value read from the store cannot drift from what was written: change one
with ``model_copy(update=...)`` (or ``Deployment.record_step``) and hand it to the repository's
``save``. Manifests are plain JSON dicts (``Manifest.to_json()`` of the planner), treated as
immutable snapshots: never change one in place, build a new dict.

Every timestamp is timezone-aware and kept in UTC; a naive one is refused, because a deployment
journal compared across a DST change or a host with a local TZ must still order correctly.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr

from agent.feed.model import ReleaseRef

JOURNAL_LIMIT = 200
"""Journal entries kept per deployment: enough for every step of a deployment and its undo,
small enough that the state file rewritten on every step stays small."""


def as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return value.astimezone(timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


def _last_entries(journal: tuple[JournalEntry, ...]) -> tuple[JournalEntry, ...]:
    return journal[-JOURNAL_LIMIT:]


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    UNDO_FAILED = "undo_failed"
    """The undo could not put every capability back healthy (or was cut off too often): the host
    may run a mix of versions, and an admin must act (``id1 rollback --to``)."""

    @property
    def finished(self) -> bool:
        return self in _FINISHED_DEPLOYMENT


_FINISHED_DEPLOYMENT = frozenset({DeploymentStatus.SUCCEEDED, DeploymentStatus.FAILED, DeploymentStatus.ROLLED_BACK,
                                  DeploymentStatus.UNDO_FAILED})


class RollbackStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (RollbackStatus.SUCCEEDED, RollbackStatus.FAILED)


class BlockSource(StrEnum):
    """Why a version is blocked (DESIGN.md §5 "Blocked")."""

    FAILED_DEPLOYMENT = "failed-deployment"
    ROLLBACK = "rollback"
    INTERRUPTED = "interrupted"
    """Deployments of it were cut off (power cut, SIGKILL) again and again: the loop guard's evidence."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JournalEntry(_Model):
    """One step of a deployment, recorded before the step is taken (so a restart knows where it was)."""

    state: str
    at: UtcDatetime
    detail: str = ""


class DeploymentFields(_Model):
    """A deployment without its manifest: what ``state.json`` holds (the manifest lives in its own file)."""

    id: str
    instance_id: str
    status: DeploymentStatus
    created_at: UtcDatetime
    updated_at: UtcDatetime
    started_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = None
    error: str | None = None
    state: str
    """The deployer's current step (check, download, stage, …): where a restarted agent resumes."""
    journal: Annotated[tuple[JournalEntry, ...], AfterValidator(_last_entries)] = ()
    """The last ``JOURNAL_LIMIT`` steps, oldest first."""
    target_hash: str | None = None
    """``Manifest.content_hash()`` of the target this deployment moves towards (what approvals bind to)."""
    from_revision: int | None = None
    """The revision running before: what a failure rolls back to (kept by ``revisions.prune``)."""

    @property
    def finished(self) -> bool:
        return self.status.finished


class Deployment(DeploymentFields):
    manifest: dict[str, Any] | None
    """The manifest being deployed. ``None`` only for an archived deployment (``history/``) whose
    manifest file retention has since removed."""

    # The manifest object this model was loaded or saved with and its hash, so ``save`` of a
    # copy with another step skips re-hashing a large manifest that did not change.
    _manifest_ref: tuple[dict[str, Any], str] | None = PrivateAttr(default=None)

    def record_step(self, state: str, at: datetime, detail: str = "", **changes: Any) -> Deployment:
        """A copy in ``state`` with the step journaled (oldest entries dropped past the limit).

        ``changes`` sets other fields (``status``, ``error``, ``started_at``, ``completed_at``).
        """
        entry = JournalEntry(state=state, at=at, detail=detail)
        journal = (*self.journal, entry)[-JOURNAL_LIMIT:]
        unknown = set(changes) - set(type(self).model_fields)
        if unknown:
            raise TypeError(f"Deployment has no field(s) {sorted(unknown)}")
        validated = {name: _validate_field(name, value) for name, value in changes.items()}
        return self.model_copy(update={"state": state, "journal": journal, **validated})


def _validate_field(name: str, value: Any) -> Any:
    if name == "status":
        return DeploymentStatus(value)
    if name in ("started_at", "completed_at") and value is not None:
        return as_utc(value)
    return value


class Revision(_Model):
    """A deployed manifest, numbered 1, 2, 3… (never reused): what an admin can roll back to."""

    number: int = Field(ge=1)
    manifest: dict[str, Any]
    manifest_sha256: str
    feed_serial: int | None
    created_at: UtcDatetime
    deployment_id: str | None


class RollbackOperation(_Model):
    """The seed's rollback record, with the revisions it moves between and who asked for it."""

    id: str
    instance_id: str
    from_version: str | None
    """Platform version running when the rollback started (``None`` if only part was deployed)."""
    to_version: str | None
    status: RollbackStatus
    created_at: UtcDatetime
    completed_at: UtcDatetime | None = None
    reason: str
    from_revision: int | None
    to_revision: int
    actor: str
    """Who asked: a user name from the API's peer credentials, or ``agent`` for an automatic undo."""

    @property
    def finished(self) -> bool:
        return self.status.finished


class BlockedVersion(_Model):
    """A release not chosen again automatically until an admin unblocks it."""

    ref: ReleaseRef
    """``core/auth@1.0.2`` or ``platform@2.6.0``."""
    reason: str
    blocked_at: UtcDatetime
    source: BlockSource


class FeedState(_Model):
    """The last feed check: for conditional GETs (etag, last_modified) and replay protection (serial, sha256)."""

    serial: int | None = None
    sha256: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    last_check: UtcDatetime | None = None
    last_success: UtcDatetime | None = None


class ApprovalStatus(StrEnum):
    """pending → approved → deployed | failed; pending → rejected | superseded.

    An approved approval is superseded too when another one is approved before it was deployed.
    """

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"
    DEPLOYED = "deployed"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in _FINISHED_APPROVAL


_FINISHED_APPROVAL = frozenset(
    {ApprovalStatus.REJECTED, ApprovalStatus.SUPERSEDED, ApprovalStatus.DEPLOYED, ApprovalStatus.FAILED}
)


class ApprovalFields(_Model):
    """An approval without its target manifest, changes and notes (those live in manifest files)."""

    id: str
    target_hash: str = Field(min_length=1)
    """``Manifest.content_hash()`` of the target shown to the approver: what the approval binds to."""
    status: ApprovalStatus
    created_at: UtcDatetime
    updated_at: UtcDatetime
    """When the status last changed."""
    decided_at: UtcDatetime | None = None
    """When a person approved or rejected it (``None`` if nobody did: pending, or superseded while pending)."""
    decided_by: str | None = None
    """Who approved or rejected it: a user name from the API's peer credentials."""
    comment: str | None = None
    reason: str | None = None
    """Why it was rejected or superseded."""
    feed_serial: int | None = None
    advisories: list[str] = Field(default_factory=list)
    """The advisories the target fixes."""
    deployment_id: str | None = None
    """The deployment that installed the target (or failed to), once ``mark``ed."""

    @property
    def finished(self) -> bool:
        return self.status.finished


class Approval(ApprovalFields):
    target: dict[str, Any] | None
    """The target manifest shown to the approver. ``None`` only for an archived approval
    (``history/``) whose manifest file retention has since removed."""
    changes: list[dict[str, Any]] = Field(default_factory=list)
    """The planner's changes shown to the approver (``capability``, ``from``, ``to``, ``source``, ``action``)."""
    notes: str | None = None
    """The platform release notes shown to the approver."""


class StoreEvent(_Model):
    """Something that happened to the store itself (recovered from corruption, migrated), kept in meta."""

    at: UtcDatetime
    kind: str
    detail: str

"""The documents inside ``state.json``, one model per table, used to check the file when it is opened.

Models that hold a manifest are stored with its hash instead (``manifest_sha256``); the others
are stored as they are. Table and document ids:

    meta                 {"1": Meta}
    active_deployments   {"<n>": DeploymentRecord}   the deployment not finished yet (at most one)
    finished_deployments {"<n>": DeploymentRecord}   the last ``StoreLimits.finished_deployments``
    revisions            {"<n>": RevisionRecord}     n = the revision number
    rollbacks            {"<n>": RollbackOperation}
    blocked              {"<n>": BlockedVersion}
    feed_state           {"1": FeedState}
    pins                 {"<n>": PinRecord}          pins set through the API (one per level and name)
    policies             {"<n>": PolicyRecord}       update policies set through the API
    approvals            {"<n>": ApprovalRecord}     the unfinished ones and the last
                                                     ``StoreLimits.finished_approvals`` finished ones
    totals               {"1": Totals}               running counts that only go up (schema 3)
    colours              {"1": Colours}              blue-green capabilities' colours, ports and
                                                     live colour (schema 4; agent.store.colours)

where a deployment ``dep-<n>``, a rollback ``rb-<n>``, a pin ``pin-<n>``, a policy ``policy-<n>``
and an approval ``approval-<n>`` are stored under ``<n>``. Unfinished
deployments sit in a table of their own so that saving a deployment step rewrites only that
small table's JSON (the storage re-uses the JSON of unchanged tables).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError, field_validator

from agent.errors import StoreError
from agent.store.models import (
    ApprovalFields,
    BlockedVersion,
    DeploymentFields,
    DeploymentStatus,
    FeedState,
    RollbackOperation,
    StoreEvent,
    UtcDatetime,
)

META = "meta"
ACTIVE_DEPLOYMENTS = "active_deployments"
FINISHED_DEPLOYMENTS = "finished_deployments"
REVISIONS = "revisions"
ROLLBACKS = "rollbacks"
BLOCKED = "blocked"
FEED_STATE = "feed_state"
PINS = "pins"
POLICIES = "policies"
APPROVALS = "approvals"
TOTALS = "totals"
PENDING_AUDIT = "pending_audit"
COLOURS = "colours"
SINGLETON_ID = 1

AGENT_ACTOR = "agent"
"""The actor of what the agent does by itself (``RollbackOperation.actor`` of an automatic rollback)."""

EVENTS_KEPT = 50


class Meta(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(ge=1)
    next_deployment: int = Field(default=1, ge=1)
    next_rollback: int = Field(default=1, ge=1)
    next_revision: int = Field(default=1, ge=1)
    """Revision numbers are never reused, even after the newest revisions were pruned or archived."""
    next_pin: int = Field(default=1, ge=1)
    next_policy: int = Field(default=1, ge=1)
    next_approval: int = Field(default=1, ge=1)
    events: tuple[StoreEvent, ...] = ()


COUNTERS = ("next_deployment", "next_rollback", "next_revision", "next_pin", "next_policy", "next_approval")

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class DeploymentRecord(DeploymentFields):
    manifest_sha256: str


class RevisionRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int = Field(ge=1)
    manifest_sha256: str
    feed_serial: int | None
    created_at: UtcDatetime
    deployment_id: str | None


class PinRecord(BaseModel):
    """A pin set through the API (``agent.config.VersionPin`` with an id and times, always).

    Only the shape is checked here, not whether the version is a valid specifier: the rules of
    ``VersionPin`` (and of ``packaging``) may tighten in a later release, and a pin they no
    longer accept must not make the whole state file unreadable. ``pins.set`` checks them all.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    level: Literal["platform", "suite", "capability"]
    name: str
    version: str
    reason: str | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class PolicyRecord(BaseModel):
    """An update policy set through the API (``agent.config.UpdatePolicy``); shape only, as for pins."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    channel: str
    enabled: bool
    created_at: UtcDatetime
    updated_at: UtcDatetime
    description: str | None = None
    suite: str | None = None


class ApprovalRecord(ApprovalFields):
    manifest_sha256: Sha256
    """The target manifest's file."""
    details_sha256: Sha256
    """A file holding ``{"changes": [...], "notes": ...}``: they can be as large as a manifest."""


RollbackTrigger = Literal["automatic", "manual"]


def rollback_trigger(actor: str) -> RollbackTrigger:
    return "automatic" if actor == AGENT_ACTOR else "manual"


class Totals(BaseModel):
    """Running counts that only ever go up, for the Prometheus counters.

    Each is raised in the same ``state.json`` write as the event it counts, so it survives what
    shrinks the records themselves: archiving to ``history/``, retention, restoring a backup
    (which keeps the higher totals, see ``backups.py``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    deployments: dict[str, NonNegativeInt] = Field(default_factory=dict)
    """Finished deployments by status (``succeeded``, ``failed``, ``rolled_back``, …), counted
    when they finish."""
    rollbacks: dict[RollbackTrigger, NonNegativeInt] = Field(default_factory=dict)
    """Rollback operations by trigger, counted when they start: ``automatic`` when the agent
    started it (actor ``agent``), ``manual`` when a person asked."""

    @field_validator("deployments")
    @classmethod
    def _finished_statuses(cls, counts: dict[str, int]) -> dict[str, int]:
        finished = {status.value for status in DeploymentStatus if status.finished}
        unknown = sorted(set(counts) - finished)
        if unknown:
            raise ValueError(f"not a finished deployment status: {', '.join(unknown)}")
        return counts

    def plus(self, group: Literal["deployments", "rollbacks"], key: str, count: int = 1) -> Totals:
        counts = dict(getattr(self, group))
        counts[key] = counts.get(key, 0) + count
        return Totals.model_validate({**self.model_dump(), group: counts})

    def at_least(self, other: Totals) -> Totals:
        """Each count the higher of the two."""
        return Totals.model_validate({
            group: {key: max(mine.get(key, 0), theirs.get(key, 0)) for key in {*mine, *theirs}}
            for group, mine, theirs in (("deployments", self.deployments, other.deployments),
                                        ("rollbacks", self.rollbacks, other.rollbacks))
        })


class PendingAudit(BaseModel):
    """An audit entry written in the same ``state.json`` write as the change it describes, before
    it goes to the audit log; removed once it is there. One still here at start (the agent
    stopped in between) is audited then (``AgentService.settle_pending_audit``); ``ref`` is in
    the audit entry's details, so it is never audited twice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int = Field(ge=1)
    ref: str = Field(pattern=r"^[0-9a-f]{32}$")
    actor: str
    action: str
    what: str
    why: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    at: UtcDatetime


ColourName = Literal["blue", "green"]


class ColourRun(BaseModel):
    """What a colour's unit files run: the release they were written from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    units: tuple[str, ...] = ()
    """The release's templates (``id1-core-api@.service``): the colour runs their instances."""


class ColourRecord(BaseModel):
    """One blue-green capability on this host (agent.deploy.bluegreen): its public port, the
    private port of each colour, what each colour's unit files run, and the colour nginx sends
    users to (None: nginx does not route it, e.g. while it turns into a restart capability)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    public_port: int = Field(ge=1, le=65535)
    ports: dict[ColourName, Annotated[int, Field(ge=1, le=65535)]]
    live: ColourName | None = None
    runs: dict[ColourName, ColourRun] = Field(default_factory=dict)


class Colours(BaseModel):
    """The ``colours`` table's one document: capability ref → its record."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capabilities: dict[str, ColourRecord] = Field(default_factory=dict)


def count_records(deployments: Iterable[Any], rollbacks: Iterable[Any]) -> Totals:
    """Totals counted from records (``state.json``'s and ``history/``'s), each id once, the last
    one seen winning: the best a store that kept no totals yet can know. Anything that is not a
    finished deployment or a rollback record is skipped (a line this agent cannot read)."""
    finished = {status.value for status in DeploymentStatus if status.finished}
    by_id: dict[str, str] = {}
    for document in deployments:
        if isinstance(document, dict) and isinstance(document.get("id"), str):
            by_id[document["id"]] = document.get("status")
    deployment_counts: dict[str, int] = {}
    for status in by_id.values():
        if isinstance(status, str) and status in finished:
            deployment_counts[status] = deployment_counts.get(status, 0) + 1
    actors: dict[str, str] = {}
    for document in rollbacks:
        if isinstance(document, dict) and isinstance(document.get("id"), str) and isinstance(document.get("actor"), str):
            actors[document["id"]] = document["actor"]
    rollback_counts: dict[str, int] = {}
    for actor in actors.values():
        trigger = rollback_trigger(actor)
        rollback_counts[trigger] = rollback_counts.get(trigger, 0) + 1
    return Totals(deployments=deployment_counts, rollbacks=rollback_counts)


TABLE_MODELS: dict[str, type[BaseModel]] = {
    META: Meta,
    ACTIVE_DEPLOYMENTS: DeploymentRecord,
    FINISHED_DEPLOYMENTS: DeploymentRecord,
    REVISIONS: RevisionRecord,
    ROLLBACKS: RollbackOperation,
    BLOCKED: BlockedVersion,
    FEED_STATE: FeedState,
    PINS: PinRecord,
    POLICIES: PolicyRecord,
    APPROVALS: ApprovalRecord,
    TOTALS: Totals,
    PENDING_AUDIT: PendingAudit,
    COLOURS: Colours,
}

DEPLOYMENT_PREFIX = "dep-"
ROLLBACK_PREFIX = "rb-"
PIN_PREFIX = "pin-"
POLICY_PREFIX = "policy-"
APPROVAL_PREFIX = "approval-"

MANIFEST_FIELDS: dict[str, tuple[str, ...]] = {
    ACTIVE_DEPLOYMENTS: ("manifest_sha256",),
    FINISHED_DEPLOYMENTS: ("manifest_sha256",),
    REVISIONS: ("manifest_sha256",),
    APPROVALS: ("manifest_sha256", "details_sha256"),
}
"""The fields through which records refer to files in ``manifests/``."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def referenced_manifests(state: dict[str, dict[str, Any]]) -> set[str]:
    """The manifest files a state (``state.json``'s tables, possibly a backup's) refers to.

    Works on unchecked data too (a backup being restored): anything that is not a sha256 is
    skipped, so a crafted file cannot name a path outside ``manifests/``.
    """
    hashes = set()
    for table, fields in MANIFEST_FIELDS.items():
        documents = state.get(table)
        if not isinstance(documents, dict):
            continue
        for document in documents.values():
            if not isinstance(document, dict):
                continue
            for name in fields:
                value = document.get(name)
                if isinstance(value, str) and _SHA256.match(value):
                    hashes.add(value)
    return hashes


def stored_document(model: type[BaseModel], value: BaseModel, what: str, **extra: Any) -> dict[str, Any]:
    """``value`` as a ``model`` document for ``state.json``, checked field by field first.

    ``model_copy(update=...)`` does not validate, so a copy may carry a naive datetime or a
    plain string for an enum; checking here means nothing is written that could not be read back.
    """
    fields = {name: getattr(value, name) for name in model.model_fields if name in type(value).model_fields}
    try:
        return model.model_validate({**fields, **extra}).model_dump(mode="json")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise StoreError(f"{what} cannot be stored: {where}: {first['msg']}") from None


def number_of(record_id: str, prefix: str) -> int | None:
    """``dep-12`` → 12; ``None`` for an id this store never handed out."""
    if not record_id.startswith(prefix):
        return None
    digits = record_id[len(prefix):]
    return int(digits) if digits.isdigit() and not digits.startswith("0") else None

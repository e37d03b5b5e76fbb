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

where a deployment ``dep-<n>``, a rollback ``rb-<n>``, a pin ``pin-<n>``, a policy ``policy-<n>``
and an approval ``approval-<n>`` are stored under ``<n>``. Unfinished
deployments sit in a table of their own so that saving a deployment step rewrites only that
small table's JSON (the storage re-uses the JSON of unchanged tables).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import StoreError
from agent.store.models import (
    ApprovalFields,
    BlockedVersion,
    DeploymentFields,
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
SINGLETON_ID = 1

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

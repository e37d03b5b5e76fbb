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

where a deployment ``dep-<n>`` and a rollback ``rb-<n>`` are stored under ``<n>``. Unfinished
deployments sit in a table of their own so that saving a deployment step rewrites only that
small table's JSON (the storage re-uses the JSON of unchanged tables).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import StoreError

from agent.store.models import BlockedVersion, DeploymentFields, FeedState, RollbackOperation, StoreEvent, UtcDatetime

META = "meta"
ACTIVE_DEPLOYMENTS = "active_deployments"
FINISHED_DEPLOYMENTS = "finished_deployments"
REVISIONS = "revisions"
ROLLBACKS = "rollbacks"
BLOCKED = "blocked"
FEED_STATE = "feed_state"
SINGLETON_ID = 1

EVENTS_KEPT = 50


class Meta(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = Field(ge=1)
    next_deployment: int = Field(default=1, ge=1)
    next_rollback: int = Field(default=1, ge=1)
    next_revision: int = Field(default=1, ge=1)
    """Revision numbers are never reused, even after the newest revisions were pruned or archived."""
    events: tuple[StoreEvent, ...] = ()


class DeploymentRecord(DeploymentFields):
    manifest_sha256: str


class RevisionRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    number: int = Field(ge=1)
    manifest_sha256: str
    feed_serial: int | None
    created_at: UtcDatetime
    deployment_id: str | None


TABLE_MODELS: dict[str, type[BaseModel]] = {
    META: Meta,
    ACTIVE_DEPLOYMENTS: DeploymentRecord,
    FINISHED_DEPLOYMENTS: DeploymentRecord,
    REVISIONS: RevisionRecord,
    ROLLBACKS: RollbackOperation,
    BLOCKED: BlockedVersion,
    FEED_STATE: FeedState,
}

DEPLOYMENT_PREFIX = "dep-"
ROLLBACK_PREFIX = "rb-"


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

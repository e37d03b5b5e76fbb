"""Request and response bodies of the API (pydantic), beside the store's own models it returns.

Every error is ``ErrorBody``: a machine ``code``, one human ``message`` (what the CLI prints) and,
for invalid input, the ``fields`` at fault.

Request bodies are strict and closed: a field the API does not know, or a value of the wrong
JSON type (``0`` for ``false``, ``"1"`` for ``1``), is refused with 422 naming the field, so the
published schema is exactly what is accepted. Where the store has a rule for a value that a JSON
schema can state (a suite name's characters and length), the request model states the same
rule, so the OpenAPI says it. Two rules it cannot state are left to the store, which answers
422 naming the field: a pin's name must fit its level, and its version must be PEP 440.

Free text (reasons, comments, names, descriptions) is one line of printable text: a control
character (tab and newline included), DEL or a bidirectional override is refused with 422
naming the field and the character (``agent.safe_text``: once stored, it would reach every
admin's terminal that shows the audit log). The OpenAPI states it as a pattern.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

# The store's own models, which routes return as they are (re-exported for the routes).
from agent.audit import AuditEntry, AuditVerification  # noqa: F401
from agent.config import CHANNELS, UpdatePolicy
from agent.safe_text import UNSAFE_CLASS, describe, first_unsafe
from agent.store import Approval, BlockedVersion, Deployment, Revision, RollbackOperation  # noqa: F401

Channel = Literal["auto-update", "manual-approval", "frozen"]
assert set(Channel.__args__) == set(CHANNELS)  # type: ignore[attr-defined]


# The config's rule for suite names (agent.config._NAME), which the store applies to pins and policies.
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
SUITE_NAME = f"^{_NAME}$"
PIN_NAME = f"^(platform|{_NAME}|{_NAME}/{_NAME})$"
"""``platform``, a suite (``core``) or a capability (``core/auth``); which one fits depends on the level."""
NOT_BLANK = r"\S"
_PRINTABLE = f"[^{UNSAFE_CLASS[1:-1]}]"
ONE_LINE = f"^{_PRINTABLE}*$"
"""Free text: no control character, tab, newline, DEL or bidirectional override."""
ONE_LINE_NOT_BLANK = f"^{_PRINTABLE}*[^{UNSAFE_CLASS[1:-1]}\\s]{_PRINTABLE}*$"


def _one_line(value: str) -> str:
    found = first_unsafe(value)
    if found is not None:
        at, character = found
        raise PydanticCustomError(
            "control_character",
            "has {character} at character {at}: free text is one line without control characters, "
            "tabs or bidirectional overrides",
            {"character": describe(character), "at": at + 1},
        )
    return value


def free_text(max_length: int, *, min_length: int = 0, not_blank: bool = False) -> Any:
    """A free-text field of ``min_length`` to ``max_length`` characters (``not_blank``: not only
    blanks). The length is checked first, so an over-long text is refused as such, unread."""
    length = (Field(min_length=1, max_length=max_length, pattern=NOT_BLANK) if not_blank
              else Field(min_length=min_length or None, max_length=max_length))
    pattern = ONE_LINE_NOT_BLANK if not_blank else ONE_LINE
    return Annotated[str, length, AfterValidator(_one_line), Field(json_schema_extra=lambda schema: schema.update(pattern=pattern))]


Reason = free_text(2000)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    code: str
    """``invalid``, ``forbidden``, ``not-found``, ``method-not-allowed``, ``conflict``, ``refused``,
    ``feed-rejected``, ``unavailable``, ``failed``, ``internal`` (a bug: the agent's log has the traceback)."""
    message: str
    fields: list[FieldError] = Field(default_factory=list)


class Change(BaseModel):
    capability: str
    from_: str | None = Field(alias="from", serialization_alias="from")
    to: str | None
    source: str
    action: str
    overrides: str | None = None
    model_config = ConfigDict(populate_by_name=True)


class Problem(BaseModel):
    code: str
    detail: str


class CapabilityState(BaseModel):
    capability: str
    version: str
    source: str
    overrides: str | None = None
    units: list[str]
    """The units that run it: a blue-green capability's live colour's (``id1-core-api@green.service``)."""
    live_colour: str | None = None
    """blue-green only: the colour nginx sends users to (``blue`` or ``green``)."""
    public_port: int | None = None
    """blue-green only: the port nginx listens on for it."""


class ApprovalSummary(BaseModel):
    id: str
    status: str
    created_at: datetime
    changes: int


class DeploymentSummary(BaseModel):
    id: str
    status: str
    state: str
    started_at: datetime | None


class Status(BaseModel):
    instance_id: str
    agent_version: str
    activity: str
    """What the agent is doing, in words."""
    activity_since: datetime
    user: str
    role: str
    """The caller's role: viewer, approver or admin (a caller with none is refused with 403)."""
    role_groups: dict[str, list[str]]
    """The Unix groups that grant each role (``viewer``, ``approver``, ``admin``), as configured."""
    channel: str
    suites: dict[str, str]
    """Per-suite channel overrides."""
    maintenance_window: list[str]
    timezone: str
    in_window: bool
    next_window: datetime | None
    revision: int | None
    platform: str | None
    capabilities: list[CapabilityState]
    feed_url: str | None
    feed_serial: int | None
    last_check: datetime | None
    last_success: datetime | None
    next_check: datetime | None
    pending_approval: ApprovalSummary | None
    changes: list[Change]
    problems: list[Problem]
    exposed_advisories: int
    blocked_versions: int
    deployment: DeploymentSummary | None
    last_error: str | None
    warnings: list[str]


class Updates(BaseModel):
    """The plan against the current feed: what would change and what waits for whom."""

    target_hash: str | None
    changes: list[Change]
    problems: list[Problem]
    approval: Approval | None
    """The approval for this target (pending, or approved and waiting for the window), if any."""
    next_window: datetime | None


class ApproveRequest(_Body):
    comment: Reason | None = None


class RejectRequest(_Body):
    reason: free_text(2000, not_blank=True)  # type: ignore[valid-type]
    """Why; required, and not only blanks."""


class Decision(BaseModel):
    approval: Approval
    message: str


class RollbackRequest(_Body):
    to_revision: int | None = Field(default=None, ge=1)
    """The kept revision to go back to; default: the one before the running revision."""
    reason: Reason = ""
    force: bool = False
    """Allow a revision affected by an enforced advisory (recorded)."""


class RollbackChange(BaseModel):
    capability: str
    from_version: str | None
    to_version: str | None


class RollbackPreview(BaseModel):
    to_revision: int
    from_revision: int | None
    changes: list[RollbackChange]
    problems: list[str]
    advisories: list[str]
    allowed: bool
    """True when the rollback may go ahead without force."""
    needs_force: bool


class RollbackOutcome(BaseModel):
    operation: RollbackOperation
    deployment_status: str
    revision: int | None
    error: str | None


class PinRequest(_Body):
    level: Literal["platform", "suite", "capability"]
    name: str = Field(pattern=PIN_NAME, max_length=129)
    """``platform`` for level platform, a suite for suite, ``suite/capability`` for capability."""
    version: str = Field(min_length=1, max_length=200)
    """An exact PEP 440 version (``1.4.2``) or a specifier (``~=1.4.0``, ``>=1.2,<2``)."""
    reason: Reason | None = None


class UnpinRequest(_Body):
    level: Literal["platform", "suite", "capability"]
    name: str = Field(pattern=PIN_NAME, max_length=129)
    reason: Reason | None = None


class PinView(BaseModel):
    id: str | None
    level: str
    name: str
    version: str
    reason: str | None
    origin: Literal["config", "api"]
    """``config`` pins come from the config file and are read-only through the API."""
    created_at: datetime | None = None
    updated_at: datetime | None = None


class Versions(BaseModel):
    pins: list[PinView]
    installed: dict[str, str]
    """``suite/capability`` → running version."""
    available: dict[str, list[str]]
    """``suite/capability`` (and ``platform``) → versions in the feed, newest first."""
    blocked: list[BlockedVersion]


class PolicyRequest(_Body):
    name: free_text(200, min_length=1)  # type: ignore[valid-type]
    channel: Channel
    enabled: bool = True
    description: Reason | None = None
    suite: str | None = Field(default=None, pattern=SUITE_NAME, max_length=64)


def _unset_means_unchanged(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # not a value a client may send: leaving the field out keeps it


def _unset_means_unchanged_one_line(schema: dict[str, Any]) -> None:
    _unset_means_unchanged(schema)
    schema["pattern"] = ONE_LINE  # this callable replaces free_text's own, which would say so


class PolicyUpdate(_Body):
    """Only the fields given change. ``description`` and ``suite`` may be set to null (no suite:
    the policy is the whole instance's); ``name``, ``channel`` and ``enabled`` may not."""

    name: free_text(200, min_length=1) = Field(default=None, json_schema_extra=_unset_means_unchanged_one_line)  # type: ignore[assignment,valid-type]
    channel: Channel = Field(default=None, json_schema_extra=_unset_means_unchanged)  # type: ignore[assignment]
    enabled: bool = Field(default=None, json_schema_extra=_unset_means_unchanged)  # type: ignore[assignment]
    description: Reason | None = None
    suite: str | None = Field(default=None, pattern=SUITE_NAME, max_length=64)


class ChannelRequest(_Body):
    channel: Channel
    suite: str | None = Field(default=None, pattern=SUITE_NAME, max_length=64)
    reason: Reason | None = None


class EffectivePolicy(BaseModel):
    channel: str
    suites: dict[str, str]
    enforce_severity: str
    maintenance_window: list[str]
    timezone: str
    allow_prerelease: bool
    policies: list[UpdatePolicy]
    """Stored policies (the API's), newest decisions win over the config file."""


class EnforceRequest(_Body):
    advisory_id: free_text(200, min_length=1)  # type: ignore[valid-type]


class Advisory(BaseModel):
    id: str
    severity: str
    capability: str
    affected: str
    summary: str
    published_at: datetime | None
    enforced: bool
    """At or above the policy's enforce_severity: fixed whatever the channel."""
    status: Literal["not-installed", "not-affected", "affected", "fix-pending", "exposed"]
    installed_version: str | None


class DeploymentRequest(_Body):
    target_hash: str = Field(min_length=64, max_length=64, pattern=r"^[0-9a-f]{64}$")
    """The target shown to the admin (``id1 updates``): deployed only if it is still the target."""
    force: bool = False
    """Deploy a target that an enforced advisory affects (exposed): audited with the advisories."""


class DeploymentUpdate(_Body):
    action: Literal["cancel"]


class EnforceOutcome(BaseModel):
    deployment_id: str | None
    status: str
    """The deployment's status: ``succeeded``, ``failed``, ``rolled_back`` or ``undo_failed``."""
    revision: int | None
    error: str | None


class RevisionView(BaseModel):
    """A kept revision; ``manifest`` only when asked for (``GET /revisions?manifests=true``)."""

    number: int
    manifest_sha256: str
    feed_serial: int | None
    created_at: datetime
    deployment_id: str | None
    platform: str | None
    manifest: dict[str, Any] | None = None


class CheckResult(BaseModel):
    message: str


class Unblocked(BaseModel):
    ref: str


# --- the fleet (DESIGN.md §12, docs/fleet.md) ---------------------------------------------------

_FLEET_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_N = r"(?:0|[1-9][0-9]{0,8})"
CHANGE_REF = (rf"^(?:platform|{_NAME}/{_NAME})@{_N}(?:\.{_N}){{0,5}}(?:(?:a|b|rc){_N})?(?:\.post{_N})?(?:\.dev{_N})?$")
"""``REF@VERSION`` with the version in its normal PEP 440 form, as halt records name a change."""


class FleetHostView(BaseModel):
    host_id: str
    instance_id: str
    platform: str | None
    revision: int | None
    agent_state: str
    updated_at: str
    last_seen: str


class FleetHolderView(BaseModel):
    host_id: str
    since: str | None
    slot: int | None = None
    instance_id: str | None = None


class FleetFailureView(BaseModel):
    ref: str
    """REF@VERSION."""
    hosts: list[str]
    """The hosts rolled back from it."""
    halted: bool
    """At least ``halt_after`` hosts failed on it: no host of the group deploys it."""


class FleetState(BaseModel):
    """The fleet group seen from this host (etcd: every host; FleetLock: this host's slot only)."""

    backend: str
    group: str
    this_host: str
    slots: int | None = None
    halt_after: int | None = None
    hosts: list[FleetHostView] = []
    holders: list[FleetHolderView] = []
    waiting: list[str] = []
    waiting_total: int = 0
    failures: list[FleetFailureView] = []
    note: str | None = None
    """What this backend cannot show, or why the view is missing (the lock service unreachable)."""
    slot_wait: str | None = None
    """What this host waits for now, if it waits for a slot."""


class FleetResumeRequest(_Body):
    ref: str = Field(pattern=CHANGE_REF, max_length=200)
    """The halted change, ``REF@VERSION`` (``core/auth@2.0.1``)."""
    reason: Reason | None = None


class FleetReleaseRequest(_Body):
    host_id: str = Field(pattern=_FLEET_ID, max_length=128)
    """The fleet id of the host that is gone (``id1 fleet`` lists the holders)."""
    reason: Reason | None = None


class FleetOutcome(BaseModel):
    message: str

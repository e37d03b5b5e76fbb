"""The agent's Prometheus metrics, as a file for node-exporter's textfile collector.

    text = render_metrics(snapshot)                          # pure: the daemon builds the snapshot
    write_textfile(Path("/var/lib/node-exporter/id1.prom"), text)

``render_metrics`` turns a ``MetricsSnapshot`` into the text exposition format: every family
with HELP and TYPE, names prefixed ``id1_``, label values escaped. A value the agent does not
have yet (no check has succeeded, no deployment has run) is left out rather than written as 0,
so a dashboard shows "no data" instead of 1970 and ``absent()`` can alert on it.

The counters (``id1_deployments_total``, ``id1_rollbacks_total``) must never go down, or
``rate()`` and ``increase()`` read a reset: the daemon takes them from the store's running totals
(``store.totals``, raised in the same write as what they count) with ``with_totals``, never from
the records the store still keeps, which move to ``history/`` and can be restored to older ones.

``write_textfile`` replaces the file atomically: node-exporter never reads half a file, and the
temporary file (``.<name>.<random>.tmp``) does not end in ``.prom``, so the collector skips it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import Id1Error
from agent.files import write_atomically
from agent.store.models import DeploymentStatus

DEPLOYMENT_STATUSES = tuple(status.value for status in DeploymentStatus if status.finished)
"""Every outcome a deployment can finish with: a label value each, so no finished one is left out."""
ROLLBACK_TRIGGERS = ("automatic", "manual")
DURATION_QUANTILES = (0.5, 0.9, 0.99)


class MetricsFileError(Id1Error):
    """The metrics file cannot be written (a missing folder, no permission, a full disk)."""


@dataclass(frozen=True, slots=True)
class AgentInfo:
    version: str
    channel: str
    """The host's default update channel: ``auto-update``, ``manual-approval`` or ``frozen``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsSnapshot:
    """Everything the metrics file says, gathered by the daemon at one moment."""

    instance_id: str
    agent_info: AgentInfo
    policy_compliance_ratio: float
    """Share of capabilities running what the policy says they should, 0 to 1 (see DESIGN.md §5)."""
    deployments_total: Mapping[str, int] = field(default_factory=dict)
    """Finished deployments by status (``DEPLOYMENT_STATUSES``); a missing status counts 0."""
    deployment_duration_seconds: Sequence[float] = ()
    """Durations of recent completed deployments, oldest first: the last one is the latest."""
    rollbacks_total: Mapping[str, int] = field(default_factory=dict)
    """Rollbacks by trigger (``ROLLBACK_TRIGGERS``); a missing trigger counts 0."""
    pending_approvals: int = 0
    exposed_advisories: int = 0
    last_successful_check_timestamp: float | None = None
    """Unix seconds of the last feed check that succeeded; ``None`` before the first."""
    last_deployment_timestamp: float | None = None
    """Unix seconds at which the last deployment finished; ``None`` before the first."""
    current_revision: int | None = None
    blocked_versions: int = 0
    fleet_halted_changes: int | None = None
    """Changes the host's fleet group halted that the plan holds; None without a fleet (etcd)."""
    live_colours: Mapping[str, str | None] = field(default_factory=dict)
    """Each blue-green capability's live colour (None: nginx routes it nowhere)."""

    def __post_init__(self) -> None:
        problems = [
            *_unknown_keys("deployments_total", self.deployments_total, DEPLOYMENT_STATUSES),
            *_unknown_keys("rollbacks_total", self.rollbacks_total, ROLLBACK_TRIGGERS),
            *_negative_counts(
                {f"deployments_total[{key}]": count for key, count in self.deployments_total.items()}
                | {f"rollbacks_total[{key}]": count for key, count in self.rollbacks_total.items()}
                | {
                    "pending_approvals": self.pending_approvals,
                    "exposed_advisories": self.exposed_advisories,
                    "blocked_versions": self.blocked_versions,
                }
            ),
        ]
        if not 0.0 <= self.policy_compliance_ratio <= 1.0:  # also refuses NaN
            problems.append(f"policy_compliance_ratio must be between 0 and 1, not {self.policy_compliance_ratio}")
        if any(not math.isfinite(seconds) or seconds < 0 for seconds in self.deployment_duration_seconds):
            problems.append("deployment_duration_seconds must hold finite, non-negative seconds")
        for name in ("last_successful_check_timestamp", "last_deployment_timestamp"):
            moment = getattr(self, name)
            if moment is not None and (not math.isfinite(moment) or moment < 0):
                problems.append(f"{name} must be unix seconds, not {moment}")
        if problems:
            raise ValueError("invalid metrics snapshot: " + "; ".join(problems))

    def with_totals(self, deployments: Mapping[str, int], rollbacks: Mapping[str, int]) -> MetricsSnapshot:
        """This snapshot with its counters from the store's running totals (``store.totals.get()``:
        finished deployments by status, rollbacks by trigger). A deployment that was rolled back
        is an automatic rollback too, and so is one whose undo failed."""
        return dataclasses.replace(
            self,
            deployments_total={status: deployments.get(status, 0) for status in DEPLOYMENT_STATUSES},
            rollbacks_total={
                "automatic": rollbacks.get("automatic", 0) + deployments.get("rolled_back", 0) + deployments.get("undo_failed", 0),
                "manual": rollbacks.get("manual", 0),
            },
        )


def render_metrics(snapshot: MetricsSnapshot) -> str:
    """The snapshot in the Prometheus text format (version 0.0.4), ending with a newline."""
    families = [
        _agent_info(snapshot),
        _deployments(snapshot),
        _success_ratio(snapshot),
        _durations(snapshot),
        _last_duration(snapshot),
        _rollbacks(snapshot),
        _gauge("id1_policy_compliance_ratio", _COMPLIANCE_HELP, snapshot.policy_compliance_ratio),
        _gauge("id1_pending_approvals", "Planned changes waiting for an approver.", snapshot.pending_approvals),
        _gauge(
            "id1_exposed_advisories",
            "Security advisories that affect a version installed now.",
            snapshot.exposed_advisories,
        ),
        _gauge(
            "id1_last_successful_check_timestamp_seconds",
            "When the release feed was last checked successfully (unix seconds).",
            snapshot.last_successful_check_timestamp,
        ),
        _gauge(
            "id1_last_deployment_timestamp_seconds",
            "When the last deployment finished, whatever its outcome (unix seconds).",
            snapshot.last_deployment_timestamp,
        ),
        _gauge("id1_current_revision", "The revision the host runs now.", snapshot.current_revision),
        _gauge(
            "id1_blocked_versions",
            "Releases blocked from automatic selection after a failure or a rollback.",
            snapshot.blocked_versions,
        ),
        _gauge(
            "id1_fleet_halted_changes",
            "Changes the plan holds because the host's fleet group halted them after failures on other hosts.",
            snapshot.fleet_halted_changes,
        ),
        _live_colours(snapshot),
    ]
    return "".join(line + "\n" for family in families for line in family)


def write_textfile(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (temp file, fsync, rename), readable by node-exporter."""
    try:
        write_atomically(Path(path), text.encode("utf-8"), mode=0o644)
    except OSError as error:
        reason = error.strerror or str(error)
        raise MetricsFileError(
            f"cannot write the metrics file {path}: {reason}; "
            "check that its folder exists and that the agent may write there"
        ) from error


# ── metric families ─────────────────────────────────────────────────────────────────────────

_COMPLIANCE_HELP = (
    "Share of capabilities running what the policy says they should "
    "(the target, or a difference awaiting approval or held by policy)."
)

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Sample:
    value: float
    labels: Labels = ()
    suffix: str = ""


def _family(name: str, kind: str, help_text: str, samples: Iterable[_Sample]) -> list[str]:
    lines = [f"# HELP {name} {_escape_help(help_text)}", f"# TYPE {name} {kind}"]
    lines.extend(
        f"{name}{sample.suffix}{_render_labels(sample.labels)} {_render_value(sample.value)}" for sample in samples
    )
    return lines


def _gauge(name: str, help_text: str, value: float | None) -> list[str]:
    return [] if value is None else _family(name, "gauge", help_text, [_Sample(value)])


def _agent_info(snapshot: MetricsSnapshot) -> list[str]:
    labels = (
        ("instance_id", snapshot.instance_id),
        ("version", snapshot.agent_info.version),
        ("channel", snapshot.agent_info.channel),
    )
    return _family("id1_agent_info", "gauge", "The agent's identity; the value is always 1.", [_Sample(1, labels)])


def _deployments(snapshot: MetricsSnapshot) -> list[str]:
    samples = [
        _Sample(snapshot.deployments_total.get(status, 0), (("status", status),)) for status in DEPLOYMENT_STATUSES
    ]
    return _family("id1_deployments_total", "counter", "Finished deployments by outcome.", samples)


def _live_colours(snapshot: MetricsSnapshot) -> list[str]:
    if not snapshot.live_colours:
        return []
    samples = [_Sample(1 if live == colour else 0, (("capability", ref), ("colour", colour)))
               for ref, live in sorted(snapshot.live_colours.items()) for colour in ("blue", "green")]
    return _family("id1_live_colour", "gauge",
                   "1 for the colour of a blue-green capability that nginx sends users to, 0 for the other.", samples)


def _success_ratio(snapshot: MetricsSnapshot) -> list[str]:
    finished = sum(snapshot.deployments_total.get(status, 0) for status in DEPLOYMENT_STATUSES)
    if not finished:
        return []
    ratio = snapshot.deployments_total.get("succeeded", 0) / finished
    return _gauge(
        "id1_deployment_success_ratio",
        "Share of finished deployments that succeeded (neither failed nor rolled back).",
        ratio,
    )


def _durations(snapshot: MetricsSnapshot) -> list[str]:
    durations = sorted(snapshot.deployment_duration_seconds)
    # No quantile without a deployment: a summary with nothing observed has only _sum and _count.
    quantiles = [
        _Sample(_nearest_rank(durations, q), (("quantile", f"{q:g}"),)) for q in DURATION_QUANTILES if durations
    ]
    totals = [_Sample(math.fsum(durations), suffix="_sum"), _Sample(len(durations), suffix="_count")]
    return _family(
        "id1_deployment_duration_seconds",
        "summary",
        "How long recent completed deployments took (the deployments the agent still keeps).",
        quantiles + totals,
    )


def _last_duration(snapshot: MetricsSnapshot) -> list[str]:
    durations = snapshot.deployment_duration_seconds
    return _gauge(
        "id1_last_deployment_duration_seconds",
        "How long the latest completed deployment took.",
        durations[-1] if durations else None,
    )


def _rollbacks(snapshot: MetricsSnapshot) -> list[str]:
    samples = [
        _Sample(snapshot.rollbacks_total.get(trigger, 0), (("trigger", trigger),)) for trigger in ROLLBACK_TRIGGERS
    ]
    return _family(
        "id1_rollbacks_total",
        "counter",
        "Rollbacks by trigger: automatic (a failed deployment undone) or manual (asked by an admin).",
        samples,
    )


# ── the text format ─────────────────────────────────────────────────────────────────────────


def _nearest_rank(ordered: Sequence[float], quantile: float) -> float:
    """A duration that really occurred: the smallest with at least ``quantile`` of them at or below it."""
    return ordered[max(math.ceil(quantile * len(ordered)) - 1, 0)]


def _render_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape_label_value(value)}"' for name, value in labels) + "}"


def _escape_label_value(value: str) -> str:
    return _valid_utf8(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return _valid_utf8(text).replace("\\", "\\\\").replace("\n", "\\n")


def _valid_utf8(text: str) -> str:
    # A lone surrogate (from a file name read with surrogateescape) cannot be written as UTF-8.
    return text.encode("utf-8", "replace").decode("utf-8")


def _render_value(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _unknown_keys(name: str, counts: Mapping[str, int], known: Sequence[str]) -> list[str]:
    unknown = sorted(str(key) for key in counts if key not in known)
    return [f"{name} has unknown keys {', '.join(unknown)} (known: {', '.join(known)})"] if unknown else []


def _negative_counts(counts: Mapping[str, int]) -> list[str]:
    return [f"{name} must be a count of 0 or more, not {count!r}" for name, count in counts.items() if count < 0]

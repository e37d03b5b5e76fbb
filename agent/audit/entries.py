"""Audit entries: their shape, their canonical JSON and hash, and what makes a line one."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict

from agent.errors import StoreError

LIVE_NAME = "audit.jsonl"
HEAD_NAME = "head.json"
ANCHOR_NAME = "anchor.json"
ZERO_HASH = "0" * 64
REPAIR_ACTION = "audit-repaired"
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_KEEP_FILES = 12
FILE_MODE = 0o600

_ROTATED_NAME = re.compile(r"audit-([0-9]+)-([0-9]+)\.jsonl")
_HEX_HASH = re.compile(r"[0-9a-f]{64}")
_ACTION = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_FIELDS = ("seq", "at", "actor", "action", "what", "why", "details", "prev", "hash")
_BLOCK = 64 * 1024


class AuditError(StoreError):
    """The audit log's folder or files cannot be used; the message names the path and what to do."""


class AuditEntry(BaseModel):
    """One line of the log. ``model_dump(mode="json")`` gives back the line's exact values."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    at: datetime
    actor: str
    action: str
    what: str
    why: str = ""
    details: dict[str, Any] = {}
    prev: str
    hash: str


class AuditProblem(BaseModel):
    """One broken spot: ``audit-1-420.jsonl line 17: entry 17 was edited: ...``.

    ``line`` is 1-based; None when the problem is about a whole file (head.json, the end of the log).
    """

    model_config = ConfigDict(frozen=True)

    file: str
    seq: int | None
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


class AuditVerification(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    checked: int
    first_seq: int | None
    last_seq: int | None
    problems: list[AuditProblem]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _content_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical({key: value for key, value in record.items() if key != "hash"})).hexdigest()


def _content_hash_or_none(record: dict[str, Any]) -> str | None:
    try:
        return _content_hash(record)
    except (TypeError, ValueError):
        return None


def _format_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"the audit clock must give aware datetimes, not {moment!r}")
    return moment.astimezone(timezone.utc).strftime(_TIME_FORMAT)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        return False
    return True


def _is_seq(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and _HEX_HASH.fullmatch(value) is not None


def _fault(record: dict[str, Any]) -> str | None:
    """What makes ``record`` not an entry, in words; None when it is one."""
    missing = [name for name in _FIELDS if name not in record]
    if missing:
        return f"it has no {', '.join(missing)}"
    unknown = sorted(set(record) - set(_FIELDS))
    if unknown:
        return f"unknown field {', '.join(unknown)}"
    if not _is_seq(record["seq"]):
        return "seq is not a positive whole number"
    for name in ("actor", "action", "what", "why"):
        if not isinstance(record[name], str):
            return f"{name} is not a string"
    if not isinstance(record["details"], dict):
        return "details is not a JSON object"
    for name in ("prev", "hash"):
        if not _is_hash(record[name]):
            return f"{name} is not a sha256 in hex"
    if not _is_utc_time(record["at"]):
        return "at is not a UTC time like 2026-01-31T12:00:00Z"
    return None


def _is_utc_time(value: Any) -> bool:
    if not isinstance(value, str) or not _TIME.fullmatch(value):
        return False
    try:
        datetime.strptime(value, _TIME_FORMAT)
    except ValueError:
        return False
    return True


def _continues(record: dict[str, Any], previous: dict[str, Any] | None) -> bool:
    """Whether ``record`` is a sound entry that directly follows ``previous`` (None: the first)."""
    if _fault(record) or _content_hash_or_none(record) != record["hash"]:
        return False
    if previous is None:
        return record["seq"] == 1 and record["prev"] == ZERO_HASH
    return record["seq"] == previous["seq"] + 1 and record["prev"] == previous["hash"]


def _entry_from_line(raw: bytes) -> AuditEntry | None:
    record = _json_object(raw)
    if record is None or _fault(record):
        return None
    return AuditEntry.model_validate(record)


def _entries_are(first: int, last: int) -> str:
    return f"entry {first} is" if first == last else f"entries {first}–{last} are"


# -- files -------------------------------------------------------------------------------------

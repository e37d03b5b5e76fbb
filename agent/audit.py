"""The audit log: who changed what, when and why; every API change and every decision of the agent.

On disk, in ``<state_dir>/audit``::

    audit.jsonl                   the live file: one entry a line, canonical JSON, oldest first
    audit-<first>-<last>.jsonl    older entries, moved aside when the live file would pass max_bytes;
                                  the newest keep_files of them are kept
    anchor.json                   {"seq", "prev"}: where the kept history starts once old files are gone
    head.json                     {"seq", "hash"}: the last entry, rewritten atomically after each append

Each entry carries ``prev``, the ``hash`` of the entry before it (64 zeros for entry 1), and its
own ``hash``: sha256 of its canonical JSON without ``hash``. ``verify`` walks the chain from the
anchor to the head and names each entry that was edited, removed, reordered or cut off the end.
Sequence numbers are never reused, not across rotation nor across a repair, so a gap stays a gap.

Nothing keys the chain: whoever can write the folder can rewrite history from some entry on,
recomputing every later hash and head.json. Copy ``hash`` of recent entries somewhere else (the
journal) to catch that too.

Opening the log mends what a crash leaves (a line cut off mid-append) and notices what a crash
cannot explain (head.json ahead of the files); each such finding is listed in ``warnings`` and
recorded as an ``audit-repaired`` entry, so nothing is mended silently.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from pydantic import BaseModel, ConfigDict

from agent import files
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


@dataclass(frozen=True)
class _Finding:
    """Something opening the log mended or noticed; it becomes a warning and an audit-repaired entry."""

    message: str
    details: dict[str, Any] = field(default_factory=dict)


class AuditLog:
    """The daemon's one writer of ``folder``; ``record`` may be called from any thread."""

    def __init__(
        self,
        folder: Path,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_bytes: int = DEFAULT_MAX_BYTES,
        keep_files: int = DEFAULT_KEEP_FILES,
    ):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        if keep_files < 0:
            raise ValueError(f"keep_files must be 0 or more, not {keep_files}")
        self.folder = Path(folder)
        self.clock = clock
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        self._descriptor: int | None = None
        self._closed = False
        self._live_first_seq: int | None = None
        self._last_seq = 0
        self._last_hash = ZERO_HASH
        with self._lock:
            self._open()

    @property
    def live_path(self) -> Path:
        return self.folder / LIVE_NAME

    # -- writing -------------------------------------------------------------------------------

    def record(self, *, actor: str, action: str, what: str, why: str = "", details: dict[str, Any] | None = None) -> AuditEntry:
        """Append one entry, durably, and return it as it now stands in the log."""
        if not isinstance(actor, str) or not actor:
            raise ValueError(f"actor must be a user name or 'agent', not {actor!r}")
        if not isinstance(action, str) or not _ACTION.fullmatch(action):
            raise ValueError(f"action must be a short lowercase word like 'approve' or 'feed-rejected', not {action!r}")
        for name, value in (("what", what), ("why", why)):
            if not isinstance(value, str):
                raise ValueError(f"{name} must be a string, not {type(value).__name__}")
        if details is None:
            details = {}
        if not isinstance(details, dict):
            raise ValueError(f"details must be a JSON object, not {type(details).__name__}")
        try:
            # As it will read back: tuples become lists, and keys strings, before the hash is taken.
            details = json.loads(_canonical(details))
        except (TypeError, ValueError) as error:
            raise ValueError(f"details must be plain JSON (str keys, no NaN, valid text): {error}") from error
        with self._lock:
            if self._closed:
                raise ValueError(f"the audit log in {self.folder} is closed")
            return self._append(actor=actor, action=action, what=what, why=why, details=details)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._close_descriptor()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def entries(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        limit: int | None = None,
        before_seq: int | None = None,
    ) -> list[AuditEntry]:
        """Entries newest first, filtered; older files are read only until ``limit`` is reached.

        Lines that are not well-formed entries are skipped here; ``verify`` names them.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        found: list[AuditEntry] = []
        if limit == 0:
            return found
        with self._lock:
            live = _open_for_reading(self.live_path)
            try:
                live_size = _size_of(live.fileno(), self.live_path) if live else 0
                rotated = [item for item in _rotated_files(self.folder) if before_seq is None or item.first_seq < before_seq]
            except BaseException:
                if live:
                    live.close()
                raise
        for path, handle, end in _newest_first(self.live_path, live, live_size, rotated):
            with handle:
                for raw in _lines_backward(handle, end, path):
                    entry = _entry_from_line(raw)
                    if entry is None or (before_seq is not None and entry.seq >= before_seq):
                        continue
                    if (actor is not None and entry.actor != actor) or (action is not None and entry.action != action):
                        continue
                    found.append(entry)
                    if limit is not None and len(found) >= limit:
                        return found
        return found

    def verify(self) -> AuditVerification:
        """Check the whole chain; every edited, missing, reordered or malformed entry is named.

        The files are opened under the lock (appends wait only for that), then read without it.
        """
        with self._lock:
            snapshot = _Snapshot.take(self.folder)
        return snapshot.verify()

    # -- inside the lock -----------------------------------------------------------------------

    def _append(self, *, actor: str, action: str, what: str, why: str, details: dict[str, Any]) -> AuditEntry:
        if self._descriptor is None:
            self._open()  # an earlier failure left the file in doubt: look again, mend, go on
        while True:
            record = {
                "seq": self._last_seq + 1,
                "at": _format_time(self.clock()),
                "actor": actor,
                "action": action,
                "what": what,
                "why": why,
                "details": details,
                "prev": self._last_hash,
            }
            record["hash"] = _content_hash(record)
            line = _canonical(record) + b"\n"
            descriptor = self._live_descriptor()
            size = _size_of(descriptor, self.live_path)
            if not size or size + len(line) <= self.max_bytes:
                break
            self._rotate()  # may record repairs itself, so the entry is built again after it
        if size and _pread(descriptor, size - 1, 1) != b"\n":
            line = b"\n" + line  # someone else cut our last line end: spoil only their line
        try:
            _write_all(descriptor, line)
            os.fsync(descriptor)
        except OSError as error:
            self._undo_partial_write(size)
            raise _audit_error("append to", self.live_path, error) from error
        if not size:
            self._live_first_seq = record["seq"]
        self._last_seq, self._last_hash = record["seq"], record["hash"]
        try:
            self._write_head()
        except AuditError as error:
            raise AuditError(f"{error} (entry {record['seq']} itself was recorded)") from error
        return AuditEntry.model_validate(record)

    def _live_descriptor(self) -> int:
        if self._descriptor is None:
            self._open()
        assert self._descriptor is not None
        return self._descriptor

    def _open(self) -> None:
        """Find where the chain goes on (live file, older files, head.json), mending a torn last line."""
        _make_folder(self.folder)
        _remove_stale_temp_files(self.folder)
        live = self.live_path
        try:
            created = not live.exists()
            descriptor = os.open(live, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        except OSError as error:
            raise _audit_error("open", live, error) from error
        findings: list[_Finding] = []
        try:
            if created:
                _fsync_folder(self.folder)
            size = _size_of(descriptor, live)
            size = self._mend_torn_tail(descriptor, size, findings)
            last = self._last_entry(descriptor, size)
            first = _first_entry(descriptor, size)
        except OSError as error:
            os.close(descriptor)
            raise _audit_error("read", live, error) from error
        except BaseException:
            os.close(descriptor)
            raise
        self._close_descriptor()
        self._descriptor = descriptor
        self._live_first_seq = first["seq"] if first else None
        self._last_seq, self._last_hash = self._resume_point(last, findings)
        self._prune()
        if self._last_seq and _read_head(self.folder)[0] != (self._last_seq, self._last_hash):
            self._write_head()
        for finding in findings:
            self.warnings.append(finding.message)
            why = "found when the audit log was opened"
            self._append(actor="agent", action=REPAIR_ACTION, what=finding.message, why=why, details=finding.details)

    def _mend_torn_tail(self, descriptor: int, size: int, findings: list[_Finding]) -> int:
        """A last line without its line end was cut off mid-append: complete it if whole, else remove it.

        The removed bytes go into the ``audit-repaired`` entry, so even those are kept.
        """
        if not size or _pread(descriptor, size - 1, 1) == b"\n":
            return size
        start = _start_of_last_line(descriptor, size)
        torn = _pread(descriptor, start, size - start)
        previous = self._last_entry(descriptor, start)
        record = _json_object(torn)
        if record is not None and _continues(record, previous):
            _write_all(descriptor, b"\n")
            os.fsync(descriptor)
            message = f"{LIVE_NAME}: entry {record['seq']} was written whole but for its line end before a crash; completed it"
            findings.append(_Finding(message))
            return size + 1
        os.ftruncate(descriptor, start)
        os.fsync(descriptor)
        text = torn.decode("utf-8", errors="replace")
        shown = text if len(text) <= 120 else text[:120] + "…"
        message = f"{LIVE_NAME}: removed its last line, cut off by a crash mid-write ({len(torn)} bytes): {shown}"
        findings.append(_Finding(message, {"removed": text}))
        return start

    def _last_entry(self, descriptor: int, end: int) -> dict[str, Any] | None:
        """The last readable entry before ``end`` of the live file, else in the newest older file."""
        for raw in _lines_backward_fd(descriptor, end):
            record = _json_object(raw)
            if record is not None and _is_seq(record.get("seq")) and _is_hash(record.get("hash")):
                return record
        for item in reversed(_rotated_files(self.folder)):
            record = _last_entry_of_file(item.path)
            if record is not None:
                return record
        return None

    def _resume_point(self, last: dict[str, Any] | None, findings: list[_Finding]) -> tuple[int, str]:
        """Where the chain goes on: the files' last entry, or head.json when that is further on.

        Going on from head.json keeps what was cut off the end (or rewritten) visible to verify
        as a gap or a broken link, instead of reusing its numbers.
        """
        if last is not None:
            file_seq, file_hash = last["seq"], last["hash"]
        else:
            anchor, _ = _read_anchor(self.folder)
            file_seq, file_hash = (anchor[0] - 1, anchor[1]) if anchor else (0, ZERO_HASH)
        head, fault = _read_head(self.folder)
        if head is None:
            if fault:
                findings.append(_Finding(f"{HEAD_NAME} {fault}; rebuilt it from the log's last entry, {file_seq}"))
            elif file_seq > 1:
                findings.append(
                    _Finding(
                        f"{HEAD_NAME} was missing; rebuilt it from the log's last entry, {file_seq} "
                        "(entries cut off the end before now cannot be detected)"
                    )
                )
            return file_seq, file_hash
        head_seq, head_hash = head
        if head_seq > file_seq:
            findings.append(
                _Finding(
                    f"the log ends at entry {file_seq} but {HEAD_NAME} says {head_seq}: {_entries_are(file_seq + 1, head_seq)} "
                    f"missing; numbering goes on from {head_seq + 1} so that verify keeps showing the gap"
                )
            )
            return head_seq, head_hash
        if head_seq == file_seq and head_hash != file_hash:
            findings.append(
                _Finding(
                    f"entry {file_seq} does not match {HEAD_NAME}: the end of the log was rewritten; "
                    f"the chain goes on from the hash in {HEAD_NAME} so that verify keeps showing it"
                )
            )
            return head_seq, head_hash
        crash_window = head_seq == file_seq - 1 and last is not None and last["prev"] == head_hash
        if head_seq < file_seq and not crash_window:
            findings.append(
                _Finding(
                    f"{HEAD_NAME} said the log ends at entry {head_seq} but it holds entries up to {file_seq}, "
                    "which the agent did not write (or head.json was replaced by an old copy)"
                )
            )
        return file_seq, file_hash

    def _rotate(self) -> None:
        first = self._live_first_seq or self._last_seq
        target = self.folder / f"audit-{first}-{self._last_seq}.jsonl"
        if target.exists():
            raise AuditError(f"cannot move {self.live_path} aside: {target} already exists; move it out of {self.folder}")
        try:
            os.rename(self.live_path, target)
        except OSError as error:
            raise _audit_error("rename", self.live_path, error) from error
        self._close_descriptor()
        self._open()  # a new live file (its creation makes the rename durable too), then prune

    def _prune(self) -> None:
        """Delete the oldest files beyond keep_files, moving the anchor past them first."""
        rotated = _rotated_files(self.folder)
        excess = len(rotated) - self.keep_files
        if excess <= 0:
            return
        victims, kept = rotated[:excess], rotated[excess:]
        self._move_anchor(self._anchor_after(victims[-1].path, [item.path for item in kept]))
        for victim in victims:
            try:
                victim.path.unlink(missing_ok=True)
            except OSError as error:
                raise _audit_error("delete", victim.path, error) from error
        _fsync_folder(self.folder)

    def _anchor_after(self, victim: Path, kept: list[Path]) -> tuple[int, str]:
        last = _last_entry_of_file(victim)
        if last is not None:
            return last["seq"] + 1, last["hash"]
        for path in [*kept, self.live_path]:
            first = _first_entry_of_file(path)
            if first is not None and _is_hash(first.get("prev")):
                return first["seq"], first["prev"]
        return self._last_seq + 1, self._last_hash

    def _move_anchor(self, anchor: tuple[int, str]) -> None:
        current, _ = _read_anchor(self.folder)
        if current is not None and current[0] >= anchor[0]:
            return  # never back: an anchor only ever moves past deleted files
        _write_small_file(self.folder / ANCHOR_NAME, {"seq": anchor[0], "prev": anchor[1]})

    def _write_head(self) -> None:
        _write_small_file(self.folder / HEAD_NAME, {"seq": self._last_seq, "hash": self._last_hash})

    def _undo_partial_write(self, size: int) -> None:
        descriptor = self._descriptor
        if descriptor is None:
            return
        try:
            os.ftruncate(descriptor, size)
            os.fsync(descriptor)
        except OSError:
            self._close_descriptor()  # the next record opens the file again and mends its tail

    def _close_descriptor(self) -> None:
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            os.close(descriptor)


def _newest_first(
    live_path: Path, live: BinaryIO | None, live_size: int, rotated: list[_Rotated]
) -> Iterator[tuple[Path, BinaryIO, int]]:
    """The live file (opened under the lock), then older files, each opened only when reached."""
    if live is not None:
        yield live_path, live, live_size
    for item in reversed(rotated):
        handle = _open_for_reading(item.path)
        if handle is None:
            return  # deleted by pruning while we read: what is older is gone too
        yield item.path, handle, _size_of(handle.fileno(), item.path)


def verify_audit_folder(folder: Path) -> AuditVerification:
    """``AuditLog.verify`` for a folder no agent is writing (the agent stopped, a copy)."""
    return _Snapshot.take(Path(folder)).verify()


# -- verification ------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    """The files as they stood at one moment: open handles survive rotation and pruning."""

    anchor: tuple[int, str] | None
    anchor_fault: str | None
    head: tuple[int, str] | None
    head_fault: str | None
    files: list[tuple[str, BinaryIO, int]]

    @classmethod
    def take(cls, folder: Path) -> _Snapshot:
        anchor, anchor_fault = _read_anchor(folder)
        head, head_fault = _read_head(folder)
        handles: list[tuple[str, BinaryIO, int]] = []
        try:
            for path in [*(item.path for item in _rotated_files(folder)), folder / LIVE_NAME]:
                handle = _open_for_reading(path)
                if handle is not None:
                    handles.append((path.name, handle, os.fstat(handle.fileno()).st_size))
        except BaseException:
            for _, handle, _ in handles:
                handle.close()
            raise
        return cls(anchor, anchor_fault, head, head_fault, handles)

    def verify(self) -> AuditVerification:
        check = _ChainCheck(self.anchor, self.head)
        if self.anchor_fault:
            check.report((ANCHOR_NAME, -1, None), None, f"{ANCHOR_NAME} {self.anchor_fault}; the start of the log was not checked")
        try:
            for index, (name, handle, size) in enumerate(self.files):
                try:
                    data = handle.read(size)
                except OSError as error:
                    raise _audit_error("read", Path(name), error) from error
                lines = data.split(b"\n")
                for number, raw in enumerate(lines, start=1):
                    if number == len(lines):
                        if raw:
                            message = f"line {number} is cut off (it has no line end): a write was interrupted"
                            check.report((name, index, number), None, message)
                        break
                    check.line((name, index, number), raw)
        finally:
            for _, handle, _ in self.files:
                handle.close()
        live = (LIVE_NAME, len(self.files), None)
        return check.finish(live, self.head_fault)


_Where = tuple[str, int, "int | None"]  # file name, its order among the files, line


@dataclass
class _Gap:
    first: int
    last: int
    where: _Where
    context: str
    carved: bool = False


@dataclass
class _Run:
    """Consecutive lines broken the same way (a file overwritten, a sed over every line): one problem."""

    kind: str
    file: str
    first_line: int
    last_line: int
    first_seq: int | None
    last_seq: int | None
    index: int  # of its problem

    def takes(self, kind: str, where: _Where, seq: int | None) -> bool:
        if (kind, where[0], where[2]) != (self.kind, self.file, self.last_line + 1):
            return False
        return seq is None if self.last_seq is None else seq == self.last_seq + 1


def _unreadable_run(run: _Run) -> str:
    return f"lines {run.first_line}–{run.last_line} are not entries"


def _edited_run(run: _Run) -> str:
    return f"entries {run.first_seq}–{run.last_seq} were edited: their hashes do not match their content"


@dataclass
class _ChainCheck:
    """Walks the entries in file order; reports each broken spot once and resynchronises after it."""

    anchor: tuple[int, str] | None
    head: tuple[int, str] | None
    checked: int = 0
    first_seq: int | None = None
    last_seq: int = 0
    last_hash: str | None = ZERO_HASH
    linked: bool = True  # whether the next entry's prev may be held against last_hash
    started: bool = False
    unreadable: int = 0  # unreadable lines since the last entry: likely entries themselves
    head_hash_seen: str | None = None  # the hash of the entry head.json names, if that entry is sound
    after_head: _Where | None = None  # where the entry after it is
    gaps: list[_Gap] = field(default_factory=list)
    problems: list[tuple[tuple[int, float], AuditProblem]] = field(default_factory=list)
    run: _Run | None = None  # the last line's problem, if it may grow to cover this line too
    run_grew: bool = False  # whether this line joined (or began) a run

    def __post_init__(self) -> None:
        if self.anchor is not None:
            self.last_seq, self.last_hash = self.anchor[0] - 1, self.anchor[1]

    def report(self, where: _Where, seq: int | None, message: str) -> None:
        name, order, line = where
        key = (order, float(line) if line is not None else float("inf"))
        self.problems.append((key, AuditProblem(file=name, seq=seq, line=line, message=message)))

    def report_run(self, kind: str, where: _Where, seq: int | None, message: str, plural: Callable[[_Run], str]) -> None:
        run = self.run
        if run is not None and run.takes(kind, where, seq):
            run.last_line, run.last_seq = where[2] or 0, seq
            key, problem = self.problems[run.index]
            self.problems[run.index] = (key, problem.model_copy(update={"message": plural(run)}))
        else:
            self.report(where, seq, message)
            self.run = _Run(kind, where[0], where[2] or 0, where[2] or 0, seq, seq, len(self.problems) - 1)
        self.run_grew = True

    def line(self, where: _Where, raw: bytes) -> None:
        self.checked += 1
        self.run_grew = False
        self._check_line(where, raw)
        if not self.run_grew:
            self.run = None

    def _check_line(self, where: _Where, raw: bytes) -> None:
        line = where[2]
        record = _json_object(raw)
        if record is None:
            what = "empty" if not raw.strip() else "not a JSON object" if _is_json(raw) else "not JSON"
            self.report_run("unreadable", where, None, f"line {line} is {what}", _unreadable_run)
            self.unreadable += 1
            self.linked = False
            return
        fault = _fault(record)
        stored_hash = record.get("hash")
        intact = _is_hash(stored_hash) and _content_hash_or_none(record) == stored_hash
        if fault or not intact:
            self._broken(where, record, fault, intact)
        else:
            self._intact(where, record)
        self.unreadable = 0

    def _broken(self, where: _Where, record: dict[str, Any], fault: str | None, intact: bool) -> None:
        # Name it by the chain when it still links to the entry before (its seq may be the edit).
        seq = record.get("seq") if _is_seq(record.get("seq")) else None
        if self.linked and record.get("prev") == self.last_hash:
            named: int | None = self.last_seq + 1
        else:
            named = seq if seq is not None else None
        label = f"entry {named}" if named is not None else f"the entry on line {where[2]}"
        edited = f"{label} was edited: its hash does not match its content" + (f" ({fault})" if fault else "")
        if intact:
            self.report(where, named, f"{label} is malformed: {fault}")
        elif named is None:
            self.report(where, None, edited)
        else:
            self.report_run("edited", where, named, edited, _edited_run)
        if named is not None and named > self.last_seq:
            self._note_gap(where, named)
            self._advance(where, named, record.get("hash") if _is_hash(record.get("hash")) else None, sound=False)
        self.linked = False

    def _intact(self, where: _Where, record: dict[str, Any]) -> None:
        seq, prev, digest = record["seq"], record["prev"], record["hash"]
        if not self.started and self.anchor is not None and seq < self.anchor[0]:
            # Older than the anchor: a file whose deletion was interrupted. The chain starts here.
            self.last_seq, self.last_hash, self.linked = seq - 1, prev, True
        expected = self.last_seq + 1
        if expected <= seq <= expected + self.unreadable:
            if seq == expected and self.linked and prev != self.last_hash:
                self.report(where, seq, self._broken_link_message(seq))
            self._advance(where, seq, digest)
        elif seq > expected:
            self._note_gap(where, seq)
            self._advance(where, seq, digest)
        else:
            for gap in self.gaps:
                if gap.first <= seq <= gap.last:
                    self._carve(gap, seq)
                    self.report(where, seq, f"entry {seq} is out of order: it comes after entry {self.last_seq}")
                    break
            else:
                self.report(where, seq, f"entry {seq} is out of order or a copy: it comes after entry {self.last_seq}")
            return
        self.linked = True

    def _broken_link_message(self, seq: int) -> str:
        if not self.started and self.anchor is None:
            return f"entry {seq}'s prev is not 64 zeros, as the first entry's must be"
        if not self.started:
            return f"entry {seq}'s prev does not match {ANCHOR_NAME}: the log's start was replaced"
        return f"entry {seq}'s prev does not match entry {seq - 1}'s hash: entry {seq - 1} or {seq} was rewritten"

    def _note_gap(self, where: _Where, seq: int) -> None:
        first = self.last_seq + 1 + self.unreadable
        if seq <= first:
            return
        if self.started:
            context = f"after {self.last_seq} comes {seq}"
        elif self.anchor is not None:
            context = f"{ANCHOR_NAME} says the kept history starts at entry {self.anchor[0]}"
        else:
            context = f"the log starts at entry {seq}"
        self.gaps.append(_Gap(first, seq - 1, where, context))

    def _carve(self, gap: _Gap, seq: int) -> None:
        self.gaps.remove(gap)
        for first, last in ((gap.first, seq - 1), (seq + 1, gap.last)):
            if first <= last:
                self.gaps.append(_Gap(first, last, gap.where, gap.context, carved=True))

    def _advance(self, where: _Where, seq: int, digest: str | None, *, sound: bool = True) -> None:
        if self.first_seq is None:
            self.first_seq = seq
        self.started = True
        self.last_seq, self.last_hash = seq, digest
        if self.head is not None:
            if seq == self.head[0] and sound:
                self.head_hash_seen = digest
            elif seq == self.head[0] + 1:
                self.after_head = where

    def finish(self, live: _Where, head_fault: str | None) -> AuditVerification:
        if self.head is None:
            if head_fault:
                self.report((HEAD_NAME, live[1] + 1, None), None, f"{HEAD_NAME} {head_fault}")
            elif self.started:
                message = f"{HEAD_NAME} is missing, so entries cut off the end of the log would go unnoticed"
                self.report((HEAD_NAME, live[1] + 1, None), None, message)
        else:
            head_seq, head_hash = self.head
            if head_seq > self.last_seq:
                self.gaps.append(_Gap(self.last_seq + 1, head_seq, live, f"{HEAD_NAME} says the log ends at entry {head_seq}"))
            elif self.last_seq > head_seq + 1:  # one past the head is a crash between append and head write
                self.report(
                    self.after_head or live,
                    head_seq + 1,
                    f"{_entries_are(head_seq + 1, self.last_seq)} past the end recorded in {HEAD_NAME} (entry {head_seq}): "
                    "the agent did not write them",
                )
            elif self.head_hash_seen is not None and self.head_hash_seen != head_hash:
                message = f"entry {head_seq} does not match {HEAD_NAME}: the log was rewritten up to there"
                self.report((HEAD_NAME, live[1] + 1, None), head_seq, message)
        for gap in self.gaps:
            message = f"{_entries_are(gap.first, gap.last)} missing" + ("" if gap.carved else f": {gap.context}")
            self.report(gap.where, gap.first, message)
        problems = [problem for _, problem in sorted(self.problems, key=lambda item: item[0])]
        return AuditVerification(
            ok=not problems,
            checked=self.checked,
            first_seq=self.first_seq,
            last_seq=self.last_seq if self.started else None,
            problems=problems,
        )


# -- entries and their JSON --------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Rotated:
    first_seq: int
    last_seq: int
    path: Path


def _rotated_files(folder: Path) -> list[_Rotated]:
    """The older files, oldest first (by the first entry their name says they hold)."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return []
    except OSError as error:
        raise _audit_error("list", folder, error) from error
    found = []
    for name in names:
        match = _ROTATED_NAME.fullmatch(name)
        if match:
            found.append(_Rotated(int(match[1]), int(match[2]), folder / name))
    return sorted(found, key=lambda item: (item.first_seq, item.last_seq))


def _read_small_json(path: Path) -> tuple[Any, str | None]:
    """(value, None), or (None, what is wrong), or (None, None) when the file does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as error:
        raise _audit_error("read", path, error) from error
    record = _json_object(data)
    if record is None:
        return None, "is not a JSON object"
    return record, None


def _read_head(folder: Path) -> tuple[tuple[int, str] | None, str | None]:
    record, fault = _read_small_json(folder / HEAD_NAME)
    if record is None:
        return None, fault
    if set(record) != {"seq", "hash"} or not _is_seq(record["seq"]) or not _is_hash(record["hash"]):
        return None, 'is not {"seq": <entry>, "hash": <its sha256>}'
    return (record["seq"], record["hash"]), None


def _read_anchor(folder: Path) -> tuple[tuple[int, str] | None, str | None]:
    record, fault = _read_small_json(folder / ANCHOR_NAME)
    if record is None:
        return None, fault
    if set(record) != {"seq", "prev"} or not _is_seq(record["seq"]) or not _is_hash(record["prev"]):
        return None, 'is not {"seq": <entry>, "prev": <its prev>}'
    return (record["seq"], record["prev"]), None


def _write_small_file(path: Path, value: dict[str, Any]) -> None:
    try:
        files.write_atomically(path, _canonical(value) + b"\n", mode=FILE_MODE)
    except OSError as error:
        raise _audit_error("write", path, error) from error


def _open_for_reading(path: Path) -> BinaryIO | None:
    """None when ``path`` is gone."""
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it, often after the lock is gone
    except FileNotFoundError:
        return None
    except OSError as error:
        raise _audit_error("read", path, error) from error


def _last_entry_of_file(path: Path) -> dict[str, Any] | None:
    handle = _open_for_reading(path)
    if handle is None:
        return None
    with handle:
        for raw in _lines_backward(handle, os.fstat(handle.fileno()).st_size, path):
            record = _json_object(raw)
            if record is not None and _is_seq(record.get("seq")) and _is_hash(record.get("hash")):
                return record
    return None


def _first_entry_of_file(path: Path) -> dict[str, Any] | None:
    handle = _open_for_reading(path)
    if handle is None:
        return None
    with handle:
        try:
            return _first_entry(handle.fileno(), os.fstat(handle.fileno()).st_size)
        except OSError as error:
            raise _audit_error("read", path, error) from error


def _first_entry(descriptor: int, end: int) -> dict[str, Any] | None:
    position, carry = 0, b""
    while position < end:
        block = _pread(descriptor, position, min(_BLOCK, end - position))
        position += len(block)
        *lines, carry = (carry + block).split(b"\n")
        for raw in lines:
            record = _json_object(raw)
            if record is not None and _is_seq(record.get("seq")):
                return record
    return None


def _lines_backward(handle: BinaryIO, end: int, path: Path) -> Iterator[bytes]:
    try:
        yield from _lines_backward_fd(handle.fileno(), end)
    except OSError as error:
        raise _audit_error("read", path, error) from error


def _lines_backward_fd(descriptor: int, end: int) -> Iterator[bytes]:
    """The non-empty lines among the first ``end`` bytes, last first, reading a block at a time."""
    position, carry = end, b""
    while position > 0:
        start = max(0, position - _BLOCK)
        first, *rest = (_pread(descriptor, start, position - start) + carry).split(b"\n")
        position, carry = start, first
        for raw in reversed(rest):
            if raw:
                yield raw
    if carry:
        yield carry


def _start_of_last_line(descriptor: int, end: int) -> int:
    position = end
    while position > 0:
        start = max(0, position - _BLOCK)
        newline = _pread(descriptor, start, position - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        position = start
    return 0


def _pread(descriptor: int, offset: int, length: int) -> bytes:
    chunks = []
    while length > 0:
        chunk = os.pread(descriptor, length, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _size_of(descriptor: int, path: Path) -> int:
    try:
        return os.fstat(descriptor).st_size
    except OSError as error:
        raise _audit_error("read", path, error) from error


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise _audit_error("create", folder, error) from error


def _fsync_folder(folder: Path) -> None:
    try:
        files.fsync_folder(folder)
    except OSError as error:
        raise _audit_error("sync", folder, error) from error


def _remove_stale_temp_files(folder: Path) -> None:
    """Temp files of head.json or anchor.json writes that a crash interrupted."""
    try:
        names = os.listdir(folder)
    except OSError as error:
        raise _audit_error("list", folder, error) from error
    for name in names:
        if name.startswith(".") and name.endswith(".tmp"):
            try:
                os.unlink(folder / name)
            except OSError:
                pass  # harmless: it is tried again at the next open


def _audit_error(action: str, path: Path, error: OSError) -> AuditError:
    """One line a person can act on, for an OSError met while using the audit folder."""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return AuditError(f"cannot {action} {path}: no space left on its device: free some space (entries already written are kept)")
    if error.errno in (errno.EACCES, errno.EPERM):
        return AuditError(
            f"cannot {action} {path}: permission denied: run the agent as the user that owns {path.parent} "
            "(usually root), or give that user read and write access to it"
        )
    if error.errno == errno.EROFS:
        return AuditError(f"cannot {action} {path}: the file system is read-only: remount it read-write")
    if error.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = next((part for part in reversed([path, *path.parents]) if part.exists() and not part.is_dir()), None)
        if blocker is not None:
            return AuditError(f"cannot {action} {path}: {blocker} is a file, not a folder: move it, or set another state_dir")
    return AuditError(f"cannot {action} {path}: {error.strerror or error}")

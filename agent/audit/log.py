"""``AuditLog``: appending entries durably, reading them back, rotating, mending what a crash left."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.audit.entries import (
    _ACTION,
    ANCHOR_NAME,
    DEFAULT_KEEP_FILES,
    DEFAULT_MAX_BYTES,
    FILE_MODE,
    HEAD_NAME,
    LIVE_NAME,
    REPAIR_ACTION,
    ZERO_HASH,
    AuditEntry,
    AuditError,
    AuditVerification,
    _canonical,
    _content_hash,
    _continues,
    _entries_are,
    _entry_from_line,
    _format_time,
    _is_hash,
    _is_seq,
    _json_object,
    utc_now,
)
from agent.audit.files import (
    _audit_error,
    _first_entry,
    _first_entry_of_file,
    _fsync_folder,
    _last_entry_of_file,
    _lines_backward,
    _lines_backward_fd,
    _make_folder,
    _newest_first,
    _open_for_reading,
    _pread,
    _read_anchor,
    _read_head,
    _remove_stale_temp_files,
    _rotated_files,
    _size_of,
    _start_of_last_line,
    _write_all,
    _write_small_file,
)
from agent.audit.verify import _Snapshot


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

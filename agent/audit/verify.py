"""``verify``: walk the hash chain from the anchor to the head and name every break."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from agent.audit.entries import (
    ANCHOR_NAME,
    HEAD_NAME,
    LIVE_NAME,
    ZERO_HASH,
    AuditProblem,
    AuditVerification,
    _content_hash_or_none,
    _entries_are,
    _fault,
    _is_hash,
    _is_json,
    _is_seq,
    _json_object,
)
from agent.audit.files import (
    _audit_error,
    _open_for_reading,
    _read_anchor,
    _read_head,
    _rotated_files,
)


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

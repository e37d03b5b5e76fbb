"""The audit folder's files: the live file, rotated files, head and anchor, read and written safely."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from agent import files
from agent.audit.entries import (
    _BLOCK,
    _ROTATED_NAME,
    ANCHOR_NAME,
    FILE_MODE,
    HEAD_NAME,
    AuditError,
    _canonical,
    _is_hash,
    _is_seq,
    _json_object,
)


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

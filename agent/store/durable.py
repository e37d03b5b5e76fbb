"""Durable file writes: a file is either its old content or its complete new content, on disk.

``write_atomically`` writes a temp file in the same folder, fsyncs it, ``os.replace``s it over the
target and fsyncs the folder (without the last step a power cut can lose the rename). If only that
last step fails, the file already holds the new content: the error says so, and a caller that keeps
the content in memory too (``storage.py``) does the folder's fsync itself and retries it. ``append_durably``
appends whole lines and fsyncs. OSErrors become ``StoreError``s that name the file and say what to
do; the temp file is removed on any failure, and a crash that leaves one behind is harmless:
``remove_stale_temp_files`` clears them when the store is next opened.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from agent import files
from agent.errors import StoreError

TEMP_MARK = ".tmp-"
FILE_MODE = 0o600


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def write_atomically(path: Path, data: bytes, *, sync_folder: bool = True) -> None:
    """Replace ``path`` with ``data``: afterwards the file holds either its old bytes or all of ``data``.

    ``sync_folder=False`` leaves the folder's fsync (which makes the rename itself durable) to
    the caller, who may do it once for many files.
    """
    temp = temp_path_for(path)
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            _write_all(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temp, path)
    except BaseException as error:
        _remove_quietly(temp)
        if isinstance(error, OSError):
            raise store_error("write", path, error, intact=True) from error
        raise
    if sync_folder:
        try:
            files.fsync_folder(path.parent)
        except OSError as error:
            reason = error.strerror or str(error)
            raise StoreError(
                f"{path} was replaced with its new content, but syncing {path.parent} failed ({reason}): "
                "a power cut may still undo the change"
            ) from error


def append_durably(path: Path, lines: list[bytes]) -> None:
    """Append whole lines to ``path`` (created if missing) and fsync it.

    A line torn by an earlier crash is ended first, so it spoils only itself (readers skip it).
    """
    created = not path.exists()
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, FILE_MODE)
        try:
            size = os.fstat(descriptor).st_size
            prefix = b""
            if size and os.pread(descriptor, 1, size - 1) != b"\n":
                prefix = b"\n"
            _write_all(descriptor, prefix + b"".join(line + b"\n" for line in lines))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        raise store_error("append to", path, error, intact=True) from error
    if created:
        fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    try:
        files.fsync_folder(folder)
    except OSError as error:
        raise store_error("sync", folder, error, intact=False) from error


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise store_error("create", folder, error, intact=False) from error


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Temp files left by a process that died mid-write (only ever called under the agent lock)."""
    removed = []
    try:
        candidates = [entry for entry in folder.iterdir() if entry.name.startswith(".") and TEMP_MARK in entry.name]
    except FileNotFoundError:
        return removed
    except OSError as error:
        raise store_error("list", folder, error, intact=False) from error
    for candidate in candidates:
        if _remove_quietly(candidate):
            removed.append(candidate)
    return removed


def store_error(action: str, path: Path, error: OSError, *, intact: bool) -> StoreError:
    """One line a person can act on, for an OSError met while using the store's files."""
    try:
        folder = path if path.is_dir() else path.parent
    except OSError:  # a folder we may not even look into
        folder = path.parent
    reason = error.strerror or str(error)
    previous = "; the previous state is intact" if intact else ""
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(f"cannot {action} {path}: no space left on the device holding {folder}: free some space{previous}")
    if error.errno in (errno.EACCES, errno.EPERM):
        return StoreError(
            f"cannot {action} {path}: permission denied: run the agent as the user that owns {folder} "
            f"(usually root), or give that user read and write access to it{previous}"
        )
    if error.errno == errno.EROFS:
        return StoreError(f"cannot {action} {path}: the file system is read-only: remount it read-write{previous}")
    return StoreError(f"cannot {action} {path}: {reason}{previous}")


def _write_all(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(descriptor, view)
        view = view[written:]


def _remove_quietly(path: Path) -> bool:
    try:
        os.unlink(path)
        return True
    except OSError:
        return False

"""Durable small-file writes shared by every part that keeps files (feed, keys, releases, store).

``write_atomically`` writes a temp file in the same folder, fsyncs it, ``os.replace``s it over
the target and fsyncs the folder, so a reader (or a host after a power cut) sees the old content
or the complete new one, never half. Both raise OSError; callers translate it into their own
error with the path and what to do.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new entry in ``folder`` durable (without it a power cut can undo it)."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644, sync_folder: bool = True) -> None:
    """``sync_folder=False`` leaves the folder's fsync to a caller writing several files into it."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if sync_folder:
        fsync_folder(path.parent)

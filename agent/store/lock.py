"""One agent per state folder: an exclusive, non-blocking ``flock`` on ``state_dir/agent.lock``.

TinyDB has no locking of its own and two writers silently lose each other's changes (TinyDB
issue #72), so a second agent must refuse to start rather than run beside the first. The holder
writes its pid into the lock file so the refusal can name it. The lock belongs to the open file
description: it goes away when the holder exits, however it exits, so there is never a stale lock
to clean up (and the file is never deleted, which would let two processes lock two different files).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from agent.errors import StoreLocked
from agent.store.durable import store_error

LOCK_NAME = "agent.lock"


class AgentLock:
    """Held from ``acquire`` until ``release`` (or until the process ends)."""

    def __init__(self, path: Path, descriptor: int):
        self.path = path
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, state_dir: Path) -> AgentLock:
        path = state_dir / LOCK_NAME
        try:
            descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as error:
            raise store_error("open", path, error, intact=False) from error
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(descriptor)
            os.close(descriptor)
            who = f"pid {holder}" if holder else "pid unknown"
            raise StoreLocked(
                f"another id1 agent ({who}) is using {state_dir}: stop it first (systemctl stop id1-agent)"
            ) from None
        except OSError as error:
            os.close(descriptor)
            raise store_error("lock", path, error, intact=False) from error
        try:
            # Written over the old pid, then cut to length: a reader never sees an empty file.
            pid = f"{os.getpid()}\n".encode()
            os.pwrite(descriptor, pid, 0)
            os.ftruncate(descriptor, len(pid))
        except OSError as error:
            os.close(descriptor)
            raise store_error("write", path, error, intact=False) from error
        return cls(path, descriptor)

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        try:
            os.ftruncate(descriptor, 0)  # no pid left behind to mislead a reader
        except OSError:
            pass
        finally:
            os.close(descriptor)  # closing drops the flock


def _read_pid(descriptor: int) -> int | None:
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

"""The TinyDB ``Storage`` under the store: parsed state in memory, every write atomic and durable.

TinyDB's ``JSONStorage`` re-reads and re-parses the file on every query, and rewrites the file
in place: a crash mid-write leaves half a file, a failed rewrite can leave the end of the old
one behind ("Trailing data", TinyDB issue #301; the temp-file-and-rename fix proposed in #467 /
PR #468 is not in TinyDB 4.9), and older versions left a truncated file when a value could not be
serialised (#85, #89). This storage instead

- reads the file once (the agent is its only writer, behind ``AgentLock``) and answers every
  read from the parsed data in memory;
- serialises the whole state to bytes *first*, so a serialisation error leaves the file as it
  was, then writes those bytes with ``write_atomically`` (temp file in the same folder, fsync,
  ``os.replace``, fsync of the folder): after a crash the file holds the old state or the new;
- on a failed write, puts the in-memory state back to the last state written, so memory never
  runs ahead of the disk;
- once ``os.replace`` has succeeded, the new state *is* the file: if the folder's fsync then
  fails, memory keeps the new state too (putting the old one back would make the next write
  silently undo a change that is on disk). The change is logged as not yet durable (a power
  cut could still lose the rename) and the folder's fsync is retried at the next flush;
- can defer writes (``deferred``) so one transaction — several table changes, or a whole
  ``Store.batch()`` — becomes a single file write.

Serialising is the part of a write that grows with the state, so each table's JSON is cached
and re-used while that table is unchanged. That is safe because TinyDB never edits a table in
place: every insert, update or remove builds a new dict for the table and stores it in the
state (``Table._update_table``), so a table that is still the same object has the same content.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tinydb.storages import Storage

from agent.errors import StoreError
from agent.store.durable import fsync_folder, write_atomically

State = dict[str, dict[str, Any]]

logger = logging.getLogger("agent.store")


def encode_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class DurableJSONStorage(Storage):
    def __init__(self, path: Path, state: State, written: bytes):
        """``state`` is the parsed content of ``written``, the bytes now in ``path``."""
        super().__init__()
        self.path = path
        self.deferred = False
        self._state = state
        self._written = written
        self._dirty = False
        self._unsynced = False
        """The file was replaced but its folder's fsync failed: the rename is not durable yet."""
        self._warned = False
        self._table_json: dict[str, tuple[dict[str, Any], bytes]] = {}

    @property
    def written_bytes(self) -> int:
        """Size of the state file as last written."""
        return len(self._written)

    @property
    def written(self) -> bytes:
        """The bytes of the state file as last written: what is on disk, whatever is pending."""
        return self._written

    def read(self) -> State:
        return self._state

    def write(self, data: State) -> None:
        self._state = data
        self._dirty = True
        if not self.deferred:
            self.flush()

    def flush(self) -> None:
        """Write the state if it changed; on failure the state in memory is the one on disk again.

        A failure after the rename is not one: the new state stays (see the module docstring).
        """
        if not self._dirty:
            if self._unsynced:
                self._sync_folder()
            return
        try:
            payload = self._serialise(self._state)
            write_atomically(self.path, payload, sync_folder=False)
        except BaseException:
            self.discard()
            raise
        self._written = payload
        self._dirty = False
        self._unsynced = True
        self._sync_folder()

    def _sync_folder(self) -> None:
        """Make the last rename durable; on failure log it and leave it for the next flush."""
        try:
            fsync_folder(self.path.parent)
        except StoreError as error:
            logger.warning(
                "%s holds the new state, but it may not survive a power cut yet (%s); "
                "the agent retries at its next write", self.path, error,
            )
            self._warned = True
            return
        self._unsynced = False
        if self._warned:
            self._warned = False
            logger.info("%s: its folder is synced again, every change so far is durable", self.path)

    def discard(self) -> None:
        """Forget every change not yet written."""
        self._state = json.loads(self._written)
        self._table_json.clear()
        self._dirty = False

    def close(self) -> None:
        pass

    def _serialise(self, state: State) -> bytes:
        table_json = {}
        parts = []
        for name, table in state.items():
            cached = self._table_json.get(name)
            if cached is not None and cached[0] is table:
                encoded = cached[1]
            else:
                try:
                    encoded = encode_json(table)
                except (TypeError, ValueError) as error:
                    raise StoreError(f"cannot store table {name!r}: {error}; {self.path} was not changed") from None
            table_json[name] = (table, encoded)
            parts.append(encode_json(name) + b":" + encoded)
        self._table_json = table_json
        return b"{" + b",".join(parts) + b"}"

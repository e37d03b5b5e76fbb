"""Append-only history: records moved out of ``state.json`` so that file stays small.

``history/deployments.jsonl``, ``history/rollbacks.jsonl`` and ``history/revisions.jsonl`` hold
one JSON record per line, oldest first, in the same shape as in ``state.json``. Lines are
appended (and fsynced) *before* the ``state.json`` write that drops the records, so a crash in
between leaves a record in both places, never in neither: readers prefer ``state.json`` and,
within a file, the last line for an id. A line torn by a crash is skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.store.durable import append_durably, make_folder, store_error

FOLDER_NAME = "history"


class Archive:
    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.jsonl"

    def append(self, name: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        make_folder(self.folder)
        lines = [json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() for record in records]
        append_durably(self.path(name), lines)

    def read(self, name: str) -> list[dict[str, Any]]:
        """Every intact record of ``name``, oldest first."""
        path = self.path(name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as error:
            raise store_error("read", path, error, intact=True) from error
        records = []
        for line in data.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # torn by a crash mid-append
            if isinstance(record, dict):
                records.append(record)
        return records

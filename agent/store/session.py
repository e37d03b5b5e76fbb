"""The open store as the repositories see it: tables, clock, side files, and transactions.

Every change goes through ``transaction()``: it holds the store's ``RLock`` for the whole
read-modify-write (the API's threads and the scheduler's jobs share one store), defers the
storage's writes, and at the end of the outermost transaction appends queued history lines and
writes ``state.json`` once. If anything inside fails, every change since the last write is
dropped from memory too, so what the process sees is always what is on disk. Repositories
check and prepare everything they can (refusals, validation, manifest files) before they open
their transaction, so a refused call changes nothing; a failure inside a nested transaction
dooms the whole ``Store.batch()`` around it: a batch is never stored in part.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from tinydb import TinyDB
from tinydb.table import Document, Table

from agent.errors import StoreError
from agent.store.archive import Archive
from agent.store.manifests import ManifestFiles
from agent.store.models import StoreEvent, as_utc
from agent.store.records import EVENTS_KEPT, META, SINGLETON_ID, TOTALS, Meta, Totals
from agent.store.storage import DurableJSONStorage

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class StoreLimits:
    """How many finished records ``state.json`` keeps before moving the oldest to ``history/``."""

    finished_deployments: int = 100
    finished_rollbacks: int = 100
    finished_approvals: int = 100

    def __post_init__(self) -> None:
        if min(self.finished_deployments, self.finished_rollbacks, self.finished_approvals) < 1:
            raise ValueError("store limits must keep at least one finished record")


class Session:
    def __init__(
        self,
        state_dir: Path,
        storage: DurableJSONStorage,
        manifests: ManifestFiles,
        archive: Archive,
        clock: Clock,
        limits: StoreLimits,
    ):
        self.state_dir = state_dir
        self.storage = storage
        self.manifests = manifests
        self.archive = archive
        self.limits = limits
        self.lock = threading.RLock()
        self._clock = clock
        self._db = TinyDB(storage=lambda: storage)
        self._depth = 0
        self._doomed: BaseException | None = None
        self._queued: list[tuple[str, list[dict[str, Any]]]] = []
        self.closed = False

    # ----------------------------------------------------------------------------- transactions

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self.lock:
            self._ensure_open()
            yield

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.lock:
            self._ensure_open()
            outermost = self._depth == 0
            if outermost:
                self.storage.deferred = True
                self._doomed = None
            self._depth += 1
            try:
                yield
            except BaseException as error:
                self._depth -= 1
                self._drop_changes()
                self._doomed = self._doomed or error
                if outermost:
                    self._end()
                raise
            self._depth -= 1
            if outermost:
                try:
                    if self._doomed is not None:
                        self._drop_changes()
                        raise StoreError(f"nothing in this batch was stored, because a change in it failed: {self._doomed}")
                    self._commit()
                finally:
                    self._end()

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def _commit(self) -> None:
        try:
            self.manifests.sync()
            for name, records in self._queued:
                self.archive.append(name, records)
            self._queued.clear()
            self.storage.flush()
        except BaseException:
            self._drop_changes()
            raise

    def _drop_changes(self) -> None:
        self.storage.discard()
        self._queued.clear()

    def _end(self) -> None:
        self.storage.deferred = False
        self._doomed = None

    def _ensure_open(self) -> None:
        if self.closed:
            raise StoreError(f"the store in {self.state_dir} is closed")

    # ----------------------------------------------------------------------------- tables

    def table(self, name: str) -> Table:
        return self._db.table(name, cache_size=0)

    def documents(self, name: str) -> dict[int, dict[str, Any]]:
        """The raw documents of a table by id. Shared with the storage: validate, never modify."""
        return {int(key): document for key, document in self.storage.read().get(name, {}).items()}

    def document(self, name: str, doc_id: int) -> dict[str, Any] | None:
        return self.storage.read().get(name, {}).get(str(doc_id))

    def put(self, name: str, doc_id: int, document: dict[str, Any]) -> None:
        self.table(name).upsert(Document(document, doc_id=doc_id))

    def remove(self, name: str, doc_ids: list[int]) -> None:
        if doc_ids:
            self.table(name).remove(doc_ids=doc_ids)

    def queue_archive(self, name: str, records: list[dict[str, Any]]) -> None:
        """Append ``records`` to ``history/<name>.jsonl`` just before the state write that drops them."""
        if records:
            self._queued.append((name, records))

    # ----------------------------------------------------------------------------- meta

    def now(self) -> datetime:
        return as_utc(self._clock())

    def meta(self) -> Meta:
        return Meta.model_validate(self.document(META, SINGLETON_ID))

    def take_number(self, counter: str) -> int:
        """The next number of ``counter`` (``next_deployment``, …), never handed out twice."""
        meta = self.meta()
        number = getattr(meta, counter)
        self._put_meta(meta.model_copy(update={counter: number + 1}))
        return number

    def totals(self) -> Totals:
        document = self.document(TOTALS, SINGLETON_ID)
        return Totals() if document is None else Totals.model_validate(document)

    def count(self, group: Literal["deployments", "rollbacks"], key: str) -> None:
        """Add one to a running total; inside the transaction that stores what it counts."""
        self.put(TOTALS, SINGLETON_ID, self.totals().plus(group, key).model_dump(mode="json"))

    def record_event(self, kind: str, detail: str) -> None:
        meta = self.meta()
        events = (*meta.events, StoreEvent(at=self.now(), kind=kind, detail=detail))[-EVENTS_KEPT:]
        self._put_meta(meta.model_copy(update={"events": events}))

    def _put_meta(self, meta: Meta) -> None:
        self.put(META, SINGLETON_ID, meta.model_dump(mode="json"))

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self._db.close()

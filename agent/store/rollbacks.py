"""Rollback operations: who rolled back from which revision to which, why, and how it went.

Past ``StoreLimits.finished_rollbacks`` the oldest finished ones move to
``history/rollbacks.jsonl``; ``list`` reads them back from there when asked for more. Each one
added is counted in the store's totals (``totals.py``) by trigger: ``automatic`` when the actor
is ``agent``, else ``manual``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agent.errors import StoreError
from agent.store.models import RollbackOperation, RollbackStatus
from agent.store.records import REVISIONS, ROLLBACK_PREFIX, ROLLBACKS, number_of, rollback_trigger, stored_document
from agent.store.session import Session

ARCHIVE_NAME = "rollbacks"


class RollbackRepository:
    def __init__(self, session: Session):
        self._session = session

    def add(
        self,
        *,
        instance_id: str,
        from_version: str | None,
        to_version: str | None,
        from_revision: int | None,
        to_revision: int,
        reason: str,
        actor: str,
        status: RollbackStatus = RollbackStatus.PENDING,
    ) -> RollbackOperation:
        """A rollback to ``to_revision`` (which must still be kept), pending unless told otherwise."""
        session = self._session
        with session.reading():
            if session.document(REVISIONS, to_revision) is None:
                raise StoreError(f"cannot roll back to revision {to_revision}: it is not kept any more")
            number = session.meta().next_rollback
            operation = RollbackOperation(
                id=f"{ROLLBACK_PREFIX}{number}",
                instance_id=instance_id,
                from_version=from_version,
                to_version=to_version,
                status=status,
                created_at=session.now(),
                reason=reason,
                from_revision=from_revision,
                to_revision=to_revision,
                actor=actor,
            )
            with session.transaction():
                session.take_number("next_rollback")
                session.put(ROLLBACKS, number, operation.model_dump(mode="json"))
                session.count("rollbacks", rollback_trigger(actor))
            return operation

    def save(self, operation: RollbackOperation) -> RollbackOperation:
        session = self._session
        number = number_of(operation.id, ROLLBACK_PREFIX)
        with session.reading():
            if number is None or session.document(ROLLBACKS, number) is None:
                raise StoreError(f"rollback {operation.id} is not in the store (finished ones are archived to history/)")
            document = stored_document(RollbackOperation, operation, f"rollback {operation.id}")
            with session.transaction():
                session.put(ROLLBACKS, number, document)
                self._archive_oldest_finished()
            return RollbackOperation.model_validate(document)

    def get(self, operation_id: str) -> RollbackOperation | None:
        number = number_of(operation_id, ROLLBACK_PREFIX)
        if number is None:
            return None
        with self._session.reading():
            document = self._session.document(ROLLBACKS, number)
            if document is not None:
                return RollbackOperation.model_validate(document)
            for document in reversed(self._session.archive.read(ARCHIVE_NAME)):
                if document.get("id") == operation_id:
                    return _archived(document)
        return None

    def list(self, limit: int | None = None) -> list[RollbackOperation]:
        """Rollbacks newest first: all of ``state.json``'s, or ``limit`` of them (older from ``history/``)."""
        session = self._session
        with session.reading():
            documents = session.documents(ROLLBACKS)
            numbers = sorted(documents, reverse=True)
            result = [RollbackOperation.model_validate(documents[number]) for number in numbers[:limit]]
            if limit is not None and len(result) < limit:
                seen = {operation.id for operation in result} | {document["id"] for document in documents.values()}
                for document in reversed(session.archive.read(ARCHIVE_NAME)):
                    if len(result) >= limit:
                        break
                    if document.get("id") not in seen:
                        seen.add(document.get("id"))
                        operation = _archived(document)
                        if operation is not None:
                            result.append(operation)
            return result

    def _archive_oldest_finished(self) -> None:
        session = self._session
        documents = session.documents(ROLLBACKS)
        finished = sorted(number for number, document in documents.items() if RollbackStatus(document["status"]).finished)
        excess = len(finished) - session.limits.finished_rollbacks
        if excess > 0:
            oldest = finished[:excess]
            session.queue_archive(ARCHIVE_NAME, [documents[number] for number in oldest])
            session.remove(ROLLBACKS, oldest)


def _archived(document: dict[str, Any]) -> RollbackOperation | None:
    try:
        return RollbackOperation.model_validate(document)
    except ValidationError:
        return None

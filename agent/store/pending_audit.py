"""Audit entries written in the same ``state.json`` write as the change they describe.

The audit log and the store are two files: a change stored and then audited can lose its entry
to a crash in between (a pin nobody is said to have set). So an admin's change and its entry go
into the store in one write (``add`` inside the change's batch); the entry is then appended to
the audit log and removed here. Whatever is still here at start is audited then, unless the log
already has it (``ref`` is in its details).
"""

from __future__ import annotations

import uuid
from typing import Any

from agent.store.records import PENDING_AUDIT, PendingAudit
from agent.store.session import Session


class PendingAuditRepository:
    def __init__(self, session: Session):
        self._session = session

    def add(self, *, actor: str, action: str, what: str, why: str = "", details: dict[str, Any] | None = None) -> PendingAudit:
        session = self._session
        with session.reading():
            number = max(session.documents(PENDING_AUDIT), default=0) + 1
            entry = PendingAudit(number=number, ref=uuid.uuid4().hex, actor=actor, action=action, what=what, why=why,
                                 details=details or {}, at=session.now())
            with session.transaction():
                session.put(PENDING_AUDIT, number, entry.model_dump(mode="json"))
            return entry

    def list(self) -> list[PendingAudit]:
        """Oldest first."""
        with self._session.reading():
            documents = self._session.documents(PENDING_AUDIT)
            return [PendingAudit.model_validate(documents[number]) for number in sorted(documents)]

    def remove(self, entry: PendingAudit) -> None:
        with self._session.reading():
            with self._session.transaction():
                self._session.remove(PENDING_AUDIT, [entry.number])

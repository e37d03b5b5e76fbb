"""Blocked versions: releases rolled back from or whose deployment failed (DESIGN.md §5 "Blocked").

The planner gets ``refs()`` and does not choose these again automatically; an admin unblocks
one with ``remove``.
"""

from __future__ import annotations

from pydantic import ValidationError

from agent.errors import StoreError
from agent.store.models import BlockedVersion, BlockSource
from agent.store.records import BLOCKED
from agent.store.session import Session


class BlockedVersionRepository:
    def __init__(self, session: Session):
        self._session = session

    def add(self, ref: str, reason: str, source: BlockSource | str) -> BlockedVersion:
        """Block ``ref`` (``core/auth@1.0.2``, ``platform@2.6.0``); blocking it again updates why and when."""
        session = self._session
        with session.reading():
            try:
                blocked = BlockedVersion(ref=ref, reason=reason, blocked_at=session.now(), source=source)
            except ValidationError as error:
                raise StoreError(f"cannot block {ref!r}: {error.errors()[0]['msg']}") from None
            documents = session.documents(BLOCKED)
            doc_id = next((key for key, document in documents.items() if document["ref"] == ref), None)
            if doc_id is None:
                doc_id = max(documents, default=0) + 1
            with session.transaction():
                session.put(BLOCKED, doc_id, blocked.model_dump(mode="json"))
            return blocked

    def remove(self, ref: str) -> bool:
        """Unblock ``ref``; False if it was not blocked."""
        session = self._session
        with session.reading():
            doc_ids = [key for key, document in session.documents(BLOCKED).items() if document["ref"] == ref]
            if not doc_ids:
                return False
            with session.transaction():
                session.remove(BLOCKED, doc_ids)
            return True

    def list(self) -> list[BlockedVersion]:
        """Every blocked version, oldest block first."""
        with self._session.reading():
            documents = self._session.documents(BLOCKED)
            blocked = [BlockedVersion.model_validate(documents[key]) for key in sorted(documents)]
        return sorted(blocked, key=lambda item: (item.blocked_at, item.ref))

    def refs(self) -> frozenset[str]:
        with self._session.reading():
            return frozenset(document["ref"] for document in self._session.documents(BLOCKED).values())

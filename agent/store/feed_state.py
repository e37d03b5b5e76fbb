"""The feed client's memory between polls: one record (last serial and hash, HTTP validators, times)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agent.errors import StoreError
from agent.store.models import FeedState
from agent.store.records import FEED_STATE, SINGLETON_ID
from agent.store.session import Session


class FeedStateRepository:
    def __init__(self, session: Session):
        self._session = session

    def get(self) -> FeedState:
        """The last recorded state; all fields ``None`` before the first check."""
        with self._session.reading():
            document = self._session.document(FEED_STATE, SINGLETON_ID)
            return FeedState() if document is None else FeedState.model_validate(document)

    def set(self, **changes: Any) -> FeedState:
        """Change the given fields (``serial=43, last_success=now``), keep the others; returns the new state."""
        unknown = set(changes) - set(FeedState.model_fields)
        if unknown:
            raise TypeError(f"FeedState has no field(s) {sorted(unknown)}")
        session = self._session
        with session.reading():
            current = self.get()
            try:
                state = FeedState.model_validate({**current.model_dump(), **changes})
            except ValidationError as error:
                raise StoreError(f"cannot store the feed state: {error.errors()[0]['msg']}") from None
            with session.transaction():
                session.put(FEED_STATE, SINGLETON_ID, state.model_dump(mode="json"))
            return state

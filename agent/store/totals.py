"""Running totals: how many deployments finished (by status) and rollbacks started (by trigger)
since the store began, for the Prometheus counters (``id1_deployments_total``,
``id1_rollbacks_total``), which must never go down.

The repositories raise them in the same transaction, so the same ``state.json`` write, as the
record they count (``deployments.save`` of a deployment that finishes, ``rollbacks.add``); so
moving old records to ``history/``, pruning, or restoring an older backup (which keeps the higher
totals) never lowers them. A store from before they existed starts them from every record it
still has (the schema 2 → 3 migration).
"""

from __future__ import annotations

from agent.store.records import Totals
from agent.store.session import Session


class TotalsRepository:
    def __init__(self, session: Session):
        self._session = session

    def get(self) -> Totals:
        with self._session.reading():
            return self._session.totals()

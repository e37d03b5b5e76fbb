"""Revisions: every deployed manifest, numbered 1, 2, 3… — what an admin can roll back to.

Numbers come from a counter in ``meta`` and are never reused, even after pruning. ``prune``
(called by the daemon's retention job) keeps the newest revisions plus any that a running
deployment or rollback may still need to go back to, and returns the removed ones so the caller
can delete their release folders; their records go on in ``history/revisions.jsonl``.
"""

from __future__ import annotations

from typing import Any

from agent.errors import StoreError
from agent.store.manifests import ManifestFiles
from agent.store.models import Revision, RollbackStatus
from agent.store.records import ACTIVE_DEPLOYMENTS, REVISIONS, ROLLBACKS, RevisionRecord
from agent.store.session import Session

ARCHIVE_NAME = "revisions"
DEFAULT_KEEP = 20


class RevisionRepository:
    def __init__(self, session: Session):
        self._session = session

    def add(self, manifest: dict[str, Any], feed_serial: int | None, deployment_id: str | None) -> Revision:
        """Record ``manifest`` as the next revision (call when a deployment commits)."""
        session = self._session
        with session.reading():
            sha256 = session.manifests.put(manifest)
            number = session.meta().next_revision
            record = RevisionRecord(
                number=number,
                manifest_sha256=sha256,
                feed_serial=feed_serial,
                created_at=session.now(),
                deployment_id=deployment_id,
            )
            with session.transaction():
                session.take_number("next_revision")
                session.put(REVISIONS, number, record.model_dump(mode="json"))
            revision = _revision(record, manifest)
            session.manifests.remember_hash(revision.manifest, sha256)
            return revision

    def get(self, number: int) -> Revision | None:
        with self._session.reading():
            document = self._session.document(REVISIONS, number)
            return None if document is None else _load(document, self._session.manifests)

    def latest(self) -> Revision | None:
        with self._session.reading():
            documents = self._session.documents(REVISIONS)
            return _load(documents[max(documents)], self._session.manifests) if documents else None

    def list(self) -> list[Revision]:
        """Every kept revision, newest first."""
        with self._session.reading():
            documents = self._session.documents(REVISIONS)
            return [_load(documents[number], self._session.manifests) for number in sorted(documents, reverse=True)]

    def prune(self, keep: int = DEFAULT_KEEP) -> list[Revision]:
        """Remove all but the newest ``keep`` revisions and return the removed ones, oldest first.

        A revision an unfinished deployment would roll back to, or an unfinished rollback moves
        between, is kept too: pruning must never take away the way back.
        """
        if keep < 1:
            raise ValueError("prune must keep at least the newest revision (the one running)")
        session = self._session
        with session.reading():
            documents = session.documents(REVISIONS)
            newest = set(sorted(documents, reverse=True)[:keep])
            needed = self._still_needed()
            doomed = [number for number in sorted(documents) if number not in newest and number not in needed]
            if not doomed:
                return []
            removed = [_load(documents[number], session.manifests) for number in doomed]
            with session.transaction():
                session.queue_archive(ARCHIVE_NAME, [documents[number] for number in doomed])
                session.remove(REVISIONS, doomed)
            return removed

    def manifest_hashes(self) -> set[str]:
        with self._session.reading():
            return {document["manifest_sha256"] for document in self._session.documents(REVISIONS).values()}

    def require(self, number: int) -> None:
        with self._session.reading():
            if self._session.document(REVISIONS, number) is None:
                kept = sorted(self._session.documents(REVISIONS))
                raise StoreError(f"revision {number} is not kept (kept: {_ranges(kept) or 'none'})")

    def _still_needed(self) -> set[int]:
        session = self._session
        needed = {
            document["from_revision"]
            for document in session.documents(ACTIVE_DEPLOYMENTS).values()
            if document.get("from_revision") is not None
        }
        for document in session.documents(ROLLBACKS).values():
            if not RollbackStatus(document["status"]).finished:
                needed.add(document["to_revision"])
                if document.get("from_revision") is not None:
                    needed.add(document["from_revision"])
        return needed


def _load(document: dict[str, Any], manifests: ManifestFiles) -> Revision:
    record = RevisionRecord.model_validate(document)
    return _revision(record, manifests.get(record.manifest_sha256, owner=f"revision {record.number}"))


def _revision(record: RevisionRecord, manifest: dict[str, Any]) -> Revision:
    return Revision(manifest=manifest, **record.model_dump())


def _ranges(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` → ``1-3, 7``."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)

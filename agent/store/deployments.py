"""Deployments: created when the deployer starts one, saved at every step, kept for history.

At most one deployment is unfinished at a time (``active()``): it is what a restarted agent
resumes or undoes. Saving a finished one moves it to the finished table (and counts it in the
store's totals, ``totals.py``); past
``StoreLimits.finished_deployments`` the oldest finished ones move to ``history/deployments.jsonl``
(still found by ``get`` and ``recent``, with their manifest while its file is kept).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agent.errors import StoreError
from agent.store.manifests import ManifestFiles
from agent.store.models import Deployment, DeploymentStatus, JournalEntry
from agent.store.records import (
    ACTIVE_DEPLOYMENTS,
    DEPLOYMENT_PREFIX,
    FINISHED_DEPLOYMENTS,
    DeploymentRecord,
    number_of,
    stored_document,
)
from agent.store.session import Session

ARCHIVE_NAME = "deployments"


class DeploymentRepository:
    def __init__(self, session: Session):
        self._session = session

    def create(
        self,
        instance_id: str,
        manifest: dict[str, Any],
        *,
        state: str = "created",
        target_hash: str | None = None,
        from_revision: int | None = None,
    ) -> Deployment:
        """A new pending deployment of ``manifest``; StoreError while another one is unfinished."""
        session = self._session
        with session.reading():
            active = self._active_document()
            if active is not None:
                raise StoreError(
                    f"deployment {active['id']} is still {active['status']}: finish or undo it before starting another"
                )
            now = session.now()
            sha256 = session.manifests.put(manifest)  # on disk before any record points at it
            number = session.meta().next_deployment
            deployment = Deployment(
                id=f"{DEPLOYMENT_PREFIX}{number}",
                instance_id=instance_id,
                status=DeploymentStatus.PENDING,
                manifest=manifest,
                created_at=now,
                updated_at=now,
                state=state,
                journal=(JournalEntry(state=state, at=now),),
                target_hash=target_hash,
                from_revision=from_revision,
            )
            record = _record(deployment, sha256)
            with session.transaction():
                session.take_number("next_deployment")
                session.put(ACTIVE_DEPLOYMENTS, number, record)
            return _remember_manifest(deployment, sha256, session.manifests)

    def save(self, deployment: Deployment) -> Deployment:
        """Store ``deployment`` as it is now (``updated_at`` set from the clock) and return what was stored."""
        session = self._session
        number = number_of(deployment.id, DEPLOYMENT_PREFIX)
        with session.reading():
            in_active = number is not None and session.document(ACTIVE_DEPLOYMENTS, number) is not None
            finished_before = number is not None and session.document(FINISHED_DEPLOYMENTS, number) is not None
            if not (in_active or finished_before):
                raise StoreError(
                    f"deployment {deployment.id} is not in the store: only deployments it created, and not yet "
                    f"archived to history/ (beyond the last {session.limits.finished_deployments} finished), can change"
                )
            if finished_before and not deployment.finished:
                raise StoreError(f"deployment {deployment.id} has finished; it cannot become {deployment.status} again")
            sha256 = _known_manifest_sha256(deployment)
            if sha256 is None:
                if deployment.manifest is None:
                    raise StoreError(f"deployment {deployment.id} has no manifest")
                sha256 = session.manifests.put(deployment.manifest)
            # Checked before the transaction, so a bad value cannot doom a batch.
            record = _record(deployment.model_copy(update={"updated_at": session.now()}), sha256)
            saved = Deployment.model_validate({**_fields(record), "manifest": deployment.manifest})
            assert number is not None
            with session.transaction():
                if saved.finished:
                    if in_active:  # it finishes now (saving a finished one again counts nothing)
                        session.remove(ACTIVE_DEPLOYMENTS, [number])
                        session.count("deployments", saved.status.value)
                    session.put(FINISHED_DEPLOYMENTS, number, record)
                    self._archive_oldest_finished()
                else:
                    session.put(ACTIVE_DEPLOYMENTS, number, record)
            return _remember_manifest(saved, sha256, session.manifests)

    def get(self, deployment_id: str) -> Deployment | None:
        number = number_of(deployment_id, DEPLOYMENT_PREFIX)
        if number is None:
            return None
        with self._session.reading():
            for table in (ACTIVE_DEPLOYMENTS, FINISHED_DEPLOYMENTS):
                document = self._session.document(table, number)
                if document is not None:
                    return _load(document, self._session.manifests)
            for document in reversed(self._session.archive.read(ARCHIVE_NAME)):
                if document.get("id") == deployment_id:
                    return _load_archived(document, self._session.manifests)
        return None

    def active(self) -> Deployment | None:
        """The unfinished deployment, if any: what a restarted agent must resume or undo."""
        with self._session.reading():
            document = self._active_document()
            return None if document is None else _load(document, self._session.manifests)

    def recent(self, limit: int = 20) -> list[Deployment]:
        """The newest ``limit`` deployments, newest first (from ``history/`` when ``state.json`` has too few)."""
        session = self._session
        with session.reading():
            documents = {**session.documents(FINISHED_DEPLOYMENTS), **session.documents(ACTIVE_DEPLOYMENTS)}
            newest = [documents[number] for number in sorted(documents, reverse=True)[:limit]]
            result = [_load(document, session.manifests) for document in newest]
            if len(result) < limit:
                kept = {document["id"] for document in documents.values()}
                for document in _newest_archived(session.archive.read(ARCHIVE_NAME), kept):
                    if len(result) >= limit:
                        break
                    deployment = _load_archived(document, session.manifests)
                    if deployment is not None:
                        result.append(deployment)
            return result

    def manifest_hashes(self) -> set[str]:
        """The manifests ``state.json``'s deployments refer to (what garbage collection keeps)."""
        session = self._session
        with session.reading():
            return {
                document["manifest_sha256"]
                for table in (ACTIVE_DEPLOYMENTS, FINISHED_DEPLOYMENTS)
                for document in session.documents(table).values()
            }

    def _active_document(self) -> dict[str, Any] | None:
        documents = self._session.documents(ACTIVE_DEPLOYMENTS)
        return next(iter(documents.values()), None)

    def _archive_oldest_finished(self) -> None:
        session = self._session
        finished = session.documents(FINISHED_DEPLOYMENTS)
        excess = len(finished) - session.limits.finished_deployments
        if excess > 0:
            oldest = sorted(finished)[:excess]
            session.queue_archive(ARCHIVE_NAME, [finished[number] for number in oldest])
            session.remove(FINISHED_DEPLOYMENTS, oldest)


def _record(deployment: Deployment, manifest_sha256: str) -> dict[str, Any]:
    return stored_document(DeploymentRecord, deployment, f"deployment {deployment.id}", manifest_sha256=manifest_sha256)


def _fields(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "manifest_sha256"}


def _load(document: dict[str, Any], manifests: ManifestFiles) -> Deployment:
    sha256 = document["manifest_sha256"]
    fields = _fields(document)
    manifest = manifests.get(sha256, owner=f"deployment {document['id']}")
    return _remember_manifest(Deployment.model_validate({**fields, "manifest": manifest}), sha256, manifests)


def _load_archived(document: dict[str, Any], manifests: ManifestFiles) -> Deployment | None:
    """An archived deployment, its manifest if still kept; ``None`` for a line this agent cannot read."""
    sha256 = document.get("manifest_sha256")
    fields = _fields(document)
    manifest = manifests.find(sha256) if isinstance(sha256, str) else None
    try:
        deployment = Deployment.model_validate({**fields, "manifest": manifest})
    except ValidationError:
        return None
    return _remember_manifest(deployment, sha256, manifests) if isinstance(sha256, str) else deployment


def _remember_manifest(deployment: Deployment, sha256: str, manifests: ManifestFiles) -> Deployment:
    if deployment.manifest is not None:
        deployment._manifest_ref = (deployment.manifest, sha256)
        manifests.remember_hash(deployment.manifest, sha256)
    return deployment


def _known_manifest_sha256(deployment: Deployment) -> str | None:
    """The stored hash, if ``deployment`` still carries the very manifest object it was stored with."""
    reference = deployment._manifest_ref
    if reference is not None and reference[0] is deployment.manifest:
        return reference[1]
    return None


def _newest_archived(documents: list[dict[str, Any]], kept: set[str]) -> list[dict[str, Any]]:
    """Archived records newest first, each id once (its last line), skipping ones ``state.json`` still has."""
    seen = set(kept)
    newest = []
    for document in reversed(documents):
        record_id = document.get("id")
        if record_id not in seen:
            seen.add(record_id)
            newest.append(document)
    return newest

"""Approvals (DESIGN.md §5, §7): a target shown to an approver, bound to its hash, and what came of it.

    propose ──▶ pending ──approve──▶ approved ──mark──▶ deployed | failed
                   │  ╲                   ╲
                 reject  supersede          superseded (another one was approved before it was deployed)
                         (or a newer target was proposed)

The daemon ``propose``s the target it planned on every check. The same target (same
``target_hash``) keeps its approval while that is pending, approved or rejected — so a poll does
not ask again for a target already approved or turned down — and every *other* pending approval
is superseded: at most one approval is pending, and it is for the newest target. Approving one
supersedes any other approved one not yet deployed, so at most one waits for the maintenance
window (``approved_waiting``). Ids are ``approval-<n>`` from a counter in ``meta``.

``state.json`` holds each approval's small fields; the target manifest is a file in
``manifests/`` (shared with the deployment of the same manifest), and the changes and release
notes — as large as a manifest when a platform upgrade touches every capability — are another
(``details_sha256``). Past ``StoreLimits.finished_approvals`` the oldest finished ones move to
``history/approvals.jsonl``, with their changes and notes written into the line so they outlive
the files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from agent.errors import Issue
from agent.store.errors import InvalidTransition, InvalidValue, RecordNotFound
from agent.store.manifests import ManifestFiles
from agent.store.models import Approval, ApprovalFields, ApprovalStatus
from agent.store.records import APPROVAL_PREFIX, APPROVALS, ApprovalRecord, number_of, referenced_manifests
from agent.store.session import Session

ARCHIVE_NAME = "approvals"
REPLACED_BY_TARGET = "a newer target replaced it"
REPLACED_BY_APPROVAL = "a newer approved target replaced it"

_KEPT_FOR_THE_SAME_TARGET = frozenset({ApprovalStatus.PENDING, ApprovalStatus.APPROVED, ApprovalStatus.REJECTED})
_PENDING = frozenset({ApprovalStatus.PENDING})
_MARKS = frozenset({ApprovalStatus.DEPLOYED, ApprovalStatus.FAILED})
_FILE_FIELDS = ("manifest_sha256", "details_sha256")
_DETAIL_FIELDS = ("changes", "notes")


class ApprovalRepository:
    def __init__(self, session: Session):
        self._session = session

    # ----------------------------------------------------------------------------- changes

    def propose(
        self,
        target_hash: str,
        target_manifest: dict[str, Any],
        changes: Iterable[dict[str, Any]],
        *,
        feed_serial: int | None,
        notes: str | None = None,
        advisories: Iterable[str] = (),
    ) -> tuple[Approval, list[Approval]]:
        """The approval of this target, and the other pending approvals it superseded.

        The approval is the existing one if this ``target_hash`` is already pending, approved
        (not yet deployed) or rejected — look at its ``status`` — else a new pending one made
        from the arguments. Nothing is written when nothing changes, so calling this on every
        feed check costs nothing while the target stays the same.
        """
        session = self._session
        with session.reading():
            now = session.now()
            documents = session.documents(APPROVALS)
            current = _newest(documents, lambda d: d["target_hash"] == target_hash and _status(d) in _KEPT_FOR_THE_SAME_TARGET)
            new_record = None
            if current is None:
                number = session.meta().next_approval
                try:
                    approval = Approval(
                        id=f"{APPROVAL_PREFIX}{number}",
                        target_hash=target_hash,
                        status=ApprovalStatus.PENDING,
                        created_at=now,
                        updated_at=now,
                        feed_serial=feed_serial,
                        advisories=_as_list(advisories),
                        target=target_manifest,
                        changes=_as_list(changes),
                        notes=notes,
                    )
                except ValidationError as error:
                    raise InvalidValue.from_validation_error("approval", error) from None
                # Both files are on disk before any record points at them.
                manifest_sha256 = session.manifests.put(target_manifest)
                details_sha256 = session.manifests.put({"changes": approval.changes, "notes": approval.notes})
                new_record = _record(approval, manifest_sha256=manifest_sha256, details_sha256=details_sha256)
            keep = None if current is None else current[0]
            superseded = [
                (other, _changed(document, status=ApprovalStatus.SUPERSEDED, reason=REPLACED_BY_TARGET, updated_at=now))
                for other, document in sorted(documents.items())
                if _status(document) == ApprovalStatus.PENDING and other != keep
            ]
            if new_record is not None or superseded:
                with session.transaction():
                    if new_record is not None:
                        session.take_number("next_approval")
                        session.put(APPROVALS, number, new_record)
                    for other, document in superseded:
                        session.put(APPROVALS, other, document)
                    self._archive_oldest_finished()
            chosen = new_record if current is None else current[1]
            return self._load(chosen), [self._load(document) for _, document in superseded]

    def approve(self, approval_id: str, actor: str, comment: str | None = None) -> Approval:
        """Approve a pending approval; any other approved one not yet deployed is superseded.

        RecordNotFound for an unknown id, InvalidTransition (naming its status) for one that is
        not pending.
        """
        _require_text("actor", actor)
        session = self._session
        with session.reading():
            number, document = self._require(approval_id, _PENDING, "only a pending approval can be approved")
            now = session.now()
            approved = _changed(
                document, status=ApprovalStatus.APPROVED, decided_at=now, decided_by=actor, comment=comment, updated_at=now
            )
            replaced = [
                (other, _changed(other_document, status=ApprovalStatus.SUPERSEDED, reason=REPLACED_BY_APPROVAL, updated_at=now))
                for other, other_document in session.documents(APPROVALS).items()
                if other != number and _status(other_document) == ApprovalStatus.APPROVED
            ]
            with session.transaction():
                session.put(APPROVALS, number, approved)
                for other, other_document in replaced:
                    session.put(APPROVALS, other, other_document)
                self._archive_oldest_finished()
            return self._load(approved)

    def reject(self, approval_id: str, actor: str, reason: str) -> Approval:
        """Reject a pending approval; ``reason`` is required. Errors as for ``approve``."""
        _require_text("actor", actor)
        _require_text("reason", reason)
        session = self._session
        with session.reading():
            number, document = self._require(approval_id, _PENDING, "only a pending approval can be rejected")
            now = session.now()
            rejected = _changed(
                document, status=ApprovalStatus.REJECTED, decided_at=now, decided_by=actor, reason=reason, updated_at=now
            )
            with session.transaction():
                session.put(APPROVALS, number, rejected)
                self._archive_oldest_finished()
            return self._load(rejected)

    def supersede(self, approval_id: str, reason: str) -> Approval:
        """Retire a pending approval whose target no longer needs anyone's approval (a pin or a
        policy made it apply, or it is what runs now). Errors as for ``approve``."""
        _require_text("reason", reason)
        session = self._session
        with session.reading():
            number, document = self._require(approval_id, _PENDING, "only a pending approval can be superseded")
            superseded = _changed(document, status=ApprovalStatus.SUPERSEDED, reason=reason, updated_at=session.now())
            with session.transaction():
                session.put(APPROVALS, number, superseded)
                self._archive_oldest_finished()
            return self._load(superseded)

    def mark(self, approval_id: str, status: ApprovalStatus | str, deployment_id: str | None = None) -> Approval:
        """Record how the deployment of an approved target ended: ``deployed`` or ``failed``.

        Allowed for an approved approval, and for one superseded after it was approved (its
        deployment may already have been under way when another one was approved).
        """
        try:
            status = ApprovalStatus(status)
        except ValueError:
            status = None
        if status not in _MARKS:
            raise InvalidValue("approval", [Issue("status", "an approval can be marked deployed or failed")])
        session = self._session
        with session.reading():
            rule = f"only an approved one can be marked {status.value}"
            number, document = self._require(approval_id, None, rule)
            was_approved = _status(document) == ApprovalStatus.APPROVED or (
                _status(document) == ApprovalStatus.SUPERSEDED and document.get("decided_by") is not None
            )
            if not was_approved:
                raise InvalidTransition(f"approval {approval_id} is {_describe(document)}: {rule}")
            marked = _changed(document, status=status, deployment_id=deployment_id, updated_at=session.now())
            with session.transaction():
                session.put(APPROVALS, number, marked)
                self._archive_oldest_finished()
            return self._load(marked)

    # ----------------------------------------------------------------------------- reading

    def get(self, approval_id: str) -> Approval | None:
        """The approval with this id, from ``state.json`` or else ``history/``."""
        number = number_of(approval_id, APPROVAL_PREFIX)
        if number is None:
            return None
        session = self._session
        with session.reading():
            document = session.document(APPROVALS, number)
            if document is not None:
                return self._load(document)
            archived = self._archived_document(approval_id)
            return None if archived is None else _load_archived(archived, session.manifests)

    def pending(self) -> Approval | None:
        """The approval waiting for a decision (there is at most one)."""
        return self._newest_with(lambda document: _status(document) == ApprovalStatus.PENDING)

    def approved_waiting(self) -> Approval | None:
        """The approved approval not yet deployed (at most one): what the daemon deploys in the next window."""
        return self._newest_with(lambda document: _status(document) == ApprovalStatus.APPROVED)

    def for_target(self, target_hash: str) -> Approval | None:
        """The newest approval of this target still in ``state.json``, whatever its status."""
        return self._newest_with(lambda document: document["target_hash"] == target_hash)

    def list(self, limit: int | None = None, *, with_target: bool = True) -> list[Approval]:
        """Approvals newest first: all of ``state.json``'s, or the newest ``limit`` (older from ``history/``).

        ``with_target=False`` leaves ``target`` as ``None``: a list for display need not read
        a ~100 KB manifest per approval.
        """
        session = self._session
        with session.reading():
            documents = session.documents(APPROVALS)
            newest = sorted(documents, reverse=True)[:limit]
            if limit is None or not self._history_may_be_newer(documents, newest, limit):
                return [self._load(documents[number], with_target=with_target) for number in newest]
            merged: dict[int, dict[str, Any] | None] = {number: None for number in documents}
            for document in session.archive.read(ARCHIVE_NAME):
                number = number_of(str(document.get("id")), APPROVAL_PREFIX)
                if number is not None and number not in documents:
                    merged[number] = document  # the last line for an id wins
            result = []
            for number in sorted(merged, reverse=True):
                if len(result) >= limit:
                    break
                archived = merged[number]
                if archived is None:
                    result.append(self._load(documents[number], with_target=with_target))
                else:
                    approval = _load_archived(archived, session.manifests, with_target=with_target)
                    if approval is not None:
                        result.append(approval)
            return result

    @staticmethod
    def _history_may_be_newer(documents: dict[int, dict[str, Any]], newest: list[int], limit: int) -> bool:
        """Whether ``history/`` may hold one of the ``limit`` newest approvals.

        Archived approvals are finished ones older than every finished one ``state.json``
        keeps; only an unfinished one (approved long ago) can be older than they are.
        """
        if len(newest) < limit:
            return True
        finished = [number for number, document in documents.items() if _status(document).finished]
        return not finished or min(newest) < min(finished)

    def manifest_hashes(self) -> set[str]:
        """The files ``state.json``'s approvals refer to (targets and details): what garbage collection keeps."""
        with self._session.reading():
            return referenced_manifests({APPROVALS: self._session.documents(APPROVALS)})

    # ----------------------------------------------------------------------------- inside

    def _require(
        self, approval_id: str, allowed: frozenset[ApprovalStatus] | None, rule: str
    ) -> tuple[int, dict[str, Any]]:
        """The record of ``approval_id`` in ``state.json`` if its status is ``allowed`` (any, for ``None``).

        RecordNotFound if there is no such approval; InvalidTransition, with ``rule``, if it
        has another status or is archived (archived ones are finished).
        """
        number = number_of(approval_id, APPROVAL_PREFIX)
        document = None if number is None else self._session.document(APPROVALS, number)
        if document is None:
            archived = self._archived_document(approval_id)
            if archived is None:
                raise RecordNotFound(f"there is no approval {approval_id!r}")
            raise InvalidTransition(f"approval {approval_id} is {_describe(archived)}: {rule}")
        if allowed is not None and _status(document) not in allowed:
            raise InvalidTransition(f"approval {approval_id} is {_describe(document)}: {rule}")
        assert number is not None
        return number, document

    def _archived_document(self, approval_id: str) -> dict[str, Any] | None:
        for document in reversed(self._session.archive.read(ARCHIVE_NAME)):
            if document.get("id") == approval_id:
                return document
        return None

    def _newest_with(self, wanted) -> Approval | None:
        with self._session.reading():
            found = _newest(self._session.documents(APPROVALS), wanted)
            return None if found is None else self._load(found[1])

    def _load(self, document: dict[str, Any], *, with_target: bool = True) -> Approval:
        manifests = self._session.manifests
        owner = f"approval {document['id']}"
        target = manifests.get(document["manifest_sha256"], owner=owner) if with_target else None
        details = manifests.get(document["details_sha256"], owner=owner)
        return Approval.model_validate({**_fields(document), "target": target, **_details(details)})

    def _archive_oldest_finished(self) -> None:
        session = self._session
        documents = session.documents(APPROVALS)
        finished = sorted(number for number, document in documents.items() if _status(document).finished)
        excess = len(finished) - session.limits.finished_approvals
        if excess > 0:
            oldest = finished[:excess]
            lines = []
            for number in oldest:
                # The line carries the changes and notes: their file goes once nothing in state.json refers to it.
                details = session.manifests.find(documents[number]["details_sha256"])
                lines.append({**documents[number], **_details(details)})
            session.queue_archive(ARCHIVE_NAME, lines)
            session.remove(APPROVALS, oldest)


def _as_list(values: Any) -> Any:
    """An iterable as a list; a string or a mapping as it is, for the model to refuse (``list("ID1-SA…")`` would not)."""
    return values if isinstance(values, (str, bytes, dict)) else list(values)


def _status(document: dict[str, Any]) -> ApprovalStatus:
    return ApprovalStatus(document["status"])


def _newest(documents: dict[int, dict[str, Any]], wanted) -> tuple[int, dict[str, Any]] | None:
    for number in sorted(documents, reverse=True):
        if wanted(documents[number]):
            return number, documents[number]
    return None


def _record(approval: Approval, **files: str) -> dict[str, Any]:
    fields = {name: getattr(approval, name) for name in ApprovalFields.model_fields}
    return ApprovalRecord.model_validate({**fields, **files}).model_dump(mode="json")


def _changed(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return ApprovalRecord.model_validate({**document, **changes}).model_dump(mode="json")


def _fields(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key not in _FILE_FIELDS and key not in _DETAIL_FIELDS}


def _details(details: Any) -> dict[str, Any]:
    if not isinstance(details, dict):
        return {}
    return {key: details[key] for key in _DETAIL_FIELDS if key in details}


def _load_archived(document: dict[str, Any], manifests: ManifestFiles, *, with_target: bool = True) -> Approval | None:
    """An archived approval (its target while the file is kept); ``None`` for a line this agent cannot read."""
    sha256 = document.get("manifest_sha256")
    target = manifests.find(sha256) if with_target and isinstance(sha256, str) else None
    try:
        return Approval.model_validate({**_fields(document), "target": target, **_details(document)})
    except ValidationError:
        return None


def _describe(document: dict[str, Any]) -> str:
    status = document.get("status")
    reason = document.get("reason")
    return f"{status} ({reason})" if reason else str(status)


def _require_text(field: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue("approval", [Issue(field, "must not be empty")])

"""Update policies set through the API (the seed's UpdatePolicy, with an optional suite scope).

Ids are ``policy-<n>`` from a counter in ``meta``, never handed out twice. Which enabled policy
wins when several cover the same scope is the caller's rule, not the store's.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agent.config import UpdatePolicy
from agent.errors import Issue
from agent.store.errors import InvalidValue, RecordNotFound
from agent.store.records import POLICIES, POLICY_PREFIX, PolicyRecord, number_of
from agent.store.session import Session

CHANGEABLE = frozenset({"name", "channel", "enabled", "description", "suite"})


class PolicyRepository:
    def __init__(self, session: Session):
        self._session = session

    def list(self) -> list[UpdatePolicy]:
        """Every stored policy, oldest first."""
        with self._session.reading():
            documents = self._session.documents(POLICIES)
            return [_policy(documents[number]) for number in sorted(documents)]

    def get(self, policy_id: str) -> UpdatePolicy | None:
        number = number_of(policy_id, POLICY_PREFIX)
        if number is None:
            return None
        with self._session.reading():
            document = self._session.document(POLICIES, number)
            return None if document is None else _policy(document)

    def create(
        self,
        name: str,
        channel: str,
        *,
        description: str | None = None,
        suite: str | None = None,
        enabled: bool = True,
    ) -> UpdatePolicy:
        """A new policy; InvalidValue (a ValueError) naming the field if a value does not fit."""
        session = self._session
        with session.reading():
            now = session.now()
            number = session.meta().next_policy
            document = _validated(
                {
                    "id": f"{POLICY_PREFIX}{number}",
                    "name": name,
                    "channel": channel,
                    "enabled": enabled,
                    "description": description,
                    "suite": suite,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            with session.transaction():
                session.take_number("next_policy")
                session.put(POLICIES, number, document)
            return _policy(document)

    def update(self, policy_id: str, **fields: Any) -> UpdatePolicy:
        """Change some of ``name``, ``channel``, ``enabled``, ``description``, ``suite``; returns the stored policy.

        RecordNotFound for an unknown id; InvalidValue for another field or a value that does not fit.
        """
        unknown = sorted(set(fields) - CHANGEABLE)
        if unknown:
            raise InvalidValue("policy", [Issue(name, "cannot be changed") for name in unknown])
        number = number_of(policy_id, POLICY_PREFIX)
        session = self._session
        with session.reading():
            current = None if number is None else session.document(POLICIES, number)
            if current is None:
                raise RecordNotFound(f"there is no policy {policy_id!r}")
            document = _validated({**current, **fields, "updated_at": session.now()})
            with session.transaction():
                session.put(POLICIES, number, document)
            return _policy(document)

    def delete(self, policy_id: str) -> bool:
        """Remove a policy; False if there was none with this id."""
        number = number_of(policy_id, POLICY_PREFIX)
        if number is None:
            return False
        session = self._session
        with session.reading():
            if session.document(POLICIES, number) is None:
                return False
            with session.transaction():
                session.remove(POLICIES, [number])
            return True


def _validated(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` checked by ``UpdatePolicy``'s rules, as a ``state.json`` document."""
    try:
        policy = UpdatePolicy.model_validate(values)
    except ValidationError as error:
        raise InvalidValue.from_validation_error("policy", error) from None
    return PolicyRecord.model_validate(policy.model_dump()).model_dump(mode="json")


def _policy(document: dict[str, Any]) -> UpdatePolicy:
    return UpdatePolicy.model_validate(document)

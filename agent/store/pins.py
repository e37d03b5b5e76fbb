"""Pins set through the API (DESIGN.md §5 "Pins"): one per level and name, ids ``pin-<n>``.

Setting a pin that exists (same level and name) changes its version and reason and keeps its id
and ``created_at``; ids come from a counter in ``meta`` and are never handed out twice. The
config file's pins are not here: they are read-only and the planner merges both.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agent.config import VersionPin
from agent.store.errors import InvalidValue
from agent.store.records import PIN_PREFIX, PINS, PinRecord, number_of
from agent.store.session import Session


class PinRepository:
    def __init__(self, session: Session):
        self._session = session

    def list(self) -> list[VersionPin]:
        """Every stored pin, oldest first."""
        with self._session.reading():
            documents = self._session.documents(PINS)
            return [_pin(documents[number]) for number in sorted(documents)]

    def get(self, pin_id: str) -> VersionPin | None:
        number = number_of(pin_id, PIN_PREFIX)
        if number is None:
            return None
        with self._session.reading():
            document = self._session.document(PINS, number)
            return None if document is None else _pin(document)

    def find(self, level: str, name: str) -> VersionPin | None:
        """The pin of ``level`` and ``name``, if one is stored."""
        with self._session.reading():
            found = self._find(level, name)
            return None if found is None else _pin(found[1])

    def set(self, level: str, name: str, version: str, reason: str | None = None) -> VersionPin:
        """Pin ``name`` at ``level`` to ``version`` (exact or a PEP 440 specifier); returns the stored pin.

        InvalidValue (a ValueError) naming the field — ``level``, ``name`` (does not fit the
        level) or ``version`` — if the pin is not valid; nothing is stored then.
        """
        try:
            pin = VersionPin(level=level, name=name, version=version, reason=reason)  # type: ignore[arg-type]
        except ValidationError as error:
            raise InvalidValue.from_validation_error("pin", error, whole_record_field="name") from None
        session = self._session
        with session.reading():
            now = session.now()
            found = self._find(level, name)
            if found is None:
                number = session.meta().next_pin
                record = PinRecord(id=f"{PIN_PREFIX}{number}", level=pin.level, name=pin.name, version=pin.version,
                                   reason=pin.reason, created_at=now, updated_at=now)
            else:
                number, document = found
                record = PinRecord.model_validate(
                    {**document, "version": pin.version, "reason": pin.reason, "updated_at": now}
                )
            with session.transaction():
                if found is None:
                    session.take_number("next_pin")
                session.put(PINS, number, record.model_dump(mode="json"))
            return _pin(record.model_dump(mode="json"))

    def remove(self, level: str, name: str) -> VersionPin | None:
        """Unpin ``name`` at ``level``; returns the pin removed, ``None`` if there was none."""
        session = self._session
        with session.reading():
            found = self._find(level, name)
            if found is None:
                return None
            number, document = found
            with session.transaction():
                session.remove(PINS, [number])
            return _pin(document)

    def _find(self, level: str, name: str) -> tuple[int, dict[str, Any]] | None:
        for number, document in self._session.documents(PINS).items():
            if document["level"] == level and document["name"] == name:
                return number, document
        return None


def _pin(document: dict[str, Any]) -> VersionPin:
    return VersionPin.model_validate(document)

"""What the store's repositories refuse, as ``StoreError``s a caller (the API) can tell apart.

    StoreError                    agent.errors: the store cannot be used
    ├── RecordNotFound            no pin, policy or approval with that id          (API: 404)
    ├── InvalidTransition         the record is not in a state that allows it:
    │                             approving an approval that is not pending        (API: 409)
    └── InvalidValue              a value does not fit its field; ``issues`` name  (API: 422)
                                  each field (``name``, ``version``, …)

``RecordNotFound`` is also a ``LookupError`` and ``InvalidValue`` a ``ValueError``, so code that
does not know the store's types still catches them sensibly.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import ValidationError

from agent.errors import Issue, StoreError
from agent.feed.model import issues_from_validation_error


class RecordNotFound(StoreError, LookupError):
    pass


class InvalidTransition(StoreError):
    pass


class InvalidValue(StoreError, ValueError):
    """``str()``: ``invalid pin: version: '1.x' is neither a PEP 440 version nor …``."""

    def __init__(self, what: str, issues: Iterable[Issue]):
        self.what = what
        self.issues: tuple[Issue, ...] = tuple(issues)
        super().__init__(f"invalid {what}: " + "; ".join(str(issue) for issue in self.issues))

    @property
    def field(self) -> str:
        """The first field at fault (``""`` if the problem is with the whole record)."""
        return self.issues[0].path if self.issues else ""

    @classmethod
    def from_validation_error(cls, what: str, error: ValidationError, *, whole_record_field: str = "") -> InvalidValue:
        """``whole_record_field`` names the field a model-level check is about (pydantic gives it no location)."""
        issues = [
            Issue(issue.path or whole_record_field, issue.message) for issue in issues_from_validation_error(error)
        ]
        return cls(what, issues)

"""The blue-green capabilities' colours (``Colours``, one document): which release each colour's
unit files run, their private ports, and the colour nginx sends users to.

The engine (agent.deploy.bluegreen) writes a record before it acts on what the record says: a
colour's ``runs`` before its unit files are written and started, ``live`` once nginx has loaded
the include that routes to it. So after a crash the record never claims less than the host
has, and the next run stops, starts or switches from there.
"""

from __future__ import annotations

from agent.store.records import COLOURS, SINGLETON_ID, ColourRecord, Colours
from agent.store.session import Session


class ColourRepository:
    def __init__(self, session: Session):
        self._session = session

    def all(self) -> dict[str, ColourRecord]:
        with self._session.reading():
            return dict(self._read().capabilities)

    def get(self, ref: str) -> ColourRecord | None:
        return self.all().get(ref)

    def put(self, ref: str, record: ColourRecord) -> None:
        self._change(ref, record)

    def remove(self, ref: str) -> None:
        self._change(ref, None)

    def _change(self, ref: str, record: ColourRecord | None) -> None:
        session = self._session
        with session.transaction():
            records = dict(self._read().capabilities)
            if record is None:
                if records.pop(ref, None) is None:
                    return
            else:
                records[ref] = record
            session.put(COLOURS, SINGLETON_ID, Colours(capabilities=records).model_dump(mode="json"))

    def _read(self) -> Colours:
        document = self._session.document(COLOURS, SINGLETON_ID)
        return Colours() if document is None else Colours.model_validate(document)

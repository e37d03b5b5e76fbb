from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.store import Store
from tests.store.helpers import TickingClock


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "id1"


@pytest.fixture
def open_store(state_dir: Path, clock: TickingClock) -> Iterator[Callable[..., Store]]:
    """Opens the store in ``state_dir`` (again and again, to check what is on disk); closes them all."""
    opened: list[Store] = []

    def open_(**options) -> Store:
        options.setdefault("clock", clock)
        store = Store.open(state_dir, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store) -> Store:
    return open_store()

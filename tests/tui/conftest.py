"""Fixtures for the dashboard's tests: a fake agent per test, an app built on it, and helpers to
let the app settle and to read what is on the terminal."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator

import pytest
from rich.console import Console

from tests.tui.fake import FakeClient
from tui.app import DashboardApp


@pytest.fixture
def fakes() -> Iterator[list[FakeClient]]:
    made: list[FakeClient] = []
    yield made
    for fake in made:
        fake.close()


@pytest.fixture
def make_app(fakes: list[FakeClient]) -> Callable[..., tuple[DashboardApp, FakeClient]]:
    """``make_app(role="viewer", down=True, retry_s=1)``: the app and its fake agent."""

    def make(*, retry_s: float = 30.0, live: bool = True, **fake_options) -> tuple[DashboardApp, FakeClient]:
        fake = FakeClient(**fake_options)
        fakes.append(fake)
        return DashboardApp(fake, refresh_s=0, retry_s=retry_s, live=live, coalesce_s=0.02), fake

    return make


def screen_text(app: DashboardApp) -> str:
    """The terminal's content as plain text, like a person reads it."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                      record=True, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()

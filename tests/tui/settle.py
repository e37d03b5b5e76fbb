"""Waiting for the dashboard to finish what it is doing (loads, changes, coalesced refreshes)."""

from __future__ import annotations

import asyncio
import time

from textual.pilot import Pilot


def busy(app) -> bool:
    working = [worker for worker in app.workers if not worker.is_finished and worker.group != "events"]
    # A screen may wait for the cursor to rest before it fetches (History's manifests).
    resting = any(getattr(screen, "detail_pending", False) for screen in app.screens_by_name.values())
    return bool(working) or app._flush_timer is not None or bool(app._stale) or resting


async def settle(pilot: Pilot, *, timeout: float = 5.0) -> None:
    """Until no load or change is running nor pending (and the event stream is up, if followed)."""
    app = pilot.app
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        await pilot.pause()
        await asyncio.sleep(0.01)
        live_ok = not app.live or app.events_state in ("live", "reconnecting")
        quiet = quiet + 1 if not busy(app) and live_ok else 0
        if quiet >= 3:
            await pilot.pause()
            return
    raise AssertionError("the dashboard did not settle: " + ", ".join(
        f"{w.name}:{w.state.name}" for w in app.workers if not w.is_finished))


async def until(pilot: Pilot, condition, *, timeout: float = 5.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")

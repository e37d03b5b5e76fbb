"""Shared test parts: a deterministic clock and small, valid manifests."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from agent.store.schema import check_state, parse_state

START = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


class TickingClock:
    """One second later on every call."""

    def __init__(self, start: datetime = START):
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def manifest(platform: str = "2.5.0", **versions: str) -> dict[str, Any]:
    """A manifest in ``Manifest.to_json()`` form; ``auth="1.0.1"`` sets core/auth's version."""
    capabilities = {"auth": "1.0.0", "api": "2.1.0", **versions}
    return {
        "platform": platform,
        "suites": {
            "core": {
                "version": "1.2.0",
                "capabilities": {
                    name: {
                        "version": version,
                        "source": "latest",
                        "artifact": {"url": f"artifacts/core-{name}-{version}.tar.gz", "sha256": "ab" * 32, "size": 123},
                        "units": [f"id1-core-{name}.service"],
                        "health": {"http": "http://127.0.0.1:8081/healthz", "command": None, "timeout_s": 60},
                    }
                    for name, version in capabilities.items()
                },
            }
        },
    }


def read_state(state_dir: Path) -> dict[str, Any]:
    """``state.json`` as a fresh agent would read it: parsed and checked, or an exception."""
    path = state_dir / "state.json"
    state, _ = parse_state(path.read_bytes(), path)
    check_state(state)
    return state


def state_text(state_dir: Path) -> str:
    return (state_dir / "state.json").read_text()


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)

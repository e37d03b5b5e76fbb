"""The deployment engine: artifacts, release folders, services, health, the state machine."""

from __future__ import annotations

from agent.files import fsync_folder

__all__ = ["fsync_folder"]

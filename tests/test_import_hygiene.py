"""The layers hold: the planner is pure, and the agent never drags in the dashboard."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def modules_after_import(module: str) -> set[str]:
    script = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    return {name.split(".")[0] for name in json.loads(done.stdout)}


@pytest.mark.parametrize("module", ["agent.planning", "agent.feed.catalog", "agent.planning.plan"])
def test_the_planner_imports_no_io_library(module):
    loaded = modules_after_import(module)
    assert not loaded & {"httpx", "tinydb", "fastapi", "textual", "uvicorn", "apscheduler"}, loaded


def test_the_agent_command_line_never_imports_textual():
    loaded = modules_after_import("agent.cli.main")
    assert "textual" not in loaded and "tui" not in loaded

"""The store stays an edge of its own: no HTTP, web or dashboard libraries, no planner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_store_imports_no_network_web_or_dashboard_library():
    script = "import sys, json, agent.store; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    loaded = set(json.loads(done.stdout))

    assert not {name.split(".")[0] for name in loaded} & {"httpx", "fastapi", "textual", "uvicorn", "apscheduler"}
    assert not any(name.startswith("agent.planning") for name in loaded)

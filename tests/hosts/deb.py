"""The agent's Debian package, built by ``make deb`` once per source tree and shared by the tests.

    deb = built_deb()      # dist/id1-agent_<version>_<arch>.deb, rebuilt only if a source changed

The package test and every systemd host install the same file. A stamp beside it records a hash
of what the build reads (the packages, packaging/, systemd/, docs/, README.md, pyproject.toml);
the build runs under a file lock, so parallel test workers build it once.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from agent import __version__
from tests.hosts.image import locked

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("agent", "tui", "packaging", "systemd", "docs", "README.md", "pyproject.toml")
BUILD_TIMEOUT_S = 900


def source_hash() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        top = REPO / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
        for path in files:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def built_deb() -> Path:
    dist = REPO / "dist"
    stamp = dist / ".id1-agent.deb.source"
    wanted = source_hash()
    with locked(REPO / "build" / ".deb.lock"):
        found = sorted(dist.glob(f"id1-agent_{__version__}_*.deb"))
        if len(found) == 1 and stamp.exists() and stamp.read_text().strip() == wanted:
            return found[0]
        for old in found:
            old.unlink()
        done = subprocess.run(["make", "--no-print-directory", "-f", "packaging/deb.mk", "deb"], cwd=REPO,
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        if done.returncode != 0:
            raise AssertionError(f"make deb failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        (built,) = dist.glob(f"id1-agent_{__version__}_*.deb")
        stamp.write_text(wanted + "\n")
        return built

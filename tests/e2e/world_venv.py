"""A virtualenv any local user can run ``id1`` from: what the SSH end-to-end test's throwaway user
logs in to use (``make e2e-venv``; ``make test`` runs it).

The test suite's own venv is made from an interpreter under /root that other users cannot
execute, and the clone may not be readable by them either; so this one is made with Debian's
``/usr/bin/python3 -m venv`` (package python3-venv) in a world-readable place, and the project is
installed into it, not linked (``pip install`` of a copy of its sources), with its dependencies.

    python -m tests.e2e.world_venv [PATH]      # default $ID1_E2E_VENV, else /opt/id1-e2e-venv

It is rebuilt only when the sources changed: the venv keeps a fingerprint of what it was built
from (``pyproject.toml``, ``README.md``, ``agent/``, ``tui/``), and ``problem()`` tells a test
whether the venv is missing or stale, and what to run. The test brings a stale one up to date
itself (a reinstall of this checkout, a few seconds); a missing one is a failure that says
what to run (a first build fetches the dependencies).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT = Path(os.environ.get("ID1_E2E_VENV") or "/opt/id1-e2e-venv")
SYSTEM_PYTHON = Path("/usr/bin/python3")
STAMP = ".id1-sources.sha256"
PACKAGES = ("agent", "tui")
FILES = ("pyproject.toml", "README.md")


def sources(repo: Path = REPO) -> list[Path]:
    """The files the installed project is built from, relative to ``repo``, in a stable order."""
    found = [Path(name) for name in FILES]
    for package in PACKAGES:
        for path in sorted((repo / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                found.append(path.relative_to(repo))
    return found


def fingerprint(repo: Path = REPO) -> str:
    digest = hashlib.sha256()
    for relative in sources(repo):
        digest.update(str(relative).encode() + b"\0" + (repo / relative).read_bytes() + b"\0")
    return digest.hexdigest()


def problem(venv: Path = DEFAULT) -> str | None:
    """Why ``venv`` cannot serve the test (missing, stale, not usable by others), or None."""
    remedy = f"run `make e2e-venv` as root (make test does), or `python -m tests.e2e.world_venv {venv}`"
    id1 = venv / "bin" / "id1"
    if not id1.exists():
        return f"no world-readable venv with id1 at {venv}: {remedy}"
    stamp = venv / STAMP
    if not stamp.exists() or stamp.read_text().strip() != fingerprint():
        return f"the venv at {venv} was built from other sources than this checkout's: {remedy}"
    for path in (venv, venv / "bin", id1, (venv / "bin" / "python3").resolve()):
        mode = path.stat().st_mode
        if not mode & stat.S_IROTH or not mode & stat.S_IXOTH:
            return f"{path} is not readable and executable by other users (mode {stat.filemode(mode)}): {remedy}"
    return None


def build(venv: Path) -> None:
    """Make ``venv`` (or bring it up to date: then only this checkout is reinstalled, in seconds)."""
    umask = os.umask(0o022)
    try:
        _build(venv)
    finally:
        os.umask(umask)


def _build(venv: Path) -> None:
    if not SYSTEM_PYTHON.exists():
        raise SystemExit(f"{SYSTEM_PYTHON} is missing: install the Debian packages python3 and python3-venv")
    if not (venv / "bin" / "python3").exists():
        subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True)
    stage = Path(tempfile.mkdtemp(prefix="id1-e2e-src-"))
    try:
        for relative in sources():
            target = stage / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / relative, target)
        pip = [str(venv / "bin" / "python3"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
        subprocess.run([*pip, "install", str(stage)], check=True)  # the dependencies, and the project if new
        subprocess.run([*pip, "install", "--no-deps", "--force-reinstall", str(stage)], check=True)  # this checkout's
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for folder, _dirs, files in os.walk(venv):  # whatever umask pip's build used
        for path in (folder, *(os.path.join(folder, name) for name in files)):
            mode = os.lstat(path).st_mode
            if not stat.S_ISLNK(mode):
                os.chmod(path, mode | stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
                         | (stat.S_IXGRP | stat.S_IXOTH if mode & stat.S_IXUSR else 0))
    (venv / STAMP).write_text(fingerprint() + "\n")


def main(argv: list[str]) -> int:
    venv = Path(argv[0]) if argv else DEFAULT
    if os.geteuid() != 0:
        print(f"e2e-venv: not root, {venv} left as it is (the SSH end-to-end test needs root: sshd, useradd)")
        return 0
    if problem(venv) is None:
        print(f"e2e-venv: {venv} is up to date")
        return 0
    print(f"e2e-venv: building {venv} (Debian's python3, this checkout installed with its dependencies)...")
    build(venv)
    trouble = problem(venv)
    if trouble:
        print(f"e2e-venv: {trouble}", file=sys.stderr)
        return 1
    print(f"e2e-venv: {venv} ready")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

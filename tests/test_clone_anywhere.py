"""``make test`` passes from a clone anywhere, also one inside a folder only its owner may enter
(CI's checkout, a home directory): what other users run in the tests is copied somewhere they
can read. Shown with the test that runs code as another user (the login hint as ``nobody``), run
from a copy of the files it needs inside a 0700 folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NEEDED = ("packaging/profile.d/id1.sh", "tests/tui/test_profile_hint.py", "pyproject.toml")


@pytest.mark.skipif(os.geteuid() != 0, reason="runs a test as another user, which needs root (CI runs as root)")
def test_the_tests_that_run_as_another_user_pass_from_a_private_folder(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    clone = private / "clone"
    for relative in NEEDED:
        (clone / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, clone / relative)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/tui/test_profile_hint.py"],
                          cwd=clone, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]

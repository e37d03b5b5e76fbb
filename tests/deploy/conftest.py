"""Fixtures for the deployment tests: a loopback artifact server and a small filesystem to fill."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.loopback import ArtifactServer

SMALL_FILESYSTEM_BYTES = 2 * 1024**2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ArtifactServer]:
    with ArtifactServer(tmp_path / "www") as running:
        yield running


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: a disk that really fills up, with ENOSPC from the kernel.

    Mounting needs root (CAP_SYS_ADMIN), which `make test` has on the Debian hosts and CI
    containers this project targets; in CI (``CI`` set) a mount that fails fails the test, and
    anywhere else the tests that need it are skipped, saying why.
    """
    mountpoint = tmp_path / "small-fs"
    mountpoint.mkdir()
    # CI runs as root on a machine of its own: there a disk that cannot be filled is a failure.
    cannot = pytest.fail if os.environ.get("CI") else pytest.skip
    if os.geteuid() != 0:
        cannot("filling a real filesystem needs a 2 MiB tmpfs, and mounting one needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL_FILESYSTEM_BYTES},mode=0755", "tmpfs", str(mountpoint)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        cannot(f"cannot mount a 2 MiB tmpfs here ({done.stderr.strip()}); needs CAP_SYS_ADMIN")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=True)

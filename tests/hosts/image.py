"""The Debian root every test host boots from: built once with mmdebstrap, cached by its recipe.

    image = base_image()          # <cache>/images/<key>/, built on first use (about 15-25 s)

The key is a hash of the recipe (suite, variant, package list, mirror, and what ``_prepare`` does
to the root), so changing either builds a new root and never reuses a stale one. Building
happens under a file lock, into a folder beside the final one that is renamed into place when
complete: parallel test workers (and a build killed half-way) never see half a root. The cache lives outside /tmp (DESIGN.md
§11): ``$ID1_TEST_HOSTS``, default /var/cache/id1-test-hosts.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

CACHE = Path(os.environ.get("ID1_TEST_HOSTS", "/var/cache/id1-test-hosts"))
SUITE = "bookworm"
MIRROR = os.environ.get("ID1_TEST_HOSTS_MIRROR", "http://deb.debian.org/debian")
# systemd as PID 1 and what the agent's package needs to install and run (its Depends:
# python3.11, procps for the unit's ExecReload=/bin/kill), and Debian's nginx, which blue-green
# capabilities run behind (tests/systemd/test_bluegreen_on_systemd.py), nothing more: the tests
# install the agent's .deb with dpkg -i, so its dependencies must already be there.
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "procps", "nginx")
BUILD_TIMEOUT_S = 900


def recipe() -> dict:
    # What _prepare does to the root is part of the recipe too: changing it builds a new root.
    prepare = hashlib.sha256(inspect.getsource(_prepare).encode()).hexdigest()[:16]
    return {"suite": SUITE, "variant": "minbase", "packages": sorted(PACKAGES), "mirror": MIRROR, "prepare": prepare}


def image_key() -> str:
    return hashlib.sha256(json.dumps(recipe(), sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def locked(path: Path):
    """An exclusive flock on ``path`` for the block (parallel workers build one thing once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def base_image() -> Path:
    """The cached root for ``recipe()``, built now if there is none."""
    images = CACHE / "images"
    final = images / image_key()
    if (final / ".complete").exists():
        return final
    with locked(images / ".lock"):
        if (final / ".complete").exists():
            return final
        missing = [tool for tool in ("mmdebstrap", "systemd-nspawn", "nsenter") if shutil.which(tool) is None]
        if missing:
            raise RuntimeError(f"test hosts need {', '.join(missing)}: apt-get install mmdebstrap systemd-container (make test does)")
        building = images / f".{final.name}.building"
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(final, ignore_errors=True)
        done = subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", "--quiet", SUITE, str(building), MIRROR],
            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
        )
        if done.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"mmdebstrap failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        _prepare(building)
        (building / ".complete").write_text(json.dumps(recipe(), indent=1) + "\n")
        building.rename(final)
        for stale in images.iterdir():  # roots of older recipes
            if stale.is_dir() and stale.name not in (final.name,) and not stale.name.startswith("."):
                shutil.rmtree(stale, ignore_errors=True)
    return final


def _prepare(root: Path) -> None:
    """What every host shares: no machine id (each copy gets its own), a quiet console, and
    nginx enabled (as Debian installs it) but without Debian's default site."""
    (root / "etc" / "machine-id").write_text("")
    # Nobody logs in on the container's console; its getty would only add a unit to wait for.
    (root / "etc" / "systemd" / "system" / "console-getty.service").unlink(missing_ok=True)
    os.symlink("/dev/null", root / "etc" / "systemd" / "system" / "console-getty.service")
    # Debian's default site listens on port 80, and every host shares this machine's loopback:
    # the second host booted at once would fail to start nginx (a degraded boot). Without it
    # nginx runs and listens nowhere until an include of conf.d/ (the agent's) gives it a server.
    (root / "etc" / "nginx" / "sites-enabled" / "default").unlink(missing_ok=True)
    (root / "etc" / "nginx" / "conf.d").mkdir(parents=True, exist_ok=True)
    # What nginx makes the first time it runs with a server (on Debian: at installation, with
    # the default site), which mmdebstrap never starts: its temporary folders. Without them the
    # agent's sandboxed `nginx -t` cannot make them (systemd/id1-agent.service says why).
    www_data = next(int(line.split(":")[2]) for line in (root / "etc" / "passwd").read_text().splitlines()
                    if line.startswith("www-data:"))
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        folder = root / "var" / "lib" / "nginx" / name
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        os.chown(folder, www_data, 0)

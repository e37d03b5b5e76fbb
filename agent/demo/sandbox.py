"""The demo's sandbox folder: everything the demo makes lives in it, and every process it starts
refers to it, which is how the demo finds them all again to end them.

    sandbox = Sandbox.claim(Path(".demo"))     # ends a killed demo's leftovers, wipes, starts fresh
    sandbox.end_leftovers()                     # at the end: no process that refers to it survives

Layout::

    .demo/demo.pid        this demo (a second demo on the same folder is refused)
    .demo/narration.log   what happened, when          .demo/agent.log   the agent's own log
    .demo/vendor/         key, release descriptions, artifacts, the built feed
    .demo/agent.toml      the agent's config            .demo/state/      its state_dir
    .demo/host/           systemctl3's --root: units in host/etc/systemd/system
    .demo/agent.sock      the API socket
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from agent.demo.errors import DemoError

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL


@dataclass(frozen=True)
class Sandbox:
    root: Path

    @property
    def pid_file(self) -> Path:
        return self.root / "demo.pid"

    @property
    def narration(self) -> Path:
        return self.root / "narration.log"

    @property
    def agent_log(self) -> Path:
        return self.root / "agent.log"

    @property
    def vendor(self) -> Path:
        return self.root / "vendor"

    @property
    def config(self) -> Path:
        return self.root / "agent.toml"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def host(self) -> Path:
        return self.root / "host"

    @property
    def unit_dir(self) -> Path:
        return self.host / "etc" / "systemd" / "system"

    @property
    def socket(self) -> Path:
        return self.root / "agent.sock"

    @classmethod
    def claim(cls, root: Path) -> Sandbox:
        """A fresh sandbox at ``root``: refused while another demo runs there; whatever a killed
        demo left running there is ended, then the folder is wiped."""
        sandbox = cls(root.absolute())
        other = sandbox._running_demo()
        if other is not None:
            raise DemoError(f"a demo is already running in {sandbox.root} (pid {other}): quit it (q) first")
        if len(os.fsencode(sandbox.socket)) > SOCKET_PATH_MAX:
            raise DemoError(f"{sandbox.root} is too long a path for a Unix socket; run the demo from a shorter folder")
        sandbox.end_leftovers()
        shutil.rmtree(sandbox.root, ignore_errors=True)
        if sandbox.root.exists():
            raise DemoError(f"cannot wipe {sandbox.root}: remove it by hand")
        sandbox.root.mkdir(mode=0o700, parents=True)
        for folder in (sandbox.vendor, sandbox.state, sandbox.unit_dir):
            folder.mkdir(parents=True)
        sandbox.pid_file.write_text(f"{os.getpid()}\n", encoding="ascii")
        return sandbox

    def _running_demo(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text(encoding="ascii"))
        except (OSError, ValueError):
            return None
        if pid == os.getpid():
            return None
        return pid if b"agent.demo" in _cmdline(pid) else None

    def processes(self) -> list[int]:
        """Processes whose command line, working folder or program is in the sandbox (not this
        one, nor its ancestors); those of other users are out of reach and not listed."""
        return processes_referring_to(self.root)

    def end_leftovers(self, grace_s: float = 5.0) -> list[int]:
        """SIGTERM, then after ``grace_s`` SIGKILL, every process that refers to the sandbox; their pids."""
        return end_processes(self.processes(), grace_s)


def processes_referring_to(root: Path) -> list[int]:
    spared = _self_and_ancestors()
    needle = os.fsencode(root)
    found = []  # (a process of another user has an unreadable cwd and exe: it is not ours to end)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        pid = int(entry.name)
        if _refers_to(pid, needle):
            found.append(pid)
    return found


def end_processes(pids: list[int], grace_s: float) -> list[int]:
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [pid for pid in alive if _alive(pid)]
    for pid in alive:
        _signal(pid, signal.SIGKILL)
    return pids


def _refers_to(pid: int, root: bytes) -> bool:
    mention = re.compile(re.escape(root) + rb"(/|$)")
    if any(mention.search(argument) for argument in _cmdline(pid).split(b"\0")):
        return True
    for link in ("cwd", "exe"):
        try:
            if mention.match(os.fsencode(os.readlink(f"/proc/{pid}/{link}"))):
                return True
        except OSError:
            continue
    return False


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; its parent reaps it


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _self_and_ancestors() -> set[int]:
    spared, pid = set(), os.getpid()
    while pid > 1 and pid not in spared:
        spared.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return spared

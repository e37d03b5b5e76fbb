"""A real terminal for end-to-end tests: a detached tmux session, read as a person reads it.

    with Tmux(folder, ["id1", "tui"], term="vt100") as pane:     # 80x24 by default
        pane.wait_for("Pending")                                   # polls ``capture-pane`` until a deadline
        pane.press("2")                                            # tmux key names: "Down", "Enter", "Escape"
        pane.type("a reason")                                      # literal text
        assert pane.wait_exit() == 0                               # the pane's process ended, with this status

Each session runs on a tmux server of its own (``-S`` socket in ``folder``, no user config), so
tests never meet another tmux; ``close()`` kills that server and whatever still runs in it.
The pane's terminal type is ``term`` (tmux's ``default-terminal``): what the program inside sees
in ``$TERM`` and what ``ssh`` passes on to a remote login.

The program runs under a small ``sh`` that writes its exit status to a file: tmux 3.3 now and
then never reaps a pane's process (its SIGCHLD is lost), so ``#{pane_dead_status}`` stays empty.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

TMUX = shutil.which("tmux") or "/usr/bin/tmux"


class Tmux:
    def __init__(self, folder: Path, command: Sequence[str], *, term: str = "xterm-256color", width: int = 80,
                 height: int = 24, env: dict[str, str] | None = None, name: str = "e2e") -> None:
        if not Path(TMUX).exists():
            raise AssertionError("tmux is missing: `make test` installs it (Debian package tmux)")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.socket = self.folder / "tmux.sock"
        self.name = name
        config = self.folder / "tmux.conf"
        # remain-on-exit: the pane (and how its process ended) stays to be read after it exits.
        config.write_text(f'set -g default-terminal "{term}"\nset -g remain-on-exit on\nset -g history-limit 2000\n'
                          "set -g status off\n")
        environment = {**(env if env is not None else os.environ), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        environment.pop("TMUX", None)
        self.status_file = self.folder / "exit-status"
        self.status_file.unlink(missing_ok=True)
        wrapped = ["/bin/sh", "-c", f'"$@"; echo $? > {shlex.quote(str(self.status_file))}', "e2e", *command]
        self._run("-f", str(config), "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                  shlex.join(wrapped), env=environment)
        self.last = ""
        self.pid = self._program_pid()

    def _program_pid(self, timeout: float = 10.0) -> int:
        """The program's process id (the child of the pane's ``sh``)."""
        shell = self.field("pane_pid")
        deadline = time.monotonic() + timeout
        while True:
            children = Path(f"/proc/{shell}/task/{shell}/children")
            found = children.read_text().split() if children.exists() else []
            if found:
                return int(found[0])
            if time.monotonic() > deadline:
                raise AssertionError(f"no program started in the pane: {self.screen()}")
            time.sleep(0.02)

    def _run(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([TMUX, "-u", "-S", str(self.socket), *args], capture_output=True, text=True, env=env,
                              check=check, timeout=30)

    def __enter__(self) -> Tmux:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- reading ----------------------------------------------------------------------------

    def screen(self) -> str:
        """What the pane shows now, one line per row."""
        self.last = self._run("capture-pane", "-p", "-t", self.name).stdout
        return self.last

    def wait_for(self, wanted: str | Callable[[str], bool], *, timeout: float = 30.0, what: str | None = None) -> str:
        """The screen, once it shows ``wanted`` (a text, or a test of the screen); polled until a deadline."""
        test = (lambda screen: wanted in screen) if isinstance(wanted, str) else wanted
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if test(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g} s waiting for {what or repr(wanted)}; the screen:\n{screen}")
            time.sleep(0.1)

    def field(self, name: str) -> str:
        return self._run("display-message", "-p", "-t", self.name, f"#{{{name}}}").stdout.strip()

    def wait_exit(self, *, timeout: float = 15.0) -> int:
        """The program's exit status, once it has ended and the pane with it (128+N: killed by signal N)."""
        deadline = time.monotonic() + timeout
        while not (self.status_file.exists() and self.status_file.read_text().strip() and self.field("pane_dead") == "1"):
            if time.monotonic() > deadline:
                raise AssertionError(f"the pane's program still runs after {timeout:g} s; the screen:\n{self.screen()}")
            time.sleep(0.1)
        return int(self.status_file.read_text())

    # --- typing -----------------------------------------------------------------------------

    def press(self, *keys: str) -> None:
        """Keys by tmux's names (``Down``, ``Enter``, ``Escape``, ``y``), one after the other."""
        for key in keys:
            self._run("send-keys", "-t", self.name, key)

    def type(self, text: str) -> None:
        self._run("send-keys", "-t", self.name, "-l", text)

    # --- the end ----------------------------------------------------------------------------

    def close(self) -> None:
        self._run("kill-server", check=False)

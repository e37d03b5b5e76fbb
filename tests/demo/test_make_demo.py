"""``make demo`` from a fresh clone, in a real terminal (tmux), as a new user meets it.

The clone is this working tree as a commit of it would be (tracked and untracked files that git
does not ignore), so ``make demo`` there creates its own ``.venv`` and installs the project, as
on a new machine. The test approves the first install from the dashboard (2, a, y), watches the
forced security fix and the automatic rollback play out, quits with ``q`` and then finds no
process that refers to the clone and the tmux pane gone. A second ``make demo`` in the same
clone must start from nothing again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The clone's venv is made from scratch by `make demo`: creating it and installing takes ~30 s.
FIRST_START_TIMEOUT_S = 300
START_TIMEOUT_S = 90
STORY_TIMEOUT_S = 180
QUIT_TIMEOUT_S = 120
MAKEFILE_LINES = "demo: $(PY)\n\t$(PY) -m pip install --quiet -e '.[demo]'\n\t$(PY) -m agent.demo\n"


# --- a fresh clone --------------------------------------------------------------------------

def fresh_clone(destination: Path) -> Path:
    """Copy what a commit of the working tree would hold: no .venv, .demo, build output or caches."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, os.fsdecode(listed).split("\0")):
        source = REPO / name
        if not source.is_file():  # deleted in the working tree, or a submodule
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return destination


def clean_environment() -> dict[str, str]:
    """What a user's shell would have: not this test's venv, nor a parent make's variables
    (a `make test VENV=…` would otherwise hand its VENV down to `make demo`)."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL",
                                  "MAKEOVERRIDES", "VENV", "ID1_SOCKET", "TMUX", "TMUX_PANE"}}
    venv_bin = str(Path(sys.executable).parent)
    environment["PATH"] = os.pathsep.join(part for part in os.environ.get("PATH", "").split(os.pathsep) if part != venv_bin)
    return environment


# --- the terminal ---------------------------------------------------------------------------

class Terminal:
    """One tmux server (its own socket) with one session running ``make demo`` in ``folder``."""

    def __init__(self, folder: Path, *, width: int, height: int):
        self.folder = folder
        self.server = f"id1-demo-test-{os.getpid()}-{width}x{height}"
        self.exit_file = folder.parent / f"exit-{width}x{height}"
        self.exit_file.unlink(missing_ok=True)
        # The command names no path, so a process found referring to the clone later is the demo's.
        command = f"make demo; echo $? > ../{self.exit_file.name}"
        self._tmux("new-session", "-d", "-s", "demo", "-x", str(width), "-y", str(height), command)

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.server, *args], cwd=self.folder, env=clean_environment(),
                              capture_output=True, text=True, timeout=30, check=check)

    def screen(self) -> str:
        done = self._tmux("capture-pane", "-p", "-t", "demo", check=False)
        return done.stdout if done.returncode == 0 else ""

    def alive(self) -> bool:
        return self._tmux("has-session", "-t", "demo", check=False).returncode == 0

    def press(self, *keys: str) -> None:
        for key in keys:
            self._tmux("send-keys", "-t", "demo", key)
            time.sleep(0.7)

    def wait_for(self, pattern: str, timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"the demo ended while waiting for {what}; its last screen:\n{screen}")
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.5)
        raise AssertionError(f"no {what} on screen within {timeout:g} s; the screen:\n{screen}")

    def wait_closed(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"the pane was still open {timeout:g} s after q; the screen:\n{self.screen()}")
            time.sleep(0.3)
        return int(self.exit_file.read_text().strip())

    def kill(self) -> None:
        self._tmux("kill-server", check=False)


# --- what runs ------------------------------------------------------------------------------

def processes_referring_to(folder: Path) -> dict[int, str]:
    """pid → command line of every process whose command line, working folder or program is in ``folder``."""
    mention = re.compile(re.escape(os.fsencode(folder)) + rb"(/|$)")
    spared = {os.getpid(), os.getppid()}
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        links = []
        for link in ("cwd", "exe"):
            try:
                links.append(os.fsencode(os.readlink(entry / link)))
            except OSError:
                pass
        if any(mention.search(part) for part in cmdline.split(b"\0")) or any(mention.match(link) for link in links):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def narration_with(folder: Path, text: str, *, timeout: float) -> str:
    """The narration in ``folder``/.demo once it says ``text`` (it follows the agent, a moment
    behind the screen)."""
    log = folder / ".demo" / "narration.log"
    deadline = time.monotonic() + timeout
    while text not in (narration := log.read_text() if log.exists() else ""):
        if time.monotonic() > deadline:
            raise AssertionError(f"the narration never said {text!r}:\n{narration}")
        time.sleep(0.3)
    return narration


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def service_ports(folder: Path) -> set[int]:
    feed = json.loads((folder / ".demo" / "vendor" / "feed" / "feed.json").read_text())
    return {int(re.search(r":(\d+)/", entry["health"]["http"])[1]) for entry in feed["capabilities"]}


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)


def agent_status(clone: Path) -> dict:
    done = id1(clone, "status", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def id1(clone: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(clone / ".venv" / "bin" / "id1"), *args, "--socket", str(clone / ".demo" / "agent.sock")],
                          capture_output=True, text=True, timeout=60, env=clean_environment())


def demo_processes(folder: Path, *, services: int) -> set[int]:
    """The ports of the capability services of the demo in ``folder`` (the clone: its sandbox is
    ``folder``/.demo); the agent and ``services`` of them must be running."""
    ports = service_ports(folder)
    running = processes_referring_to(folder)
    assert any("agent run" in command for command in running.values()), f"no agent among {running}"
    assert sum("service.py" in command for command in running.values()) == services, f"not {services} capability services among {running}"
    assert sum(answers(port) for port in ports) == services, "the capability services do not answer"
    return ports


def assert_nothing_runs(folder: Path, ports: set[int], *, units: int) -> None:
    """No process refers to ``folder``, no service answers, and the narration says the demo
    stopped the agent and its ``units``."""
    deadline = time.monotonic() + QUIT_TIMEOUT_S  # a demo whose terminal closed is still cleaning up
    while (left := processes_referring_to(folder)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"the demo left processes running: {left}"
    assert not [port for port in ports if answers(port)], "a capability service still answers"
    stopped = narration_with(folder, "Stopped agent", timeout=5)
    assert (f"Stopped agent; {units} unit(s)" in stopped) == (units > 0), stopped


# --- the test -------------------------------------------------------------------------------

@pytest.fixture
def clone():
    for tool in ("tmux", "make", "git"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: make test installs the Debian packages the tests run for real")
    # A short folder: the agent's socket lives in the clone and a Unix socket path has 107 bytes.
    top = Path(tempfile.mkdtemp(prefix="id1-demo-", dir="/tmp"))
    try:
        copy = fresh_clone(top / "clone")
        if not re.search(r"^demo:", (copy / "Makefile").read_text(), re.M):
            pytest.fail(f"the Makefile has no demo target; it needs:\n{MAKEFILE_LINES}")
        yield copy
    finally:
        for pid in processes_referring_to(top):  # only if the test failed half-way
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        shutil.rmtree(top, ignore_errors=True)


def test_make_demo_plays_the_story_and_q_ends_everything(clone: Path):
    # The screen checks look for what any version of the dashboard shows (the instance, the
    # approval's id, the versions); the story's progress is read from the agent itself.
    terminal = Terminal(clone, width=120, height=40)
    try:
        # The first install awaits approval, on the dashboard; approve it as a user would.
        terminal.wait_for(r"demo-host", FIRST_START_TIMEOUT_S, "dashboard")
        terminal.wait_for(r"approval-1", START_TIMEOUT_S, "pending approval")
        assert agent_status(clone)["pending_approval"]["id"] == "approval-1"
        terminal.press("2", "a", "y")
        wait_until(lambda: agent_status(clone)["revision"] == 1, START_TIMEOUT_S, "revision 1, approved in the dashboard")

        # The critical fix is forced, then the broken analytics release is rolled back on its own.
        terminal.press("1")
        terminal.wait_for(r"auth\s+1\.0\.1", STORY_TIMEOUT_S, "forced security fix")
        narration = narration_with(clone, "rolled it back on its own", timeout=STORY_TIMEOUT_S)
        assert "approval-1 was approved by root" in narration
        assert "The critical fix was forced: core/auth 1.0.0 → 1.0.1" in narration
        status = agent_status(clone)
        versions = {state["capability"]: state["version"] for state in status["capabilities"]}
        assert versions == {"core/auth": "1.0.1", "core/api": "1.0.0", "analytics/report": "1.0.0"}
        assert status["blocked_versions"] == 1
        audit = [entry["action"] for entry in json.loads(id1(clone, "audit", "--json").stdout)]
        assert {"approve", "forced-patch", "automatic-rollback"} <= set(audit)
        terminal.wait_for(r"report\s+1\.0\.0", 30, "analytics/report back at 1.0.0")

        ports = demo_processes(clone, services=3)
        terminal.press("q")
        assert terminal.wait_closed(QUIT_TIMEOUT_S) == 0, "make demo did not exit 0 after q"
        assert_nothing_runs(clone, ports, units=3)
    finally:
        terminal.kill()

    # Again, in a small terminal: a fresh start, nothing kept from the first run.
    terminal = Terminal(clone, width=80, height=24)
    try:
        terminal.wait_for(r"approval-1", START_TIMEOUT_S, "pending approval of a fresh start")
        status = agent_status(clone)
        assert status["revision"] is None and status["pending_approval"]["id"] == "approval-1"
        history = id1(clone, "history", "--json")
        assert history.returncode == 0, history.stderr
        assert json.loads(history.stdout) == {"revisions": [], "rollbacks": [], "deployments": []}
        narration = (clone / ".demo" / "narration.log").read_text()
        assert "rolled it back" not in narration and narration.count("feed serial 1") == 1

        # Approved from an SSH session this time; then the terminal is closed under the demo
        # (SIGHUP) instead of q: it still ends everything it started.
        assert id1(clone, "approve", "--yes").returncode == 0
        wait_until(lambda: agent_status(clone)["revision"] == 1, START_TIMEOUT_S, "revision 1 of the fresh start")
        ports = demo_processes(clone, services=3)
        terminal.kill()
        assert_nothing_runs(clone, ports, units=3)
    finally:
        terminal.kill()


def test_ctrl_c_ends_everything_the_demo_started(tmp_path: Path):
    """Headless (no dashboard), as a test or a CI log would run it; Ctrl-C (SIGINT) mid-story."""
    demo = subprocess.Popen([sys.executable, "-m", "agent.demo", "--headless", "300", "--approve-after", "0"],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        narration_with(tmp_path, "Revision 1 is deployed", timeout=START_TIMEOUT_S)
        ports = demo_processes(tmp_path, services=3)
        demo.send_signal(signal.SIGINT)
        output = demo.communicate(timeout=QUIT_TIMEOUT_S)[0].decode()
        assert demo.returncode == 130, output
        assert "Nobody approved within 0 s, so the demo approved approval-1" in output
        assert_nothing_runs(tmp_path, ports, units=3)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in processes_referring_to(tmp_path):
            os.kill(pid, signal.SIGKILL)


def test_without_a_terminal_it_says_so_in_one_line_and_fails(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "agent.demo"], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 2
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1 and "needs a terminal" in done.stderr
    assert not (tmp_path / ".demo").exists(), "it set up a sandbox it could not show"

"""``run_tui(socket)``, what ``id1 tui`` calls: with the real client and no agent behind the
socket it shows the agent-down screen (never a traceback) and quits on q; without a terminal it
says so and returns 2."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from tests.tui.test_terminal import _read_until
from tui.run import run_tui

ROOT = Path(__file__).resolve().parents[2]


def test_without_a_terminal_it_refuses_plainly(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    assert run_tui("/nonexistent/agent.sock") == 2
    assert "id1 tui needs a terminal" in capsys.readouterr().err


def test_an_absent_agent_is_the_agent_down_screen_and_q_quits(tmp_path):
    socket = tmp_path / "agent.sock"
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "LANG": "C.UTF-8"}
    process = subprocess.Popen([sys.executable, "-m", "tui", "--socket", str(socket)], cwd=ROOT, env=env,
                               stdin=follower, stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    seen = bytearray()
    try:
        assert _read_until(leader, b"NOT ANSWERING", seen, 20), seen[-2000:]
        assert _read_until(leader, b"systemctl", seen, 5), seen[-2000:]
        started = time.monotonic()
        os.write(leader, b"q")
        process.wait(timeout=10)
        quit_s = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    output = bytes(seen)
    assert process.returncode == 0
    assert b"no socket at" in output and b"Traceback" not in output
    assert quit_s < 3

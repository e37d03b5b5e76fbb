"""Over SSH in a plain terminal: nothing drawn two cells wide (it breaks the layout of a vt100-like
terminal), and under TERM=vt100 the real app runs, draws in the 16 standard colours and quits on q."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import unicodedata
from pathlib import Path

import pytest

from tests.tui.conftest import screen_text
from tests.tui.settle import settle

ROOT = Path(__file__).resolve().parents[2]

# Every screen and dialog, reached by keys, as (role, keys).
VIEWS = [
    ("approver", []), ("approver", ["2"]), ("admin", ["3"]), ("admin", ["4"]), ("approver", ["5"]),
    ("approver", ["6"]), ("approver", ["question_mark"]), ("approver", ["2", "a"]), ("approver", ["2", "x"]),
    ("admin", ["3", "down", "r"]), ("admin", ["4", "p"]), ("admin", ["4", "c"]), ("viewer", ["2"]),
    ("approver", ["ctrl+p"]),
]


def wide(text: str) -> set[str]:
    return {char for char in text if unicodedata.east_asian_width(char) in ("W", "F")}


@pytest.mark.asyncio
@pytest.mark.parametrize(("role", "keys"), VIEWS, ids=["+".join([role, *keys]) for role, keys in VIEWS])
async def test_nothing_on_screen_is_double_width(make_app, role, keys):
    app, _fake = make_app(role=role)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        text = screen_text(app)
        assert text.strip()
        assert not wide(text), wide(text)


def _read_until(fd: int, pattern: bytes, seen: bytearray, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return pattern in seen
            if not chunk:
                return pattern in seen
            seen.extend(chunk)
            if pattern in seen:
                return True
    return pattern in seen


def test_the_real_app_runs_in_a_vt100_terminal_with_standard_colours_and_q_quits():
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLORTERM", "TEXTUAL_COLOR_SYSTEM", "NO_COLOR")}
    env.update(TERM="vt100", LANG="C.UTF-8", LC_ALL="C.UTF-8")
    process = subprocess.Popen([sys.executable, "-m", "tests.tui.fake_tui"], cwd=ROOT, env=env, stdin=follower,
                               stdout=follower, stderr=follower, start_new_session=True)
    os.close(follower)
    seen = bytearray()
    try:
        assert _read_until(leader, b"approval-3", seen, 20), seen[-2000:]
        os.write(leader, b"2")
        assert _read_until(leader, b"PENDING", seen, 10), seen[-2000:]
        started = time.monotonic()
        os.write(leader, b"q")
        process.wait(timeout=10)
        quit_s = time.monotonic() - started
        _read_until(leader, b"\x00never", seen, 0.2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    output = bytes(seen)
    assert process.returncode == 0, output[-2000:]
    assert quit_s < 3, quit_s
    assert b"Traceback" not in output
    # Rich downgrades every colour to the 16 standard ones for TERM=vt100 without COLORTERM.
    assert not re.search(rb"\x1b\[[0-9;]*[34]8;[25];", output)
    assert re.search(rb"\x1b\[[0-9;]*(3[0-7]|9[0-7]|4[0-7]|10[0-7])[;m]", output)
    assert not wide(output.decode("utf-8", "replace"))

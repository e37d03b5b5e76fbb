"""The end-to-end tests wait for the terminal by polling it, never by a fixed sleep.

A fixed ``time.sleep`` before reading the screen is timing luck: too short on a loaded machine
(a flaky failure), too long everywhere else. Every sleep in tests/e2e must be the pause between
two polls of a loop that gives up at a deadline (``Tmux.wait_for``, ``wait_exit``,
``_program_pid``, ``poll_until``), so it only ever waits for something that has not happened yet.
"""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).resolve().parent


def fixed_sleeps(source: str) -> list[int]:
    """Lines of ``sleep(...)`` calls that are not inside a ``while`` loop with a ``monotonic()`` deadline."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _name(node.func) == "sleep":
            loop = node
            while loop in parents and not isinstance(loop, ast.While):
                loop = parents[loop]
            function = loop
            while function in parents and not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                function = parents[function]
            polled = isinstance(loop, ast.While) and any(
                isinstance(inner, ast.Call) and _name(inner.func) == "monotonic" for inner in ast.walk(function))
            if not polled:
                found.append(node.lineno)
    return found


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def test_no_e2e_test_waits_for_the_terminal_with_a_fixed_sleep():
    offenders = {path.name: lines for path in sorted(HERE.glob("*.py")) if (lines := fixed_sleeps(path.read_text()))}

    assert not offenders, f"fixed sleeps (poll with Tmux.wait_for / poll_until instead): {offenders}"


def test_the_check_finds_a_fixed_sleep_and_accepts_a_poll():
    fixed = "import time\ndef test():\n    pane.press('y')\n    time.sleep(1)\n    assert 'done' in pane.screen()\n"
    in_a_loop_without_deadline = "from time import sleep\ndef test():\n    while 'done' not in pane.screen():\n        sleep(0.1)\n"
    polled = ("import time\ndef wait():\n    deadline = time.monotonic() + 5\n    while not done():\n"
              "        if time.monotonic() > deadline:\n            raise AssertionError('timed out')\n        time.sleep(0.1)\n")

    assert fixed_sleeps(fixed) == [4]
    assert fixed_sleeps(in_a_loop_without_deadline) == [4]
    assert fixed_sleeps(polled) == []

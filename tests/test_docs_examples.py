"""The worked examples in docs/ are run, in order, and their outputs checked.

Fenced blocks carry what to do after the language word:
    ```toml file=NAME      write the block to NAME
    ```sh run              run the block with bash (-euo pipefail); it must succeed
    ```text expect         the previous run block printed exactly this
    ```json expect=FILE    FILE holds JSON containing this (objects may have more keys)
Each document runs in its own empty folder with this project's ``id1`` first on PATH.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
# Documents whose examples continue from another's (run first, in the same folder).
CONTINUES = {"policy.md": ["feed-format.md"]}
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(document: Path) -> list[tuple[str, dict[str, str], str]]:
    found = []
    for match in FENCE.finditer(document.read_text(encoding="utf-8")):
        language, *words = match["info"].split() or [""]
        options = dict(word.partition("=")[::2] for word in words)
        if options:
            found.append((language, options, match["body"]))
    return found


def contains(expected, actual) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and contains(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(map(contains, expected, actual))
    return expected == actual


@pytest.mark.parametrize("name", ["feed-format.md", "policy.md"])
def test_the_worked_examples_run_as_written(name, tmp_path):
    steps = [step for earlier in CONTINUES.get(name, []) for step in blocks(DOCS / earlier)]
    own = blocks(DOCS / name)
    assert any("run" in options for _, options, _ in own), f"{name} has no runnable example"
    steps += own
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("ID1_KEY_PASSWORD", None)
    printed = None
    for language, options, body in steps:
        if "file" in options:
            (tmp_path / options["file"]).write_text(body, encoding="utf-8")
        elif "run" in options:
            done = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{name}: this block failed:\n{body}\n{done.stderr}"
            printed = done.stdout
        elif "expect" in options and options["expect"]:
            actual = json.loads((tmp_path / options["expect"]).read_text(encoding="utf-8"))
            assert contains(json.loads(body), actual), f"{name}: {options['expect']} differs:\n{json.dumps(actual, indent=1)}"
        elif "expect" in options:
            assert printed is not None and printed.strip() == body.strip(), f"{name}: expected\n{body}\ngot\n{printed}"

"""A second agent on the same state folder refuses to start, naming the first one's pid.

``flock`` locks belong to an open file description, so these tests use real second processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.errors import StoreError, StoreLocked
from agent.store import Store

ROOT = Path(__file__).resolve().parents[2]

TRY_OPEN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agent.errors import StoreError, StoreLocked
    from agent.store import Store
    try:
        Store.open(Path(sys.argv[1])).close()
    except StoreLocked as error:
        print("StoreLocked:", error)
        sys.exit(3)
    print("opened")
    """
)

HOLD_OPEN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from agent.store import Store
    store = Store.open(Path(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def python(script: str, *args: str, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options
    )


def test_a_second_agent_process_is_refused_with_the_first_ones_pid(store, state_dir):
    second = python(TRY_OPEN, str(state_dir))
    out, err = second.communicate(timeout=60)

    assert second.returncode == 3, err
    assert out.strip() == (
        f"StoreLocked: another id1 agent (pid {os.getpid()}) is using {state_dir}: stop it first (systemctl stop id1-agent)"
    )


def test_the_lock_goes_with_the_process_even_when_it_is_killed(state_dir):
    first = python(HOLD_OPEN, str(state_dir), stdin=subprocess.PIPE)
    try:
        assert first.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked, match=f"another id1 agent \\(pid {first.pid}\\) is using {state_dir}"):
            Store.open(state_dir)
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)

    with Store.open(state_dir) as store:  # no stale lock after a crash
        assert store.is_open
        assert (state_dir / "agent.lock").read_text().strip() == str(os.getpid())


def test_closing_the_store_lets_the_next_agent_start(open_store, state_dir):
    open_store().close()

    second = python(TRY_OPEN, str(state_dir))
    out, err = second.communicate(timeout=60)

    assert (second.returncode, out.strip()) == (0, "opened"), err
    assert (state_dir / "agent.lock").read_text() == "", "no pid left behind to mislead"


def test_a_second_open_in_the_same_process_is_refused_too(store, state_dir):
    with pytest.raises(StoreLocked, match=f"pid {os.getpid()}"):
        Store.open(state_dir)
    assert store.feed_state.get().serial is None  # the first one is unaffected


def test_a_closed_store_says_so(store):
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(StoreError, match="is closed"):
        store.feed_state.get()

"""The demo's parts that its promises rest on: the sandbox finds and ends every process that
refers to it, and the feed server never pairs a feed with another publication's signature."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agent.demo.errors import DemoError
from agent.demo.feed_server import FeedServer
from agent.demo.sandbox import Sandbox, processes_referring_to

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def sleepers():
    started: list[subprocess.Popen] = []

    def start(*extra: str, cwd: Path | None = None) -> subprocess.Popen:
        process = subprocess.Popen([*SLEEP, *extra], cwd=cwd)
        started.append(process)
        while b"time.sleep" not in Path(f"/proc/{process.pid}/cmdline").read_bytes():
            time.sleep(0.01)  # until the child has exec'd: before that it is a copy of pytest
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_claim_wipes_the_sandbox_and_ends_what_a_killed_demo_left_running(tmp_path: Path, sleepers):
    old = Sandbox.claim(tmp_path / ".demo")
    (old.state / "state.json").write_text("{}")
    old.pid_file.write_text("999999999\n")  # the demo that wrote it is gone
    by_argument = sleepers(str(old.host / "etc"))
    by_folder = sleepers(cwd=old.state)
    neighbour = sleepers(str(tmp_path / ".demo2"), cwd=tmp_path)  # near the sandbox, not in it
    assert set(processes_referring_to(old.root)) >= {by_argument.pid, by_folder.pid}
    assert neighbour.pid not in processes_referring_to(old.root)

    fresh = Sandbox.claim(tmp_path / ".demo")

    assert by_argument.wait(10) is not None and by_folder.wait(10) is not None
    assert neighbour.poll() is None
    assert not (fresh.state / "state.json").exists() and fresh.unit_dir.is_dir()
    assert int(fresh.pid_file.read_text()) == os.getpid()


def test_a_second_demo_on_the_same_sandbox_is_refused(tmp_path: Path, sleepers):
    sandbox = Sandbox.claim(tmp_path / ".demo")
    running = sleepers("-m", "agent.demo")  # what a running demo's command line says
    sandbox.pid_file.write_text(f"{running.pid}\n")

    with pytest.raises(DemoError, match=f"already running .* \\(pid {running.pid}\\)"):
        Sandbox.claim(tmp_path / ".demo")
    assert running.poll() is None and sandbox.pid_file.exists()


def test_the_signature_served_is_always_that_of_the_feed_served(tmp_path: Path):
    folder = tmp_path / "feed"
    (folder / "artifacts").mkdir(parents=True)
    (folder / "artifacts" / "core-auth-1.0.0.tar.gz").write_bytes(b"tarball")
    server = FeedServer(folder).start()
    try:
        def publish(text: str) -> None:
            (folder / "feed.json").write_text(text)
            (folder / "feed.json.minisig").write_text(f"signature of {text}")
            server.publish()

        base = server.url.removesuffix("feed.json")
        publish("serial 1")
        first = httpx.get(server.url)
        publish("serial 2")  # lands between the agent's two requests
        assert first.text == "serial 1"
        assert httpx.get(base + "feed.json.minisig").text == "signature of serial 1"
        assert httpx.get(server.url, headers={"If-None-Match": first.headers["ETag"]}).text == "serial 2"
        assert httpx.get(base + "feed.json.minisig").text == "signature of serial 2"
        again = httpx.get(server.url, headers={"If-None-Match": httpx.get(server.url).headers["ETag"]})
        assert again.status_code == 304
        assert httpx.get(base + "artifacts/core-auth-1.0.0.tar.gz").content == b"tarball"
        assert httpx.get(base + "artifacts/%2e%2e%2ffeed.json").status_code == 404
        assert httpx.get(base + "releases-1.json").status_code == 404  # only the feed and its artifacts
    finally:
        server.stop()

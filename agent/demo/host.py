"""The demo host: the agent's config, ``id1 agent run`` in the background, and its units.

    agent = DemoAgent(sandbox, id1=id1_command())
    agent.configure(feed_url, public_key, systemctl)
    agent.start()          # a subprocess in its own session, logging to .demo/agent.log
    agent.stop()           # SIGTERM (the agent finishes or undoes its step), then stop the units

The config is the one an operator writes (DESIGN.md §8), pointed into the sandbox: systemctl3
with ``--root`` runs the units as this user, a short poll interval and bake period make the
story quick, and this user's group is admin so approving from the dashboard works without root.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent.client import AgentClient
from agent.demo.errors import DemoError
from agent.demo.sandbox import Sandbox
from agent.errors import Id1Error

POLL_INTERVAL = "5s"
AGENT_STOP_TIMEOUT_S = 60
# Set the parent-death signal, then become the agent: if the demo is killed outright, the agent
# gets SIGTERM instead of running on (the next demo ends the units it leaves).
_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def id1_command() -> list[str]:
    """How to run ``id1`` with this interpreter: the console script beside it, else the module."""
    script = Path(sys.executable).parent / "id1"
    return [str(script)] if script.exists() else [sys.executable, "-m", "agent.cli.main"]


def find_systemctl3() -> Path:
    """docker-systemctl-replacement's ``systemctl3``, installed beside this interpreter by ``make demo``."""
    beside = Path(sys.executable).parent / "systemctl3"
    found = beside if beside.exists() else shutil.which("systemctl3")
    if not found:
        raise DemoError("systemctl3 (docker-systemctl-replacement) is not installed: run `make demo`, which installs it")
    return Path(found)


def _toml(value) -> str:
    return json.dumps(value)  # a JSON string or list of strings is valid TOML


class DemoAgent:
    def __init__(self, sandbox: Sandbox, *, id1: list[str]):
        self.sandbox = sandbox
        self.id1 = id1
        self.systemctl: Path | None = None
        self.process: subprocess.Popen | None = None
        self._log = None

    def configure(self, feed_url: str, public_key: str, systemctl: Path) -> None:
        self.systemctl = systemctl
        sandbox = self.sandbox
        group = grp.getgrgid(os.getgid()).gr_name
        sandbox.config.write_text(
            "# The demo's agent: everything inside the sandbox (agent/demo/host.py).\n"
            'instance_id = "demo-host"\n'
            f"state_dir = {_toml(str(sandbox.state))}\n"
            f"socket = {_toml(str(sandbox.socket))}\n\n"
            f"[feed]\nurl = {_toml(feed_url)}\ntrusted_keys = [{_toml(public_key)}]\npoll_interval = {_toml(POLL_INTERVAL)}\n\n"
            '[policy]\nchannel = "manual-approval"\nenforce_severity = "critical"\n\n'
            f"[services]\nsystemctl = {_toml(str(systemctl))}\n"
            f"systemctl_args = [{_toml('--root=' + str(sandbox.host))}]\n"
            f"unit_dir = {_toml(str(sandbox.unit_dir))}\n\n"
            '[health]\nbake_period = "15s"\nwatch_interval = "2s"\n\n'
            f"[roles]\nadmin = [{_toml(group)}]\n",
            encoding="utf-8",
        )

    def start(self, timeout_s: float = 60) -> None:
        self._log = self.sandbox.agent_log.open("ab")
        command = [*self.id1, "agent", "run", "--config", str(self.sandbox.config)]
        self.process = subprocess.Popen(
            [sys.executable, "-c", _DIE_WITH_PARENT, *_absolute(command)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            cwd=self.sandbox.root, start_new_session=True,  # the terminal's signals are for the demo
        )
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self.process.poll() is not None:
                raise DemoError(f"the agent exited with status {self.process.returncode}; see {self.sandbox.agent_log}")
            if time.monotonic() > deadline:
                raise DemoError(f"the agent did not answer on {self.sandbox.socket} within {timeout_s:g} s; see {self.sandbox.agent_log}")
            time.sleep(0.2)

    def answers(self) -> bool:
        try:
            with AgentClient.connect(self.sandbox.socket) as client:
                client.status()
        except Id1Error:
            return False
        return True

    def stop(self) -> list[str]:
        """End the agent, then every unit it started; what was stopped, in words."""
        done = []
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(AGENT_STOP_TIMEOUT_S)
                done.append("agent")
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                done.append("agent (killed: it did not stop within a minute)")
        if self._log is not None:
            self._log.close()
            self._log = None
        units = self.stop_units()
        if units:
            done.append(f"{len(units)} unit(s): {', '.join(units)}")
        return done

    def stop_units(self) -> list[str]:
        """``systemctl3 --root=… stop`` every unit the agent installed; their names."""
        units = sorted(unit.name for unit in self.sandbox.unit_dir.glob("*.service"))
        if self.systemctl is None or not units:
            return []
        # One systemctl3 per unit, side by side: each waits a second or more for its unit to go.
        stops = [subprocess.Popen([str(self.systemctl), f"--root={self.sandbox.host}", "stop", unit],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for unit in units]
        deadline = time.monotonic() + 60
        for stop in stops:
            try:
                stop.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop.kill()  # the sandbox sweep that follows ends what it could not stop
                stop.wait()
        return units


def _absolute(command: list[str]) -> list[str]:
    return [str(Path(command[0]).absolute()), *command[1:]]

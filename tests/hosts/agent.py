"""A test host with the agent's .deb installed, as an admin would set it up.

    host = AgentHost.create("agent")            # a TestHost: copy, boot
    host.boot()
    host.install(built_deb())                   # dpkg -i, as on any Debian host
    host.configure(vendor)                      # /etc/id1/agent.toml naming the vendor's feed
    host.systemctl("start", "id1-agent")        # the shipped unit, unchanged
    host.id1("check")                           # `id1 …` inside the host (root, or user=…)
    host.status()                               # `id1 status --json`
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.hosts.machine import HostError, TestHost
from tests.hosts.vendor import ServiceVendor

AGENT = "id1-agent.service"
CONFIG = "/etc/id1/agent.toml"


class AgentHost(TestHost):
    def install(self, deb: Path) -> str:
        inside = f"/root/{deb.name}"
        self.write(inside, deb.read_bytes())
        done = self.run("dpkg", "-i", inside, timeout=300)
        return done.stdout + done.stderr

    def configure(self, vendor: ServiceVendor, *, channel: str = "auto-update", extra: str = "") -> str:
        text = (f'instance_id = "{self.name}"\n'
                f'[feed]\nurl = "{vendor.feed_url}"\ntrusted_keys = ["{vendor.public_key}"]\npoll_interval = "1h"\n'
                f'[policy]\nchannel = "{channel}"\n' + extra)
        self.write(CONFIG, text)
        return text

    def systemctl(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("systemctl", *argv, check=check)

    def unit_property(self, unit: str, name: str) -> str:
        return self.run("systemctl", "show", "-P", name, "--", unit).stdout.strip()

    def unit_state(self, unit: str) -> str:
        return self.run("systemctl", "is-active", "--", unit, check=False).stdout.strip()

    def enablement(self, unit: str) -> str:
        return self.run("systemctl", "is-enabled", "--", unit, check=False).stdout.strip()

    def id1(self, *argv: str, user: str | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        return self.run("id1", *argv, user=user, check=check, timeout=timeout)

    def status(self, user: str | None = None) -> dict:
        return json.loads(self.id1("status", "--json", user=user).stdout)

    def journal(self, unit: str = AGENT) -> str:
        """The unit's messages since the host's first boot (the journal is kept on disk)."""
        return self.run("journalctl", "-u", unit, "-o", "cat", "--no-pager", check=False).stdout

    def wait_agent_ready(self, *, timeout_s: float = 60, not_pid: str | None = None) -> str:
        """Active (Type=notify: READY=1 was sent) with a main PID other than ``not_pid``; that PID."""
        def ready():
            if self.unit_state(AGENT) != "active":
                return None
            pid = self.unit_property(AGENT, "MainPID")
            return pid if pid not in ("0", not_pid) else None
        return self.wait_until(ready, timeout_s=timeout_s, what=f"{AGENT} to be active" + (f" again (not pid {not_pid})" if not_pid else ""))

    def wait_idle(self, *, timeout_s: float = 120) -> dict:
        """The agent's status once no deployment is in progress."""
        def idle():
            try:
                status = self.status()
            except HostError:
                return None  # the agent is (re)starting
            return status if status.get("deployment") is None else None
        return self.wait_until(idle, timeout_s=timeout_s, what="the agent to be idle", interval_s=0.5)

    def add_user(self, name: str, *groups: str) -> None:
        self.run("useradd", "--create-home", name)
        for group in groups:
            self.run("usermod", "--append", "--groups", group, name)

"""A real etcd cluster on loopback, started by the tests (DESIGN.md §13): Debian's etcd-server,
each member with its own data folder and ports, and the means to kill members and bring them
back (one: the cluster goes on; two of three: quorum lost).

    cluster = EtcdCluster(tmp_path, members=3); cluster.start()
    cluster.endpoints              client URLs, member order
    cluster.kill(1)                SIGKILL, as a crash or a power cut would
    cluster.restart(1)             the same member from its data folder, waited for
    cluster.wait_healthy()         every running member has a leader (polled, with a deadline)
    cluster.close()
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.ports import free_port

ETCD = "/usr/bin/etcd"
START_DEADLINE_S = 30.0


@dataclass
class Member:
    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    process: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.data_dir.with_suffix(".log")

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EtcdCluster:
    def __init__(self, folder: Path, *, members: int = 3, name: str = "id1-test"):
        if not os.access(ETCD, os.X_OK):
            raise RuntimeError(f"{ETCD} is missing: install Debian's etcd-server (make debian-packages)")
        self.name = name
        self.members = [Member(f"m{index}", folder / f"etcd-m{index}", free_port(), free_port()) for index in range(members)]

    @property
    def endpoints(self) -> list[str]:
        return [member.client_url for member in self.members]

    def start(self) -> EtcdCluster:
        for member in self.members:
            self._launch(member)
        self.wait_healthy()
        return self

    def kill(self, index: int) -> None:
        member = self.members[index]
        if member.running:
            os.killpg(member.process.pid, signal.SIGKILL)
            member.process.wait(10)

    def restart(self, index: int) -> None:
        self._launch(self.members[index])

    def wait_healthy(self, deadline_s: float = START_DEADLINE_S) -> None:
        deadline = time.monotonic() + deadline_s
        pending = [member for member in self.members if member.running or member.process is None]
        while pending:
            pending = [member for member in pending if not self._healthy(member)]
            for member in pending:
                if member.process is not None and member.process.poll() is not None:
                    raise RuntimeError(f"etcd member {member.name} exited: {member.log.read_text()[-2000:]}")
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"etcd members {[m.name for m in pending]} not healthy after {deadline_s} s")
            if pending:
                time.sleep(0.1)

    def leader(self) -> int:
        """The index of the member that leads now."""
        for index, member in enumerate(self.members):
            if not member.running:
                continue
            status = httpx.post(f"{member.client_url}/v3/maintenance/status", json={}, timeout=2).json()
            if status.get("leader") == status.get("header", {}).get("member_id"):
                return index
        raise RuntimeError("no leader")

    def close(self) -> None:
        for index in range(len(self.members)):
            self.kill(index)

    def _launch(self, member: Member) -> None:
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        command = [ETCD, "--name", member.name, "--data-dir", str(member.data_dir),
                   "--listen-client-urls", member.client_url, "--advertise-client-urls", member.client_url,
                   "--listen-peer-urls", member.peer_url, "--initial-advertise-peer-urls", member.peer_url,
                   "--initial-cluster", initial, "--initial-cluster-token", self.name,
                   "--initial-cluster-state", "new", "--heartbeat-interval", "100", "--election-timeout", "1000"]
        with open(member.log, "ab") as log:
            member.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    @staticmethod
    def _healthy(member: Member) -> bool:
        try:
            answer = httpx.get(f"{member.client_url}/health", timeout=1).json()
        except (httpx.HTTPError, ValueError):
            return False
        return answer.get("health") == "true"

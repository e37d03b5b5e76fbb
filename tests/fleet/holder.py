"""A host in a process of its own that takes a slot and keeps it until it is killed: the tests
SIGKILL it to play a host that crashes or is cut off while holding its slot.

    python -m tests.fleet.holder HOST_ID '{"backend": "etcd", ...}'   prints "held" once it holds
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from agent.fleet.config import FleetConfig
from agent.fleet.etcd import EtcdCoordinator

ROOT = Path(__file__).resolve().parents[2]


class Holder:
    """The process, started and waited for until it holds its slot (with a deadline)."""

    def __init__(self, host_id: str, config: FleetConfig, deadline_s: float = 30.0):
        self.process = subprocess.Popen([sys.executable, "-m", "tests.fleet.holder", host_id, config.model_dump_json()],
                                        cwd=ROOT, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # the child gives up by itself after deadline_s
        if line.strip() != "held":
            self.process.kill()
            raise RuntimeError(f"the holder process did not take a slot: {line!r}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


def main() -> None:
    host_id, raw = sys.argv[1], sys.argv[2]
    coordinator = EtcdCoordinator(FleetConfig(**json.loads(raw)), host_id=host_id, instance_id=f"instance-{host_id}")
    grant = coordinator.acquire(should_stop=lambda: False, on_wait=lambda wait: None, give_up_after=30)
    print("held" if grant.held else f"not held: {grant.reason}", flush=True)
    while grant.held:
        time.sleep(3600)


if __name__ == "__main__":
    main()

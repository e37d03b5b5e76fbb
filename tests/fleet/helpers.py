"""What the fleet tests share: running a blocking call in a thread, waiting for a condition with
a deadline (never a bare sleep), and reading the slot keys straight from etcd."""

from __future__ import annotations

import json
import threading
import time

import httpx

from agent.fleet import gateway as etcd
from agent.fleet.keys import GroupKeys, prefix_end

DEADLINE_S = 60.0


def run_in_thread(target) -> tuple[threading.Thread, dict]:
    """target() in a thread; its result lands in box["result"] (or its exception in box["error"])."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = target()
        except BaseException as error:  # noqa: BLE001 (handed to the test)
            box["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def wait_until(condition, what: str, deadline_s: float = DEADLINE_S):
    deadline = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {deadline_s} s: {what}"
        time.sleep(0.05)


def slot_keys(endpoints: list[str], group: str) -> list[etcd.KeyValue]:
    keys = GroupKeys(group)
    gateway = etcd.EtcdGateway(endpoints)
    try:
        kvs, _, _ = gateway.range(keys.slots, prefix_end(keys.slots))
    finally:
        gateway.close()
    return kvs


def holder_hosts(endpoints: list[str], group: str) -> list[str]:
    return [json.loads(kv.value)["host"] for kv in slot_keys(endpoints, group)]


def lease_ttl(endpoint: str, lease: int) -> int:
    """Seconds the lease has left; -1: etcd has no such lease (any more)."""
    return int(httpx.post(f"{endpoint}/v3/lease/timetolive", json={"ID": str(lease)}, timeout=5).json()["TTL"])


def never(_wait) -> None:
    return None

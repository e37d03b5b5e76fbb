"""The etcd key layout of a group, pure: names in, names out.

    /id1/fleet/<group>/
    ├── slots/<NNNN>                    a slot held: {"host", "instance", "since"}, under the
    │                                   holder's lease; NNNN = 0000 … slots-1 (four digits, so
    │                                   key order is slot order). Taken only by a txn that
    │                                   compares "slots/<NNNN> absent" and "no slots/<M> for
    │                                   M ≥ slots": at most `slots` keys, under any concurrency
    ├── queue/<µs since epoch>-<host>   a host waiting for a slot: {"host", "instance", "since"},
    │                                   under its lease; key order is the order of arrival, so
    │                                   the first in line is one range with limit 1
    ├── failed/<REF@VERSION>/<host>     a host rolled back from that change: {"host",
    │                                   "instance", "at"}, no lease (kept until resumed); at
    │                                   halt_after hosts the change is halted for the group
    └── hosts/<host>                    a host's published state: HostState + "seen_at", under
                                        its lease (gone when the host is)

``<host>`` is the fleet id (``[A-Za-z0-9][A-Za-z0-9_.:-]*``, never a "/"), so the last part of
a key is always the host.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "/id1/fleet/"


@dataclass(frozen=True)
class GroupKeys:
    group: str

    @property
    def prefix(self) -> str:
        return f"{ROOT}{self.group}/"

    # slots
    @property
    def slots(self) -> str:
        return f"{self.prefix}slots/"

    def slot(self, index: int) -> str:
        return f"{self.slots}{index:04d}"

    def slots_from(self, index: int) -> tuple[str, str]:
        """The range of slot keys numbered ``index`` and above."""
        return self.slot(index), prefix_end(self.slots)

    def slot_index(self, key: str) -> int | None:
        tail = key[len(self.slots):]
        return int(tail) if key.startswith(self.slots) and tail.isdigit() else None

    # queue
    @property
    def queue(self) -> str:
        return f"{self.prefix}queue/"

    def queue_entry(self, micros: int, host: str) -> str:
        return f"{self.queue}{micros:016d}-{host}"

    def queue_host(self, key: str) -> str:
        return key[len(self.queue):].partition("-")[2]

    # failures
    @property
    def failed(self) -> str:
        return f"{self.prefix}failed/"

    def failed_ref(self, ref: str) -> str:
        return f"{self.failed}{ref}/"

    def failure(self, ref: str, host: str) -> str:
        return f"{self.failed_ref(ref)}{host}"

    def failure_of(self, key: str) -> tuple[str, str]:
        """(REF@VERSION, host) of a failure key."""
        ref, _, host = key[len(self.failed):].rpartition("/")
        return ref, host

    # hosts
    @property
    def hosts(self) -> str:
        return f"{self.prefix}hosts/"

    def host(self, host: str) -> str:
        return f"{self.hosts}{host}"


def prefix_end(prefix: str) -> str:
    """The range end that covers every key starting with ``prefix`` (an ASCII prefix)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)

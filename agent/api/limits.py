"""What the API allows its callers, so that no local user can exhaust the agent (issue 12).

The socket is open to every local user, and a user needs no role to connect, hold a
connection open, or send bytes. So, before any role is known:

    connections   at most ``max_per_user`` at once from one uid and ``max_connections`` from
                  everyone but root together; root (who can stop the agent anyway, and whose
                  monitoring may poll it in parallel) is counted in neither, so an admin gets
                  in whoever fills the rest; nobody at all while fewer than
                  ``descriptor_reserve`` descriptors are left under the process's soft
                  RLIMIT_NOFILE, which stay for the agent's own work (feed polls,
                  deployments, its state). A refused connection is answered 503 and closed
                  at once, when it is accepted.
    time          a complete request head within ``head_timeout`` of connecting or of the
                  previous answer (a slow sender is cut however steadily it trickles), and
                  the whole body within ``body_timeout`` of the head.
    size          a body over ``max_body_bytes`` is answered 413: at once when its
                  Content-Length says so, as soon as the cap is passed when it is chunked.
    the log       each kind of refusal is logged once, then summed up at most once per
                  ``log_interval`` ("refused 1,068 more …"), so a flood cannot fill the disk.

This module is the pure part: the numbers, the admission rule and the log throttle, with time
and descriptor counts passed in. ``agent.api.gate`` applies them to sockets; ``body_limit``
to request bodies; ``auth`` refuses a caller without a role before its body is read.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_connections: int = 128
    """Connections held at once from every caller but root (a few CLIs and TUIs need a handful)."""
    max_per_user: int = 32
    """Connections held at once from one uid other than root."""
    descriptor_reserve: int = 256
    """Descriptors kept free for the agent's own work: no connection is taken while fewer are
    left under the soft RLIMIT_NOFILE (at most a quarter of that limit is kept back)."""
    head_timeout: float = 5.0
    """Seconds to send a complete request head, from connecting or from the previous answer."""
    body_timeout: float = 10.0
    """Seconds to send the rest of the body, from the end of the head."""
    max_body_bytes: int = 1 << 20
    """The largest request body accepted (every body the API takes is a few hundred bytes)."""
    log_interval: float = 60.0
    """Seconds between two log lines about the same kind of refusal or timeout."""

    def __post_init__(self) -> None:
        for name in ("max_connections", "max_per_user", "descriptor_reserve", "max_body_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in ("head_timeout", "body_timeout", "log_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class Refusal(enum.Enum):
    """Why a connection is closed as soon as it is accepted."""

    descriptors = "the agent keeps its last file descriptors for its own work"
    per_user = "that user already holds the most connections one user may"
    total = "the agent already holds the most connections it serves"


def descriptors_kept(limits: ApiLimits, descriptor_limit: int) -> int:
    """How many descriptors stay free for the agent under a soft limit of ``descriptor_limit``."""
    return min(limits.descriptor_reserve, descriptor_limit // 4)


def refusal(uid: int, held: Mapping[int, int], *, descriptors_open: int, descriptor_limit: int,
            limits: ApiLimits) -> Refusal | None:
    """Whether to refuse a new connection from ``uid``, given the connections held per uid and
    the descriptors the process has open (the new connection's included)."""
    if descriptors_open > descriptor_limit - descriptors_kept(limits, descriptor_limit):
        return Refusal.descriptors
    if uid != 0 and held.get(uid, 0) >= limits.max_per_user:
        return Refusal.per_user
    if uid != 0 and sum(count for holder, count in held.items() if holder != 0) >= limits.max_connections:
        return Refusal.total
    return None


class Throttle:
    """One log line per kind of event per ``interval`` seconds: the first at once, then a count.

        throttle = Throttle(60)
        throttle.note("refused uid 1001", now)   # 1: write the line now, about one event
        throttle.note("refused uid 1001", now)   # None: counted, stay quiet
        throttle.due(now + 60)                   # {"refused uid 1001": 1}: write the sum

    ``now`` is any monotonic clock, in seconds.
    """

    def __init__(self, interval: float):
        self.interval = interval
        self._written: dict[str, float] = {}  # kind -> when its last line was written
        self._held: dict[str, int] = {}  # kind -> events not written since

    def note(self, kind: str, now: float) -> int | None:
        """An event of ``kind``: how many events a line written now should report, or None
        to stay quiet (the event is counted for a later line)."""
        last = self._written.get(kind)
        if last is not None and now - last < self.interval:
            self._held[kind] = self._held.get(kind, 0) + 1
            return None
        self._written[kind] = now
        return self._held.pop(kind, 0) + 1

    def due(self, now: float) -> dict[str, int]:
        """The counts held back for kinds whose interval has passed; each is written now.
        Kinds quiet for a whole interval are forgotten, so the table stays small."""
        ready = {kind: count for kind, count in self._held.items() if now - self._written[kind] >= self.interval}
        for kind in ready:
            del self._held[kind]
            self._written[kind] = now
        self._written = {kind: at for kind, at in self._written.items() if kind in self._held or now - at < self.interval}
        return ready

    def drain(self) -> dict[str, int]:
        """Every count held back, whatever its interval (the last lines, when the API stops)."""
        held, self._held = self._held, {}
        return held

    def next_due(self) -> float | None:
        """When the earliest held-back count may be written; None if nothing is held."""
        times = [self._written[kind] + self.interval for kind in self._held]
        return min(times) if times else None

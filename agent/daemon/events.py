"""Events for clients: what changed, pushed to every ``GET /events`` stream (server-sent events).

Published from any thread (the deployment worker, API handlers); each subscriber is an asyncio
queue fed on the event loop's thread. A slow client never holds the agent back: its queue is
bounded and, when full, it gets a ``resync`` event instead of what it missed (the TUI then
reloads everything).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

QUEUE_SIZE = 256
SHUTDOWN = "shutdown"


@dataclass(frozen=True)
class Event:
    id: int
    kind: str
    """``status``, ``deployment``, ``approval``, ``revision``, ``audit``, ``feed``, ``resync``, ``shutdown``."""
    data: dict[str, Any] = field(default_factory=dict)
    at: str = ""


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._subscribers: dict[asyncio.Queue, asyncio.AbstractEventLoop] = {}

    def publish(self, kind: str, data: dict[str, Any] | None = None) -> Event:
        event = Event(next(self._ids), kind, data or {}, datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        with self._lock:
            subscribers = list(self._subscribers.items())
        for queue, loop in subscribers:
            try:
                loop.call_soon_threadsafe(_offer, queue, event)
            except RuntimeError:  # the loop is closed: that subscriber is gone
                self.unsubscribe(queue)
        return event

    def close(self) -> None:
        """The agent is stopping: every stream gets a ``shutdown`` event and ends, so the API's
        graceful stop does not wait on clients that would otherwise stay connected."""
        self.publish(SHUTDOWN, {"reason": "the agent is stopping"})

    def subscribe(self) -> asyncio.Queue:
        """A queue of events for the calling coroutine's loop; ``unsubscribe`` it when done."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        with self._lock:
            self._subscribers[queue] = asyncio.get_running_loop()
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers.pop(queue, None)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)


def _offer(queue: asyncio.Queue, event: Event) -> None:
    if event.kind == SHUTDOWN:  # must get through even to a slow client
        while queue.full():
            queue.get_nowait()
        queue.put_nowait(event)
        return
    if queue.full():
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(Event(event.id, "resync", {"reason": "events were dropped for a slow client"}, event.at))
        return
    queue.put_nowait(event)

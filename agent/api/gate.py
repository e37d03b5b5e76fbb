"""The API's connections, held to ``ApiLimits`` (see ``agent.api.limits``) as they are accepted
and while they live.

    ConnectionGate         counts connections per uid; its listening socket decides on each
                           connection inside ``accept()``, before asyncio makes a transport or
                           uvicorn a protocol for it: a refused one costs one descriptor for
                           microseconds (answered 503, closed), never a task or a buffer
    GuardedH11Protocol     uvicorn's h11 protocol with the caller's credentials (``peer``) and
                           deadlines: a complete head within ``head_timeout`` of connecting or
                           of the previous answer, the body within ``body_timeout`` of the head
    ThrottledLog           refusals, timeouts and uvicorn's own warnings, one line per kind at
                           once and then a count at most once per ``log_interval``

A connection's slot is given back when its socket is closed (``_HeldSocket.close``), which
asyncio does for every transport, however the connection ends.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import pwd
import resource
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from agent.api.limits import ApiLimits, Refusal, Throttle, descriptors_kept, refusal
from agent.api.peer import PEER_KEY, PeerCredentials, PeerCredentialsMixin, peer_credentials

logger = logging.getLogger(__name__)

_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

_REFUSALS_PER_ACCEPT = 16
"""Connections refused in one ``accept()`` call before the event loop gets a turn."""


def open_descriptors() -> int:
    """How many descriptors this process has open (0 where the system cannot say)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # listdir's own descriptor was open too
        except OSError:
            continue
    return 0


def descriptor_limit() -> int:
    """This process's soft RLIMIT_NOFILE, the limit EMFILE comes from."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def user_name(uid: int | None) -> str:
    """``alice (uid 1001)`` for a log line; looked up only when a line is written."""
    if uid is None:
        return "an unknown caller"
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


class ThrottledLog:
    """Log lines that an attacker could repeat, at most one per kind per ``interval``.

    ``event(kind, describe)`` writes ``describe(None)`` for the first event of a kind; the next
    ones are counted, and ``describe(count)`` is written once the interval has passed, by the
    next event or by a timer on the running loop (``close()`` writes what is left).
    """

    def __init__(self, logger: logging.Logger, interval: float, *, clock: Callable[[], float] = time.monotonic):
        self._logger = logger
        self._throttle = Throttle(interval)
        self._clock = clock
        self._pending: dict[str, tuple[int, Callable[[int | None], str]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        every = "once a minute" if interval == 60 else f"once every {interval:g} s"
        self.more_like_it = f"more like it are counted and logged {every}"
        """What the first line of a kind says about the next ones."""

    def event(self, kind: str, describe: Callable[[int | None], str], *, level: int = logging.WARNING,
              exc_info: Any = None) -> None:
        count = self._throttle.note(kind, self._clock())
        if count is None:
            self._pending[kind] = (level, describe)
            self._schedule()
        elif count == 1:
            self._pending.pop(kind, None)
            self._logger.log(level, describe(None), exc_info=exc_info)
        else:
            self._pending.pop(kind, None)
            self._logger.log(level, describe(count))

    def flush(self, *, everything: bool = False) -> None:
        """Write the counts that are due (all of them with ``everything``)."""
        self._timer = None
        counts = self._throttle.drain() if everything else self._throttle.due(self._clock())
        for kind, count in counts.items():
            level, describe = self._pending.pop(kind)
            self._logger.log(level, describe(count))
        if not everything:
            self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush(everything=True)

    def _schedule(self) -> None:
        due = self._throttle.next_due()
        if due is None or self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: the next event or close() writes it
            return
        self._timer = loop.call_later(max(due - self._clock(), 0.0) + 0.01, self.flush)


class ConnectionGate:
    """Counts the API's connections per uid and admits or refuses each one as it is accepted."""

    def __init__(self, limits: ApiLimits, *, descriptors: Callable[[], int] = open_descriptors,
                 limit: Callable[[], int] = descriptor_limit):
        self.limits = limits
        self.log = ThrottledLog(logger, limits.log_interval)
        self._descriptors = descriptors
        self._limit = limit
        self._held: dict[int, int] = {}
        self.refused: Counter[Refusal] = Counter()
        """Connections refused since the start, by reason."""

    def held(self, uid: int | None = None) -> int:
        """Connections held now, by ``uid`` or in all."""
        return sum(self._held.values()) if uid is None else self._held.get(uid, 0)

    def listen(self, path: Path, *, mode: int, backlog: int = 2048) -> socket.socket:
        """A listening Unix socket at ``path`` (chmod ``mode`` before it listens) whose
        ``accept()`` goes through this gate."""
        listener = _GatedListener(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.gate = self
        try:
            listener.bind(str(path))
            os.chmod(path, mode)
            listener.listen(backlog)
        except BaseException:
            listener.close()
            raise
        return listener

    def admit(self, conn: _HeldSocket) -> bool:
        """Keep ``conn`` (True) or answer it 503 and close it now (False)."""
        peer = peer_credentials(conn)
        if peer is None:  # gone already; nobody to answer
            conn.close()
            return False
        opened, limit = self._descriptors(), self._limit()
        why = refusal(peer.uid, self._held, descriptors_open=opened, descriptor_limit=limit, limits=self.limits)
        if why is not None:
            self._refuse(conn, peer, why, opened, limit)
            return False
        self._held[peer.uid] = self._held.get(peer.uid, 0) + 1
        conn._release = lambda: self._release(peer.uid)
        return True

    def _release(self, uid: int) -> None:
        left = self._held.get(uid, 0) - 1
        if left > 0:
            self._held[uid] = left
        else:
            self._held.pop(uid, None)

    def _refuse(self, conn: socket.socket, peer: PeerCredentials, why: Refusal, opened: int, limit: int) -> None:
        self.refused[why] += 1
        limits, uid = self.limits, peer.uid
        if why is Refusal.per_user:
            told = (f"uid {uid} already holds {limits.max_per_user} connections to the agent, the most one user "
                    "may; close some and try again")
            kind = f"refused:{why.name}:{uid}"
            reason = f"it already holds {limits.max_per_user}, the most one user may"
        elif why is Refusal.total:
            told = f"the agent already serves {limits.max_connections} connections, the most it takes; try again shortly"
            kind = f"refused:{why.name}"
            reason = f"{limits.max_connections} are held, the most the API takes from users other than root"
        else:
            told = "the agent keeps its last file descriptors for its own work; try again shortly"
            kind = f"refused:{why.name}"
            reason = (f"{opened} of its {limit} descriptors are open, and the last "
                      f"{descriptors_kept(limits, limit)} are kept for the agent's own work")
        _answer_503(conn, told)

        def describe(more: int | None) -> str:  # only called for a line that is written: names are looked up then
            if more is None:
                return f"API: refused a connection from {user_name(uid)}: {reason} ({self.log.more_like_it})"
            whose = f"from {user_name(uid)}" if why is Refusal.per_user else f"(the last from {user_name(uid)})"
            return f"API: refused {more:,} more connection{'s' if more > 1 else ''} {whose}: {reason}"

        self.log.event(kind, describe)

    def close(self) -> None:
        self.log.close()


def _answer_503(conn: socket.socket, message: str) -> None:
    body = json.dumps({"code": "unavailable", "message": message, "fields": []}).encode()
    head = (f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "retry-after: 5\r\nconnection: close\r\n\r\n").encode()
    try:
        conn.setblocking(False)
        conn.send(head + body)  # a fresh socket's send buffer takes it whole; if not, the close says enough
    except OSError:
        pass
    finally:
        conn.close()


class _HeldSocket(socket.socket):
    """An accepted connection that gives its slot back to the gate when it is closed."""

    _release: Callable[[], None] | None = None

    def close(self) -> None:
        release, self._release = self._release, None
        try:
            super().close()
        finally:
            if release is not None:
                release()


class _GatedListener(socket.socket):
    """The API's listening socket: asyncio calls its ``accept()``, which takes only the
    connections the gate admits and answers the others itself."""

    gate: ConnectionGate
    _resting_until = 0.0

    def accept(self) -> tuple[socket.socket, Any]:
        if time.monotonic() < self._resting_until:
            raise BlockingIOError(errno.EAGAIN, "resting: the process is out of descriptors")
        for _ in range(_REFUSALS_PER_ACCEPT):
            try:
                fd, address = self._accept()  # BlockingIOError when nobody is waiting: asyncio stops there
            except OSError as error:
                if error.errno in _OUT_OF_RESOURCES:
                    # asyncio logs this with a traceback and stops accepting for a second, but
                    # first calls accept() again, up to backlog (2048) times, logging each time:
                    # half a million tracebacks a minute. Told once, it is told nothing more.
                    self._resting_until = time.monotonic() + 0.5
                raise
            conn = _HeldSocket(self.family, self.type, self.proto, fileno=fd)
            if self.gate.admit(conn):
                return conn, address
        # The listening socket stays readable, so asyncio calls again on its next turn.
        raise BlockingIOError(errno.EAGAIN, "more connections are waiting")


class _ThrottledLogger:
    """uvicorn's logger for one connection, its warnings and errors through a ThrottledLog:
    "Invalid HTTP request received." and "Unsupported upgrade request." are a client's to
    repeat as often as it likes."""

    def __init__(self, logger: logging.Logger, throttled: ThrottledLog):
        self._logger = logger
        self._throttled = throttled

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)

    def log(self, level: int, msg: str, *args: Any, **kwargs: Any) -> None:
        if level < logging.WARNING:
            self._logger.log(level, msg, *args, **kwargs)
            return
        exc_info = kwargs.get("exc_info")
        error = exc_info if isinstance(exc_info, BaseException) else None
        kind = f"uvicorn:{msg}:{type(error).__name__}:{error}" if error else f"uvicorn:{msg}"
        text = (msg % args if args else msg).strip()
        self._throttled.event(kind, lambda more: f"{text} ({self._throttled.more_like_it})" if more is None
                              else f"{text} ({more:,} more since the last such line)", level=level, exc_info=exc_info)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)


class GuardedH11Protocol(PeerCredentialsMixin, H11Protocol):
    """uvicorn's h11 protocol with the caller's credentials in every scope, and deadlines.

    uvicorn itself has none before the first request (an idle connection stays forever), and
    its keep-alive timer is cancelled by any byte, so a client trickling a byte a second is
    never cut. Here one deadline is armed at a time, never moved by the bytes that arrive:

        waiting for a head   head_timeout, from connecting or from the end of the previous answer
        reading a body       body_timeout, from the end of the head
        the app answering    none (an event stream lasts as long as the caller reads it)
    """

    def __init__(self, *args: Any, gate: ConnectionGate, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._gate = gate
        self.logger = _ThrottledLogger(self.logger, gate.log)  # type: ignore[assignment]
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting: tuple[str, object] | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._follow()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Arm the deadline of the state the connection is in, unless it is already armed."""
        if self.transport is None or self.transport.is_closing():
            self._disarm()
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            waiting: tuple[str, object] | None = ("head", cycle)
        elif cycle.more_body:
            waiting = ("body", cycle)
        else:
            waiting = None
        if waiting == self._waiting:
            return
        self._disarm()
        if waiting is not None:
            seconds = self._gate.limits.head_timeout if waiting[0] == "head" else self._gate.limits.body_timeout
            self._waiting = waiting
            self._deadline = self.loop.call_later(seconds, self._deadline_passed, waiting[0], seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._waiting = None

    def _deadline_passed(self, what: str, seconds: float) -> None:
        self._deadline = None
        self._waiting = None
        if self.transport.is_closing():
            return
        peer = self.app_state.get(PEER_KEY)
        uid = peer.uid if peer is not None else None
        more_like_it = self._gate.log.more_like_it

        def describe(more: int | None) -> str:  # only called for a line that is written: names are looked up then
            why = f"from {user_name(uid)} that sent no complete request {what} within {seconds:g} s"
            if more is None:
                return f"API: closed a connection {why} ({more_like_it})"
            return f"API: closed {more:,} more connection{'s' if more > 1 else ''} {why}"

        self._gate.log.event(f"timeout:{what}:{uid}", describe, level=logging.INFO)
        self.transport.close()

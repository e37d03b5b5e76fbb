"""Tell systemd how the daemon is doing (sd_notify(3)), without libsystemd or a package for it.

    notifier = SystemdNotifier.from_environment()
    notifier.ready()
    interval = notifier.watchdog_interval()     # ping this often when the unit sets WatchdogSec=
    notifier.watchdog()
    notifier.status("deploying core 1.3.0")

The protocol is one datagram of ``KEY=value`` lines to the AF_UNIX socket named by
``$NOTIFY_SOCKET``: a path, or ``@name`` for the abstract namespace. Outside systemd (no
``$NOTIFY_SOCKET``) every call does nothing. A notification is never worth stopping the daemon
for: a socket that is gone or full is logged once (logger ``id1.systemd``) and ignored, and a send
never waits (a full socket queue drops the datagram instead of stalling a deployment).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

logger = logging.getLogger("id1.systemd")


class SystemdNotifier:
    """Sends sd_notify datagrams to one socket; inert when ``notify_socket`` is ``None``."""

    def __init__(self, notify_socket: str | None = None, *, watchdog_usec: int | None = None):
        self.notify_socket = notify_socket
        self._address = _socket_address(notify_socket) if notify_socket else None
        self._watchdog_usec = watchdog_usec
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._failure_logged = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier:
        """The notifier systemd asked for through ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID``."""
        environ = os.environ if environ is None else environ
        notify_socket = environ.get("NOTIFY_SOCKET") or None
        return cls(notify_socket, watchdog_usec=_watchdog_usec(environ) if notify_socket else None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    # ── the notifications ────────────────────────────────────────────────────────────────────

    def ready(self) -> bool:
        """Start-up (or a reload) is complete: systemd may start what waits for us."""
        return self._send("READY=1")

    def status(self, text: str) -> bool:
        """A one-line status for ``systemctl status``; line breaks become spaces."""
        # A newline would start another assignment: a status must never be able to say READY=1.
        return self._send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        """Still alive: resets the unit's WatchdogSec= timer."""
        return self._send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self._send("STOPPING=1")

    def reloading(self) -> bool:
        """A reload has begun; call ``ready()`` when it is done. Type=notify-reload needs the timestamp."""
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}")

    def watchdog_interval(self) -> float | None:
        """Seconds between ``watchdog()`` calls (half of WatchdogSec=), or ``None`` if there is no watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 1_000_000 / 2

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None

    # ── sending ──────────────────────────────────────────────────────────────────────────────

    def _send(self, message: str) -> bool:
        """True when the datagram went out; False when disabled or the socket refused it (logged once)."""
        if self._address is None:
            return False
        try:
            with self._lock:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.sendto(message.encode("utf-8", "replace"), socket.MSG_DONTWAIT, self._address)
        except OSError as error:
            self._report_failure(message, error)
            return False
        return True

    def _report_failure(self, message: str, error: OSError) -> None:
        if self._failure_logged:
            logger.debug("systemd notification %s not sent: %s", message.split("=", 1)[0], error)
            return
        self._failure_logged = True
        logger.warning(
            "cannot notify systemd through %s (%s); further notifications that fail are not logged",
            self.notify_socket,
            error.strerror or error,
        )


def _socket_address(notify_socket: str) -> str | bytes | None:
    if notify_socket.startswith("@"):
        return b"\0" + notify_socket[1:].encode()
    if notify_socket.startswith("/"):
        return notify_socket
    # systemd 253+ can also name an AF_VSOCK address ("vsock:CID:PORT"), used for virtual machines.
    logger.warning("NOTIFY_SOCKET=%s is not a Unix socket path or @name; systemd will not be notified", notify_socket)
    return None


def _watchdog_usec(environ: Mapping[str, str]) -> int | None:
    usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is another process's (we were started by the unit's main process)
    if not usec.isdigit() or int(usec) == 0:
        logger.warning("WATCHDOG_USEC=%s is not a positive number of microseconds; the watchdog is not pinged", usec)
        return None
    return int(usec)

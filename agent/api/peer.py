"""Who is on the other end of an API connection, as the kernel reports it.

The socket is open to every local user, so a caller is never identified by anything it sends.
Instead, each connection's SO_PEERCRED (pid, uid, gid of the process that called ``connect``)
is read once when the connection is made and put into every request's ASGI scope as
``scope["state"][PEER_KEY]``. We use ``state`` because uvicorn builds each request's scope
with ``"state": self.app_state.copy()`` (h11, httptools and websockets alike): giving the
connection its own copy of ``app_state`` is the one hook that survives uvicorn's scope
building without patching the request parser. A client cannot write into ``state``.

On anything but a Unix socket the credentials are None, and routes treat that as unknown.
The protocol the server uses is ``agent.api.gate.GuardedH11Protocol``: this mixin plus the
deadlines that keep a connection from idling (h11 only; httptools is not used).
"""

from __future__ import annotations

import logging
import socket
import struct
from dataclasses import dataclass
from typing import Any

PEER_KEY = "id1_peer"
"""Key of the PeerCredentials (or None) in ``scope["state"]``; ``request.state.id1_peer``."""

# struct ucred: pid_t pid; uid_t uid; gid_t gid (uid_t and gid_t are unsigned).
_UCRED = struct.Struct("iII")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """The calling process as the kernel saw it at ``connect()`` time."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> PeerCredentials | None:
    """SO_PEERCRED of a connected socket; None unless it is a Unix stream socket."""
    if sock is None or getattr(sock, "family", None) != socket.AF_UNIX:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except OSError as exc:  # the peer may already be gone; then nobody is asking
        log.warning("cannot read the API caller's credentials: %s", exc)
        return None
    return PeerCredentials(*_UCRED.unpack(raw))


class PeerCredentialsMixin:
    """Gives each connection of a uvicorn protocol its own ``app_state`` holding the peer's
    credentials."""

    app_state: dict[str, Any]

    def connection_made(self, transport: Any) -> None:
        peer = peer_credentials(transport.get_extra_info("socket"))
        # A copy per connection: the lifespan's dict is shared by all connections.
        self.app_state = {**self.app_state, PEER_KEY: peer}
        super().connection_made(transport)  # type: ignore[misc]


def peer_from_scope(scope: dict[str, Any]) -> PeerCredentials | None:
    """The credentials our protocol put into an ASGI scope; None if it was not ours."""
    peer = scope.get("state", {}).get(PEER_KEY)
    return peer if isinstance(peer, PeerCredentials) else None

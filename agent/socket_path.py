"""Where a client finds the daemon's socket: ``--socket PATH``, else ``$ID1_SOCKET``, else the default.

Kept apart from agent.client (which needs httpx) so that the command line can name it in its
help without importing an HTTP client.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SOCKET = "/run/id1/agent.sock"
SOCKET_ENV = "ID1_SOCKET"


def socket_path(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET)

"""The entry point behind ``id1 tui``: ``run_tui(socket)``.

The CLI calls it with its ``--socket`` option (None: ``$ID1_SOCKET``, else /run/id1/agent.sock)
and exits with what it returns. Importing this module imports Textual: the CLI must import it
only when ``tui`` is the verb (tests/test_import_hygiene.py).
"""

from __future__ import annotations

import os
import sys

from agent.client import AgentClient


def run_tui(socket: str | os.PathLike | None = None, *, refresh_s: float = 30.0) -> int:
    """Run the dashboard on this terminal until the user quits; the exit status.

    An agent that is down is not an error here: the dashboard says so and retries.
    """
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("id1 tui needs a terminal; for scripts use `id1 status --json` and the other verbs", file=sys.stderr)
        return 2
    from tui.app import DashboardApp

    client = AgentClient.connect(socket)
    try:
        app = DashboardApp(client, refresh_s=refresh_s)
        app.run()
        return app.return_code or 0
    finally:
        client.close()

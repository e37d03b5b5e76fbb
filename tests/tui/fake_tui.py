"""``python -m tests.tui.fake_tui [ROLE]``: the real dashboard on this terminal, against the fake
agent, for the terminal tests (a pty with TERM=vt100) and for looking at it by hand."""

from __future__ import annotations

import sys

from tests.tui.fake import FakeClient
from tui.app import DashboardApp


def main() -> int:
    fake = FakeClient(role=sys.argv[1] if len(sys.argv) > 1 else "approver")
    try:
        app = DashboardApp(fake, refresh_s=0)
        app.run()
        return app.return_code or 0
    finally:
        fake.close()


if __name__ == "__main__":
    sys.exit(main())

"""Suite-wide: which tests must run alone.

``make test`` runs the suite in two passes: everything else on parallel workers
(pytest-xdist), then the ``serial`` tests one at a time — benchmarks (their figures must not
share the machine), and tests that change the whole machine or its terminals: the Debian
package installed with dpkg, ``make demo`` and the SSH/tmux end-to-end runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

SERIAL_FOLDERS = ("benchmarks", "packaging", "demo", "e2e")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        relative = Path(item.fspath).resolve().relative_to(TESTS)
        if relative.parts and relative.parts[0] in SERIAL_FOLDERS:
            item.add_marker(pytest.mark.serial)

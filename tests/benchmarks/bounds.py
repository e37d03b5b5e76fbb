"""What a benchmark asserts (DESIGN.md §10): always a generous bound, the strict target on demand.

Machines here are shared and noisy, so in CI a figure must stay within about twice its target:
noise cannot fail that, but a regression of kind (an accidental quadratic, a lost cache) does.
With ``ID1_BENCH_ENFORCE=1`` the target itself is asserted. Either way the message names the
figure, the bound and the target.
"""

from __future__ import annotations

import os

ENFORCE = os.environ.get("ID1_BENCH_ENFORCE") == "1"
GENEROUS = 2.0


def at_most(what: str, value: float, target: float, unit: str = "", *, stands_at: float | None = None) -> None:
    """``stands_at``: for a target measured honestly and not reached (the issue's note says why),
    the figure it stands at; the generous bound is then about twice that, so CI still catches a
    regression of kind without failing on the noise around a known shortfall."""
    base = max(target, stands_at) if stands_at is not None else target
    bound = target if ENFORCE else base * GENEROUS
    assert value <= bound, (f"{what}: {value:.4g}{unit}, over {'the target' if ENFORCE else 'the generous bound'} "
                            f"{bound:.4g}{unit} (target ≤ {target:.4g}{unit}"
                            + (f", measured at {stands_at:.4g}{unit} when it was not reached)" if stands_at else ")"))


def at_least(what: str, value: float, target: float, unit: str = "") -> None:
    bound = target if ENFORCE else target / GENEROUS
    assert value >= bound, (f"{what}: {value:.4g}{unit}, under {'the target' if ENFORCE else 'the generous bound'} "
                            f"{bound:.4g}{unit} (target ≥ {target:.4g}{unit})")

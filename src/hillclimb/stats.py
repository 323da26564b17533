"""Small statistics every layer may need: the Wilson score interval of a pass rate.

Why a module of its own at the bottom: evaluation (`eval.metrics`), RL's report (`rl.report`) and
the registry print pass rates with intervals, and RL sits below eval in the layering
(tests/test_layers.py); one formula, importable from everywhere.
"""

from __future__ import annotations

import math

from hillclimb.errors import HillclimbError


def wilson_ci(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion, k successes of n (Wilson 1927): never zero-width
    for n > 0, and near-nominal coverage even at 0 or n successes, where the normal
    approximation and the percentile bootstrap collapse to a point."""
    from statistics import NormalDist

    if not 0 <= k <= n or n < 1:
        raise HillclimbError(f"wilson_ci needs 0 <= k <= n and n >= 1 (k={k}, n={n})")
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # at 0 (or n) successes the bound is 0 (or 1) exactly; in floats `centre - half` came out
    # 2.8e-17, an interval that did not contain the observed 0%
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)

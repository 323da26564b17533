"""Metrics shared by every evaluation: the unbiased pass@k estimator and bootstrap intervals.

pass@k is the chance that at least one of k samples solves a problem. Estimating it from k
samples is noisy and taking the best of n > k samples is biased upwards; the standard unbiased
estimator from n samples with c correct (Chen et al. 2021, "Evaluating Large Language Models
Trained on Code") is

    pass@k = 1 - C(n - c, k) / C(n, k),

computed as a running product so large n never overflows. It is averaged over problems.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from hillclimb.errors import HillclimbError
from hillclimb.stats import wilson_ci  # noqa: F401  (re-exported: eval.metrics.wilson_ci)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with `c` correct among `n` samples."""
    if not 0 <= c <= n or k < 1:
        raise HillclimbError(f"pass@k needs 0 <= c <= n and k >= 1 (n={n}, c={c}, k={k})")
    if k > n:
        raise HillclimbError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """Mean pass@k over problems given (n, c) per problem."""
    vals = [pass_at_k(n, c, k) for n, c in counts]
    return sum(vals) / len(vals) if vals else 0.0


def bootstrap_ci(
    values: list[float],
    weights: list[float] | None = None,
    *,
    seed: int = 0,
    resamples: int = 1000,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean over items, resampling items with replacement.

    With `weights` it is the interval of the ratio `sum(values) / sum(weights)` (a cluster
    bootstrap: e.g. instruction-level accuracy, where one prompt carries several instructions and
    its instructions are resampled together). Seeded, so a report is reproducible. Returns (lo, hi);
    (0, 0) for no items. The interval describes the sampling error of *these items*; it says
    nothing about items the suite does not contain.

    Unweighted pass/fail items (every value 0 or 1) get the Wilson score interval (Wilson 1927):
    the percentile bootstrap of a proportion under-covers at the sizes our cells have (≈85% at
    n = 16, p = 0.2, measured in session 23, against Wilson's 94.5%). Before that only items
    that all agree (0 of n or n of n solved) got Wilson: every resample of identical items is identical, so the percentile bootstrap said
    [100%, 100%] for 5 of 5 — certainty from five items. Wilson gives [56.6%, 100%] there and
    [0%, 2.3%] for 0 of 164 (session 20). The same holds for a ratio whose every cluster is all
    or nothing (each prompt followed all of its instructions, or none): Wilson over the n
    clusters — conservative, since a cluster's units are not independent — where the percentile
    bootstrap said [100%, 100%] for instruction-level accuracy (session 21).
    """
    import random

    if not 0 < level < 1:
        raise HillclimbError(f"confidence level must be in (0, 1), got {level}")
    if resamples < 1:
        raise HillclimbError(f"resamples must be >= 1, got {resamples}")
    n = len(values)
    if weights is not None and len(weights) != n:
        raise HillclimbError(f"{n} values but {len(weights)} weights")
    if n == 0:
        return (0.0, 0.0)
    w = weights if weights is not None else [1.0] * n
    if not all(math.isfinite(x) for x in [*values, *w]):
        # NaN sorts nowhere: the interval came back as (0.33, nan), printed as "33% – nan%"
        raise HillclimbError("bootstrap interval: every value and weight must be a finite number")
    agree = _all_agree(values, w)
    if agree is not None:
        return wilson_ci(agree * n, n, level)
    if weights is None and all(v in (0, 1) for v in values):
        # pass/fail items: Wilson for any count (session 23: the percentile bootstrap covered the
        # true rate ~85% of the time at n = 16, p = 0.2, where Wilson covers 94.5%, and said
        # [0%, 15%] for 1 of 20 — a bound below what was observed to be possible)
        return wilson_ci(int(sum(values)), n, level)
    rng = random.Random(seed)
    stats = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        den = sum(w[i] for i in idx)
        stats.append(sum(values[i] for i in idx) / den if den else 0.0)
    stats.sort()
    a = (1 - level) / 2
    lo = stats[min(resamples - 1, max(0, int(a * resamples)))]
    hi = stats[min(resamples - 1, max(0, int(math.ceil((1 - a) * resamples)) - 1))]
    return (lo, hi)


def _all_agree(values: list[float], weights: list[float]) -> int | None:
    """1 when every item is a full success (value == its weight > 0), 0 when every item is a
    full failure (value 0 with weight > 0), else None: the cases where every resample is the
    same and the percentile bootstrap collapses to a point."""
    if any(w <= 0 for w in weights):
        return None
    if all(v == 0 for v in values):
        return 0
    if all(v == w for v, w in zip(values, weights, strict=True)):
        return 1
    return None

"""Metrics shared by every evaluation: the unbiased pass@k estimator.

pass@k is the chance that at least one of k samples solves a problem. Estimating it from k
samples is noisy and taking the best of n > k samples is biased upwards; the standard unbiased
estimator from n samples with c correct (Chen et al. 2021, "Evaluating Large Language Models
Trained on Code") is

    pass@k = 1 - C(n - c, k) / C(n, k),

computed as a running product so large n never overflows. It is averaged over problems.
"""

from __future__ import annotations

from collections.abc import Iterable

from hillclimb.errors import HillclimbError


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

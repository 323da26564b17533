"""Mean, median, mode, variance and percentiles of a list of numbers."""


def mean(xs):
    """Arithmetic mean; ValueError for no data."""
    if not xs:
        raise ValueError("mean of empty data")
    return sum(xs) / len(xs)


def median(xs):
    """Middle value (mean of the two middle values for even sizes)."""
    if not xs:
        raise ValueError("median of empty data")
    s = sorted(xs)
    mid = len(s) // 2
    if len(s) % 2 == 1:
        return s[mid]
    return (s[mid - 1] + s[mid]) / 2


def mode(xs):
    """Most common value (the smallest on ties)."""
    if not xs:
        raise ValueError("mode of empty data")
    counts = {}
    for x in xs:
        counts[x] = counts.get(x, 0) + 1
    best = max(counts.values())
    return min(x for x, c in counts.items() if c == best)


def variance(xs, sample=True):
    """Sample (n - 1) or population (n) variance."""
    n = len(xs)
    if n < 2 and sample:
        raise ValueError("sample variance needs at least two values")
    m = mean(xs)
    ss = sum((x - m) ** 2 for x in xs)
    return ss / (n - 1) if sample else ss / n


def percentile(xs, p):
    """Linear-interpolated percentile, 0 <= p <= 100."""
    if not 0 <= p <= 100:
        raise ValueError("p must be within [0, 100]")
    s = sorted(xs)
    pos = (len(s) - 1) * p / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    frac = pos - lo
    return s[lo] + (s[hi] - s[lo]) * frac

"""Merging half-open intervals [start, end)."""


def normalize(intervals):
    """Drop empty intervals and sort by start."""
    return sorted((s, e) for s, e in intervals if e > s)


def merge(intervals):
    """Merge overlapping or touching intervals."""
    out = []
    for start, end in normalize(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def covered_length(intervals):
    """Total length covered by the union."""
    return sum(end - start for start, end in merge(intervals))


def gaps(intervals, lo, hi):
    """Uncovered sub-intervals of [lo, hi)."""
    out = []
    cursor = lo
    for start, end in merge(intervals):
        if end <= lo or start >= hi:
            continue
        if start > cursor:
            out.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < hi:
        out.append((cursor, hi))
    return out


def point_in_any(intervals, x):
    """True when some interval contains x."""
    return any(start <= x < end for start, end in intervals)

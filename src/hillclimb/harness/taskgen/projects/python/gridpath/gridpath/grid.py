"""A grid of '.' (free) and '#' (wall) cells with breadth-first search."""

from collections import deque


def parse(text):
    """Rows of the grid; all rows must have the same width."""
    rows = [line.strip() for line in text.strip().splitlines()]
    if len({len(r) for r in rows}) > 1:
        raise ValueError("ragged grid")
    return rows


def neighbors(rows, r, c):
    """Free 4-neighbours of (r, c)."""
    out = []
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        nr, nc = r + dr, c + dc
        if 0 <= nr < len(rows) and 0 <= nc < len(rows[0]) and rows[nr][nc] != "#":
            out.append((nr, nc))
    return out


def shortest_path(rows, start, goal):
    """Number of steps from start to goal, or -1 when unreachable."""
    if rows[start[0]][start[1]] == "#" or rows[goal[0]][goal[1]] == "#":
        return -1
    seen = {start}
    frontier = deque([(start, 0)])
    while frontier:
        cell, dist = frontier.popleft()
        if cell == goal:
            return dist
        for nxt in neighbors(rows, *cell):
            if nxt not in seen:
                seen.add(nxt)
                frontier.append((nxt, dist + 1))
    return -1


def count_free(rows):
    """Number of free cells."""
    return sum(row.count(".") for row in rows)

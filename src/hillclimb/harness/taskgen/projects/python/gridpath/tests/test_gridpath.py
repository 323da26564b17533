import pytest

from gridpath import grid

G = """
....
.##.
....
"""


def test_parse():
    assert grid.parse(G) == ["....", ".##.", "...."]
    with pytest.raises(ValueError):
        grid.parse("..\n...")


def test_neighbors():
    rows = grid.parse(G)
    assert sorted(grid.neighbors(rows, 0, 0)) == [(0, 1), (1, 0)]
    assert sorted(grid.neighbors(rows, 0, 1)) == [(0, 0), (0, 2)]


def test_shortest_path():
    rows = grid.parse(G)
    assert grid.shortest_path(rows, (0, 0), (2, 3)) == 5
    assert grid.shortest_path(rows, (1, 0), (1, 3)) == 5
    assert grid.shortest_path(rows, (0, 0), (0, 0)) == 0


def test_unreachable():
    rows = grid.parse(".#.\n.#.")
    assert grid.shortest_path(rows, (0, 0), (0, 2)) == -1
    assert grid.shortest_path(rows, (0, 0), (0, 1)) == -1


def test_count_free():
    assert grid.count_free(grid.parse(G)) == 10

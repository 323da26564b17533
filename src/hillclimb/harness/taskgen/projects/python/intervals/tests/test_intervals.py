from intervals import merge


def test_normalize():
    assert merge.normalize([(5, 6), (3, 3), (1, 2)]) == [(1, 2), (5, 6)]


def test_merge():
    assert merge.merge([(1, 3), (2, 5), (7, 8)]) == [(1, 5), (7, 8)]
    assert merge.merge([(1, 2), (2, 4)]) == [(1, 4)]
    assert merge.merge([(1, 10), (2, 3)]) == [(1, 10)]


def test_covered_length():
    assert merge.covered_length([(0, 2), (1, 4), (10, 11)]) == 5


def test_gaps():
    assert merge.gaps([(2, 4), (6, 7)], 0, 10) == [(0, 2), (4, 6), (7, 10)]
    assert merge.gaps([], 0, 3) == [(0, 3)]
    assert merge.gaps([(0, 5)], 0, 5) == []


def test_point_in_any():
    assert merge.point_in_any([(1, 3)], 1)
    assert not merge.point_in_any([(1, 3)], 3)

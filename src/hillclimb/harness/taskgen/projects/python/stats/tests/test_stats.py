import pytest

from stats import describe


def test_mean():
    assert describe.mean([1, 2, 3, 4]) == 2.5
    with pytest.raises(ValueError):
        describe.mean([])


def test_median():
    assert describe.median([3, 1, 2]) == 2
    assert describe.median([4, 1, 3, 2]) == 2.5


def test_mode():
    assert describe.mode([1, 2, 2, 3, 3]) == 2
    assert describe.mode([5]) == 5


def test_variance():
    assert describe.variance([2, 4, 4, 4, 5, 5, 7, 9], sample=False) == 4.0
    assert describe.variance([1, 3]) == 2.0
    with pytest.raises(ValueError):
        describe.variance([1])


def test_percentile():
    xs = [10, 20, 30, 40]
    assert describe.percentile(xs, 0) == 10
    assert describe.percentile(xs, 100) == 40
    assert describe.percentile(xs, 50) == 25
    with pytest.raises(ValueError):
        describe.percentile(xs, 101)

import pytest

from matrix import ops


def test_identity():
    assert ops.identity(2) == [[1, 0], [0, 1]]


def test_transpose():
    assert ops.transpose([[1, 2, 3], [4, 5, 6]]) == [[1, 4], [2, 5], [3, 6]]


def test_add():
    assert ops.add([[1, 2]], [[3, 4]]) == [[4, 6]]
    with pytest.raises(ValueError):
        ops.add([[1]], [[1, 2]])


def test_multiply():
    assert ops.multiply([[1, 2], [3, 4]], [[5, 6], [7, 8]]) == [[19, 22], [43, 50]]
    assert ops.multiply([[1, 2, 3]], [[1], [1], [1]]) == [[6]]


def test_multiply_mismatch():
    with pytest.raises(ValueError):
        ops.multiply([[1, 2]], [[1, 2]])


def test_determinant():
    assert ops.determinant([[7]]) == 7
    assert ops.determinant([[1, 2], [3, 4]]) == -2
    assert ops.determinant([[2, 0, 1], [1, 3, 2], [1, 1, 2]]) == 6


def test_determinant_not_square():
    with pytest.raises(ValueError):
        ops.determinant([[1, 2]])


def test_trace():
    assert ops.trace([[1, 2], [3, 4]]) == 5

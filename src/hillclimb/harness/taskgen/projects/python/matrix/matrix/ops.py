"""Matrix operations on lists of lists."""


def shape(m):
    """(rows, columns)."""
    return (len(m), len(m[0]) if m else 0)


def identity(n):
    """The n x n identity matrix."""
    return [[1 if i == j else 0 for j in range(n)] for i in range(n)]


def transpose(m):
    """Rows become columns."""
    rows, cols = shape(m)
    return [[m[i][j] for i in range(rows)] for j in range(cols)]


def add(a, b):
    """Element-wise sum; shapes must match."""
    if shape(a) != shape(b):
        raise ValueError("shape mismatch")
    return [[x + y for x, y in zip(ra, rb)] for ra, rb in zip(a, b)]


def multiply(a, b):
    """Matrix product a @ b."""
    ra, ca = shape(a)
    rb, cb = shape(b)
    if ca != rb:
        raise ValueError("inner dimensions differ")
    out = [[0] * cb for _ in range(ra)]
    for i in range(ra):
        for j in range(cb):
            total = 0
            for k in range(ca):
                total += a[i][k] * b[k][j]
            out[i][j] = total
    return out


def determinant(m):
    """Determinant by cofactor expansion along the first row."""
    n, cols = shape(m)
    if n != cols:
        raise ValueError("matrix must be square")
    if n == 1:
        return m[0][0]
    if n == 2:
        return m[0][0] * m[1][1] - m[0][1] * m[1][0]
    total = 0
    for j in range(n):
        minor = [row[:j] + row[j + 1 :] for row in m[1:]]
        sign = -1 if j % 2 else 1
        total += sign * m[0][j] * determinant(minor)
    return total


def trace(m):
    """Sum of the diagonal."""
    return sum(m[i][i] for i in range(min(shape(m))))

"""Finite-difference derivative weights in lambda (USF's Taylor-system rule, as
``src/solver/fd.rs``): with offsets d_j = lambda_j - lambda_s of m history points from the
start point, the d-th derivative there is estimated as sum_j a_j (F_j - F_s), where a solves
sum_j a_j d_j^i / i! = delta_{i,d} for i = 1..m. Solved in float64 by Gaussian elimination
with partial pivoting (the systems are at most 5 x 5)."""

from __future__ import annotations

import math


class SingularSystem(ValueError):
    """The Taylor system has no unique solution (repeated lambda values)."""


def derivative_weights(offsets, d: int) -> list:
    """The weights a_j of the d-th derivative (1 <= d <= m) from the offsets (distinct,
    non-zero)."""
    m = len(offsets)
    if d < 1 or d > m:
        raise SingularSystem(f"derivative {d} cannot be estimated from {m} point(s)")
    # a[i][j] = d_j^(i+1) / (i+1)!, built by the same running product as s3.
    a = [[0.0] * m for _ in range(m)]
    for j, dl in enumerate(offsets):
        term = 1.0
        for i in range(1, m + 1):
            term *= dl / float(i)
            a[i - 1][j] = term
    rhs = [0.0] * m
    rhs[d - 1] = 1.0
    sol = _solve(a, rhs)
    if sol is None or not all(math.isfinite(v) for v in sol):
        raise SingularSystem(
            f"singular finite-difference system for offsets {list(offsets)} (repeated lambda?)"
        )
    return sol


def _solve(a, b):
    """Solves a x = b in place by LU with partial pivoting; None if singular."""
    n = len(b)
    for col in range(n):
        piv = max(range(col, n), key=lambda r: abs(a[r][col]))
        if a[piv][col] == 0.0:
            return None
        if piv != col:
            a[col], a[piv] = a[piv], a[col]
            b[col], b[piv] = b[piv], b[col]
        for r in range(col + 1, n):
            f = a[r][col] / a[col][col]
            if f != 0.0:
                for c in range(col, n):
                    a[r][c] -= f * a[col][c]
                b[r] -= f * b[col]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        s = b[r]
        for c in range(r + 1, n):
            s -= a[r][c] * x[c]
        x[r] = s / a[r][r]
    return x

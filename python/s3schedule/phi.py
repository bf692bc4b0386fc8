"""The phi-functions of exponential integrators, phi_1(z) = (e^z - 1)/z and
phi_{k+1}(z) = (phi_k(z) - 1/k!)/z with phi_k(0) = 1/k!, evaluated as s3 does
(``src/solver/phi.rs``): a power series for |z| < 1, where the recursion would cancel, and the
recursion otherwise."""

from __future__ import annotations

import math


def factorial(n: int) -> float:
    """n! as a float, multiplied in the same order as s3."""
    p = 1.0
    for i in range(1, n + 1):
        p *= float(i)
    return p


def phi(k: int, z: float) -> float:
    """phi_k(z) for k >= 1, accurate to a few ulps for all finite z."""
    if k < 1:
        raise ValueError("phi_k is defined for k >= 1")
    if abs(z) < 1.0:
        term = 1.0 / factorial(k)
        total = term
        for j in range(1, 40):
            term *= z / float(j + k)
            total += term
            if abs(term) < 1e-18 * abs(total):
                break
        return total
    try:
        p = math.expm1(z) / z
    except OverflowError:
        p = math.inf
    for j in range(1, k):
        p = (p - 1.0 / factorial(j)) / z
    return p

#!/usr/bin/env python3
"""Golden values of the unbiased distribution metrics, computed independently of s3 in numpy,
for tests/unbiased_metrics.rs. Writes tests/golden/unbiased.json. CI does not run this script;
the committed JSON lets the Rust test run without Python.

Run: python3 scripts/golden_unbiased.py   (needs numpy and scipy; e.g. the venv of
     scripts/install_python_test_deps.sh: ~/.cache/s3-torch-venv/bin/python)

KID -- the unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y/d + 1)^3, averaged
over subsets -- is written twice, as torch-fidelity computes it (`kid_features_to_metric`,
`mmd2`, `kernel` in torch_fidelity/metric_kid.py: subsets drawn with
`np.random.RandomState(seed).choice(n, m, replace=False)`, mean and np.std over subsets) and
as clean-fid does (`kernel_distance` in cleanfid/fid.py); the two must agree. The subsets are
stored, so the Rust side measures exactly the same rows.

FD-infinity (Chong & Forsyth 2020) uses s3's documented subset-size rule (recomputed here and
stored, so the test checks the Rust rule gives the same sizes): the smallest size is
n_min = max(ceil(N/5), 2(d+1)), and 15 sizes evenly spaced in 1/n, n_j = floor(1/x_j + 1/2) with
x_j = 1/n_min + j (1/N - 1/n_min) / 14, duplicates dropped. Each subset is a numpy draw, stored.
The FD of each subset against the exact reference moments is the pytorch-fid formula (scipy
sqrtm of S1 S2, checked against the symmetric eigh form), and FD-infinity the intercept of
np.polyfit(1/n, FD, 1).
"""
import json
import math
import pathlib

import numpy as np
import scipy
from scipy import linalg

from frechet_reference import fd_pytorch_fid, fd_symmetric

FD_INF_POINTS = 15
FD_INF_SMALLEST_DIVISOR = 5
FD_INF_RANK_FACTOR = 2
FD_INF_MIN_SPAN = 2
DECIMALS = 6  # inputs are rounded, so the stored values are exactly the computed ones


def fd_inf_sizes(n, d):
    assert n >= FD_INF_MIN_SPAN * FD_INF_RANK_FACTOR * (d + 1)
    smallest = max(-(-n // FD_INF_SMALLEST_DIVISOR), FD_INF_RANK_FACTOR * (d + 1))
    lo, hi = 1.0 / smallest, 1.0 / n
    sizes = []
    for j in range(FD_INF_POINTS):
        x = lo + j * (hi - lo) / (FD_INF_POINTS - 1)
        s = min(max(int(math.floor(1.0 / x + 0.5)), smallest), n)
        if not sizes or sizes[-1] != s:
            sizes.append(s)
    return sizes


def fd_inf_case(name, rng, x, mu_ref, cov_ref):
    n, d = x.shape
    sizes = fd_inf_sizes(n, d)
    subsets = [np.sort(rng.permutation(n)[:s]) if s < n else rng.permutation(n) for s in sizes]
    fds = []
    for idx in subsets:
        f = x[idx]
        mu, cov = f.mean(0), np.cov(f, rowvar=False)
        a = fd_pytorch_fid(mu, cov, mu_ref, cov_ref)
        b = fd_symmetric(mu, cov, mu_ref, cov_ref)
        assert abs(a - b) <= 1e-9 * max(abs(a), 1e-3), (name, a, b)
        fds.append(b)
    slope, intercept = np.polyfit(1.0 / np.array(sizes, dtype=float), np.array(fds), 1)
    return {
        "name": name, "d": d, "rows": x.tolist(),
        "mu_ref": mu_ref.tolist(), "cov_ref": cov_ref.tolist(),
        "sizes": sizes, "subsets": [s.tolist() for s in subsets],
        "fds": fds, "fd_inf": float(intercept), "slope": float(slope),
    }


def kid_torch_fidelity(f1, f2, subsets, subset_size, seed):
    """torch_fidelity.metric_kid.kid_features_to_metric with its mmd2 and kernel."""
    def kernel(a, b, degree=3, gamma=None, coef0=1):
        if gamma is None:
            gamma = 1.0 / a.shape[1]
        return (a @ b.T * gamma + coef0) ** degree

    def mmd2(a, b):
        k_11, k_22, k_12 = kernel(a, a), kernel(b, b), kernel(a, b)
        m = a.shape[0]
        kt_xx_sum = (k_11.sum(axis=-1) - np.diagonal(k_11)).sum()
        kt_yy_sum = (k_22.sum(axis=-1) - np.diagonal(k_22)).sum()
        k_xy_sum = k_12.sum(axis=0).sum()
        value = (kt_xx_sum + kt_yy_sum) / (m * (m - 1))
        value -= 2 * k_xy_sum / (m ** 2)
        return value

    rng = np.random.RandomState(seed)
    mmds, idx1, idx2 = np.zeros(subsets), [], []
    for i in range(subsets):
        i1 = rng.choice(len(f1), subset_size, replace=False)
        i2 = rng.choice(len(f2), subset_size, replace=False)
        idx1.append(i1.tolist())
        idx2.append(i2.tolist())
        mmds[i] = mmd2(f1[i1], f2[i2])
    return float(np.mean(mmds)), float(np.std(mmds)), idx1, idx2


def kid_clean_fid(feats1, feats2, idx1, idx2):
    """cleanfid.fid.kernel_distance on the given subsets (its own draws replaced by them)."""
    n = feats1.shape[1]
    m = len(idx1[0])
    t = 0
    for i1, i2 in zip(idx1, idx2):
        x, y = feats2[i2], feats1[i1]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / len(idx1) / m)


def kid_case(name, x, y, subsets, subset_size, seed):
    mean, std, i1, i2 = kid_torch_fidelity(x, y, subsets, subset_size, seed)
    clean = kid_clean_fid(x, y, i1, i2)
    assert abs(mean - clean) <= 1e-12 * max(abs(mean), 1.0), (name, mean, clean)
    return {"name": name, "d": x.shape[1], "x": x.tolist(), "y": y.tolist(),
            "x_subsets": i1, "y_subsets": i2, "kid": mean, "kid_std": std}


def rows(rng, n, d, scale=1.0, shift=0.0, mix=None):
    a = mix if mix is not None else np.eye(d)
    return np.round(rng.standard_normal((n, d)) @ a * scale + shift, DECIMALS)


def main():
    rng = np.random.default_rng(20260)
    fd_inf = []
    for d, n, scale, shift in [(4, 400, 1.0, 0.0), (8, 600, 0.9, 0.1), (30, 200, 1.1, 0.0)]:
        a = rng.standard_normal((d, d)) / np.sqrt(d)
        x = rows(rng, n, d, scale, shift, a)
        fd_inf.append(fd_inf_case(f"d{d}_n{n}", rng, x, np.zeros(d), a.T @ a))
    kid = []
    d = 5
    kid.append(kid_case("torch_fidelity_subsets_m64", rows(rng, 200, d, 1.0, 0.2),
                        rows(rng, 300, d), 30, 64, 12345))
    kid.append(kid_case("all_rows_m250", rows(rng, 250, d, 0.8), rows(rng, 300, d),
                        20, min(1000, 250, 300), 7))
    kid.append(kid_case("same_distribution_d8", rows(rng, 300, 8), rows(rng, 400, 8), 10, 150, 3))
    kid.append(kid_case("subset_cap_1000_d2", rows(rng, 1100, 2, 1.0, 0.05), rows(rng, 1050, 2),
                        2, min(1000, 1100, 1050), 11))
    path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden" / "unbiased.json"
    path.write_text(json.dumps({"generator": "scripts/golden_unbiased.py", "numpy": np.__version__,
                                "scipy": scipy.__version__, "fd_inf": fd_inf, "kid": kid}) + "\n")
    for c in fd_inf:
        print(f"fd_inf {c['name']:24} sizes {c['sizes'][0]}..{c['sizes'][-1]} ({len(c['sizes'])})"
              f"  FD(N) {c['fds'][-1]:.9g}  FD_inf {c['fd_inf']:.9g}")
    for c in kid:
        print(f"kid    {c['name']:24} {c['kid']:.9g} +- {c['kid_std']:.3g}")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()

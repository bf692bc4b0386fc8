#!/usr/bin/env python3
"""Golden Fréchet distances computed the pytorch-fid way (scipy.linalg.sqrtm of Σ1·Σ2), for
tests/frechet_scipy.rs. Writes tests/golden/frechet.json. CI does not run this script.

Run: python3 scripts/golden_frechet.py   (needs numpy and scipy)

Cases: random SPD covariances of several dimensions, nearly equal statistics (FD ~ 1e-3), and
rank-deficient covariances (n < d samples), where pytorch-fid's sqrtm of the singular product
is still finite; for those the value is also computed through the symmetric form
√(√Σ1 Σ2 √Σ1) to show both agree.
"""
import json
import pathlib

import numpy as np
import scipy
from scipy import linalg

from frechet_reference import fd_pytorch_fid, fd_symmetric


rng = np.random.default_rng(2026)
cases = []


def stats(x):
    return x.mean(0), np.cov(x, rowvar=False)


for d, n in [(2, 50), (8, 200), (16, 400), (64, 2000)]:
    a = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.5
    b = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) * 0.5 + 0.3
    mu1, s1 = stats(a)
    mu2, s2 = stats(b)
    cases.append(("random_d%d" % d, mu1, s1, mu2, s2))
    # Nearly equal statistics: FD is a small difference of large traces.
    c = a + 0.01 * rng.standard_normal(a.shape)
    mu3, s3 = stats(c)
    cases.append(("close_d%d" % d, mu1, s1, mu3, s3))
for d, n in [(8, 5), (16, 10)]:
    a = rng.standard_normal((n, d))
    b = rng.standard_normal((n, d)) + 0.2
    mu1, s1 = stats(a)
    mu2, s2 = stats(b)
    cases.append(("singular_d%d_n%d" % (d, n), mu1, s1, mu2, s2))

out = []
for name, mu1, s1, mu2, s2 in cases:
    out.append({
        "name": name,
        "mu1": mu1.tolist(), "sigma1": s1.tolist(),
        "mu2": mu2.tolist(), "sigma2": s2.tolist(),
        "fd_pytorch_fid": fd_pytorch_fid(mu1, s1, mu2, s2),
        "fd_symmetric": fd_symmetric(mu1, s1, mu2, s2),
    })
path = pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden" / "frechet.json"
path.write_text(json.dumps({"generator": "scripts/golden_frechet.py", "numpy": np.__version__,
                            "scipy": scipy.__version__, "cases": out}) + "\n")
for c in out:
    print(f"{c['name']:20} pytorch-fid {c['fd_pytorch_fid']:.12g}  symmetric {c['fd_symmetric']:.12g}")

#!/usr/bin/env python3
"""Quality self-check of digits-net: high-NFE samples vs the exact moments of the digits data.

Samples N digits from the torch (or ONNX) model with DPM-Solver++(2M) (data prediction,
steps uniform in half log-SNR lambda from t = 1 to t = 1e-3, x_T ~ N(0, I) as s3 starts VP
solves, then one final x0 denoise at t = 1e-3), at two step counts so that the solver's own
error is visible (steps/2 and steps), and reports the Frechet distance on raw 64 pixels against the exact moments
of s3's `digits` model (mean of the 1,797 images; covariance = their population covariance plus
0.01^2 on the diagonal: each image is a Gaussian with std 0.01). The floor is the same FD of N
exact data draws (uniform image + N(0, 0.01^2) noise), over 5 independent draws.

Used by train.py after training; standalone on a written ONNX model::

    python tools/train_digits_net/check.py --model data/digits-net/model.onnx
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

BETA0 = 0.1
BETA1 = 20.0
DIGITS_STD = 0.01
T_START = 1.0
T_END = 1e-3


def log_alpha(t):
    return -0.25 * t * t * (BETA1 - BETA0) - 0.5 * t * BETA0


def alpha_sigma_lambda(t: float):
    la = log_alpha(t)
    sigma2 = -math.expm1(2.0 * la)
    return math.exp(la), math.sqrt(sigma2), la - 0.5 * math.log(sigma2)


def softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def t_of_lambda(lam: float) -> float:
    """Exact inverse of lambda(t) for vp-linear (as s3's NoiseSchedule::t_of_lambda)."""
    tmp = 2.0 * (BETA1 - BETA0) * softplus(-2.0 * lam)
    delta = BETA0 * BETA0 + tmp
    return tmp / (math.sqrt(delta) + BETA0) / (BETA1 - BETA0)


def exact_moments(data: np.ndarray):
    x = data.reshape(data.shape[0], -1).astype(np.float64)
    mu = x.mean(0)
    xc = x - mu
    cov = xc.T @ xc / x.shape[0] + DIGITS_STD**2 * np.eye(x.shape[1])
    return mu, cov


def sample_moments(x: np.ndarray):
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    return x.mean(0), np.cov(x, rowvar=False)


def frechet(mu1, s1, mu2, s2) -> float:
    """|mu1 - mu2|^2 + tr(s1 + s2 - 2 (s1^1/2 s2 s1^1/2)^1/2), via symmetric eigendecompositions."""
    w, v = np.linalg.eigh(s1)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r @ s2 @ r
    m = 0.5 * (m + m.T)
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(m), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_sqrt)


def exact_draws(data: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    x = data.reshape(data.shape[0], -1).astype(np.float64)
    idx = rng.integers(0, x.shape[0], n)
    return x[idx] + DIGITS_STD * rng.standard_normal((n, x.shape[1]))


def dpmpp_2m(eps_fn, z: np.ndarray, steps: int) -> np.ndarray:
    """DPM-Solver++(2M) from T_START to T_END uniform in lambda, then x0 at T_END. NFE = steps + 1.

    eps_fn(x [n,1,8,8] f32, t [n] f32) -> eps (numpy f32). State and coefficients in float64.
    """
    _, _, l0 = alpha_sigma_lambda(T_START)
    _, _, l1 = alpha_sigma_lambda(T_END)
    lams = np.linspace(l0, l1, steps + 1)
    ts = [T_START] + [t_of_lambda(l) for l in lams[1:-1]] + [T_END]
    x = z.astype(np.float64)
    n = x.shape[0]
    prev_x0 = None
    prev_h = None

    def x0_at(x, t):
        a, s, _ = alpha_sigma_lambda(t)
        eps = eps_fn(x.astype(np.float32), np.full((n,), t, dtype=np.float32)).astype(np.float64)
        return (x - s * eps) / a

    for i in range(steps):
        t, tn = ts[i], ts[i + 1]
        _, s, lam = alpha_sigma_lambda(t)
        an, sn, lamn = alpha_sigma_lambda(tn)
        h = lamn - lam
        x0 = x0_at(x, t)
        if prev_x0 is None:
            d = x0
        else:
            r = prev_h / h
            d = (1.0 + 0.5 / r) * x0 - (0.5 / r) * prev_x0
        x = (sn / s) * x - an * math.expm1(-h) * d
        prev_x0, prev_h = x0, h
    return x0_at(x, T_END)


def save_grid(x: np.ndarray, path: Path, scale: int = 4) -> None:
    from PIL import Image

    imgs = np.clip((x.reshape(-1, 8, 8) + 1.0) * 127.5, 0, 255).round().astype(np.uint8)[:64]
    k = int(math.ceil(math.sqrt(len(imgs))))
    cell = 8 * scale + 2
    canvas = np.full((k * cell + 2, k * cell + 2), 128, dtype=np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, k)
        big = np.kron(im, np.ones((scale, scale), dtype=np.uint8))
        canvas[2 + r * cell:2 + r * cell + 8 * scale, 2 + c * cell:2 + c * cell + 8 * scale] = big
    Image.fromarray(canvas, mode="L").save(path)


def nn_dist(a: np.ndarray, b: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    if exclude_self:
        np.fill_diagonal(d2, np.inf)
    return np.sqrt(np.clip(d2.min(1), 0, None))


def quality_check(model, data: np.ndarray, n: int, steps: int, seed: int, grid: Path | None, log, eps_fn=None) -> dict:
    """Runs the check on a torch model (or an eps_fn) and returns numbers and a markdown section."""
    import time

    if eps_fn is None:
        import torch

        model.eval()

        def eps_fn(x, t):
            with torch.no_grad():
                return model(torch.from_numpy(x), torch.from_numpy(t)).numpy()

    mu, cov = exact_moments(data)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 1, 8, 8))
    results = {}
    x_main = None
    for k in (steps // 2, steps):
        t0 = time.time()
        xs = dpmpp_2m(eps_fn, z, k)
        fd = frechet(*sample_moments(xs), mu, cov)
        results[k] = fd
        log(f"check: DPM-Solver++(2M) {k} steps (NFE {k + 1}), {n} samples: FD {fd:.4f} ({time.time() - t0:.0f} s)")
        if k == steps:
            x_main = xs
    floors = []
    for i in range(5):
        d = exact_draws(data, n, np.random.default_rng(seed + 1000 + i))
        floors.append(frechet(*sample_moments(d), mu, cov))
    fl_mean, fl_std = float(np.mean(floors)), float(np.std(floors, ddof=1))
    log(f"check: FD floor of {n} exact data draws: {fl_mean:.4f} +- {fl_std:.4f} (5 draws)")
    flat = data.reshape(data.shape[0], -1).astype(np.float64)
    x_flat = x_main.reshape(n, -1)
    nn_s = nn_dist(x_flat, flat)
    nn_d = nn_dist(flat, flat, exclude_self=True)
    log(
        f"check: L2 distance to the nearest training image: samples median {np.median(nn_s):.3f} "
        f"(min {nn_s.min():.3f}); training images to their nearest other image median {np.median(nn_d):.3f}"
    )
    rng_range = (float(x_flat.min()), float(x_flat.max()))
    if grid is not None:
        save_grid(x_main[:64], grid)
        save_grid(data[:64], grid.with_name(grid.stem + "-data.png"))
        log(f"check: wrote {grid} (64 samples) and {grid.with_name(grid.stem + '-data.png')} (64 data images)")
    md = (
        f"{n} samples from the exported (EMA) weights, x_T ~ N(0, I) at t = 1 (seed {seed}), DPM-Solver++(2M) "
        "with steps uniform in lambda from t = 1 to t = 1e-3, then the x0 prediction at t = 1e-3. FD on raw "
        "64 pixels against the exact moments of s3's `digits` model (mean of the images; population "
        "covariance + 0.01^2 I); sample covariance with denominator n - 1.\n\n"
        "| samples | FD |\n|---|---|\n"
        + "".join(f"| model, DPM-Solver++(2M) {k} steps (NFE {k + 1}) | {v:.4f} |\n" for k, v in results.items())
        + f"| exact data draws (floor), mean +- std over 5 sets | {fl_mean:.4f} +- {fl_std:.4f} |\n\n"
        f"Sample pixel range [{rng_range[0]:.3f}, {rng_range[1]:.3f}]. L2 distance (64 pixels in [-1, 1]) of each "
        f"sample to its nearest training image: median {np.median(nn_s):.3f}, min {nn_s.min():.3f}; for comparison "
        f"each training image to its nearest other training image: median {np.median(nn_d):.3f} (the exact `digits` "
        "model puts every sample within ~0.08 of an image: 0.01 * sqrt(64)).\n"
    )
    return {"fd": results, "floor_mean": fl_mean, "floor_std": fl_std, "markdown": md}


def main() -> int:
    ap = argparse.ArgumentParser(description="quality check of an exported digits-net ONNX model")
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[2] / "data/digits-net/model.onnx")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "data/digits/digits.u8")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--grid", type=Path, default=Path("/tmp/digits-net-grid.png"))
    args = ap.parse_args()
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(args.model), so, providers=["CPUExecutionProvider"])

    def eps_fn(x, t):
        return sess.run(["eps"], {"sample": x, "time": t})[0]

    raw = np.fromfile(args.data, dtype=np.uint8)
    data = (raw.astype(np.float32) / 8.0 - 1.0).reshape(-1, 1, 8, 8)
    qc = quality_check(None, data, args.samples, args.steps, args.seed, args.grid, print, eps_fn=eps_fn)
    print(qc["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

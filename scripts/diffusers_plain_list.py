#!/usr/bin/env python3
"""Measures a plain timestep list exported by `s3 export --format diffusers` inside diffusers'
own DPMSolverMultistepScheduler, against that scheduler's built-in spacings, on the exact
`digits` mixture (no network) under vp-discrete (DDPM's 1000 linear betas).

Every candidate runs diffusers' documented loop on the same fresh noise:

    scheduler.set_timesteps(...)              # timesteps=export["timesteps"] or num_inference_steps
    for t in scheduler.timesteps:
        x = scheduler.step(eps(x, t), t, x).prev_sample

with eps the exact posterior-mean noise of the digits mixture (the 1,797 UCI digits, pixel
p -> p/8 - 1, each widened by N(0, 0.01^2 I): s3's `digits` preset) at the scheduler's own
alphas_cumprod[t], in float64. The FD is taken on the 64 raw pixels against the mixture's exact
moments (mean of the images; population covariance + 0.01^2 I), as `s3 eval` does.

Usage:
    python scripts/diffusers_plain_list.py EXPORT.json [--samples 20000] [--seed 11]
        [--s3-schedule best.json]

EXPORT.json is the output of `s3 export RUN --format diffusers`; its `scheduler_hint.config`
is applied to the scheduler for the exported list (solver order, algorithm, final sigmas) and
the same settings are used for every built-in spacing. Prints one line per candidate and the
ratio of the best built-in spacing's FD to the export's. With --s3-schedule, a full per-step
s3 schedule also runs through the s3schedule package's S3Scheduler (python/) on the same noise.
Requires torch, diffusers, numpy, scipy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import linalg

import diffusers
from diffusers import DPMSolverMultistepScheduler

ROOT = Path(__file__).resolve().parent.parent
DELTA = 0.01
BUILT_IN = {
    "linspace": {"timestep_spacing": "linspace"},
    "leading": {"timestep_spacing": "leading"},
    "trailing": {"timestep_spacing": "trailing"},
    "karras": {"use_karras_sigmas": True},
    "lu": {"use_lu_lambdas": True},
}


def digits() -> np.ndarray:
    raw = np.fromfile(ROOT / "data" / "digits" / "digits.u8", dtype=np.uint8)
    return raw.reshape(-1, 64).astype(np.float64) / 8.0 - 1.0


class MixtureEps:
    """The exact E[eps | x_t] of the digits mixture at a diffusers integer timestep."""

    def __init__(self, images: np.ndarray, alphas_cumprod: torch.Tensor):
        self.m = torch.from_numpy(images)
        self.m2 = (self.m * self.m).sum(1)
        self.ac = alphas_cumprod.double()

    def __call__(self, x: torch.Tensor, t: int, batch: int = 4096) -> torch.Tensor:
        return self.at(x, float(self.ac[t].sqrt()), float((1.0 - self.ac[t]).sqrt()), batch)

    def at(self, x: torch.Tensor, a: float, s: float, batch: int = 4096) -> torch.Tensor:
        """E[eps | x] at the point x = a x0 + s eps."""
        var = a * a * DELTA * DELTA + s * s
        out = torch.empty_like(x, dtype=torch.float64)
        for i in range(0, x.shape[0], batch):
            xb = x[i : i + batch].double()
            logw = (a * (xb @ self.m.T) - 0.5 * a * a * self.m2[None, :]) / var
            mean = torch.softmax(logw, dim=1) @ self.m
            out[i : i + batch] = s / var * (xb - a * mean)
        return out.to(x.dtype)


def run(scheduler, eps: MixtureEps, noise: torch.Tensor, **set_kw) -> tuple[np.ndarray, list[int]]:
    scheduler.set_timesteps(**set_kw)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.step(eps(x, int(t)), t, x).prev_sample
    return x.double().numpy(), [int(t) for t in scheduler.timesteps]


def run_s3(path: Path, eps: MixtureEps, noise: torch.Tensor, base: dict) -> tuple[np.ndarray, list[float]]:
    """A full s3 schedule through the s3schedule package's diffusers scheduler, in the loop a
    pipeline that calls `scale_model_input` runs (needed for an analytical first step). The
    mixture is evaluated at the scheduler's model time tau = 1000 t - 1 (t continuous)."""
    sys.path.insert(0, str(ROOT / "python"))
    from s3schedule.diffusers import S3Scheduler
    from s3schedule.noise import noise_schedule

    sched = S3Scheduler(schedule=str(path), beta_schedule=base["beta_schedule"])
    ns = noise_schedule({"name": "vp-discrete", "betas": base["beta_schedule"]})
    sched.set_timesteps(sched.nfe)
    x = noise.double() * sched.init_noise_sigma
    for tau in sched.timesteps:
        x_in = sched.scale_model_input(x, tau)
        t = (float(tau) + 1.0) / base["num_train_timesteps"]
        e = eps.at(x_in, ns.alpha(t), ns.sigma(t))
        x = sched.step(e, tau, x_in).prev_sample
    return x.double().numpy(), [round(float(t), 3) for t in sched.timesteps]


def fd(x: np.ndarray, images: np.ndarray) -> float:
    mu = images.mean(0)
    cov = np.cov(images.T, bias=True) + DELTA * DELTA * np.eye(images.shape[1])
    mx, cx = x.mean(0), np.cov(x.T)
    root = linalg.sqrtm(cov @ cx).real
    return float(((mx - mu) ** 2).sum() + np.trace(cov) + np.trace(cx) - 2.0 * np.trace(root))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", type=Path)
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=11, help="seed of the fresh noise")
    ap.add_argument("--s3-schedule", type=Path, help="also run this full s3 schedule (vp-discrete) in s3schedule's S3Scheduler")
    args = ap.parse_args()

    export = json.loads(args.export.read_text())
    if export.get("format") != "s3-diffusers-export":
        raise SystemExit(f"{args.export}: not an `s3 export --format diffusers` file")
    ns = export["noise_schedule"]
    if ns.get("name") != "vp-discrete":
        raise SystemExit(f"{args.export}: noise_schedule {ns.get('name')}; this script measures vp-discrete lists")
    hint = export["scheduler_hint"]
    if hint["class"] != "DPMSolverMultistepScheduler":
        raise SystemExit(f"{args.export}: hint {hint['class']}; this script runs DPMSolverMultistepScheduler")
    timesteps = export["timesteps"]
    nfe = len(timesteps)
    base = dict(
        num_train_timesteps=ns["num_train_timesteps"],
        beta_schedule=ns["beta_schedule"],
        beta_start=ns["beta_start"],
        beta_end=ns["beta_end"],
    )
    settings = {k: v for k, v in hint["config"].items() if not k.startswith("use_")}

    images = digits()
    torch.manual_seed(args.seed)
    noise = torch.randn(args.samples, 64, dtype=torch.float32)
    rows = []
    sched = DPMSolverMultistepScheduler(**base, **settings)
    eps = MixtureEps(images, sched.alphas_cumprod)
    x, ts = run(sched, eps, noise, timesteps=timesteps)
    rows.append(("s3 export (searched timesteps)", ts, fd(x, images)))
    if args.s3_schedule:
        x, ts = run_s3(args.s3_schedule, eps, noise, base)
        rows.append(("full s3 schedule (S3Scheduler)", ts, fd(x, images)))
    for name, kw in BUILT_IN.items():
        sched = DPMSolverMultistepScheduler(**base, **settings, **kw)
        x, ts = run(sched, eps, noise, num_inference_steps=nfe)
        rows.append((f"built-in {name}", ts, fd(x, images)))
    print(f"diffusers {diffusers.__version__}, DPMSolverMultistepScheduler {settings}")
    print(f"digits mixture, vp-discrete, NFE {nfe}, FD on {args.samples} fresh samples (seed {args.seed})")
    for name, ts, v in rows:
        print(f"  {name:32s} FD {v:.5f}  timesteps {ts}")
    best_builtin = min((r for r in rows if r[0].startswith("built-in")), key=lambda r: r[2])
    print(f"best built-in: {best_builtin[0]} (FD {best_builtin[2]:.5f}); export ×{best_builtin[2] / rows[0][2]:.2f} lower FD")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

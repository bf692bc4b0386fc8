#!/usr/bin/env python3
"""Train s3's shipped `digits-net`: a small eps-prediction diffusion network on the UCI digits.

The network is trained on the 1,797 8x8 UCI digits in ``data/digits/digits.u8`` (64 bytes per
image, values 0..16, row-major; pixel p -> p/8 - 1 in [-1, 1], exactly as s3's ``digits``
preset), under s3's ``vp-linear`` noise schedule (ScoreSDE VP, beta0 = 0.1, beta1 = 20,
t in [1e-5, 1]) with the eps loss ||eps_hat(alpha x0 + sigma eps, t) - eps||^2 and t uniform.

It writes into ``--out`` (default ``data/digits-net``):

- ``model.onnx``: inputs ``sample`` f32 [batch, 1, 8, 8] and ``time`` f32 [batch] (continuous t),
  output ``eps`` f32 [batch, 1, 8, 8]; opset 17, dynamic batch axis ``batch``;
- ``model.json``: the ``s3-onnx-model`` config (version 1) s3 reads beside it;
- ``TRAINING.md``: how it was trained, the numbers of this run and the quality check
  (``check.py``: FD on raw pixels of 2,000 high-NFE samples against the exact data moments,
  next to the FD of 2,000 exact data draws).

Usage::

    python tools/train_digits_net/train.py --out data/digits-net

Deterministic on CPU for a fixed seed and thread count (``torch.use_deterministic_algorithms``,
2 threads); a different thread count or CPU may change the float rounding and so the weights.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(HERE))

import check  # noqa: E402  (the quality self-check beside this file)

BETA0 = 0.1
BETA1 = 20.0
T_FLOOR = 1e-5
T_MAX = 1.0
OPSET = 17
REL_TOL = 1e-5


# --------------------------------------------------------------------------------------------
# Data and schedule
# --------------------------------------------------------------------------------------------


def load_digits(path: Path) -> np.ndarray:
    """The digits as float32 [N, 1, 8, 8] in [-1, 1] (p/8 - 1, like s3's `digits` preset)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 64 != 0:
        raise SystemExit(f"{path}: {raw.size} bytes is not a multiple of 64")
    if raw.max() > 16:
        raise SystemExit(f"{path}: pixel value {raw.max()} > 16")
    return (raw.astype(np.float32) / 8.0 - 1.0).reshape(-1, 1, 8, 8)


def vp_coeffs(t: torch.Tensor):
    """alpha, sigma, lambda (half log-SNR) of vp-linear at t, in t's dtype.

    -2 log alpha = u = t^2 (b1 - b0) / 2 + t b0 and sigma^2 = 1 - exp(-u), evaluated as a short
    series for small u (no expm1 in ONNX) so that sigma keeps full relative precision in
    float32 down to t = 1e-5.
    """
    u = 0.5 * t * t * (BETA1 - BETA0) + t * BETA0
    log_alpha = -0.5 * u
    series = u * (1.0 - u * (0.5 - u * (1.0 / 6.0 - u * (1.0 / 24.0))))
    small = u < 1e-2
    sigma2 = torch.where(small, series, 1.0 - torch.exp(-torch.where(small, torch.ones_like(u), u)))
    alpha = torch.exp(log_alpha)
    sigma = torch.sqrt(sigma2)
    lam = log_alpha - 0.5 * torch.log(sigma2)
    return alpha, sigma, lam


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


class Block(nn.Module):
    """Pre-norm residual MLP block with FiLM time conditioning."""

    def __init__(self, width: int, emb: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.film = nn.Linear(emb, 2 * width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(e).chunk(2, dim=1)
        z = self.norm(h) * (1.0 + scale) + shift
        z = self.fc2(F.silu(self.fc1(F.silu(z))))
        return h + z


class DigitsNet(nn.Module):
    """eps(x, t) for 8x8 digits: a residual MLP on the 64 pixels.

    Time enters as the half log-SNR lambda(t) of vp-linear (computed inside the graph),
    embedded with fixed log-spaced sinusoids. The network's raw output F is read as a
    v-prediction, eps = sigma(t) x + alpha(t) F: at large t eps ~ x comes for free and at small
    t F ~ eps, so the trunk's output stays O(1) over the whole range (a preconditioning only;
    the model's output is eps and it is trained with the eps loss).
    """

    def __init__(self, width: int = 256, blocks: int = 4, emb: int = 128, freqs: int = 32):
        super().__init__()
        self.register_buffer(
            "freqs", torch.exp(torch.linspace(math.log(0.05), math.log(8.0), freqs)), persistent=True
        )
        self.temb = nn.Sequential(nn.Linear(2 * freqs, emb), nn.SiLU(), nn.Linear(emb, emb), nn.SiLU())
        self.inp = nn.Linear(64, width)
        self.blocks = nn.ModuleList([Block(width, emb) for _ in range(blocks)])
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, 64)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, sample: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        b = sample.shape[0]
        x = sample.reshape(b, 64)
        alpha, sigma, lam = vp_coeffs(time)
        arg = lam[:, None] * self.freqs[None, :]
        e = self.temb(torch.cat([torch.sin(arg), torch.cos(arg)], dim=1))
        h = self.inp(x)
        for blk in self.blocks:
            h = blk(h, e)
        f = self.out(F.silu(self.out_norm(h)))
        eps = sigma[:, None] * x + alpha[:, None] * f
        return eps.reshape(b, 1, 8, 8)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def eps_loss(model, x0, t, noise):
    alpha, sigma, _ = vp_coeffs(t)
    xt = alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * noise
    return (model(xt, t) - noise).pow(2).flatten(1).sum(1).mean() / 64.0


def fixed_draws(data: torch.Tensor, seed: int, n: int = 32768):
    """A fixed set of (image index, t, eps) draws, t on a uniform grid over [1e-5, 1]."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, data.shape[0], (n,), generator=g)
    t = (T_FLOOR + (T_MAX - T_FLOOR) * (torch.arange(n, dtype=torch.float64) + 0.5) / n).float()
    noise = torch.randn(n, 1, 8, 8, generator=g)
    return idx, t, noise


def held_out_loss(model, data: torch.Tensor, draws, batch: int = 4096) -> float:
    """Mean per-pixel eps loss of the model on the fixed draws."""
    idx, t, noise = draws
    n = idx.shape[0]
    total = 0.0
    with torch.no_grad():
        for i in range(0, n, batch):
            j = slice(i, i + batch)
            total += eps_loss(model, data[idx[j]], t[j], noise[j]).item() * idx[j].shape[0]
    return total / n


def ideal_loss(data: torch.Tensor, draws, batch: int = 2048) -> float:
    """The same loss for the Bayes-optimal denoiser of the training objective (the exact posterior
    mean of eps when x0 is uniform over the 1,797 images): what a memorising network would reach."""
    idx, t, noise = draws
    m = data.reshape(data.shape[0], -1).double()
    m2 = (m * m).sum(1)
    total = 0.0
    for i in range(0, idx.shape[0], batch):
        j = slice(i, i + batch)
        a, s, _ = vp_coeffs(t[j].double())
        eps = noise[j].reshape(-1, 64).double()
        x = a[:, None] * m[idx[j]] + s[:, None] * eps
        # log w_k = -|x - a m_k|^2 / (2 s^2), up to a per-row constant
        logw = (a[:, None] * (x @ m.T) - 0.5 * a[:, None] ** 2 * m2[None, :]) / (s[:, None] ** 2)
        w = torch.softmax(logw, dim=1)
        x0 = w @ m
        eps_hat = (x - a[:, None] * x0) / s[:, None]
        total += (eps_hat - eps).pow(2).sum().item() / 64.0
    return total / idx.shape[0]


def train(args, data: torch.Tensor, log) -> tuple[nn.Module, dict]:
    torch.manual_seed(args.seed)
    model = DigitsNet(args.width, args.blocks, args.emb)
    ema = DigitsNet(args.width, args.blocks, args.emb)
    ema.load_state_dict(model.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed + 1)
    n = data.shape[0]
    warmup = 200

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        p = (step - warmup) / max(1, args.steps - warmup)
        return args.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * p)))

    start = time.time()
    running = []
    hist = []
    bs = args.batch_size
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        idx = torch.randint(0, n, (bs,), generator=g)
        # Stratified uniform t (one draw per 1/bs stratum): lower-variance gradient, same law.
        u = (torch.arange(bs, dtype=torch.float32) + torch.rand(bs, generator=g)) / bs
        t = T_FLOOR + (T_MAX - T_FLOOR) * u
        noise = torch.randn(bs, 1, 8, 8, generator=g)
        loss = eps_loss(model, data[idx], t, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        decay = min(args.ema, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(decay).add_(pm, alpha=1.0 - decay)
        running.append(loss.item())
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            m = float(np.mean(running))
            running = []
            el = time.time() - start
            hist.append((step + 1, m))
            log(f"step {step + 1:6d}/{args.steps}  loss {m:.5f}  lr {lr_at(step):.2e}  {el:6.0f} s")
    train_s = time.time() - start
    stats = {
        "train_seconds": train_s,
        "last_logged_train_loss": hist[-1][1],
        "history": hist,
    }
    draws = fixed_draws(data, args.seed + 7)
    stats["heldout_loss_ema"] = held_out_loss(ema, data, draws)
    stats["heldout_loss_raw"] = held_out_loss(model, data, draws)
    stats["ideal_loss"] = ideal_loss(data, draws)
    log(
        f"trained {args.steps} steps in {train_s:.0f} s; fixed-draw eps loss: EMA {stats['heldout_loss_ema']:.5f}, "
        f"raw {stats['heldout_loss_raw']:.5f}; Bayes-optimal (memorising) denoiser {stats['ideal_loss']:.5f}"
    )
    return ema, stats


# --------------------------------------------------------------------------------------------
# Export and check
# --------------------------------------------------------------------------------------------


def export_onnx(model: nn.Module, path: Path) -> None:
    model.eval()
    dummy = (torch.zeros(3, 1, 8, 8), torch.full((3,), 0.5))
    torch.onnx.export(
        model,
        dummy,
        str(path),
        input_names=["sample", "time"],
        output_names=["eps"],
        dynamic_axes={"sample": {0: "batch"}, "time": {0: "batch"}, "eps": {0: "batch"}},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m)


def check_onnx(model: nn.Module, path: Path, log) -> dict:
    """ONNX Runtime vs torch on batches 1, 7, 64 at t in {1e-5, 1e-3, 0.5, 1.0} (plus random t)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1234)
    worst_rel = 0.0
    worst_abs = 0.0
    rows = []
    for b in (1, 7, 64):
        for tv in (1e-5, 1e-3, 0.5, 1.0, None):
            x = torch.randn(b, 1, 8, 8, generator=g)
            if tv is None:
                t = T_FLOOR + (T_MAX - T_FLOOR) * torch.rand(b, generator=g)
            else:
                t = torch.full((b,), tv, dtype=torch.float32)
            with torch.no_grad():
                ref = model(x, t).numpy()
            got = sess.run(["eps"], {"sample": x.numpy(), "time": t.numpy()})[0]
            assert got.shape == ref.shape and got.dtype == np.float32
            ad = float(np.abs(got - ref).max())
            rel = ad / float(np.abs(ref).max())
            worst_rel = max(worst_rel, rel)
            worst_abs = max(worst_abs, ad)
            rows.append((b, "random" if tv is None else f"{tv:g}", ad, rel))
    log(f"ONNX Runtime vs torch: max abs diff {worst_abs:.3e}, max rel diff {worst_rel:.3e} (limit {REL_TOL:g})")
    if worst_rel > REL_TOL:
        raise SystemExit(f"ONNX check failed: max relative difference {worst_rel:.3e} > {REL_TOL:g}")
    return {"max_abs": worst_abs, "max_rel": worst_rel, "rows": rows}


def versions() -> dict:
    import onnx
    import onnxruntime
    import scipy

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "data" / "digits-net")
    ap.add_argument("--data", type=Path, default=REPO / "data" / "digits" / "digits.u8")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--emb", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=250)
    ap.add_argument("--check-samples", type=int, default=2000)
    ap.add_argument("--check-steps", type=int, default=200, help="DPM-Solver++(2M) steps of the quality check (also run at half of it)")
    ap.add_argument("--grid", type=Path, default=Path("/tmp/digits-net-grid.png"))
    ap.add_argument("--skip-check", action="store_true", help="skip the sampling quality check")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    wall0 = time.time()
    cpu0 = time.process_time()
    load0 = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)

    data_np = load_digits(args.data)
    data = torch.from_numpy(data_np)
    data_mean = float(data_np.astype(np.float64).mean())
    log(f"data: {data_np.shape[0]} images from {args.data}, mean pixel {data_mean:.6f}")

    model, stats = train(args, data, log)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"parameters: {n_params}")

    onnx_path = args.out / "model.onnx"
    export_onnx(model, onnx_path)
    onnx_bytes = onnx_path.stat().st_size
    log(f"wrote {onnx_path} ({onnx_bytes} bytes)")
    oc = check_onnx(model, onnx_path, log)

    cmd = "python tools/train_digits_net/train.py --out data/digits-net"
    if argv is None:
        given = " ".join(sys.argv[1:])
        if given and given not in ("--out data/digits-net",):
            cmd = "python tools/train_digits_net/train.py " + given
    config = {
        "format": "s3-onnx-model",
        "version": 1,
        "name": "digits-net",
        "onnx": "model.onnx",
        "inputs": {"sample": "sample", "time": "time"},
        "output": "eps",
        "sample_shape": [1, 8, 8],
        "parameterization": "eps",
        "noise_schedule": {"name": "vp-linear", "betas": "linear"},
        "time_input": {"kind": "affine", "scale": 1.0, "offset": 0.0, "dtype": "float32"},
        "class_labels": None,
        "data_mean": [round(data_mean, 8)],
        "source": (
            f"s3 digits-net: residual-MLP eps-prediction network ({n_params} params) trained on the 1,797 "
            f"UCI 8x8 digits under vp-linear (uniform t in [1e-5, 1], eps loss, EMA {args.ema}), "
            f"{args.steps} steps of batch {args.batch_size} on CPU; command: {cmd}"
        ),
    }
    (args.out / "model.json").write_text(json.dumps(config, indent=2) + "\n")
    log(f"wrote {args.out / 'model.json'}")

    qc = None
    if not args.skip_check:
        qc = check.quality_check(
            model, data_np, n=args.check_samples, steps=args.check_steps, seed=args.seed + 100, grid=args.grid, log=log
        )
    wall = time.time() - wall0
    timing = {"wall": wall, "cpu": time.process_time() - cpu0, "load0": load0, "load1": os.getloadavg()[0]}
    log(
        f"total wall time {wall:.0f} s (process CPU time {timing['cpu']:.0f} s; 1-min load average "
        f"{timing['load0']:.1f} at start, {timing['load1']:.1f} at end)"
    )
    write_training_md(args, cmd, stats, n_params, onnx_bytes, oc, qc, timing, data_mean, data_np.shape[0])
    log(f"wrote {args.out / 'TRAINING.md'}")
    return 0


def write_training_md(args, cmd, stats, n_params, onnx_bytes, oc, qc, timing, data_mean, n_images):
    v = versions()
    wall = timing["wall"]
    hist = stats["history"]
    pick = [h for h in hist if h[0] in (args.log_every, args.steps // 4, args.steps // 2, 3 * args.steps // 4)] + [hist[-1]]
    seen = set()
    curve = []
    for s, l in pick:
        if s not in seen:
            seen.add(s)
            curve.append(f"{s}: {l:.4f}")
    md = []
    md.append("# digits-net: how it was trained\n")
    md.append(
        "A small learned eps-prediction diffusion network for the 1,797 UCI 8x8 digits (the data of s3's "
        "exact `digits` preset), so that s3 can search solver schedules on a real network with real model "
        "error next to the exact mixture model. Files: `model.onnx` (the network), `model.json` (its "
        "`s3-onnx-model` config). Written by `tools/train_digits_net/train.py`; nothing is downloaded.\n"
    )
    md.append("## Command\n")
    md.append("```bash\n" + cmd + "\n```\n")
    md.append(
        f"Run with the venv's Python on a shared 2-core CPU machine ({args.threads} torch threads, "
        "`torch.use_deterministic_algorithms(True)`, seed "
        f"{args.seed}). Same seed, thread count and CPU give the same weights; another CPU or thread count "
        "may change float rounding.\n"
    )
    md.append("## Data and objective\n")
    md.append(
        f"- Data: `data/digits/digits.u8`, {n_images} images, pixel p -> p/8 - 1 in [-1, 1] (as s3's "
        f"`digits` preset). Mean pixel (the `data_mean` of model.json): {data_mean:.6f}.\n"
        "- Noise schedule: s3 `vp-linear` (ScoreSDE VP): log alpha(t) = -t^2 (b1 - b0)/4 - t b0/2, b0 = 0.1, "
        "b1 = 20, sigma = sqrt(1 - alpha^2); t in [1e-5, 1].\n"
        "- Loss: ||eps_hat(alpha x0 + sigma eps, t) - eps||^2 (per pixel mean), t uniform on [1e-5, 1] "
        "(stratified within each batch), images uniform with replacement.\n"
        "- Time input: continuous t as f32 (`time_input` affine, scale 1, offset 0).\n"
    )
    md.append("## Network\n")
    md.append(
        f"Residual MLP on the 64 pixels: Linear(64->{args.width}), {args.blocks} pre-LayerNorm residual blocks "
        f"(FiLM scale/shift from the time embedding, Linear-SiLU-Linear of width {args.width}), LayerNorm-SiLU-"
        "Linear(->64). Time embedding: the half log-SNR lambda(t) of vp-linear is computed in the graph and "
        f"embedded with 32 fixed log-spaced sinusoid frequencies (0.05..8) followed by a 2-layer MLP "
        f"(width {args.emb}). The trunk output F is read as a v-prediction and converted in the graph: "
        "eps = sigma(t) x + alpha(t) F (a preconditioning; the exported output is eps). "
        f"{n_params:,} parameters; `model.onnx` is {onnx_bytes:,} bytes (float32, opset {OPSET}, "
        "dynamic batch axis `batch`).\n"
    )
    md.append("## Training\n")
    md.append(
        f"- AdamW (betas 0.9, 0.99, no weight decay), lr {args.lr:g} with 200 warm-up steps then cosine decay "
        f"to 2% of it, gradient-norm clip 1, batch {args.batch_size}, {args.steps} steps "
        f"(~{args.steps * args.batch_size / n_images:.0f} epochs); EMA of the weights with decay {args.ema} "
        "(the exported weights).\n"
        f"- Training time: {stats['train_seconds']:.0f} s; whole script (training, export, checks, "
        f"sampling check): {wall:.0f} s wall, {timing['cpu']:.0f} s process CPU time (1-min load average of "
        f"the machine {timing['load0']:.1f} at start, {timing['load1']:.1f} at end; the machine is shared, so "
        "wall time grows with other jobs' load).\n"
        "- Timing on an idle machine: a training step takes ~35 ms on 2 free cores (measured: 200 steps in "
        "7 s at load average 2.4), so the whole run takes ~7 min there; under other jobs' load (as above) "
        "steps took up to ~0.5 s. Determinism check: two 200-step runs (`--steps 200 --skip-check`) wrote "
        "byte-identical `model.onnx` files.\n"
        f"- Training loss (mean of the last {args.log_every} steps) by step: " + ", ".join(curve) + ".\n"
        f"- Final eps loss on a fixed set of 32,768 (image, t, eps) draws, t uniform: EMA weights "
        f"{stats['heldout_loss_ema']:.5f}, raw weights {stats['heldout_loss_raw']:.5f} (per pixel). On the same draws the Bayes-optimal denoiser of this "
        f"objective (the exact posterior mean of eps with x0 uniform over the {n_images} images, i.e. a "
        f"memorising network) reaches {stats['ideal_loss']:.5f}; the gap is the network's model error.\n"
    )
    md.append("## ONNX check\n")
    md.append(
        "ONNX Runtime (CPU) against the torch module on batches 1, 7, 64 at t = 1e-5, 1e-3, 0.5, 1.0 and "
        f"random t: max abs difference {oc['max_abs']:.3e}, max relative difference (max abs diff / max |torch "
        f"output|) {oc['max_rel']:.3e} (limit {REL_TOL:g}).\n"
    )
    if qc is not None:
        md.append("## Quality check (`check.py`)\n")
        md.append(qc["markdown"] + "\n")
    md.append("## Package versions\n")
    md.append(", ".join(f"{k} {val}" for k, val in v.items()) + " (run on CPU; see `requirements.txt`).\n")
    (args.out / "TRAINING.md").write_text("\n".join(md))


if __name__ == "__main__":
    sys.exit(main())

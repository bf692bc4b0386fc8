#!/usr/bin/env python3
"""Golden values for s3's flow-matching support from HF diffusers' flow schedulers.

What it produces: ``tests/golden/flow_cases.json`` (overwritten on every run): versions, and per
case the scheduler class, its init kwargs and full config, the sigmas and timesteps it used,
the per-step solver orders it actually ran (observed by wrapping its update methods), and the
final samples (float32 [64, 6], as nested lists). It also records the checks of the custom
``sigmas=`` path that s3's diffusers export relies on (``export_checks``).

The model and the noise are the ones of ``scripts/golden_diffusers.py``, read (not rewritten)
from ``tests/golden/gmm.json`` and ``tests/golden/noise.npy``. For a flow schedule
x_t = (1 - t) x0 + t eps (alpha = 1 - sigma, sigma = t) the mixture's exact predictions are

    eps(x) = sigma * sum_k g_k (x - alpha m_k) / v_k
    x0(x)  = sum_k g_k (m_k + alpha s_k^2 (x - alpha m_k) / v_k),   v_k = alpha^2 s_k^2 + sigma^2

(g_k the posterior component weights, log-sum-exp), both computed directly so that they stay
exact at alpha = 0 (sigma = 1: x0 = the data mean, eps = x). The model returns the flow velocity
v = eps - x0 (diffusers' ``flow_prediction``), evaluated in float64 from the float32 sample at the
scheduler's own float32 sigma of that step, returned as float32. The sampling loop per case:

    scheduler.set_timesteps(steps)                 # or set_timesteps(sigmas=...) for the checks
    x = noise                                       # init_noise_sigma is 1 (or absent: Euler)
    for i, t in enumerate(scheduler.timesteps):
        v = gmm_velocity(x, sigma=scheduler.sigmas[i])
        x = scheduler.step(v, t, x).prev_sample

Cases: FlowMatchEulerDiscreteScheduler (shift 1 and 3; 4, 8 and 20 steps), and
UniPCMultistepScheduler (bh2, orders 2 and 3) and DPMSolverMultistepScheduler (dpmsolver++,
midpoint, orders 2 and 3) with ``use_flow_sigmas=True, prediction_type="flow_prediction"`` and
``flow_shift`` 1 or 3, ``final_sigmas_type="zero"``, ``lower_order_final=True``. UniPC bh1 is left
out: with a final sigma of 0 it computes 0 * inf = NaN in its last step (see README.md), and
DPMSolverMultistepScheduler's "dpmsolver" (noise prediction) does not take flow_prediction.

Run:      python3 scripts/golden_flow.py
Requires: torch, diffusers, numpy (versions recorded in flow_cases.json).
CI does NOT run this script; its output is committed and read by tests/golden_flow.rs.
It is deterministic: re-running it with the same versions rewrites the file bit for bit.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

import diffusers
from diffusers import (
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
sys.path.insert(0, str(ROOT / "scripts"))
import golden_diffusers as gd  # noqa: E402  (order rules, instrumentation, JSON helpers, diffs)

GMM = json.loads((GOLDEN / "gmm.json").read_text())
assert GMM == gd.GMM, "tests/golden/gmm.json differs from scripts/golden_diffusers.py"
NOISE = np.load(GOLDEN / "noise.npy")
assert NOISE.dtype == np.float32 and NOISE.shape == (gd.N_SAMPLES, gd.DIM)
TRAIN = 1000


# ----------------------------------------------------------------------------------------------
# The exact mixture under the flow schedule
# ----------------------------------------------------------------------------------------------
def gmm_predictions64(x: np.ndarray, alpha: float, sigma: float):
    """Exact (E[eps | x_t], E[x0 | x_t]) for x_t = alpha x0 + sigma eps. float64."""
    x = np.asarray(x, dtype=np.float64)                            # [B, D]
    w = np.asarray(GMM["weights"], dtype=np.float64)               # [K]
    m = np.asarray(GMM["means"], dtype=np.float64)                 # [K, D]
    s2 = np.asarray(GMM["stds"], dtype=np.float64)[:, None] ** 2   # [K, 1]
    v = np.broadcast_to(alpha * alpha * s2 + sigma * sigma, m.shape)
    diff = x[:, None, :] - alpha * m[None, :, :]                   # [B, K, D]
    logp = np.log(w)[None, :] - 0.5 * np.sum(
        diff * diff / v[None] + np.log(2.0 * np.pi * v)[None], axis=2
    )
    logp -= logp.max(axis=1, keepdims=True)
    g = np.exp(logp)
    g /= g.sum(axis=1, keepdims=True)                              # [B, K]
    eps = sigma * np.sum(g[:, :, None] * diff / v[None], axis=1)
    x0 = np.sum(g[:, :, None] * (m[None] + alpha * s2[None] * diff / v[None]), axis=1)
    return eps, x0


def gmm_velocity(x: torch.Tensor, sigma) -> torch.Tensor:
    """The flow velocity v = eps - x0 at flow sigma `sigma` (alpha = 1 - sigma)."""
    s = float(sigma)
    eps, x0 = gmm_predictions64(x.detach().cpu().numpy(), 1.0 - s, s)
    return torch.from_numpy((eps - x0).astype(np.float32))


def self_check_predictions():
    """x = alpha x0 + sigma eps holds for the two predictions; alpha = 0 gives the data mean."""
    x = NOISE[:8].astype(np.float64)
    worst = 0.0
    for s in (0.999, 0.7, 0.3, 0.01):
        eps, x0 = gmm_predictions64(x, 1.0 - s, s)
        worst = max(worst, float(np.max(np.abs((1.0 - s) * x0 + s * eps - x))))
    eps, x0 = gmm_predictions64(x, 0.0, 1.0)
    mean = np.asarray(GMM["weights"]) @ np.asarray(GMM["means"])
    assert np.allclose(x0, mean[None], atol=1e-15) and np.allclose(eps, x, atol=1e-15)
    assert worst < 1e-13, worst
    return worst


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------
FLOW = dict(num_train_timesteps=TRAIN)


def euler(name, shift, steps):
    return dict(name=name, cls=FlowMatchEulerDiscreteScheduler, kwargs=dict(FLOW, shift=shift),
                steps=steps)


MULTI = dict(FLOW, use_flow_sigmas=True, prediction_type="flow_prediction",
             final_sigmas_type="zero", lower_order_final=True, thresholding=False,
             timestep_spacing="linspace", steps_offset=0)


def unipc(name, order, shift, steps, variant="bh2"):
    kw = dict(MULTI, flow_shift=shift, predict_x0=True, solver_type=variant, solver_order=order,
              disable_corrector=[])
    return dict(name=name, cls=UniPCMultistepScheduler, kwargs=kw, steps=steps)


def dpm(name, order, shift, steps):
    kw = dict(MULTI, flow_shift=shift, algorithm_type="dpmsolver++", solver_type="midpoint",
              solver_order=order)
    return dict(name=name, cls=DPMSolverMultistepScheduler, kwargs=kw, steps=steps)


def build_cases():
    cases = []
    for shift in (1.0, 3.0):
        for n in (4, 8, 20):
            cases.append(euler(f"flow_euler_shift{shift:g}_n{n}", shift, n))
    for o in (2, 3):
        for n in (5, 10):
            cases.append(unipc(f"flow_unipc_bh2_o{o}_shift3_n{n}", o, 3.0, n))
            cases.append(dpm(f"flow_dpmpp_{o}m_shift3_n{n}", o, 3.0, n))
    cases.append(unipc("flow_unipc_bh2_o2_shift1_n8", 2, 1.0, 8))
    cases.append(dpm("flow_dpmpp_2m_shift1_n8", 2, 1.0, 8))
    return cases


# ----------------------------------------------------------------------------------------------
# Running diffusers with instrumentation
# ----------------------------------------------------------------------------------------------
def sample(sched, noise):
    """diffusers' loop with the exact velocity; returns the final sample and per-step records."""
    # FlowMatchEulerDiscreteScheduler has no init_noise_sigma (pipelines start from the plain
    # noise); the multistep schedulers' is 1.
    init = float(getattr(sched, "init_noise_sigma", 1.0))
    assert init == 1.0, init
    log = []
    gd.instrument(sched, log)
    x = torch.from_numpy(noise.copy()) * init
    per_step = []
    for i, t in enumerate(sched.timesteps):
        log.clear()
        v = gmm_velocity(x, sched.sigmas[i])
        x = sched.step(v, t, x).prev_sample
        assert torch.isfinite(x).all(), (type(sched).__name__, i)
        rec = {"index": i, "timestep": float(t), "sigma_from": float(sched.sigmas[i]),
               "sigma_to": float(sched.sigmas[i + 1])}
        preds = [o for kind, o in log if kind == "P"]
        corrs = [o for kind, o in log if kind == "C"]
        if isinstance(sched, FlowMatchEulerDiscreteScheduler):
            rec["order"] = 1
        else:
            assert len(preds) == 1 and len(corrs) <= 1, log
            rec["order"] = preds[0]
        if isinstance(sched, UniPCMultistepScheduler):
            rec["corrector"] = len(corrs) == 1
            rec["corrector_order"] = corrs[0] if corrs else None
        per_step.append(rec)
    return x.numpy().astype(np.float32), per_step


def euler_reference(sigmas, noise):
    """Flow Euler in float64 numpy over diffusers' float32 sigmas (no diffusers)."""
    x = noise.astype(np.float64)
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        eps, x0 = gmm_predictions64(x, 1.0 - s, s)
        x = x + (s_next - s) * (eps - x0)
    return x


def run_case(case):
    sched = case["cls"](**case["kwargs"])
    sched.set_timesteps(case["steps"])
    n = len(sched.timesteps)
    assert n == case["steps"]
    x, per_step = sample(sched, NOISE)
    cfg = dict(sched.config)
    if isinstance(sched, UniPCMultistepScheduler):
        pred, corr, corr_order = gd.rule_orders_unipc(cfg, n)
        assert pred == [r["order"] for r in per_step], case["name"]
        assert corr == [r["corrector"] for r in per_step], case["name"]
        assert corr_order == [r["corrector_order"] for r in per_step], case["name"]
    elif isinstance(sched, DPMSolverMultistepScheduler):
        assert gd.rule_orders_dpm(cfg, n) == [r["order"] for r in per_step], case["name"]
    if "_use_default_values" in cfg:
        cfg["_use_default_values"] = sorted(cfg["_use_default_values"])
    sigmas = [float(s) for s in sched.sigmas]
    meta = {
        "name": case["name"],
        "scheduler": type(sched).__name__,
        "init_kwargs": gd.jsonable(case["kwargs"]),
        "config": gd.jsonable(cfg),
        "steps": n,
        "shift": case["kwargs"].get("shift", case["kwargs"].get("flow_shift")),
        "sigmas": sigmas,
        "timesteps": [float(t) for t in sched.timesteps],
        "orders": [r["order"] for r in per_step],
    }
    if isinstance(sched, UniPCMultistepScheduler):
        meta["corrector"] = [r["corrector"] for r in per_step]
        meta["corrector_orders"] = [r["corrector_order"] for r in per_step]
    if isinstance(sched, FlowMatchEulerDiscreteScheduler):
        meta["numpy_f64_reference_rel_diff"] = gd.rel_diff(x, euler_reference(sigmas, NOISE))
    meta["per_step"] = per_step
    meta["samples"] = x.tolist()
    return meta, x


# ----------------------------------------------------------------------------------------------
# The custom-sigmas path of s3's diffusers export
# ----------------------------------------------------------------------------------------------
def export_checks(by_name):
    """What FlowMatchEulerDiscreteScheduler / UniPCMultistepScheduler do with `sigmas=`.

    s3 exports N flow sigmas (no trailing 0) with shift=1.0 (flow_shift=1.0 for UniPC) and
    use_dynamic_shifting=False. Each check passes a shifted grid that way and compares the
    scheduler's sigmas and the sampled result with the case that produced that grid itself."""
    out = {}
    # 1. Euler: the shift-3 default grid passed back as custom sigmas with shift=1.0.
    ref = by_name["flow_euler_shift3_n8"]
    given = ref["sigmas"][:-1]
    s = FlowMatchEulerDiscreteScheduler(num_train_timesteps=TRAIN, shift=1.0,
                                        use_dynamic_shifting=False)
    s.set_timesteps(sigmas=given)
    got = [float(v) for v in s.sigmas]
    x, _ = sample(s, NOISE)
    out["flow_match_euler_sigmas"] = {
        "scheduler": "FlowMatchEulerDiscreteScheduler",
        "config": {"shift": 1.0, "use_dynamic_shifting": False},
        "sigmas_in": given,
        "scheduler_sigmas": got,
        "scheduler_timesteps": [float(t) for t in s.timesteps],
        "accepted": got == given + [0.0],
        "num_inference_steps": int(s.num_inference_steps),
        "same_samples_as": ref["name"],
        "max_abs_diff_to_that_case": float(np.max(np.abs(x - np.asarray(ref["samples"])))),
    }
    assert out["flow_match_euler_sigmas"]["accepted"]
    # What goes wrong otherwise (documented in tests/golden/README.md).
    s = FlowMatchEulerDiscreteScheduler(num_train_timesteps=TRAIN, shift=3.0)
    s.set_timesteps(sigmas=given)
    out["flow_match_euler_shift3_reshifts"] = {
        "sigmas_in": given, "scheduler_sigmas": [float(v) for v in s.sigmas],
    }
    s = FlowMatchEulerDiscreteScheduler(num_train_timesteps=TRAIN, shift=1.0)
    s.set_timesteps(sigmas=given + [0.0])
    out["flow_match_euler_trailing_zero"] = {
        "sigmas_in": given + [0.0],
        "num_inference_steps": int(s.num_inference_steps),
        "scheduler_sigmas": [float(v) for v in s.sigmas],
    }
    # 2. UniPC: the flow-unipc shift-3 grid as custom sigmas with flow_shift=1.0 (numpy array;
    #    a list raises TypeError in its set_timesteps).
    ref = by_name["flow_unipc_bh2_o3_shift3_n10"]
    given = ref["sigmas"][:-1]
    kw = dict(ref["init_kwargs"], flow_shift=1.0)
    s = UniPCMultistepScheduler(**kw)
    try:
        s.set_timesteps(sigmas=list(given))
        list_ok = True
    except TypeError:
        list_ok = False
    s = UniPCMultistepScheduler(**kw)
    s.set_timesteps(sigmas=np.asarray(given))
    got = [float(v) for v in s.sigmas]
    x, per_step = sample(s, NOISE)
    out["unipc_flow_sigmas"] = {
        "scheduler": "UniPCMultistepScheduler",
        "config": {k: kw[k] for k in ("use_flow_sigmas", "flow_shift", "prediction_type",
                                      "solver_type", "solver_order", "final_sigmas_type")},
        "sigmas_in": given,
        "scheduler_sigmas": got,
        "accepted": got == given + [0.0],
        "python_list_accepted": list_ok,
        "orders": [r["order"] for r in per_step],
        "same_samples_as": ref["name"],
        "max_abs_diff_to_that_case": float(np.max(np.abs(x - np.asarray(ref["samples"])))),
    }
    assert out["unipc_flow_sigmas"]["accepted"]
    return out


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    worst_identity = self_check_predictions()
    metas, by_name = [], {}
    print(f"{'case':34s} {'orders':40s} f64-ref")
    for case in build_cases():
        meta, _ = run_case(case)
        metas.append(meta)
        by_name[meta["name"]] = meta
        corr = "".join("C" if c else "-" for c in meta.get("corrector", []))
        ref = meta.get("numpy_f64_reference_rel_diff")
        print(f"{meta['name']:34s} {str(meta['orders']) + ' ' + corr:40s} "
              + (f"{ref:.2e}" if ref is not None else ""))
    checks = export_checks(by_name)
    for k, v in checks.items():
        print(f"{k}: " + ", ".join(f"{a}={v[a]}" for a in
                                   ("accepted", "num_inference_steps", "max_abs_diff_to_that_case",
                                    "python_list_accepted") if a in v))
    doc = {
        "generator": "scripts/golden_flow.py (python3 scripts/golden_flow.py)",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "numpy": np.__version__,
        "model": "gmm.json (flow schedule: alpha = 1 - sigma, sigma = t); the model returns the "
                 "flow velocity v = eps - x0, both predictions exact (posterior mean), float64 "
                 "from the float32 sample at the scheduler's float32 sigma, returned as float32",
        "noise": "noise.npy (shared with cases.json)",
        "prediction_identity_max_abs": worst_identity,
        "samples_meaning": "final sample of diffusers' loop, float32 [64, 6] as nested lists; "
                           "row b started from noise[b]",
        "sigmas_meaning": "scheduler.sigmas after set_timesteps: N flow sigmas (float32) and the "
                          "final 0; timesteps are scheduler.timesteps (1000*sigma; int64 "
                          "truncation for UniPC and DPM-Solver, which the model here ignores)",
        "orders_meaning": "orders[i]: order of the step from sigmas[i] to sigmas[i+1], observed "
                          "by wrapping the update methods (Euler: 1); UniPC corrector[i]: UniC "
                          "ran at step i; asserted equal to diffusers' rules "
                          "(scripts/golden_diffusers.py)",
        "export_checks": checks,
        "cases": metas,
    }
    (GOLDEN / "flow_cases.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    print(f"\nwrote {len(metas)} cases to {GOLDEN / 'flow_cases.json'}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Golden values for s3's multistep solvers from an independent implementation (HF diffusers).

What it produces (all under ``tests/golden/``, overwritten on every run):

* ``gmm.json``   - the Gaussian-mixture data law used as an exact noise predictor (no network).
* ``noise.npy``  - float32 [64, 6] initial noise, ``np.random.default_rng(20261122)``
                   ``.standard_normal((64, 6))`` (float64 draws) cast to float32.
* ``<case>.npy`` - float32 [64, 6] final sample of diffusers' sampling loop, one per case.
* ``cases.json`` - versions, and per case: scheduler class, full diffusers config, timesteps,
                   sigmas, per-step solver order (and UniPC corrector flag/order) actually used.
* ``README.md`` is written by hand (not by this script); it documents the files and formulas.

The sampling loop per case is exactly diffusers' documented one::

    scheduler.set_timesteps(steps)
    x = noise * scheduler.init_noise_sigma            # == 1.0 for these VP schedulers
    for t in scheduler.timesteps:
        eps = gmm_eps(x, int(t))                      # exact GMM noise prediction
        x = scheduler.step(eps, t, x).prev_sample

The model for integer timestep k uses alpha = sqrt(ac[k]), sigma = sqrt(1 - ac[k]) with ac the
scheduler's own (float32) ``alphas_cumprod`` cast to float64; it is evaluated in float64 from the
float32 sample and returned as float32.

The script also runs self-checks (it is not a test):
  * an independent plain-numpy float64 re-derivation of every case from the published formulas
    (no diffusers), printing the max relative difference to diffusers' result; the required one
    is ``dpmpp_2m_linspace_n5``;
  * a Taylor/finite-difference check of the D2 term of DPM-Solver's 3rd-order multistep update.

Run:      python3 scripts/golden_diffusers.py
Requires: torch, diffusers, numpy (tested with the versions recorded in cases.json).
CI does NOT run this script; its outputs are committed and read by the Rust test.
It is deterministic: re-running it reproduces the same files bit for bit (same versions).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch

import diffusers
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden"

SEED = 20261122
N_SAMPLES = 64
DIM = 6

# The data law: x0 ~ sum_k w_k N(m_k, s_k^2 I). Plain decimal literals, written verbatim.
GMM = {
    "shape": [DIM],
    "weights": [0.5, 0.3, 0.2],
    "means": [
        [1.0, -0.5, 0.25, 1.2, -1.0, 0.5],
        [-1.2, 0.8, -0.3, -0.6, 1.5, -0.9],
        [0.3, 1.1, -1.4, 0.0, -0.2, 1.3],
    ],
    "stds": [0.3, 0.15, 0.45],
}


# ----------------------------------------------------------------------------------------------
# The exact Gaussian-mixture noise predictor
# ----------------------------------------------------------------------------------------------
def gmm_eps64(x: np.ndarray, alpha: float, sigma: float) -> np.ndarray:
    """Exact E[eps | x_t = x] for x_t = alpha x0 + sigma z, x0 ~ GMM. float64 in, float64 out."""
    x = np.asarray(x, dtype=np.float64)                            # [B, D]
    w = np.asarray(GMM["weights"], dtype=np.float64)               # [K]
    m = np.asarray(GMM["means"], dtype=np.float64)                 # [K, D]
    s = np.asarray(GMM["stds"], dtype=np.float64)                  # [K]
    v = alpha * alpha * (s * s)[:, None] + sigma * sigma           # [K, 1] -> broadcast per dim
    v = np.broadcast_to(v, m.shape)                                # [K, D]
    diff = x[:, None, :] - alpha * m[None, :, :]                   # [B, K, D]
    logp = np.log(w)[None, :] - 0.5 * np.sum(
        diff * diff / v[None] + np.log(2.0 * np.pi * v)[None], axis=2
    )                                                              # [B, K]
    logp = logp - logp.max(axis=1, keepdims=True)
    gam = np.exp(logp)
    gam = gam / gam.sum(axis=1, keepdims=True)
    return sigma * np.sum(gam[:, :, None] * diff / v[None], axis=1)


def gmm_eps_torch(x: torch.Tensor, k: int, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    ac = float(alphas_cumprod[k].double())
    out = gmm_eps64(x.detach().cpu().numpy().astype(np.float64), math.sqrt(ac), math.sqrt(1.0 - ac))
    return torch.from_numpy(out.astype(np.float32))


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------
LINEAR = dict(beta_schedule="linear", beta_start=0.0001, beta_end=0.02)
SCALED = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
COMMON = dict(num_train_timesteps=1000, prediction_type="epsilon", thresholding=False,
              lower_order_final=True)


def dpm(name, order, steps, algo="dpmsolver++", final="zero", betas=LINEAR, spacing="linspace",
        offset=0):
    kw = dict(COMMON, **betas, algorithm_type=algo, solver_type="midpoint", solver_order=order,
              final_sigmas_type=final, timestep_spacing=spacing, steps_offset=offset)
    return dict(name=name, cls=DPMSolverMultistepScheduler, kwargs=kw, steps=steps)


def unipc(name, variant, order, steps, final="zero"):
    kw = dict(COMMON, **LINEAR, predict_x0=True, solver_type=variant, solver_order=order,
              final_sigmas_type=final, disable_corrector=[], timestep_spacing="linspace",
              steps_offset=0)
    return dict(name=name, cls=UniPCMultistepScheduler, kwargs=kw, steps=steps)


def build_cases():
    cases = []
    for o in (2, 3):
        for n in (5, 10):
            cases.append(dpm(f"dpmpp_{o}m_linspace_n{n}", o, n))
    for o in (2, 3):
        for n in (5, 10):
            cases.append(dpm(f"dpm_{o}m_sigmamin_n{n}", o, n, algo="dpmsolver", final="sigma_min"))
    for v in ("bh1", "bh2"):
        for o in (2, 3):
            for n in (5, 10):
                cases.append(unipc(f"unipc_{v}_o{o}_n{n}", v, o, n))
    # UniPC with a non-zero final sigma (pure diffusers output also for bh1, see README).
    for v in ("bh1", "bh2"):
        cases.append(unipc(f"unipc_{v}_o3_sigmamin_n5", v, 3, 5, final="sigma_min"))
    # Spacing / beta variants of DPM-Solver++ 2M at 6 steps.
    cases.append(dpm("dpmpp_2m_linspace_n6", 2, 6))
    cases.append(dpm("dpmpp_2m_leading_off0_n6", 2, 6, spacing="leading", offset=0))
    cases.append(dpm("dpmpp_2m_leading_off1_n6", 2, 6, spacing="leading", offset=1))
    cases.append(dpm("dpmpp_2m_trailing_n6", 2, 6, spacing="trailing"))
    cases.append(dpm("dpmpp_2m_scaledlinear_n6", 2, 6, betas=SCALED))
    # Longer runs: lower_order_final rules differ between the two schedulers.
    cases.append(unipc("unipc_bh2_o3_n20", "bh2", 3, 20))
    cases.append(dpm("dpmpp_3m_linspace_n20", 3, 20))
    return cases


# ----------------------------------------------------------------------------------------------
# Running diffusers with instrumentation
# ----------------------------------------------------------------------------------------------
def rule_orders_dpm(cfg, n):
    """diffusers DPMSolverMultistepScheduler.step()'s order rule, recomputed."""
    out = []
    lower = 0
    for i in range(n):
        lof = (i == n - 1) and (cfg["euler_at_final"] or (cfg["lower_order_final"] and n < 15)
                                or cfg["final_sigmas_type"] == "zero")
        los = (i == n - 2) and cfg["lower_order_final"] and n < 15
        if cfg["solver_order"] == 1 or lower < 1 or lof:
            o = 1
        elif cfg["solver_order"] == 2 or lower < 2 or los:
            o = 2
        else:
            o = 3
        out.append(o)
        lower = min(lower + 1, cfg["solver_order"])
    return out


def rule_orders_unipc(cfg, n):
    """diffusers UniPCMultistepScheduler.step()'s rule: predictor orders, corrector flag/order."""
    pred, corr, corr_order = [], [], []
    lower = 0
    prev = None
    for i in range(n):
        use_c = i > 0 and (i - 1) not in cfg["disable_corrector"]
        corr.append(use_c)
        corr_order.append(prev if use_c else None)
        o = min(cfg["solver_order"], n - i) if cfg["lower_order_final"] else cfg["solver_order"]
        o = min(o, lower + 1)
        pred.append(o)
        prev = o
        lower = min(lower + 1, cfg["solver_order"])
    return pred, corr, corr_order


def jsonable(v):
    """Make a diffusers config value strict-JSON serialisable (non-finite floats -> strings)."""
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    if isinstance(v, (list, tuple)):
        return [jsonable(u) for u in v]
    if isinstance(v, dict):
        return {str(k): jsonable(u) for k, u in v.items()}
    if isinstance(v, (np.floating,)):
        return jsonable(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    if v is None or isinstance(v, (bool, int, str)):
        return v
    raise TypeError(f"cannot serialise config value {v!r}")


def instrument(sched, log):
    """Wraps the instance's update methods (UniPC predictor/corrector, DPM-Solver orders) so
    that `log` records, per `step()`, which updates ran and at which order."""
    if isinstance(sched, UniPCMultistepScheduler):
        orig_p, orig_c = sched.multistep_uni_p_bh_update, sched.multistep_uni_c_bh_update

        def p_upd(*a, **k):
            log.append(("P", k["order"]))
            return orig_p(*a, **k)

        def c_upd(*a, **k):
            log.append(("C", k["order"]))
            return orig_c(*a, **k)

        sched.multistep_uni_p_bh_update, sched.multistep_uni_c_bh_update = p_upd, c_upd
    elif isinstance(sched, DPMSolverMultistepScheduler):
        for o, nm in ((1, "dpm_solver_first_order_update"),
                      (2, "multistep_dpm_solver_second_order_update"),
                      (3, "multistep_dpm_solver_third_order_update")):
            orig = getattr(sched, nm)

            def wrapped(*a, _o=o, _orig=orig, **k):
                log.append(("P", _o))
                return _orig(*a, **k)

            setattr(sched, nm, wrapped)


def run_diffusers(case, noise):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # dpmsolver (non-++) is "deprecated"
        sched = case["cls"](**case["kwargs"])
    sched.set_timesteps(case["steps"])
    assert float(sched.init_noise_sigma) == 1.0, sched.init_noise_sigma
    ac = sched.alphas_cumprod.clone()
    n = len(sched.timesteps)
    assert n == case["steps"]
    is_unipc = isinstance(sched, UniPCMultistepScheduler)

    log = []
    instrument(sched, log)

    x = torch.from_numpy(noise.copy()) * sched.init_noise_sigma
    per_step = []
    nan_patched = False
    for i, t in enumerate(sched.timesteps):
        log.clear()
        eps = gmm_eps_torch(x, int(t), ac)
        x_new = sched.step(eps, t, x).prev_sample
        rec = {"index": i, "timestep": int(t),
               "sigma_from": float(sched.sigmas[i]), "sigma_to": float(sched.sigmas[i + 1])}
        preds = [o for kind, o in log if kind == "P"]
        corrs = [o for kind, o in log if kind == "C"]
        assert len(preds) == 1 and len(corrs) <= 1, log
        rec["order"] = preds[0]
        if is_unipc:
            rec["corrector"] = len(corrs) == 1
            rec["corrector_order"] = corrs[0] if corrs else None
        if not torch.isfinite(x_new).all():
            # Only known case: UniPC bh1 with final sigma 0 at the last (order-1) step, where
            # diffusers computes alpha_t * B_h * 0 with B_h = hh = -inf  ->  NaN.  The limit
            # sigma_next -> 0 of that order-1 predictor is exactly the data prediction m0 that
            # diffusers itself computed at this step (B_h multiplies an empty sum). bh2 returns
            # exactly this value (checked below), so we substitute it and flag the case.
            assert is_unipc and sched.config.solver_type == "bh1", case["name"]
            assert i == n - 1 and float(sched.sigmas[-1]) == 0.0 and rec["order"] == 1
            x_new = sched.model_outputs[-1].clone()
            assert torch.isfinite(x_new).all()
            nan_patched = True
        if (is_unipc and i == n - 1 and float(sched.sigmas[-1]) == 0.0
                and sched.config.solver_type == "bh2"):
            # For bh2 the last step returns m0 exactly; this justifies the bh1 substitution.
            assert torch.equal(x_new, sched.model_outputs[-1]), case["name"]
        per_step.append(rec)
        x = x_new

    cfg = dict(sched.config)
    if is_unipc:
        pred, corr, corr_order = rule_orders_unipc(cfg, n)
        assert pred == [r["order"] for r in per_step], (case["name"], pred)
        assert corr == [r["corrector"] for r in per_step], (case["name"], corr)
        assert corr_order == [r["corrector_order"] for r in per_step], (case["name"], corr_order)
    else:
        assert rule_orders_dpm(cfg, n) == [r["order"] for r in per_step], case["name"]

    if "_use_default_values" in cfg:
        cfg["_use_default_values"] = sorted(cfg["_use_default_values"])  # set order is random
    timesteps = [int(t) for t in sched.timesteps]
    meta = {
        "name": case["name"],
        "file": f"{case['name']}.npy",
        "scheduler": type(sched).__name__,
        "init_kwargs": jsonable(case["kwargs"]),
        "config": jsonable(cfg),
        "steps": n,
        "timesteps": timesteps,
        "sigmas": [float(s) for s in sched.sigmas],
        "alphas_cumprod_at_timesteps": [float(ac[k]) for k in timesteps],
        "alphas_cumprod_0": float(ac[0]),
        "final_sigma": "zero" if float(sched.sigmas[-1]) == 0.0 else "sigma_min",
        "orders": [r["order"] for r in per_step],
    }
    if is_unipc:
        meta["corrector"] = [r["corrector"] for r in per_step]
        meta["corrector_orders"] = [r["corrector_order"] for r in per_step]
    meta["per_step"] = per_step
    meta["nan_patched_final_step"] = nan_patched
    x = x.numpy().astype(np.float32)
    assert x.shape == (N_SAMPLES, DIM) and np.isfinite(x).all()
    return x, meta


# ----------------------------------------------------------------------------------------------
# Independent float64 numpy re-derivation (no diffusers)
# ----------------------------------------------------------------------------------------------
def ref_alphas_cumprod(kw):
    """Training schedule: f64 linspace betas rounded to f32, cumulative product in f64."""
    n = kw["num_train_timesteps"]
    i = np.arange(n, dtype=np.float64)
    if kw["beta_schedule"] == "linear":
        b = kw["beta_start"] + (kw["beta_end"] - kw["beta_start"]) * i / (n - 1)
    elif kw["beta_schedule"] == "scaled_linear":
        a0, a1 = math.sqrt(kw["beta_start"]), math.sqrt(kw["beta_end"])
        b = (a0 + (a1 - a0) * i / (n - 1)) ** 2
    else:
        raise ValueError(kw["beta_schedule"])
    b = b.astype(np.float32).astype(np.float64)
    return np.exp(np.cumsum(np.log1p(-b)))


def ref_timesteps(kw, steps):
    n = kw["num_train_timesteps"]
    sp = kw["timestep_spacing"]
    if sp == "linspace":  # numpy round = round-half-to-even
        return np.linspace(0, n - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
    if sp == "leading":
        r = n // (steps + 1)
        return (np.arange(0, steps + 1) * r)[::-1][:-1].astype(np.int64) + kw["steps_offset"]
    if sp == "trailing":
        return np.arange(n, 0, -n / steps).round().astype(np.int64) - 1
    raise ValueError(sp)


def phi(k, z):
    """phi_k(z) = sum_{j>=0} z^j/(j+k)!, closed forms for k<=4 (|z| here is not tiny)."""
    if k == 1:
        return math.expm1(z) / z
    if k == 2:
        return (math.expm1(z) - z) / z**2
    if k == 3:
        return (math.expm1(z) - z - z**2 / 2) / z**3
    if k == 4:
        return (math.expm1(z) - z - z**2 / 2 - z**3 / 6) / z**4
    raise ValueError(k)


def reference_sample(case, noise, ac=None):
    """Plain float64 re-derivation of the case. ac: alphas_cumprod to use (default: own f64)."""
    kw, steps = case["kwargs"], case["steps"]
    ac = ref_alphas_cumprod(kw) if ac is None else np.asarray(ac, dtype=np.float64)
    ts = ref_timesteps(kw, steps)
    n = len(ts)
    # Per-node (alpha, sigma, lambda); node n is the final one.
    al = [math.sqrt(ac[k]) for k in ts]
    sg = [math.sqrt(1.0 - ac[k]) for k in ts]
    if kw["final_sigmas_type"] == "zero":
        al.append(1.0); sg.append(0.0)
    else:  # sigma_min: the training timestep 0
        al.append(math.sqrt(ac[0])); sg.append(math.sqrt(1.0 - ac[0]))
    lam = [math.log(a / s) if s > 0 else math.inf for a, s in zip(al, sg)]
    unipc_case = case["cls"] is UniPCMultistepScheduler
    if unipc_case:
        pred_orders, corr, corr_orders = rule_orders_unipc(
            dict(kw, disable_corrector=kw["disable_corrector"]), n)
    else:
        pred_orders = rule_orders_dpm(dict(kw, euler_at_final=False), n)

    x = noise.astype(np.float64)
    ms = []  # model outputs (data predictions, or noise for dpmsolver) at nodes 0..i
    algo = kw.get("algorithm_type", "dpmsolver++")
    data_pred = unipc_case or algo == "dpmsolver++"
    last_base = None  # UniPC: the sample the previous predictor started from
    for i in range(n):
        eps = gmm_eps64(x, al[i], sg[i])
        m = (x - sg[i] * eps) / al[i] if data_pred else eps
        o = pred_orders[i]
        if unipc_case and corr[i]:
            # UniC-p corrector on the node-i sample, using the model at the (uncorrected) x.
            x = unipc_update(x_base=last_base, i_from=i - 1, i_to=i, ms=ms, order=corr_orders[i],
                             lam=lam, al=al, sg=sg, variant=kw["solver_type"], m_new=m)
        ms.append(m)
        if unipc_case:
            last_base = x
            x = unipc_update(x_base=x, i_from=i, i_to=i + 1, ms=ms, order=o, lam=lam, al=al,
                             sg=sg, variant=kw["solver_type"], m_new=None)
        else:
            x = dpm_update(x, i, ms, o, lam, al, sg, algo)
    return x


def dpm_update(x, i, ms, o, lam, al, sg, algo):
    """DPM-Solver(++) multistep update from node i to node i+1 (diffusers' formulas)."""
    if sg[i + 1] == 0.0:  # lambda = +inf: the update collapses onto the data prediction
        assert o == 1 and algo == "dpmsolver++"
        return ms[-1].copy()
    h = lam[i + 1] - lam[i]
    m0 = ms[-1]
    if o == 1:
        D = m0
        D1 = D2 = 0.0
    elif o == 2:
        r0 = (lam[i] - lam[i - 1]) / h
        D, D1, D2 = m0, (m0 - ms[-2]) / r0, 0.0
    else:
        r0, r1 = (lam[i] - lam[i - 1]) / h, (lam[i - 1] - lam[i - 2]) / h
        D1_0, D1_1 = (m0 - ms[-2]) / r0, (ms[-2] - ms[-3]) / r1
        D = m0
        D1 = D1_0 + r0 / (r0 + r1) * (D1_0 - D1_1)
        D2 = (D1_0 - D1_1) / (r0 + r1)
    if algo == "dpmsolver++":  # data prediction: z = -h, linear part sigma_t/sigma_s
        z, lin, scale = -h, sg[i + 1] / sg[i] * x, al[i + 1]
    else:  # noise prediction: z = +h, linear part alpha_t/alpha_s
        z, lin, scale = h, al[i + 1] / al[i] * x, sg[i + 1]
    if o == 1:
        return lin - scale * math.expm1(z) * D
    if o == 2:  # "midpoint": -scale (e^z - 1) (D0 + D1/2) for both algorithms
        return lin - scale * math.expm1(z) * (D + 0.5 * D1)
    # order 3, with z phi_2(z) = (e^z - 1)/z - 1 and phi_2(z) - 1/2 = z phi_3(z):
    #   ++       : + alpha_t((e^-h - 1)/h + 1) D1 - alpha_t((e^-h - 1 + h)/h^2 - 1/2) D2
    #   dpmsolver: - sigma_t((e^h - 1)/h - 1) D1  - sigma_t((e^h - 1 - h)/h^2 - 1/2) D2
    # which are the same expression in z:  - scale [ (e^z-1) D0 + z phi_2(z) D1 + (phi_2(z)-1/2) D2 ]
    return lin - scale * (math.expm1(z) * D + z * phi(2, z) * D1 + (phi(2, z) - 0.5) * D2)


def unipc_update(x_base, i_from, i_to, ms, order, lam, al, sg, variant, m_new):
    """UniPC-B(h) (data prediction) from node i_from to i_to.

    Predictor (m_new is None): uses ms[-1] (model at i_from) and ms[-2..] history.
    Corrector (m_new given): ms[-1] is the model at i_from, m_new the model at i_to.
    """
    m0 = ms[-1]
    if sg[i_to] == 0.0:  # lambda = +inf
        assert m_new is None and order == 1
        return m0.copy()
    h = lam[i_to] - lam[i_from]
    z = -h
    B = z if variant == "bh1" else math.expm1(z)
    # b_j = j! * z * phi_{j+1}(z) / B, j = 1..order
    b = np.array([math.factorial(j) * z * phi(j + 1, z) / B for j in range(1, order + 1)])
    n_hist = order - 1
    rks = [(lam[i_from - j] - lam[i_from]) / h for j in range(1, n_hist + 1)]
    D1s = [(ms[-1 - j] - m0) / rks[j - 1] for j in range(1, n_hist + 1)]
    base = sg[i_to] / sg[i_from] * x_base - al[i_to] * math.expm1(z) * m0
    if m_new is None:
        if n_hist == 0:
            return base
        if order == 2:
            rhos = np.array([0.5])
        else:
            R = np.array([[r**p for r in rks] for p in range(n_hist)])
            rhos = np.linalg.solve(R, b[:n_hist])
        return base - al[i_to] * B * sum(r * d for r, d in zip(rhos, D1s))
    # corrector
    if order == 1:
        rhos = np.array([0.5])
    else:
        rr = rks + [1.0]
        R = np.array([[r**p for r in rr] for p in range(order)])
        rhos = np.linalg.solve(R, b)
    corr = sum((r * d for r, d in zip(rhos[:-1], D1s)), np.zeros_like(x_base))
    return base - al[i_to] * B * (corr + rhos[-1] * (m_new - m0))


def rel_diff(a, ref):
    """max |a - ref| / max |ref| (scale-relative)."""
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(a - ref)) / np.max(np.abs(ref)))


def elem_rel_diff(a, ref, floor=1e-3):
    a = np.asarray(a, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(a - ref) / np.maximum(np.abs(ref), floor)))


# ----------------------------------------------------------------------------------------------
# Numerical check of the D2 term in DPM-Solver(++)'s 3rd-order multistep update
# ----------------------------------------------------------------------------------------------
def check_dpm3_d2():
    """Compare diffusers' 3M D2 term with the Taylor term of the exact exponential integral.

    DPM-Solver++ (data prediction, F(lambda)): over [l0, l0+h]
        x_t = (sigma_t/sigma_s) x_s + alpha_t * I,  I = int_0^h e^{-(h-u)} F(l0+u) du
    and I = sum_n h^{n+1} phi_{n+1}(-h) F^(n)(l0).  The F'' term is
        h^3 phi_3(-h) F'' = -(phi_2(-h) - 1/2) h^2 F''.
    diffusers uses -(phi_2(-h) - 1/2) * D2 with D2 = (D1_0 - D1_1)/(r0 + r1).
    Returns a dict of the measured quantities.
    """
    F = lambda l: np.exp(0.7 * l) * np.cos(1.3 * l) + 0.2 * l**3  # noqa: E731
    def d2F(l):
        e = np.exp(0.7 * l)
        return e * ((0.49 - 1.69) * np.cos(1.3 * l) - 2 * 0.7 * 1.3 * np.sin(1.3 * l)) + 1.2 * l
    l0 = 0.3
    gx, gw = np.polynomial.legendre.leggauss(60)
    out = {"h": [], "D2_over_h2F2": [], "err_diffusers": [], "err_2xD2": [], "err_2M": []}
    for h in [0.4, 0.2, 0.1, 0.05, 0.025]:
        h0, h1 = 0.8 * h, 1.3 * h  # uneven past steps
        m0, m1, m2 = F(l0), F(l0 - h0), F(l0 - h0 - h1)
        r0, r1 = h0 / h, h1 / h
        D1_0, D1_1 = (m0 - m1) / r0, (m1 - m2) / r1
        D1 = D1_0 + r0 / (r0 + r1) * (D1_0 - D1_1)
        D2 = (D1_0 - D1_1) / (r0 + r1)
        u = 0.5 * h * (gx + 1.0)
        I = 0.5 * h * np.sum(gw * np.exp(-(h - u)) * F(l0 + u))
        em = math.expm1(-h)
        c1 = em / h + 1.0
        c2 = (em + h) / h**2 - 0.5
        I_diff = -em * m0 + c1 * D1 - c2 * D2          # diffusers 3M
        I_fix = -em * m0 + c1 * D1 - c2 * 2.0 * D2     # full Taylor weight
        I_2m = -em * (m0 + 0.5 * D1_0)                 # diffusers 2M midpoint
        out["h"].append(h)
        out["D2_over_h2F2"].append(D2 / (h * h * d2F(l0) / 2))
        out["err_diffusers"].append(abs(I_diff - I))
        out["err_2xD2"].append(abs(I_fix - I))
        out["err_2M"].append(abs(I_2m - I))
    slope = lambda e: [math.log2(e[j] / e[j + 1]) for j in range(len(e) - 1)]  # noqa: E731
    out["local_order_diffusers"] = slope(out["err_diffusers"])
    out["local_order_2xD2"] = slope(out["err_2xD2"])
    out["local_order_2M"] = slope(out["err_2M"])
    return out


def unipc_rho_facts():
    """Values the simplified rhos=0.5 replace (what a linear solve would have given)."""
    res = {}
    for h in (0.5, 1.0):
        z = -h
        for v in ("bh1", "bh2"):
            B = z if v == "bh1" else math.expm1(z)
            b1 = z * phi(2, z) / B
            res[f"{v}_h{h}"] = b1
    return res


def gmm_json_text():
    """gmm.json, one mean vector per line; the literals are Python's shortest repr (0.25, -1.2)."""
    rows = ",\n    ".join(json.dumps(m) for m in GMM["means"])
    text = (f'{{\n  "shape": {json.dumps(GMM["shape"])},\n'
            f'  "weights": {json.dumps(GMM["weights"])},\n'
            f'  "means": [\n    {rows}\n  ],\n'
            f'  "stds": {json.dumps(GMM["stds"])}\n}}\n')
    assert json.loads(text) == GMM and abs(sum(GMM["weights"]) - 1.0) < 1e-15
    return text


# ----------------------------------------------------------------------------------------------
def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)

    (OUT / "gmm.json").write_text(gmm_json_text())
    noise = np.random.default_rng(SEED).standard_normal((N_SAMPLES, DIM)).astype(np.float32)
    np.save(OUT / "noise.npy", noise)

    cases_meta = []
    print(f"{'case':32s} {'orders':34s} corrector   f64ref(rel) diffusers-ac(rel)")
    for case in build_cases():
        x, meta = run_diffusers(case, noise)
        np.save(OUT / meta["file"], x)
        # Independent float64 re-derivation: own schedule, and diffusers' float32 alphas_cumprod.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            ac32 = case["cls"](**case["kwargs"]).alphas_cumprod.double().numpy()
        ts_ref = ref_timesteps(case["kwargs"], case["steps"]).tolist()
        assert ts_ref == meta["timesteps"], (case["name"], ts_ref, meta["timesteps"])
        ref_own = reference_sample(case, noise)
        ref_ac32 = reference_sample(case, noise, ac=ac32)
        meta["numpy_f64_reference"] = {
            "rel_diff_own_schedule": rel_diff(x, ref_own),
            "rel_diff_diffusers_alphas_cumprod": rel_diff(x, ref_ac32),
            "elem_rel_diff_own_schedule": elem_rel_diff(x, ref_own),
            "metric": "rel_diff = max|x_diffusers - x_ref| / max|x_ref|; elem_rel_diff = "
                      "max |x_diffusers - x_ref| / max(|x_ref|, 1e-3)",
        }
        cases_meta.append(meta)
        corr = ("".join("C" if c else "-" for c in meta["corrector"])
                if "corrector" in meta else "")
        print(f"{meta['name']:32s} {str(meta['orders']):34s} {corr:11s} "
              f"{meta['numpy_f64_reference']['rel_diff_own_schedule']:.2e}   "
              f"{meta['numpy_f64_reference']['rel_diff_diffusers_alphas_cumprod']:.2e}"
              + ("   [bh1 NaN at final step patched]" if meta["nan_patched_final_step"] else ""))

    doc = {
        "generator": "scripts/golden_diffusers.py (python3 scripts/golden_diffusers.py)",
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "numpy": np.__version__,
        "model": "gmm.json",
        "noise": "noise.npy",
        "noise_recipe": f"np.random.default_rng({SEED}).standard_normal(({N_SAMPLES}, {DIM}))"
                        ".astype(np.float32)",
        "timestep_to_time": "integer timestep k <-> continuous t = (k+1)/1000; "
                            "alpha^2 = alphas_cumprod[k]",
        "model_alpha_sigma": "model(x, k) uses alpha = sqrt(ac[k]), sigma = sqrt(1-ac[k]), "
                             "ac = scheduler.alphas_cumprod (float32) cast to float64",
        "order_source": "orders/corrector flags observed by wrapping the scheduler instance's "
                        "update methods (dpm_solver_first_order_update / "
                        "multistep_dpm_solver_{second,third}_order_update; UniPC "
                        "multistep_uni_p_bh_update(order=...) and multistep_uni_c_bh_update("
                        "order=...)), and asserted equal to diffusers' rules recomputed "
                        "independently in the script",
        "orders_meaning": "orders[i]: solver order of the step from timesteps[i] (sigmas[i]) to "
                          "sigmas[i+1]. UniPC: predictor order; corrector[i]: whether UniC ran at "
                          "step i (correcting the sample at sigmas[i] produced by step i-1, using "
                          "the model evaluated at timesteps[i] on the uncorrected sample); "
                          "corrector_orders[i]: its order p (= orders[i-1]).",
        "sigmas_meaning": "diffusers' VE-style sigmas sqrt((1-ac)/ac) as float32, N+1 values; "
                          "alpha = 1/sqrt(1+sigma^2), sigma_vp = sigma*alpha; last 0 (zero) or "
                          "sigma at training timestep 0 (sigma_min)",
        "non_finite_config_values": "written as strings 'inf' / '-inf' (e.g. lambda_min_clipped)",
        "nan_patched_final_step": "true only for UniPC bh1 with final_sigmas_type zero: diffusers "
                                  "returns NaN at the last step; the file holds the sigma->0 limit "
                                  "(the step's data prediction). See README.",
        "dpm3_d2_check": check_dpm3_d2(),
        "unipc_b1_that_rho_0_5_replaces": unipc_rho_facts(),
        "cases": cases_meta,
    }
    (OUT / "cases.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")

    req = next(c for c in cases_meta if c["name"] == "dpmpp_2m_linspace_n5")
    print("\nself-check dpmpp_2m_linspace_n5 (numpy f64, no diffusers):")
    print(f"  max rel diff, own f64 schedule          : "
          f"{req['numpy_f64_reference']['rel_diff_own_schedule']:.3e}")
    print(f"  max rel diff, diffusers' alphas_cumprod : "
          f"{req['numpy_f64_reference']['rel_diff_diffusers_alphas_cumprod']:.3e}")
    d2 = doc["dpm3_d2_check"]
    print("\nDPM-Solver 3M D2 check: D2 / (h^2 F''/2) =",
          ", ".join(f"{v:.4f}" for v in d2["D2_over_h2F2"]))
    print("  local error order  diffusers 3M:", ", ".join(f"{v:.2f}" for v in d2["local_order_diffusers"]))
    print("  local error order  with 2*D2   :", ", ".join(f"{v:.2f}" for v in d2["local_order_2xD2"]))
    print("  local error order  2M midpoint :", ", ".join(f"{v:.2f}" for v in d2["local_order_2M"]))
    print(f"\nwrote {len(cases_meta)} cases to {OUT}")


if __name__ == "__main__":
    main()

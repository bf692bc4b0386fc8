#!/usr/bin/env python3
"""Small committed ONNX fixtures for s3's ONNX Runtime tests (regenerates tests/fixtures/).

What it writes (overwriting):

* ``tests/fixtures/onnx/mixture/``
    - ``mixture.json``  a 3-component isotropic Gaussian mixture in 4 dims, in s3's dataset
                        format (``--dataset`` file), on the ``vp-linear`` schedule;
    - ``model.onnx``    an ONNX graph (opset 17, built with onnx.helper, float32) computing the
                        EXACT noise prediction eps(x, t) of that mixture under vp-linear;
                        inputs ``sample`` f32 [B, 4] and ``time`` f32 [B] (continuous t), output
                        ``eps`` f32 [B, 4];
    - ``model.json``    its s3-onnx-model config (eps, vp-linear, time = 1*t + 0);
    - ``expected.json`` (x, t, eps) triples computed independently in float64 numpy.
* ``tests/fixtures/onnx/mixture-eps/``, ``mixture-x0/``, ``mixture-v/`` (vp-linear) and
  ``mixture-flow/`` (the flow schedule alpha = 1 - t, sigma = t, time input 1000 t): the same
  mixture with graphs that output eps, x0 = E[x0|x], v = alpha eps - sigma x0 and the
  flow-matching velocity eps - x0; each with a copy of ``mixture.json``, a ``model.json`` that
  names it as ``data``, and ``expected.json`` (x, t, out, eps, x0) in float64 numpy.
* ``tests/fixtures/onnx/latent-cfg/``: a tiny conditional latent eps model (sample [B, 4, 4, 4],
  condition ``cond`` [B, 3, 8]), a decoder graph (latent -> image [B, 3, 8, 8]),
  ``conditioning.npy`` (4 conditions + a null row) and ``model.json`` with ``decoder`` and
  ``conditioning`` (guidance 3); ``expected_cfg.json`` holds guided outputs and decoder images
  from Python onnxruntime.
* ``tests/fixtures/models/cifar10/`` (the models-dir layout of the ``cifar10`` preset, with tiny
  random-weight networks; skipped with ``--mixture-only``)
    - ``model.onnx`` + ``model.json``          ``export.py ddpm-cifar10 --tiny --random-weights``
    - ``inception.onnx`` + ``inception.json``  ``export.py inception --tiny --random-weights``
    - ``train_stats.npz``                      ``export.py cifar10-stats --random 512``
* ``tests/fixtures/models/latent-tiny/`` and ``flow-tiny/`` (skipped with ``--mixture-only``):
  ``export.py sd`` / ``export.py flow --random-weights --tiny --guidance-scale 2.0`` (tiny
  UNet2DConditionModel / SD3Transformer2DModel, VAE decoder, random prompt embeddings) with a
  tiny 16x16 feature extractor and statistics of 512 random images (``fid`` in model.json)

Requires:
* the mixture part: numpy, onnx, onnxruntime (tested with numpy 2.4.6, onnx 1.23.2,
  onnxruntime 1.31.1);
* the cifar10 part: also tools/onnx_export's requirements (torch, diffusers, pytorch-fid).

Run from anywhere (paths are resolved against the repository root)::

    python3 -m venv /work/venv-export
    /work/venv-export/bin/pip install -r tools/onnx_export/requirements.txt
    /work/venv-export/bin/python scripts/make_onnx_fixtures.py              # everything
    python3 scripts/make_onnx_fixtures.py --mixture-only                    # numpy+onnx+ort only

Deterministic: fixed seeds everywhere, so a rerun reproduces the same numbers (the .onnx bytes
may differ between onnx/torch versions).

The mixture's eps, for x0 ~ sum_k w_k N(m_k, s_k^2 I) in D dims, x = alpha x0 + sigma z:
    v_k = alpha^2 s_k^2 + sigma^2,   r_k ∝ w_k N(x; alpha m_k, v_k I)   (softmax over k)
    E[x0|x] = sum_k r_k (m_k + (alpha s_k^2 / v_k)(x - alpha m_k))
    eps = (x - alpha E[x0|x]) / sigma
The numpy reference evaluates exactly this. The graph uses the algebraically equal
    eps = sum_k r_k (sigma / v_k) (x - alpha m_k)
(since 1 - alpha^2 s_k^2 / v_k = sigma^2 / v_k), which avoids the cancellation in
x - alpha E[x0|x] at small t, and sigma^2 = -expm1(2 log alpha) through a series at small t.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
MIXTURE_DIR = Path("tests/fixtures/onnx/mixture")
ONNX_FIXTURES = Path("tests/fixtures/onnx")
LATENT_CFG_DIR = Path("tests/fixtures/onnx/latent-cfg")
CIFAR10_DIR = Path("tests/fixtures/models/cifar10")
LATENT_TINY_DIR = Path("tests/fixtures/models/latent-tiny")
FLOW_TINY_DIR = Path("tests/fixtures/models/flow-tiny")
EXPORT_TOOL = Path("tools/onnx_export/export.py")

OPSET = 17
SEED = 20261122

# ScoreSDE's linear VP schedule: log alpha(t) = -(b1 - b0) t^2 / 4 - b0 t / 2, t in [1e-3, 1].
BETA_0 = 0.1
BETA_1 = 20.0

MIXTURE = {
    "name": "mixture-4d",
    "shape": [4],
    "weights": [0.5, 0.3, 0.2],
    "means": [
        [1.0, -0.5, 0.75, 0.0],
        [-1.0, 1.0, -0.25, 0.5],
        [0.25, 0.5, -1.0, -1.25],
    ],
    "stds": [0.25, 0.1, 0.5],
    "noise_schedule": "vp-linear",
}

# |2 log alpha| below which sigma^2 = -expm1(2 log alpha) is taken from its Taylor series
# (7 terms: truncation < 0.25^7/40320 relative); above it 1 - exp(.) loses < 3e-7 relative.
EXPM1_SERIES_BELOW = 0.25
EXPM1_TERMS = 7

# Times of the expected cases: both ends of [1e-3, 1] and points in between.
EXPECTED_TIMES = [1e-3, 2e-3, 1e-2, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999, 1.0]

# The flow schedule (alpha = 1 - t, sigma = t): the graph's time input is FLOW_TIME_SCALE * t,
# like diffusers' flow-matching timesteps (sigma * 1000). The fixtures cover t in [1e-3, 0.999];
# every time below has an integer 1000 t, so the float32 time input is exact.
FLOW_TIME_SCALE = 1000.0
FLOW_EXPECTED_TIMES = [1e-3, 2e-3, 1e-2, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999]
FLOW_VERIFY_TIMES = [1e-3, 2e-3, 3e-3, 1e-2, 0.03, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97, 0.99, 0.999]


# --------------------------------------------------------------------------------------------
# The mixture's exact eps in float64 numpy (the independent reference)
# --------------------------------------------------------------------------------------------


def log_alpha(t: np.ndarray) -> np.ndarray:
    """log alpha(t) of ScoreSDE's vp-linear schedule."""
    return -(BETA_1 - BETA_0) * t * t / 4.0 - BETA_0 * t / 2.0


def alpha_sigma(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, sigma) in float64, sigma = sqrt(1 - alpha^2) via expm1."""
    la = log_alpha(np.asarray(t, dtype=np.float64))
    return np.exp(la), np.sqrt(-np.expm1(2.0 * la))


def mixture_eps_reference(x: np.ndarray, t: np.ndarray, mix: dict) -> np.ndarray:
    """Exact eps(x, t) of the mixture, float64, by the textbook formula (posterior mean of x0).

    x: [B, D], t: [B]. Responsibilities via log-sum-exp.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(mix["weights"], dtype=np.float64)
    m = np.asarray(mix["means"], dtype=np.float64)  # [K, D]
    s2 = np.asarray(mix["stds"], dtype=np.float64) ** 2  # [K]
    d = x.shape[1]
    alpha, sigma = alpha_sigma(t)
    a = alpha[:, None]  # [B, 1]
    v = a * a * s2[None, :] + (sigma * sigma)[:, None]  # [B, K]
    diff = x[:, None, :] - a[:, :, None] * m[None, :, :]  # [B, K, D]
    logp = (np.log(w)[None, :] - 0.5 * d * np.log(2 * np.pi * v)
            - 0.5 * np.sum(diff * diff, axis=2) / v)
    logp -= logp.max(axis=1, keepdims=True)
    r = np.exp(logp)
    r /= r.sum(axis=1, keepdims=True)
    post_mean_k = m[None, :, :] + (a * s2[None, :] / v)[:, :, None] * diff  # [B, K, D]
    x0_hat = np.sum(r[:, :, None] * post_mean_k, axis=1)  # [B, D]
    return (x - a * x0_hat) / sigma[:, None]


# --------------------------------------------------------------------------------------------
# The ONNX graph
# --------------------------------------------------------------------------------------------


class GraphBuilder:
    """A small helper around onnx.helper: named float32 constants and nodes with fresh names."""

    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value, dtype=np.float32) -> str:
        """A constant (computed in float64 by the caller, cast to `dtype` here)."""
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs) -> str:
        """Appends a node; returns its (single) output's name."""
        self._count += 1
        out = name or f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self._count}_{op_type}", **attrs))
        return out


def neg_expm1(g: GraphBuilder, y: str) -> str:
    """-expm1(y) for y <= 0 in float32 without cancellation near 0.

    Where |y| < EXPM1_SERIES_BELOW: -y * sum_{n=0}^{EXPM1_TERMS-1} y^n / (n+1)! (Horner);
    elsewhere 1 - exp(y).
    """
    coefs = [1.0 / np.prod(np.arange(1, n + 2, dtype=np.float64)) for n in range(EXPM1_TERMS)]
    p = g.const("expm1_c_last", coefs[-1])
    for n in range(EXPM1_TERMS - 2, -1, -1):
        p = g.op("Add", [g.op("Mul", [p, y]), g.const(f"expm1_c{n}", coefs[n])])
    series = g.op("Mul", [g.op("Neg", [y]), p], name="neg_expm1_series")
    direct = g.op("Sub", [g.const("one", 1.0), g.op("Exp", [y])], name="neg_expm1_direct")
    small = g.op("Less", [g.const("neg_series_bound", -EXPM1_SERIES_BELOW), y], name="use_series")
    return g.op("Where", [small, series, direct], name="sigma2")


def mixture_eps_graph(mix: dict) -> onnx.ModelProto:
    """The exact eps(x, t) of an isotropic Gaussian mixture under vp-linear, as an ONNX graph.

    Inputs ``sample`` f32 [B, D], ``time`` f32 [B]; output ``eps`` f32 [B, D]. Constants are
    computed in float64 and cast to float32; the arithmetic is float32.
    """
    return mixture_graph(mix, "eps", "vp-linear")


# What each graph outputs, as sum_k r_k (P_k diff_k) + Q (sum_k r_k m_k) with diff_k = x - alpha m_k
# and v_k = alpha^2 s_k^2 + sigma^2 (all exact rewrites of the textbook formulas, chosen so that
# nothing is divided by a vanishing alpha or sigma and no large terms cancel):
#   eps      = sum_k r_k (sigma / v_k) diff_k
#   x0       = sum_k r_k (alpha s_k^2 / v_k) diff_k + sum_k r_k m_k
#   v        = alpha eps - sigma x0 = sum_k r_k (sigma alpha (1 - s_k^2) / v_k) diff_k - sigma sum_k r_k m_k
#   velocity = eps - x0             = sum_k r_k ((sigma - alpha s_k^2) / v_k) diff_k - sum_k r_k m_k
OUTPUT_KINDS = ("eps", "x0", "v", "velocity")


def mixture_graph(mix: dict, kind: str, schedule: str) -> onnx.ModelProto:
    """The exact `kind` output (eps, x0, v, velocity) of an isotropic Gaussian mixture.

    `schedule` is ``vp-linear`` (time input = t) or ``flow`` (alpha = 1 - t, sigma = t; time
    input = 1000 t, divided by 1000 inside the graph). Inputs ``sample`` f32 [B, D], ``time``
    f32 [B]; output named `kind`, f32 [B, D]. Constants are computed in float64 and cast to
    float32; the arithmetic is float32. (eps under vp-linear is the graph of ``onnx/mixture/``,
    node for node.)
    """
    if kind not in OUTPUT_KINDS:
        raise ValueError(kind)
    w = np.asarray(mix["weights"], dtype=np.float64)
    m = np.asarray(mix["means"], dtype=np.float64)
    s = np.asarray(mix["stds"], dtype=np.float64)
    k, d = m.shape
    g = GraphBuilder()

    # alpha, sigma^2, sigma: [B, 1]
    if schedule == "vp-linear":
        t = g.op("Unsqueeze", ["time", g.const("axis1", [1], np.int64)], name="t")
        la = g.op("Add", [g.op("Mul", [g.op("Mul", [t, t]), g.const("c_t2", -(BETA_1 - BETA_0) / 4.0)]),
                          g.op("Mul", [t, g.const("c_t1", -BETA_0 / 2.0)])], name="log_alpha")
        alpha = g.op("Exp", [la], name="alpha")
        two_la = g.op("Mul", [la, g.const("two", 2.0)], name="two_log_alpha")
        alpha2 = g.op("Exp", [two_la], name="alpha2")
        sigma2 = neg_expm1(g, two_la)
        sigma = g.op("Sqrt", [sigma2], name="sigma")
    elif schedule == "flow":
        # The time input is 1000 t (diffusers' flow-matching timestep); t = time / 1000.
        t1000 = g.op("Unsqueeze", ["time", g.const("axis1", [1], np.int64)], name="t1000")
        t = g.op("Div", [t1000, g.const("time_scale", FLOW_TIME_SCALE)], name="t")
        alpha = g.op("Sub", [g.const("one_a", 1.0), t], name="alpha")
        sigma = g.op("Identity", [t], name="sigma")
        alpha2 = g.op("Mul", [alpha, alpha], name="alpha2")
        sigma2 = g.op("Mul", [t, t], name="sigma2")
    else:
        raise ValueError(schedule)

    # v_k = alpha^2 s_k^2 + sigma^2: [B, K] (named "var" where "v" is the output's name)
    v = g.op("Add", [g.op("Mul", [alpha2, g.const("s2", (s * s)[None, :])]), sigma2],
             name="var" if kind == "v" else "v")
    # diff_k = x - alpha m_k: [B, K, D]
    x3 = g.op("Unsqueeze", ["sample", g.const("axis1b", [1], np.int64)], name="x3")
    a3 = g.op("Unsqueeze", [alpha, g.const("axis2", [2], np.int64)], name="alpha3")
    diff = g.op("Sub", [x3, g.op("Mul", [a3, g.const("means", m[None, :, :])])], name="diff")
    # log r_k up to a constant: log w_k - D/2 log v_k - |diff_k|^2 / (2 v_k)
    sq = g.op("ReduceSum", [g.op("Mul", [diff, diff]), g.const("axis2b", [2], np.int64)],
              name="sq", keepdims=0)
    if kind == "eps":
        # (onnx/mixture/'s graph, kept node for node)
        logr = g.op("Sub", [
            g.op("Sub", [g.const("log_w", np.log(w)[None, :]),
                         g.op("Mul", [g.const("half_d", d / 2.0), g.op("Log", [v])])]),
            g.op("Div", [g.op("Mul", [g.const("half", 0.5), sq]), v]),
        ], name="log_r")
    else:
        # Where alpha < 1/2 the |diff_k|^2 are large (|x|^2 ~ D at least) and nearly equal,
        # and their float32 rounding (~|x|^2 * 1e-7) would move the responsibilities, and
        # with them x0 = sum_k r_k (...): there the k-independent |x|^2 / (2 v_0) is dropped
        # exactly, using |diff_k|^2 / v_k - |x|^2 / v_0
        #   = (|x|^2 alpha^2 (s_0^2 - s_k^2) / v_0 + alpha^2 |m_k|^2 - 2 alpha x.m_k) / v_k.
        # Near the data (alpha >= 1/2) |diff_k|^2 / v_k itself is the accurate form.
        xx = g.op("ReduceSum", [g.op("Mul", ["sample", "sample"]), g.const("axis1d", [1], np.int64)],
                  name="xx", keepdims=1)  # [B, 1]
        xm = g.op("MatMul", ["sample", g.const("means_t", m.T)], name="x_dot_m")  # [B, K]
        v0 = g.op("Add", [g.op("Mul", [alpha2, g.const("s0_2", s[0] ** 2)]), sigma2], name="v0")
        far = g.op("Div", [
            g.op("Sub", [
                g.op("Add", [
                    g.op("Div", [g.op("Mul", [g.op("Mul", [xx, alpha2]),
                                              g.const("ds2", (s[0] ** 2 - s * s)[None, :])]), v0]),
                    g.op("Mul", [alpha2, g.const("m2", np.sum(m * m, axis=1)[None, :])])]),
                g.op("Mul", [g.op("Mul", [alpha, g.const("two_b", 2.0)]), xm])]),
            v], name="sq_over_v_far")
        near = g.op("Div", [sq, v], name="sq_over_v_near")
        use_far = g.op("Less", [alpha, g.const("far_below", 0.5)], name="use_far")
        logr = g.op("Sub", [
            g.op("Sub", [g.const("log_w", np.log(w)[None, :]),
                         g.op("Mul", [g.const("half_d", d / 2.0), g.op("Log", [v])])]),
            g.op("Mul", [g.const("half", 0.5), g.op("Where", [use_far, far, near])]),
        ], name="log_r")
    r = g.op("Softmax", [logr], name="r", axis=1)
    if kind == "eps":
        # eps = sum_k r_k (sigma / v_k) diff_k
        c = g.op("Div", [g.op("Mul", [r, sigma]), v], name="coef")
    elif kind == "x0":
        c = g.op("Div", [g.op("Mul", [r, g.op("Mul", [alpha, g.const("s2_x0", (s * s)[None, :])])]), v],
                 name="coef")
    elif kind == "v":
        sa = g.op("Mul", [sigma, alpha], name="sigma_alpha")
        c = g.op("Div", [g.op("Mul", [r, g.op("Mul", [sa, g.const("one_minus_s2", (1.0 - s * s)[None, :])])]), v],
                 name="coef")
    else:  # velocity
        p = g.op("Sub", [sigma, g.op("Mul", [alpha, g.const("s2_vel", (s * s)[None, :])])], name="sigma_minus_alpha_s2")
        c = g.op("Div", [g.op("Mul", [r, p]), v], name="coef")
    c3 = g.op("Unsqueeze", [c, g.const("axis2c", [2], np.int64)], name="coef3")
    if kind == "eps":
        g.op("ReduceSum", [g.op("Mul", [c3, diff]), g.const("axis1c", [1], np.int64)], name="eps",
             keepdims=0)
    else:
        lin = g.op("ReduceSum", [g.op("Mul", [c3, diff]), g.const("axis1c", [1], np.int64)],
                   name="lin", keepdims=0)
        rm = g.op("MatMul", [r, g.const("means2", m)], name="r_means")  # [B, D]
        if kind == "x0":
            g.op("Add", [lin, rm], name=kind)
        elif kind == "v":
            g.op("Sub", [lin, g.op("Mul", [sigma, rm])], name=kind)
        else:
            g.op("Sub", [lin, rm], name=kind)

    graph = helper.make_graph(
        g.nodes, f"mixture_exact_{kind}",
        inputs=[helper.make_tensor_value_info("sample", TensorProto.FLOAT, ["batch", d]),
                helper.make_tensor_value_info("time", TensorProto.FLOAT, ["batch"])],
        outputs=[helper.make_tensor_value_info(kind, TensorProto.FLOAT, ["batch", d])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="s3 scripts/make_onnx_fixtures.py")
    model.ir_version = 8  # readable by every ONNX Runtime that supports opset 17
    if kind == "eps" and schedule == "vp-linear":
        model.doc_string = (f"Exact noise prediction eps(x, t) of a {k}-component isotropic Gaussian "
                            f"mixture in {d} dims under ScoreSDE's vp-linear schedule "
                            f"(beta0={BETA_0}, beta1={BETA_1}); see mixture.json beside it.")
    else:
        what = {"eps": "noise prediction eps", "x0": "x0 prediction E[x0|x]",
                "v": "v prediction alpha*eps - sigma*x0",
                "velocity": "flow-matching velocity eps - x0"}[kind]
        sched = (f"ScoreSDE's vp-linear schedule (beta0={BETA_0}, beta1={BETA_1}); time input t"
                 if schedule == "vp-linear" else
                 "the flow schedule alpha = 1 - t, sigma = t; time input 1000 t")
        model.doc_string = (f"Exact {what} of a {k}-component isotropic Gaussian mixture in {d} "
                            f"dims under {sched}; see mixture.json beside it.")
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------------------------
# Mixture fixtures
# --------------------------------------------------------------------------------------------


def test_points(mix: dict, times: list[float], per_time: int, rng: np.random.Generator,
                schedule=None):
    """(x, t) pairs: per time, draws from the noised mixture plus one far-out point.

    Returned as float32 (what the graph receives). `schedule` maps t to (alpha, sigma)
    (default: vp-linear's `alpha_sigma`).
    """
    schedule = schedule or alpha_sigma
    w = np.asarray(mix["weights"])
    m = np.asarray(mix["means"])
    s = np.asarray(mix["stds"])
    xs, ts = [], []
    for t in times:
        alpha, sigma = schedule(np.array([t]))
        for j in range(per_time):
            if j == per_time - 1:
                x = 3.0 * rng.standard_normal(m.shape[1])  # off the data
            else:
                k = rng.choice(len(w), p=w)
                x0 = m[k] + s[k] * rng.standard_normal(m.shape[1])
                x = alpha[0] * x0 + sigma[0] * rng.standard_normal(m.shape[1])
            xs.append(x)
            ts.append(t)
    return np.asarray(xs, dtype=np.float32), np.asarray(ts, dtype=np.float32)


def normwise_rel(ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Per row: max |ref - got| / max |ref|."""
    return np.max(np.abs(ref - got), axis=1) / np.max(np.abs(ref), axis=1)


def verify_mixture_graph(path: Path, mix: dict) -> None:
    """Runs the graph in ONNX Runtime against the float64 reference; exits non-zero if off."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(SEED + 1)
    times = [1e-3, 1.5e-3, 3e-3, 1e-2, 0.03, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97, 0.999, 1.0]
    x, t = test_points(mix, times, per_time=20, rng=rng)
    got = sess.run(["eps"], {"sample": x, "time": t})[0]
    ref = mixture_eps_reference(x.astype(np.float64), t.astype(np.float64), mix)
    rel = normwise_rel(ref, got)
    worst = int(np.argmax(rel))
    print(f"mixture graph vs float64 numpy on {len(x)} points (t from {t.min():g} to {t.max():g}): "
          f"max rel error {rel.max():.3e} (at t={t[worst]:g}), median {np.median(rel):.3e}, "
          f"max abs error {np.max(np.abs(ref - got)):.3e}")
    for lo, hi in [(0, 0.01), (0.01, 0.5), (0.5, 1.01)]:
        sel = (t >= lo) & (t < hi)
        print(f"  t in [{lo:g}, {min(hi, 1):g}{')' if hi < 1 else ']'}: max rel error {rel[sel].max():.3e}")
    one = sess.run(["eps"], {"sample": x[:1], "time": t[:1]})[0]
    if not np.array_equal(one, got[:1]) and normwise_rel(got[:1], one).max() > 1e-6:
        sys.exit("error: the graph's batch-of-1 output differs from its batched output")
    if rel.max() > 1e-5:
        sys.exit(f"error: mixture graph differs from the float64 reference by {rel.max():.3e}")


def expected_cases(mix: dict) -> dict:
    """A few (x, t, eps) triples in float64 for the Rust tests (x and t float32-representable)."""
    rng = np.random.default_rng(SEED + 2)
    x, t = test_points(mix, EXPECTED_TIMES, per_time=2, rng=rng)
    x64, t64 = x.astype(np.float64), t.astype(np.float64)
    eps = mixture_eps_reference(x64, t64, mix)
    alpha, sigma = alpha_sigma(t64)
    cases = [{"t": float(t64[i]), "alpha": float(alpha[i]), "sigma": float(sigma[i]),
              "x": [float(v) for v in x64[i]], "eps": [float(v) for v in eps[i]]}
             for i in range(len(x))]
    return {
        "description": "Exact eps(x, t) of mixture.json under vp-linear (beta0=0.1, beta1=20), "
                       "computed in float64 numpy by scripts/make_onnx_fixtures.py as "
                       "(x - alpha E[x0|x]) / sigma. x and t are exactly representable in float32 "
                       "(feed them to model.onnx as float32). alpha = exp(-(b1-b0) t^2/4 - b0 t/2), "
                       "sigma = sqrt(1 - alpha^2). Per time: one draw from the noised mixture and "
                       "one far-out point (3 * N(0, I)).",
        "dataset": "mixture.json",
        "noise_schedule": "vp-linear",
        "cases": cases,
    }


def mixture_model_config() -> dict:
    """The s3-onnx-model config of the mixture graph."""
    return {
        "format": "s3-onnx-model",
        "version": 1,
        "name": "mixture-4d-exact-eps",
        "onnx": "model.onnx",
        "inputs": {"sample": "sample", "time": "time"},
        "output": "eps",
        "sample_shape": [4],
        "parameterization": "eps",
        "noise_schedule": {"name": "vp-linear"},
        "time_input": {"kind": "affine", "scale": 1.0, "offset": 0.0, "dtype": "float32"},
        "class_labels": None,
        "source": "Exact noise prediction of the Gaussian mixture in mixture.json under vp-linear, "
                  "an onnx.helper graph (opset 17, float32) written by "
                  "`python3 scripts/make_onnx_fixtures.py`; no trained weights",
    }


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _same_up_to_ulps(a, b, rel: float) -> bool:
    """True when two JSON values have the same structure and strings, and numbers within `rel`."""
    if isinstance(a, dict):
        return (isinstance(b, dict) and a.keys() == b.keys()
                and all(_same_up_to_ulps(a[k], b[k], rel) for k in a))
    if isinstance(a, list):
        return (isinstance(b, list) and len(a) == len(b)
                and all(_same_up_to_ulps(x, y, rel) for x, y in zip(a, b)))
    if isinstance(a, (int, float)) and not isinstance(a, bool) \
            and isinstance(b, (int, float)) and not isinstance(b, bool):
        return abs(a - b) <= rel * max(abs(a), abs(b))
    return a == b


def compact_json(obj, indent: int = 0) -> str:
    """JSON with objects indented and arrays of numbers on one line per outermost element."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad}  {json.dumps(k)}: {compact_json(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and all(isinstance(v, dict) for v in obj):
        rows = [pad + "  " + compact_json(v, indent + 1) for v in obj]
        return "[\n" + ",\n".join(rows) + "\n" + pad + "]"
    if isinstance(obj, list) and obj and all(isinstance(v, list) for v in obj):
        rows = [pad + "  " + json.dumps(v, separators=(", ", ": ")) for v in obj]
        return "[\n" + ",\n".join(rows) + "\n" + pad + "]"
    return json.dumps(obj, separators=(", ", ": "))


def write_expected_json(path: Path, obj: dict, compact: bool = False) -> None:
    """Writes reference values, but keeps an existing file whose numbers agree to 1e-14.

    The float64 references go through exp/log, whose last bit differs between C libraries;
    this keeps a rerun on another machine from rewriting committed files over such bits.
    `compact`: arrays of numbers one line per outermost element (big tensors).
    """
    if path.is_file():
        try:
            if _same_up_to_ulps(json.loads(path.read_text()), json.loads(json.dumps(obj)), 1e-14):
                print(f"{path.name}: unchanged (numbers agree with the committed file to 1e-14)")
                return
        except ValueError:
            pass
    if compact:
        path.write_text(compact_json(obj) + "\n")
    else:
        write_json(path, obj)


def f32_list(a: np.ndarray):
    """A float32 array as nested lists of the shortest decimals that round-trip to float32."""
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == 0:
        return float(np.format_float_scientific(a[()], unique=True, trim="-"))
    return [f32_list(v) for v in a]


def make_mixture(out: Path) -> None:
    """Writes mixture.json, model.onnx, model.json, expected.json and checks the graph."""
    out.mkdir(parents=True, exist_ok=True)
    dataset = {k: MIXTURE[k] for k in ("name", "shape", "weights", "means", "stds", "noise_schedule")}
    write_json(out / "mixture.json", dataset)
    model = mixture_eps_graph(MIXTURE)
    onnx.save(model, str(out / "model.onnx"))
    write_json(out / "model.json", mixture_model_config())
    verify_mixture_graph(out / "model.onnx", MIXTURE)
    expected = expected_cases(MIXTURE)
    write_expected_json(out / "expected.json", expected)
    # The committed expected cases through the graph too (what the Rust test will do).
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.asarray([c["x"] for c in expected["cases"]], dtype=np.float32)
    t = np.asarray([c["t"] for c in expected["cases"]], dtype=np.float32)
    eps = np.asarray([c["eps"] for c in expected["cases"]])
    got = sess.run(["eps"], {"sample": x, "time": t})[0]
    print(f"expected.json: {len(x)} cases; graph vs expected max rel error "
          f"{normwise_rel(eps, got).max():.3e}")
    print(f"wrote {out}/: " + ", ".join(f"{p.name} ({p.stat().st_size:,} B)" for p in sorted(out.iterdir())))


# --------------------------------------------------------------------------------------------
# The same mixture with other outputs (x0, v, eps with `data`) and on the flow schedule
# --------------------------------------------------------------------------------------------


def flow_alpha_sigma(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, sigma) = (1 - t, t) of the flow (rectified-flow / flow-matching) schedule."""
    t = np.asarray(t, dtype=np.float64)
    return 1.0 - t, t.copy()


def mixture_posterior_reference(x: np.ndarray, alpha: np.ndarray, sigma: np.ndarray,
                                mix: dict) -> tuple[np.ndarray, np.ndarray]:
    """(eps, x0) = (E[eps|x], E[x0|x]) of the mixture at x = alpha x0 + sigma eps, float64.

    The textbook formulas, as in `mixture_eps_reference` but for any (alpha, sigma):
    x0 is the responsibility-weighted posterior mean, eps = (x - alpha x0) / sigma.
    x: [B, D], alpha, sigma: [B].
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(mix["weights"], dtype=np.float64)
    m = np.asarray(mix["means"], dtype=np.float64)
    s2 = np.asarray(mix["stds"], dtype=np.float64) ** 2
    d = x.shape[1]
    a = np.asarray(alpha, dtype=np.float64)[:, None]
    sg = np.asarray(sigma, dtype=np.float64)[:, None]
    v = a * a * s2[None, :] + sg * sg  # [B, K]
    diff = x[:, None, :] - a[:, :, None] * m[None, :, :]
    logp = (np.log(w)[None, :] - 0.5 * d * np.log(2 * np.pi * v)
            - 0.5 * np.sum(diff * diff, axis=2) / v)
    logp -= logp.max(axis=1, keepdims=True)
    r = np.exp(logp)
    r /= r.sum(axis=1, keepdims=True)
    post_mean_k = m[None, :, :] + (a * s2[None, :] / v)[:, :, None] * diff
    x0_hat = np.sum(r[:, :, None] * post_mean_k, axis=1)
    return (x - a * x0_hat) / sg, x0_hat


def output_reference(kind: str, eps: np.ndarray, x0: np.ndarray, alpha: np.ndarray,
                     sigma: np.ndarray) -> np.ndarray:
    """The network output `kind` from (eps, x0): eps, x0, v = alpha eps - sigma x0, eps - x0."""
    a, sg = alpha[:, None], sigma[:, None]
    return {"eps": eps, "x0": x0, "v": a * eps - sg * x0, "velocity": eps - x0}[kind]


# name -> (output kind, schedule)
MIXTURE_VARIANTS = {
    "mixture-eps": ("eps", "vp-linear"),
    "mixture-x0": ("x0", "vp-linear"),
    "mixture-v": ("v", "vp-linear"),
    "mixture-flow": ("velocity", "flow"),
}


def variant_schedule(schedule: str):
    """(alpha_sigma function, time-input scale) of a variant's schedule."""
    return (alpha_sigma, 1.0) if schedule == "vp-linear" else (flow_alpha_sigma, FLOW_TIME_SCALE)


def variant_points(mix: dict, schedule: str, times: list[float], per_time: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x f32 [N, D], time input f32 [N], t float64 [N]) on `schedule`.

    vp-linear: time input = t (float32). flow: time input = 1000 t in float32 (an integer for
    every time used here) and t = time input / 1000 in float64, the exact t of that input.
    """
    sched, scale = variant_schedule(schedule)
    x, t32 = test_points(mix, times, per_time, rng, schedule=sched)
    if scale == 1.0:
        return x, t32, t32.astype(np.float64)
    time_in = (np.asarray(times, dtype=np.float64).repeat(per_time) * scale).astype(np.float32)
    return x, time_in, time_in.astype(np.float64) / scale


def verify_variant(path: Path, mix: dict, kind: str, schedule: str) -> dict:
    """ONNX Runtime vs the float64 reference on 300 points; exits non-zero if off by > 1e-5."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    times = ([1e-3, 1.5e-3, 3e-3, 1e-2, 0.03, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97, 0.999, 1.0]
             if schedule == "vp-linear" else FLOW_VERIFY_TIMES)
    x, time_in, t = variant_points(mix, schedule, times, 20, np.random.default_rng(SEED + 1))
    got = sess.run([kind], {"sample": x, "time": time_in})[0]
    alpha, sigma = variant_schedule(schedule)[0](t)
    eps, x0 = mixture_posterior_reference(x, alpha, sigma, mix)
    ref = output_reference(kind, eps, x0, alpha, sigma)
    rel = normwise_rel(ref, got)
    worst = int(np.argmax(rel))
    # How much the exact function itself moves when x moves by 1 float32 ulp per coordinate.
    signs = np.random.default_rng(SEED + 5).choice([-1.0, 1.0], size=x.shape)
    xn = x.astype(np.float64) * (1.0 + 2.0 ** -23 * signs)
    en, x0n = mixture_posterior_reference(xn, alpha, sigma, mix)
    sens = normwise_rel(ref, output_reference(kind, en, x0n, alpha, sigma))
    print(f"  {kind} graph vs float64 numpy on {len(x)} points (t from {t.min():g} to {t.max():g}): "
          f"max rel error {rel.max():.3e} (at t={t[worst]:g}; there the exact function moves by "
          f"{sens[worst]:.3e} when x moves by 1 float32 ulp), median {np.median(rel):.3e}, "
          f"max abs error {np.max(np.abs(ref - got)):.3e}")
    bands = {}
    for lo, hi in [(0, 0.01), (0.01, 0.5), (0.5, 1.01)]:
        sel = (t >= lo) & (t < hi)
        bands[f"[{lo:g}, {min(hi, 1):g}]"] = float(rel[sel].max())
        print(f"    t in [{lo:g}, {min(hi, 1):g}{')' if hi < 1 else ']'}: max rel error {rel[sel].max():.3e}")
    one = sess.run([kind], {"sample": x[:1], "time": time_in[:1]})[0]
    if normwise_rel(got[:1].astype(np.float64), one).max() > 1e-6:
        sys.exit(f"error: the {kind} graph's batch-of-1 output differs from its batched output")
    if rel.max() > 1e-5:
        sys.exit(f"error: {kind} graph differs from the float64 reference by {rel.max():.3e}")
    # Points between components (mixed responsibilities) at small t: the hardest case.
    m = np.asarray(mix["means"])
    rng = np.random.default_rng(SEED + 4)
    lam = rng.uniform(0.3, 0.7, size=(60, 1))
    pairs = rng.integers(0, len(m), size=(60, 2))
    xb = (lam * m[pairs[:, 0]] + (1 - lam) * m[pairs[:, 1]]).astype(np.float32)
    tb_list = [1e-3, 2e-3, 1e-2] * 20
    if schedule == "vp-linear":
        tin = np.asarray(tb_list, dtype=np.float32)
        tb = tin.astype(np.float64)
    else:
        tin = (np.asarray(tb_list) * FLOW_TIME_SCALE).astype(np.float32)
        tb = tin.astype(np.float64) / FLOW_TIME_SCALE
    ab, sb = variant_schedule(schedule)[0](tb)

    def ref_at(xx):
        eb, x0b = mixture_posterior_reference(xx, ab, sb, mix)
        return output_reference(kind, eb, x0b, ab, sb)

    refb = ref_at(xb.astype(np.float64))
    gotb = sess.run([kind], {"sample": xb, "time": tin})[0]
    relb = normwise_rel(refb, gotb).max()
    # The function's own float32 sensitivity there: the reference at x moved by 1 float32 ulp
    # per coordinate (random signs).
    nudged = xb.astype(np.float64) * (1.0 + np.float32(2.0 ** -23) * rng.choice([-1.0, 1.0], size=xb.shape))
    floor = normwise_rel(refb, ref_at(nudged)).max()
    print(f"    points between components (x = mixes of 2 means) at t <= 1e-2: max rel error "
          f"{relb:.3e} (the exact function moves by {floor:.3e} when x moves by 1 float32 ulp)")
    return {"max": float(rel.max()), "median": float(np.median(rel)), "between": float(relb),
            "between_ulp_sensitivity": float(floor), **bands}


def variant_expected(mix: dict, kind: str, schedule: str) -> dict:
    """~22 (x, t, out) cases in float64 for the Rust tests, with eps and x0 too."""
    if schedule == "vp-linear":
        # Same (x, t) as onnx/mixture/expected.json.
        x, time_in, t = variant_points(mix, schedule, EXPECTED_TIMES, 2, np.random.default_rng(SEED + 2))
    else:
        x, time_in, t = variant_points(mix, schedule, FLOW_EXPECTED_TIMES, 2, np.random.default_rng(SEED + 3))
    x64 = x.astype(np.float64)
    alpha, sigma = variant_schedule(schedule)[0](t)
    eps, x0 = mixture_posterior_reference(x64, alpha, sigma, mix)
    out = output_reference(kind, eps, x0, alpha, sigma)
    cases = [{"t": float(t[i]), "time_input": float(time_in[i]), "alpha": float(alpha[i]),
              "sigma": float(sigma[i]), "x": [float(v) for v in x64[i]],
              "out": [float(v) for v in out[i]], "eps": [float(v) for v in eps[i]],
              "x0": [float(v) for v in x0[i]]}
             for i in range(len(x))]
    if schedule == "vp-linear":
        sched = ("vp-linear (beta0=0.1, beta1=20): alpha = exp(-(b1-b0) t^2/4 - b0 t/2), "
                 "sigma = sqrt(1 - alpha^2); the graph's time input is t (time_input = t, "
                 "float32-representable)")
    else:
        sched = ("flow: alpha = 1 - t, sigma = t; the graph's time input is 1000 t "
                 "(time_input, an integer, exact in float32) and t = time_input / 1000 in float64")
    what = {"eps": "out = eps", "x0": "out = x0 = E[x0|x]",
            "v": "out = v = alpha eps - sigma x0",
            "velocity": "out = velocity = eps - x0 (flow matching: dx/dt for x = (1-t) x0 + t eps)"}[kind]
    return {
        "description": f"Exact output of a network computing {what} for the Gaussian mixture "
                       f"mixture.json under {sched}. Computed in float64 numpy by "
                       "scripts/make_onnx_fixtures.py from the textbook posterior: x0 = E[x0|x] "
                       "(responsibility-weighted posterior means), eps = (x - alpha x0) / sigma. "
                       "Each case also gives eps and x0 (what s3's conversion of `out` must "
                       "give). x is exactly representable in float32. Per time: one draw from the "
                       "noised mixture and one far-out point (3 * N(0, I)).",
        "dataset": "mixture.json",
        "noise_schedule": schedule,
        "parameterization": kind,
        "cases": cases,
    }


def variant_model_config(name: str, kind: str, schedule: str) -> dict:
    """The s3-onnx-model config of a mixture variant, with `data` naming the mixture file."""
    if schedule == "vp-linear":
        noise_schedule = {"name": "vp-linear"}
        time_input = {"kind": "affine", "scale": 1.0, "offset": 0.0, "dtype": "float32"}
        sched = "vp-linear"
    else:
        noise_schedule = {"name": "flow", "shift": 1.0}
        time_input = {"kind": "affine", "scale": FLOW_TIME_SCALE, "offset": 0.0, "dtype": "float32"}
        sched = "the flow schedule (alpha = 1 - t, sigma = t; time input 1000 t)"
    what = {"eps": "noise prediction eps", "x0": "x0 prediction E[x0|x]",
            "v": "v prediction (alpha eps - sigma x0)", "velocity": "velocity eps - x0"}[kind]
    return {
        "format": "s3-onnx-model",
        "version": 1,
        "name": f"mixture-4d-exact-{kind}" + ("-flow" if schedule == "flow" else ""),
        "onnx": "model.onnx",
        "inputs": {"sample": "sample", "time": "time"},
        "output": kind,
        "sample_shape": [4],
        "parameterization": kind,
        "noise_schedule": noise_schedule,
        "time_input": time_input,
        "class_labels": None,
        "data": "mixture.json",
        "source": f"Exact {what} of the Gaussian mixture in mixture.json under {sched}, an "
                  "onnx.helper graph (opset 17, float32) written by "
                  "`python3 scripts/make_onnx_fixtures.py --mixture-only`; no trained weights",
    }


def make_mixture_variant(out: Path, name: str) -> dict:
    """One of MIXTURE_VARIANTS: mixture.json, model.onnx, model.json, expected.json."""
    kind, schedule = MIXTURE_VARIANTS[name]
    print(f"{name}: {kind} output, {schedule} schedule")
    out.mkdir(parents=True, exist_ok=True)
    dataset = {k: MIXTURE[k] for k in ("name", "shape", "weights", "means", "stds", "noise_schedule")}
    write_json(out / "mixture.json", dataset)
    onnx.save(mixture_graph(MIXTURE, kind, schedule), str(out / "model.onnx"))
    write_json(out / "model.json", variant_model_config(name, kind, schedule))
    errors = verify_variant(out / "model.onnx", MIXTURE, kind, schedule)
    expected = variant_expected(MIXTURE, kind, schedule)
    write_expected_json(out / "expected.json", expected)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.asarray([c["x"] for c in expected["cases"]], dtype=np.float32)
    tin = np.asarray([c["time_input"] for c in expected["cases"]], dtype=np.float32)
    ref = np.asarray([c["out"] for c in expected["cases"]])
    got = sess.run([kind], {"sample": x, "time": tin})[0]
    errors["expected"] = float(normwise_rel(ref, got).max())
    print(f"  expected.json: {len(x)} cases; graph vs expected max rel error {errors['expected']:.3e}")
    print(f"  wrote {out}/: " + ", ".join(f"{p.name} ({p.stat().st_size:,} B)" for p in sorted(out.iterdir())))
    return errors


# --------------------------------------------------------------------------------------------
# latent-cfg: a tiny conditional latent model with a decoder and classifier-free guidance
# --------------------------------------------------------------------------------------------

LATENT_SHAPE = [4, 4, 4]
COND_SHAPE = [3, 8]
IMAGE_SHAPE = [3, 8, 8]
LATENT_COND_ROWS = 4  # + the null row (zeros) at index 4
LATENT_GUIDANCE = 3.0
LATENT_TIME_FREQS = [0.5, 2.0, 6.0, 20.0]  # radians per unit of time_input / 1000
# (t, batch of 6): the time input is 1000 t - 1 (vp-discrete), exact in float32 for these t.
LATENT_EXPECTED_TIMES = [1e-3, 0.6125, 1.0]
LATENT_BATCH = 6


def latent_weights() -> dict:
    """The fixed random weights of the latent model and its decoder (float32, seeded)."""
    rng = np.random.default_rng(SEED + 10)
    n = int(np.prod(LATENT_SHAPE))
    c = int(np.prod(COND_SHAPE))
    n_img = int(np.prod(IMAGE_SHAPE))
    f = 2 * len(LATENT_TIME_FREQS)
    w = {
        "a": 0.5 / np.sqrt(n) * rng.standard_normal((n, n)),      # x -> hidden
        "b": 0.5 / np.sqrt(c) * rng.standard_normal((c, n)),      # cond -> hidden
        "w_t": 0.5 * rng.standard_normal((f, n)),                # time features -> hidden
        "bias": 0.1 * rng.standard_normal(n),
        "d": 1.0 / np.sqrt(n) * rng.standard_normal((n, n_img)),  # latent -> image
        "e": 0.1 * rng.standard_normal(n_img),
    }
    values = rng.standard_normal((LATENT_COND_ROWS, *COND_SHAPE))
    w["conditioning"] = np.concatenate([values, np.zeros((1, *COND_SHAPE))])
    return {k: v.astype(np.float32) for k, v in w.items()}


def finish_model(g: GraphBuilder, name: str, inputs, outputs, doc: str) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, name, inputs=inputs, outputs=outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="s3 scripts/make_onnx_fixtures.py")
    model.ir_version = 8
    model.doc_string = doc
    onnx.checker.check_model(model, full_check=True)
    return model


def latent_eps_graph(w: dict) -> onnx.ModelProto:
    """eps = tanh(x A + c B + [sin, cos](tau f) W_t + bias), tau = timestep / 1000.

    Inputs ``sample`` f32 [B, 4, 4, 4], ``timestep`` f32 [B], ``cond`` f32 [B, 3, 8]; output
    ``eps`` f32 [B, 4, 4, 4]. x and c are flattened row-major.
    """
    g = GraphBuilder()
    xf = g.op("Flatten", ["sample"], name="x_flat", axis=1)
    cf = g.op("Flatten", ["cond"], name="c_flat", axis=1)
    tau = g.op("Div", [g.op("Unsqueeze", ["timestep", g.const("axis1", [1], np.int64)]),
                       g.const("time_scale", 1000.0)], name="tau")
    ang = g.op("Mul", [tau, g.const("freqs", np.asarray(LATENT_TIME_FREQS)[None, :])], name="angles")
    feats = g.op("Concat", [g.op("Sin", [ang]), g.op("Cos", [ang])], name="time_features", axis=1)
    h = g.op("Add", [g.op("Add", [g.op("Add", [g.op("MatMul", [xf, g.const("A", w["a"])]),
                                               g.op("MatMul", [cf, g.const("B", w["b"])])]),
                                  g.op("MatMul", [feats, g.const("W_t", w["w_t"])])]),
                     g.const("bias", w["bias"])], name="hidden")
    g.op("Reshape", [g.op("Tanh", [h]), g.const("eps_shape", [-1, *LATENT_SHAPE], np.int64)], name="eps")
    return finish_model(
        g, "latent_cfg_eps",
        [helper.make_tensor_value_info("sample", TensorProto.FLOAT, ["batch", *LATENT_SHAPE]),
         helper.make_tensor_value_info("timestep", TensorProto.FLOAT, ["batch"]),
         helper.make_tensor_value_info("cond", TensorProto.FLOAT, ["batch", *COND_SHAPE])],
        [helper.make_tensor_value_info("eps", TensorProto.FLOAT, ["batch", *LATENT_SHAPE])],
        "Tiny conditional latent eps model for s3's tests (fixed random weights): "
        "eps = tanh(flat(x) A + flat(cond) B + [sin(tau f), cos(tau f)] W_t + bias), "
        "tau = timestep / 1000.")


def latent_decoder_graph(w: dict) -> onnx.ModelProto:
    """image = tanh(flat(latent) D + e) as [B, 3, 8, 8]: input ``latent``, output ``image``."""
    g = GraphBuilder()
    zf = g.op("Flatten", ["latent"], name="z_flat", axis=1)
    h = g.op("Add", [g.op("MatMul", [zf, g.const("D", w["d"])]), g.const("e", w["e"])], name="pre_image")
    g.op("Reshape", [g.op("Tanh", [h]), g.const("image_shape", [-1, *IMAGE_SHAPE], np.int64)], name="image")
    return finish_model(
        g, "latent_cfg_decoder",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["batch", *LATENT_SHAPE])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", *IMAGE_SHAPE])],
        "Tiny decoder for s3's tests: image = tanh(flat(latent) D + e), [B, 3, 8, 8] in [-1, 1].")


def latent_eps_numpy(w: dict, x: np.ndarray, timestep: np.ndarray, cond: np.ndarray) -> np.ndarray:
    """The eps graph in float64 numpy (to check the graph)."""
    w64 = {k: v.astype(np.float64) for k, v in w.items()}
    b = x.shape[0]
    tau = timestep.astype(np.float64)[:, None] / 1000.0
    ang = tau * np.asarray(LATENT_TIME_FREQS, dtype=np.float32).astype(np.float64)[None, :]
    feats = np.concatenate([np.sin(ang), np.cos(ang)], axis=1)
    h = (x.reshape(b, -1).astype(np.float64) @ w64["a"] + cond.reshape(b, -1).astype(np.float64) @ w64["b"]
         + feats @ w64["w_t"] + w64["bias"])
    return np.tanh(h).reshape(b, *LATENT_SHAPE)


def latent_decoder_numpy(w: dict, z: np.ndarray) -> np.ndarray:
    b = z.shape[0]
    return np.tanh(z.reshape(b, -1).astype(np.float64) @ w["d"].astype(np.float64)
                   + w["e"].astype(np.float64)).reshape(b, *IMAGE_SHAPE)


def latent_model_config() -> dict:
    return {
        "format": "s3-onnx-model",
        "version": 1,
        "name": "latent-cfg-tiny",
        "onnx": "model.onnx",
        "inputs": {"sample": "sample", "time": "timestep"},
        "output": "eps",
        "sample_shape": list(LATENT_SHAPE),
        "parameterization": "eps",
        "noise_schedule": {"name": "vp-discrete", "betas": "linear"},
        "time_input": {"kind": "affine", "scale": 1000.0, "offset": -1.0, "dtype": "float32"},
        "class_labels": None,
        "decoder": {"onnx": "decoder.onnx", "input": "latent", "output": "image",
                    "output_shape": list(IMAGE_SHAPE)},
        "conditioning": {"input": "cond", "values": "conditioning.npy",
                         "null_index": LATENT_COND_ROWS, "guidance_scale": LATENT_GUIDANCE},
        "source": "Tiny conditional latent eps model with a decoder and classifier-free guidance "
                  "for s3's tests: onnx.helper graphs (opset 17, float32) with fixed random "
                  "weights (numpy default_rng), written by "
                  "`python3 scripts/make_onnx_fixtures.py --mixture-only`; not a trained network",
    }


def make_latent_cfg(out: Path) -> dict:
    """model.onnx, decoder.onnx, conditioning.npy, model.json, expected_cfg.json."""
    print("latent-cfg: tiny conditional latent model, decoder, CFG")
    out.mkdir(parents=True, exist_ok=True)
    w = latent_weights()
    onnx.save(latent_eps_graph(w), str(out / "model.onnx"))
    onnx.save(latent_decoder_graph(w), str(out / "decoder.onnx"))
    np.save(out / "conditioning.npy", w["conditioning"])
    write_json(out / "model.json", latent_model_config())

    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    values = np.load(out / "conditioning.npy")
    null = values[LATENT_COND_ROWS]
    rows = [i % LATENT_COND_ROWS for i in range(LATENT_BATCH)]
    rng = np.random.default_rng(SEED + 11)
    batches, errors = [], {"eps_vs_numpy": 0.0, "decoder_vs_numpy": 0.0}
    for t in LATENT_EXPECTED_TIMES:
        x = rng.standard_normal((LATENT_BATCH, *LATENT_SHAPE)).astype(np.float32)
        time_in = np.full(LATENT_BATCH, 1000.0 * t - 1.0, dtype=np.float32)
        cond = values[rows]
        uncond = np.broadcast_to(null, cond.shape).copy()
        e_c = sess.run(["eps"], {"sample": x, "timestep": time_in, "cond": cond})[0].astype(np.float64)
        e_u = sess.run(["eps"], {"sample": x, "timestep": time_in, "cond": uncond})[0].astype(np.float64)
        for got, c in ((e_c, cond), (e_u, uncond)):
            ref = latent_eps_numpy(w, x, time_in, c)
            errors["eps_vs_numpy"] = max(errors["eps_vs_numpy"],
                                         float(np.max(np.abs(ref - got)) / np.max(np.abs(ref))))
        # batch of one agrees with the batched run
        one = sess.run(["eps"], {"sample": x[1:2], "timestep": time_in[1:2], "cond": cond[1:2]})[0]
        if np.max(np.abs(one - e_c[1:2])) > 1e-6:
            sys.exit("error: latent graph's batch-of-1 output differs from its batched output")
        guided = e_u + LATENT_GUIDANCE * (e_c - e_u)
        batches.append({"t": float(t), "time_input": float(time_in[0]),
                        "cond_rows": rows, "x": f32_list(x),
                        "out_cond": f32_list(e_c), "out_uncond": f32_list(e_u),
                        "out": guided.tolist()})
    z = rng.standard_normal((LATENT_BATCH, *LATENT_SHAPE)).astype(np.float32)
    image = dec.run(["image"], {"latent": z})[0].astype(np.float64)
    ref = latent_decoder_numpy(w, z)
    errors["decoder_vs_numpy"] = float(np.max(np.abs(ref - image)) / np.max(np.abs(ref)))
    expected = {
        "description": "Classifier-free guidance and decoder outputs of model.onnx / decoder.onnx "
                       "(scripts/make_onnx_fixtures.py). Each batch: 6 samples x (float32 values) "
                       "with global sample indices 0..5 at one time t (vp-discrete; time_input = "
                       "1000 t - 1, exact in float32), conditioned on conditioning.npy rows "
                       "cond_rows = i mod 4 (row 4 is the null entry). out_cond and out_uncond are "
                       "Python onnxruntime outputs (float32) with the condition rows and with the "
                       "null row; out = out_uncond + w (out_cond - out_uncond) with "
                       "w = guidance_scale, computed in float64 from those float32 values and "
                       "written in full. decoder: decoder.onnx's image for a latent batch "
                       "(onnxruntime, float32). Float32 arrays (x, out_cond, out_uncond, latent, "
                       "image) are written as the shortest decimals that round-trip to the same "
                       "float32 (parse as f64, cast to f32).",
        "guidance_scale": LATENT_GUIDANCE,
        "null_index": LATENT_COND_ROWS,
        "batches": batches,
        "decoder": {"latent": f32_list(z), "image": f32_list(image)},
    }
    write_expected_json(out / "expected_cfg.json", expected, compact=True)
    print(f"  ONNX Runtime vs float64 numpy: eps max rel error {errors['eps_vs_numpy']:.3e}, "
          f"decoder {errors['decoder_vs_numpy']:.3e}")
    print(f"  wrote {out}/: " + ", ".join(f"{p.name} ({p.stat().st_size:,} B)" for p in sorted(out.iterdir())))
    return errors


# --------------------------------------------------------------------------------------------
# Tiny cifar10 networks through tools/onnx_export/export.py
# --------------------------------------------------------------------------------------------


def run_export(*args: str) -> None:
    """Runs the export tool (same interpreter) from the repository root; stops on failure."""
    cmd = [sys.executable, str(EXPORT_TOOL), *args]
    print("$ python3 " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def make_cifar10(out: Path) -> None:
    """The cifar10 preset's models-dir on tiny random networks, with FID stats of random images."""
    run_export("ddpm-cifar10", "--out", str(out), "--tiny", "--random-weights", "--seed", "0")
    run_export("inception", "--out", str(out), "--tiny", "--random-weights", "--seed", "0")
    run_export("cifar10-stats", "--extractor", str(out / "inception.json"),
               "--out", str(out / "train_stats.npz"), "--random", "512", "--seed", "0")
    full = ROOT / out
    print(f"wrote {out}/: " + ", ".join(f"{p.name} ({p.stat().st_size:,} B)" for p in sorted(full.iterdir())))


def make_latent_models(out: Path, subcommand: str) -> None:
    """A tiny latent pipeline (sd: UNet2DConditionModel, flow: SD3Transformer2DModel) with its
    VAE decoder, 2 random prompt embeddings + a null one, guidance 2, and a tiny 16x16 feature
    extractor with statistics of 512 random images for FID through the decoder."""
    run_export("inception", "--out", str(out), "--tiny", "--random-weights", "--seed", "0",
               "--input-size", "16", "16")
    run_export("cifar10-stats", "--extractor", str(out / "inception.json"),
               "--out", str(out / "train_stats.npz"), "--random", "512", "--seed", "0")
    run_export(subcommand, "--random-weights", "--tiny", "--seed", "0", "--guidance-scale", "2.0",
               "--fid", "inception.json", "train_stats.npz", "--out", str(out))
    full = ROOT / out
    print(f"wrote {out}/: " + ", ".join(f"{p.name} ({p.stat().st_size:,} B)" for p in sorted(full.iterdir())))


def main() -> None:
    p = argparse.ArgumentParser(description="Regenerate s3's ONNX test fixtures under tests/fixtures/.")
    p.add_argument("--mixture-only", action="store_true",
                   help="only tests/fixtures/onnx/ (the mixture graphs and latent-cfg; needs "
                        "just numpy, onnx, onnxruntime)")
    args = p.parse_args()
    print(f"numpy {np.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    make_mixture(ROOT / MIXTURE_DIR)
    for name in MIXTURE_VARIANTS:
        make_mixture_variant(ROOT / ONNX_FIXTURES / name, name)
    make_latent_cfg(ROOT / LATENT_CFG_DIR)
    if not args.mixture_only:
        make_cifar10(CIFAR10_DIR)
        make_latent_models(LATENT_TINY_DIR, "sd")
        make_latent_models(FLOW_TINY_DIR, "flow")


if __name__ == "__main__":
    main()

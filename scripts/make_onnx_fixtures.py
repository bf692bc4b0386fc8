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
* ``tests/fixtures/models/cifar10/`` (the models-dir layout of the ``cifar10`` preset, with tiny
  random-weight networks; skipped with ``--mixture-only``)
    - ``model.onnx`` + ``model.json``          ``export.py ddpm-cifar10 --tiny --random-weights``
    - ``inception.onnx`` + ``inception.json``  ``export.py inception --tiny --random-weights``
    - ``train_stats.npz``                      ``export.py cifar10-stats --random 512``

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
CIFAR10_DIR = Path("tests/fixtures/models/cifar10")
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
    w = np.asarray(mix["weights"], dtype=np.float64)
    m = np.asarray(mix["means"], dtype=np.float64)
    s = np.asarray(mix["stds"], dtype=np.float64)
    k, d = m.shape
    g = GraphBuilder()

    # alpha, sigma^2, sigma: [B, 1]
    t = g.op("Unsqueeze", ["time", g.const("axis1", [1], np.int64)], name="t")
    la = g.op("Add", [g.op("Mul", [g.op("Mul", [t, t]), g.const("c_t2", -(BETA_1 - BETA_0) / 4.0)]),
                      g.op("Mul", [t, g.const("c_t1", -BETA_0 / 2.0)])], name="log_alpha")
    alpha = g.op("Exp", [la], name="alpha")
    two_la = g.op("Mul", [la, g.const("two", 2.0)], name="two_log_alpha")
    alpha2 = g.op("Exp", [two_la], name="alpha2")
    sigma2 = neg_expm1(g, two_la)
    sigma = g.op("Sqrt", [sigma2], name="sigma")

    # v_k = alpha^2 s_k^2 + sigma^2: [B, K]
    v = g.op("Add", [g.op("Mul", [alpha2, g.const("s2", (s * s)[None, :])]), sigma2], name="v")
    # diff_k = x - alpha m_k: [B, K, D]
    x3 = g.op("Unsqueeze", ["sample", g.const("axis1b", [1], np.int64)], name="x3")
    a3 = g.op("Unsqueeze", [alpha, g.const("axis2", [2], np.int64)], name="alpha3")
    diff = g.op("Sub", [x3, g.op("Mul", [a3, g.const("means", m[None, :, :])])], name="diff")
    # log r_k up to a constant: log w_k - D/2 log v_k - |diff_k|^2 / (2 v_k)
    sq = g.op("ReduceSum", [g.op("Mul", [diff, diff]), g.const("axis2b", [2], np.int64)],
              name="sq", keepdims=0)
    logr = g.op("Sub", [
        g.op("Sub", [g.const("log_w", np.log(w)[None, :]),
                     g.op("Mul", [g.const("half_d", d / 2.0), g.op("Log", [v])])]),
        g.op("Div", [g.op("Mul", [g.const("half", 0.5), sq]), v]),
    ], name="log_r")
    r = g.op("Softmax", [logr], name="r", axis=1)
    # eps = sum_k r_k (sigma / v_k) diff_k
    c = g.op("Div", [g.op("Mul", [r, sigma]), v], name="coef")
    c3 = g.op("Unsqueeze", [c, g.const("axis2c", [2], np.int64)], name="coef3")
    g.op("ReduceSum", [g.op("Mul", [c3, diff]), g.const("axis1c", [1], np.int64)], name="eps",
         keepdims=0)

    graph = helper.make_graph(
        g.nodes, "mixture_exact_eps",
        inputs=[helper.make_tensor_value_info("sample", TensorProto.FLOAT, ["batch", d]),
                helper.make_tensor_value_info("time", TensorProto.FLOAT, ["batch"])],
        outputs=[helper.make_tensor_value_info("eps", TensorProto.FLOAT, ["batch", d])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="s3 scripts/make_onnx_fixtures.py")
    model.ir_version = 8  # readable by every ONNX Runtime that supports opset 17
    model.doc_string = (f"Exact noise prediction eps(x, t) of a {k}-component isotropic Gaussian "
                        f"mixture in {d} dims under ScoreSDE's vp-linear schedule "
                        f"(beta0={BETA_0}, beta1={BETA_1}); see mixture.json beside it.")
    onnx.checker.check_model(model, full_check=True)
    return model


# --------------------------------------------------------------------------------------------
# Mixture fixtures
# --------------------------------------------------------------------------------------------


def test_points(mix: dict, times: list[float], per_time: int, rng: np.random.Generator):
    """(x, t) pairs: per time, draws from the noised mixture plus one far-out point.

    Returned as float32 (what the graph receives).
    """
    w = np.asarray(mix["weights"])
    m = np.asarray(mix["means"])
    s = np.asarray(mix["stds"])
    xs, ts = [], []
    for t in times:
        alpha, sigma = alpha_sigma(np.array([t]))
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
    write_json(out / "expected.json", expected)
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


def main() -> None:
    p = argparse.ArgumentParser(description="Regenerate s3's ONNX test fixtures under tests/fixtures/.")
    p.add_argument("--mixture-only", action="store_true",
                   help="only tests/fixtures/onnx/mixture (needs just numpy, onnx, onnxruntime)")
    args = p.parse_args()
    print(f"numpy {np.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}")
    make_mixture(ROOT / MIXTURE_DIR)
    if not args.mixture_only:
        make_cifar10(CIFAR10_DIR)


if __name__ == "__main__":
    main()

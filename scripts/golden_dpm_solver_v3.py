#!/usr/bin/env python3
"""Golden values for DPM-Solver-v3 (tests/golden/dpm_solver_v3.json).

A numpy port of the arithmetic of the official sampler
(thu-ml/DPM-Solver-v3, codebases/score_sde/samplers/dpm_solver_v3.py: weighted_cumsumexp_trapezoid,
get_g, compute_exponential_coefficients_high_order, compute_high_order_derivatives, the
multistep predictor / corrector and `sample` with its cache replacement), and of the EMS
estimator (compute_EMS_scoresde.py: compute_l, compute_l_d, compute_f, compute_sb) on a small
Gaussian mixture under ScoreSDE's linear VP schedule. The estimator is made exact per draw the
independent way: the Jacobian diagonal and the total derivative along the ODE are central
finite differences of the mixture's ε (no Hutchinson probe, no autograd; the Rust side uses
closed forms). The same (x0, z) draws are used at every grid point.

Run: python3 -m venv ~/.cache/s3-golden-venv && ~/.cache/s3-golden-venv/bin/pip install numpy
     ~/.cache/s3-golden-venv/bin/python scripts/golden_dpm_solver_v3.py
"""

import json
import math
import os

import numpy as np

BETA_0, BETA_1 = 0.1, 20.0
T_START, T_END = 1.0, 1e-3
GRID_N = 120  # EMS grid intervals
DRAWS = 16  # (x0, z) pairs of the EMS expectation
WINDOW = 5  # l' smoothing half-width (official compute_l_d)
FD_H = 1e-5  # finite-difference step of the Jacobian and the total derivative
VAR_REL_FLOOR = 1e-10  # s = 0 where Var f is below this fraction of E[(σε)² + (l x)²]/α² (s3)
SEED = 20231210

WEIGHTS = [0.5, 0.3, 0.2]
MEANS = [[0.6, -0.3], [-0.5, 0.4], [0.1, 0.9]]
STDS = [[0.3, 0.2], [0.25, 0.35], [0.4, 0.15]]

# (nfe, order, p_pseudo, use_corrector, c_pseudo, lower_order_final): the ScoreSDE defaults
# (sample.sh) at 5, 6, 7 and 10 steps, plus a pseudo corrector.
CASES = [
    (5, 3, True, True, False, False),
    (6, 3, False, True, False, True),
    (7, 3, False, True, False, True),
    (10, 3, False, False, False, True),
    (8, 3, False, True, True, True),
]


# --- ScoreSDE's linear VP schedule (NoiseScheduleVP('linear')) ---------------------------
def log_alpha(t):
    return -0.25 * t**2 * (BETA_1 - BETA_0) - 0.5 * t * BETA_0


def alpha(t):
    return np.exp(log_alpha(t))


def sigma(t):
    return np.sqrt(1.0 - np.exp(2.0 * log_alpha(t)))


def lam(t):
    la = log_alpha(t)
    return la - 0.5 * np.log(1.0 - np.exp(2.0 * la))


def inverse_lambda(l):
    tmp = 2.0 * (BETA_1 - BETA_0) * np.logaddexp(-2.0 * l, 0.0)
    delta = BETA_0**2 + tmp
    return tmp / (np.sqrt(delta) + BETA_0) / (BETA_1 - BETA_0)


# --- the mixture's noise prediction ---------------------------------------------------------
W, M, S2 = np.array(WEIGHTS), np.array(MEANS), np.array(STDS) ** 2


def eps_model(x, t):
    """ε(x, t) = σ Σ_k γ_k (x − α m_k)/v_k for x of shape (B, D)."""
    a, s = alpha(t), sigma(t)
    v = a**2 * S2 + s**2  # (K, D)
    diff = x[:, None, :] - a * M[None]  # (B, K, D)
    logp = np.log(W)[None] - 0.5 * np.sum(diff**2 / v + np.log(v), axis=2)
    logp -= logp.max(axis=1, keepdims=True)
    g = np.exp(logp)
    g /= g.sum(axis=1, keepdims=True)
    return s * np.sum(g[:, :, None] * diff / v, axis=1)


# --- EMS (compute_EMS_scoresde.py, exact per draw by finite differences) -------------------
def grid_lambdas():
    return np.linspace(lam(T_START), lam(T_END), GRID_N + 1)


def compute_ems(x0, z):
    lambdas = grid_lambdas()
    D = x0.shape[1]
    l_lst, stats = [], []
    for lmb in lambdas:
        t = inverse_lambda(lmb)
        a, s = alpha(t), sigma(t)
        x = a * x0 + s * z
        eps = eps_model(x, t)
        jac = np.zeros_like(x)
        for d in range(D):
            e = np.zeros(D)
            e[d] = FD_H
            jac[:, d] = (eps_model(x + e, t) - eps_model(x - e, t))[:, d] / (2 * FD_H)
        l_lst.append((s * jac).mean(axis=0))
        # total derivative along dx/dλ = σ² x − σ ε (VP)
        dx = s**2 * x - s * eps
        tp, tm = inverse_lambda(lmb + FD_H), inverse_lambda(lmb - FD_H)
        eps_d = (eps_model(x + FD_H * dx, tp) - eps_model(x - FD_H * dx, tm)) / (2 * FD_H)
        stats.append((lmb, a, s, x, eps, eps_d))
    l_lst = np.array(l_lst)
    # compute_l_d
    n = len(l_lst)
    gap = (lambdas[-1] - lambdas[0]) / (n - 1)
    l_d = []
    for i in range(n):
        if i == 0:
            l_d.append((l_lst[i + 1] - l_lst[i]) / gap)
        elif i == n - 1:
            l_d.append((l_lst[i] - l_lst[i - 1]) / gap)
        else:
            l_d.append((l_lst[i + 1] - l_lst[i - 1]) / (2 * gap))
    l_d_s = []
    for i in range(n):
        if i < WINDOW:
            l_d_s.append(np.sum(l_d[: i + WINDOW + 1], axis=0) / (i + WINDOW + 1))
        elif i >= n - WINDOW:
            l_d_s.append(np.sum(l_d[i - WINDOW : n], axis=0) / (n - i + WINDOW))
        else:
            l_d_s.append(np.sum(l_d[i - WINDOW : i + WINDOW + 1], axis=0) / (2 * WINDOW + 1))
    # compute_f, compute_sb
    s_out, b_out = [], []
    for j, (lmb, a, s, x, eps, eps_d) in enumerate(stats):
        l, ld = l_lst[j], l_d_s[j]
        f = (s * eps - l * x) / a
        fd = np.exp(-lmb) * ((l - 1) * eps + eps_d) - ld * x / a
        mf, mfd, mff, mffd = f.mean(0), fd.mean(0), (f * f).mean(0), (f * fd).mean(0)
        var = ((f - mf) ** 2).mean(0)
        # s3's deviation: Var f below VAR_REL_FLOOR of its terms' scale counts as 0 (s = 0).
        scale = ((s * eps) ** 2 + (l * x) ** 2).mean(0) / a**2
        sj = np.where(var > VAR_REL_FLOOR * scale, (mffd - mf * mfd) / (mff - mf * mf), 0.0)
        s_out.append(sj)
        b_out.append(mfd - sj * mf)
    return l_lst, np.array(s_out), np.array(b_out)


# --- the sampler (official DPM_Solver_v3) ---------------------------------------------------
def weighted_cumsumexp_trapezoid(a, x, b, cumsum=True):
    a_max = np.amax(a, axis=0, keepdims=True)
    tmp = b * np.exp(a - a_max) if b is not None else np.exp(a - a_max)
    out = 0.5 * (x[1:] - x[:-1]) * (tmp[1:] + tmp[:-1])
    if not cumsum:
        return np.sum(out, axis=0) * np.exp(a_max)
    out = np.cumsum(out, axis=0)
    out *= np.exp(a_max)
    return np.concatenate([np.zeros_like(out[[0]]), out], axis=0)


class V3:
    def __init__(self, l, s, b, steps):
        self.N = l.shape[0] - 1
        ts = lam(inverse_lambda(grid_lambdas()))[:, None]
        self.ts = ts
        self.lambda_T, self.lambda_0 = ts[0, 0], ts[-1, 0]
        z, o = np.zeros_like(l), np.ones_like(l)
        self.l, self.s, self.b = l, s, b
        self.L = weighted_cumsumexp_trapezoid(z, ts, l)
        self.S = weighted_cumsumexp_trapezoid(z, ts, s)
        self.I = weighted_cumsumexp_trapezoid(self.L + self.S, ts, o)
        self.B = weighted_cumsumexp_trapezoid(-self.S, ts, b)
        self.C = weighted_cumsumexp_trapezoid(self.L + self.S, ts, self.B)
        times = inverse_lambda(np.linspace(lam(T_START), lam(T_END), steps + 1))
        self.indexes = list(
            np.round(self.N * (lam(times) - self.lambda_T) / (self.lambda_0 - self.lambda_T)).astype(np.int64)
        )
        self.timesteps = inverse_lambda(
            self.lambda_T + (self.lambda_0 - self.lambda_T) * np.array(self.indexes, dtype=float) / self.N
        )
        self.steps = steps

    def get_g(self, f_t, i_s, i_t):
        return np.exp(self.S[i_s] - self.S[i_t]) * f_t - np.exp(self.S[i_s]) * (self.B[i_t] - self.B[i_s])

    def exp_coeff(self, i_s, i_t, order):
        n = order - 1
        a = self.L[i_s : i_t + 1] + self.S[i_s : i_t + 1] - self.L[i_s] - self.S[i_s]
        x = self.ts[i_s : i_t + 1]
        b = (self.ts[i_s : i_t + 1] - self.ts[i_s]) ** n / math.factorial(n)
        return weighted_cumsumexp_trapezoid(a, x, b, cumsum=False)[0]

    @staticmethod
    def derivatives(n, lambda_0n, g_0n, pseudo):
        if pseudo:
            D = [[] for _ in range(n + 1)]
            D[0] = g_0n
            for i in range(1, n + 1):
                for j in range(n - i + 1):
                    D[i].append((D[i - 1][j] - D[i - 1][j + 1]) / (lambda_0n[j] - lambda_0n[i + j]))
            return [D[i][0] * math.factorial(i) for i in range(1, n + 1)]
        R = np.stack([np.power(lambda_0n[1:] - lambda_0n[0], i) for i in range(1, n + 1)]).T
        Bm = (np.stack(g_0n[1:]) - g_0n[0]).reshape(n, -1)
        shape = g_0n[0].shape
        sol = (np.linalg.inv(R) @ Bm).reshape([n] + list(shape))
        return [sol[i - 1] * math.factorial(i) for i in range(1, n + 1)]

    def update(self, x_lst, eps_lst, time_lst, index_lst, idx, t, i_t, order, pseudo):
        n = order - 1
        x_0n = [x_lst[i] for i in idx]
        eps_0n = [eps_lst[i] for i in idx]
        time_0n = np.array([time_lst[i] for i in idx])
        index_0n = [index_lst[i] for i in idx]
        lambda_0n, alpha_0n, sigma_0n = lam(time_0n), alpha(time_0n), sigma(time_0n)
        alpha_s, alpha_t = alpha_0n[0], alpha(t)
        i_s = index_0n[0]
        g_0n = []
        for i in range(n + 1):
            f_i = (sigma_0n[i] * eps_0n[i] - self.l[index_0n[i]] * x_0n[i]) / alpha_0n[i]
            g_0n.append(self.get_g(f_i, index_0n[0], index_0n[i]))
        x_t = (
            alpha_t / alpha_s * np.exp(self.L[i_s] - self.L[i_t]) * x_0n[0]
            - alpha_t * np.exp(-self.L[i_t] - self.S[i_s]) * (self.I[i_t] - self.I[i_s]) * g_0n[0]
            - alpha_t * np.exp(-self.L[i_t]) * (self.C[i_t] - self.C[i_s] - self.B[i_s] * (self.I[i_t] - self.I[i_s]))
        )
        if order > 1:
            g_d = self.derivatives(n, lambda_0n, g_0n, pseudo)
            for i in range(order - 1):
                x_t = x_t - alpha_t * np.exp(self.L[i_s] - self.L[i_t]) * self.exp_coeff(i_s, i_t, i + 2) * g_d[i]
        return x_t

    def sample(self, x, order, p_pseudo, use_corrector, c_pseudo, lower_order_final):
        cx, ce, ct, ci = [], [], [], []
        p_order = 0
        for step in range(1, self.steps + 1):
            cx.append(x)
            ce.append(eps_model(x, self.timesteps[step - 1]))
            ct.append(self.timesteps[step - 1])
            ci.append(self.indexes[step - 1])
            if use_corrector:
                c_order = p_order + c_pseudo
                if c_order > 1:
                    idx = [-i - 1 for i in range(c_order)]
                    idx[0], idx[1] = -2, -1
                    x_new = self.update(cx, ce, ct, ci, idx, ct[-1], ci[-1], c_order, c_pseudo)
                    sigma_t, l_t = sigma(ct[-1]), self.l[ci[-1]]
                    n_old = sigma_t * ce[-1] - l_t * cx[-1]
                    cx[-1] = x_new
                    ce[-1] = (n_old + l_t * cx[-1]) / sigma_t
            p_order = min(step, order)
            if lower_order_final:
                p_order = min(p_order, self.steps + 1 - step)
            idx = [-i - 1 for i in range(p_order)]
            x = self.update(cx, ce, ct, ci, idx, self.timesteps[step], self.indexes[step], p_order, p_pseudo)
        return x


def main():
    rng = np.random.default_rng(SEED)
    comps = rng.choice(len(WEIGHTS), size=DRAWS, p=WEIGHTS)
    x0 = M[comps] + np.sqrt(S2[comps]) * rng.standard_normal((DRAWS, 2))
    z = rng.standard_normal((DRAWS, 2))
    x_t = rng.standard_normal((4, 2))
    l, s, b = compute_ems(x0, z)
    cases = []
    for nfe, order, pp, uc, cp, lof in CASES:
        v3 = V3(l, s, b, nfe)
        out = v3.sample(x_t, order, pp, uc, cp, lof)
        cases.append(
            {
                "nfe": nfe,
                "settings": {
                    "order": order,
                    "predictor_pseudo": pp,
                    "use_corrector": uc,
                    "corrector_pseudo": cp,
                    "lower_order_final": lof,
                },
                "indexes": [int(i) for i in v3.indexes],
                "samples": out.tolist(),
            }
        )
    golden = {
        "about": "scripts/golden_dpm_solver_v3.py: numpy port of the official DPM-Solver-v3 sampler "
        "and EMS estimator (exact per draw by finite differences) on a 2-D mixture, vp-linear",
        "mixture": {"shape": [2], "weights": WEIGHTS, "means": MEANS, "stds": STDS},
        "noise_schedule": "vp-linear",
        "t_start": T_START,
        "t_end": T_END,
        "intervals": GRID_N,
        "x0": x0.tolist(),
        "z": z.tolist(),
        "ems": {"l": l.tolist(), "s": s.tolist(), "b": b.tolist()},
        "x_t": x_t.tolist(),
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "golden", "dpm_solver_v3.json")
    with open(path, "w") as fh:
        json.dump(golden, fh)
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()

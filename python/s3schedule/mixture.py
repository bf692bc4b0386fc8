"""An exact diffusion model: a Gaussian mixture x0 ~ sum_k w_k N(m_k, diag(s_k^2)) has
closed-form noise and data predictions under any x = alpha x0 + sigma eps, so a sampler run on
it can be compared with s3's run of the same schedule to rounding. The file format is s3's
mixture JSON (``shape``, ``weights``, ``means``, ``stds`` as K numbers or K lists of D).

As s3 (``src/model/gmm.rs``), eps is computed directly where alpha >= sigma and x0 where
alpha < sigma (each is the well-conditioned one there); the other follows from
x = alpha x0 + sigma eps. Computed in float64 with numpy.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

_OPTIONAL = {"name", "noise_schedule", "betas", "metric", "samples"}


class GaussianMixture:
    """A mixture with isotropic (K stds) or diagonal (K x D stds) components."""

    def __init__(self, weights, means, stds, shape=None):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        k, d = self.means.shape
        self.shape = tuple(shape) if shape is not None else (d,)
        if int(np.prod(self.shape)) != d or self.weights.shape != (k,):
            raise ValueError(f"mixture: {k} weights/means of {d} values do not fit shape {self.shape}")
        if abs(self.weights.sum() - 1.0) > 1e-6 or (self.weights <= 0).any():
            raise ValueError("mixture: weights must be positive and sum to 1")
        self.weights = self.weights / self.weights.sum()
        s = np.asarray(stds, dtype=np.float64)
        self.isotropic = s.ndim == 1
        if s.shape not in ((k,), (k, d)) or (s <= 0).any():
            raise ValueError(f"mixture: stds must be {k} positive numbers or {k} rows of {d}")
        self.stds = s
        self.log_weights = np.log(self.weights)
        self.mean_norms = (self.means ** 2).sum(axis=1)

    @staticmethod
    def from_json(source) -> "GaussianMixture":
        """From an s3 mixture file (a path) or its parsed JSON object."""
        if isinstance(source, (str, os.PathLike)):
            with open(source, encoding="utf-8") as f:
                doc = json.load(f)
        else:
            doc = source
        unknown = set(doc) - {"shape", "weights", "means", "stds"} - _OPTIONAL
        if unknown:
            raise ValueError(f"mixture: unknown field(s) {sorted(unknown)}")
        return GaussianMixture(doc["weights"], doc["means"], doc["stds"], doc["shape"])

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def data_mean(self) -> np.ndarray:
        """E[x0], shape ``shape``."""
        return (self.weights @ self.means).reshape(self.shape)

    def predictions(self, x, alpha: float, sigma: float):
        """(eps, x0) at states x (``[batch, *shape]``, numpy or torch) in x's type and dtype."""
        if not sigma > 0.0:
            raise ValueError(f"the mixture's ε is undefined at σ = {sigma}")
        back, xn = _to_numpy(x)
        flat = xn.reshape(xn.shape[0], -1).astype(np.float64)
        data = alpha < sigma
        out = self._direct(flat, alpha, sigma, data)
        if data:
            x0, eps = out, (flat - alpha * out) * (1.0 / sigma)
        else:
            eps, x0 = out, (flat - sigma * out) * (1.0 / alpha)
        return back(eps.reshape(xn.shape)), back(x0.reshape(xn.shape))

    def __call__(self, x, point):
        """The model form :func:`s3schedule.run` takes with ``output="both"`` and
        ``model_time="point"``: predictions at the frame's alpha and sigma."""
        return self.predictions(x, point.alpha, point.sigma)

    def _direct(self, x: np.ndarray, alpha: float, sigma: float, data: bool) -> np.ndarray:
        """eps (or x0 when ``data``) for a [batch, D] float64 block."""
        s2, a2 = sigma * sigma, alpha * alpha
        ln_2pi = math.log(2.0 * math.pi)
        if self.isotropic:
            v = a2 * self.stds ** 2 + s2  # [K]
            dist = ((x * x).sum(axis=1)[:, None] - 2.0 * alpha * (x @ self.means.T)
                    + a2 * self.mean_norms[None, :])
            logp = (self.log_weights - 0.5 * self.dim * (ln_2pi + np.log(v)))[None, :] \
                - 0.5 * np.maximum(dist, 0.0) / v[None, :]
            r = logp - logp.max(axis=1, keepdims=True)
            e = np.where(r < -60.0, 0.0, np.exp(r))
            g = e / (e.sum(axis=1, keepdims=True) * v[None, :])  # gamma_k / v_k
            gm = g @ self.means
            if data:
                return s2 * gm + alpha * (g @ self.stds ** 2)[:, None] * x
            return sigma * (g.sum(axis=1)[:, None] * x - alpha * gm)
        v = a2 * self.stds ** 2 + s2  # [K, D]
        resid = x[:, None, :] - alpha * self.means[None, :, :]  # [B, K, D]
        logp = self.log_weights[None, :] - 0.5 * (resid ** 2 / v + ln_2pi + np.log(v)).sum(axis=2)
        r = np.exp(logp - logp.max(axis=1, keepdims=True))
        gamma = r / r.sum(axis=1, keepdims=True)
        rv = resid / v
        if data:
            return (gamma[:, :, None] * (self.means[None] + alpha * self.stds ** 2 * rv)).sum(axis=1)
        return sigma * (gamma[:, :, None] * rv).sum(axis=1)


def _to_numpy(x):
    """(convert-back function, numpy view) for a numpy array or a torch tensor."""
    if type(x).__module__.startswith("torch"):
        import torch

        def back(a):
            return torch.as_tensor(a, dtype=x.dtype, device=x.device)

        return back, x.detach().cpu().double().numpy()
    dtype = np.asarray(x).dtype

    def back_np(a):
        return a.astype(dtype, copy=False)

    return back_np, np.asarray(x)

"""Shared test helpers: fixture paths, schedule variants and an exact mixture."""

import copy
import json

import numpy as np

import s3schedule as s3s
from conftest import DATA

MIXTURE = {
    "shape": [2, 2, 2], "weights": [0.3, 0.45, 0.25],
    "means": [[1.0, 0.0, 0.5, -0.3, 0.2, 0.1, -0.5, 0.4],
              [-1.0, 0.5, 0.0, 0.2, -0.4, 0.3, 0.6, -0.2],
              [0.2, -0.8, 1.0, 0.4, 0.0, -0.6, 0.1, 0.3]],
    "stds": [0.2, 0.3, 0.15],
}


def mixture() -> s3s.GaussianMixture:
    return s3s.GaussianMixture.from_json(MIXTURE)


def fixture(name: str) -> str:
    return str(DATA / name)


def doc(name: str) -> dict:
    with open(fixture(name), encoding="utf-8") as f:
        return json.load(f)


def with_afs(name: str, afs: str) -> dict:
    """A fixture with the analytical first step: the model call at t_0 is dropped."""
    d = copy.deepcopy(doc(name))
    d["afs"] = afs
    d["nfe"] -= 1
    return d


def relerr(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / np.abs(b).max())


def reference(schedule, z, data_mean=None, noise_schedule=None):
    """The numpy runner's float64 result on the exact mixture (native frame)."""
    mix = mixture()
    return s3s.run(schedule, mix, np.asarray(z, dtype=np.float64), output="both",
                   model_time="point", data_mean=data_mean, noise_schedule=noise_schedule)


def offsets_for(timesteps, zero_first: bool) -> list:
    """Time offsets delta_i for a schedule over ``timesteps`` (one per step) that stay inside
    (t_{i+1}, t_{i-1}): -0.2 (t_i - t_{i+1}) at even i, +0.15 (t_{i-1} - t_i) at odd i, so
    that no model time passes T; delta_0 = 0 when ``zero_first`` (AFS, a pure-noise t_0)."""
    ts = list(timesteps)
    out = []
    for i in range(len(ts) - 1):
        if i % 2 == 0:
            out.append(-0.2 * (ts[i] - ts[i + 1]))
        else:
            out.append(0.15 * (ts[i - 1] - ts[i]))
    if zero_first:
        out[0] = 0.0
    return out


def with_offsets(name_or_doc, afs: str = "none") -> dict:
    """A fixture (or a schedule object) with non-zero ``time_offsets`` (and ``afs``)."""
    d = copy.deepcopy(doc(name_or_doc) if isinstance(name_or_doc, str) else name_or_doc)
    if afs != "none":
        d["afs"] = afs
        d["nfe"] -= 1
    pure = d.get("noise_schedule") == "flow" and d["timesteps"][0] == 1.0
    d["time_offsets"] = offsets_for(d["timesteps"], afs != "none" or pure)
    return d

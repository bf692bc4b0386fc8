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

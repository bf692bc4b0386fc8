"""Golden values for s3's FID commands (tests/onnx_fid.rs), written to tests/golden/fid/.

* a.npz, b.npz, singular.npz: pytorch-fid style statistics (np.savez_compressed with `mu`,
  `sigma`, float64), 16-d; `singular.npz` has a rank-5 covariance.
* expected.json: FID between pairs, computed by pytorch-fid's own
  `calculate_frechet_distance` (scipy.linalg.sqrtm; it adds eps·I when the product is
  singular, as pytorch-fid does).
* images.npy (24 uint8 images, [N, 32, 32, 3]) and images_stats.npz: the statistics of those
  images through the tiny feature extractor tests/fixtures/models/cifar10/inception.json, as
  computed by `tools/onnx_export/export.py cifar10-stats` (Python onnxruntime), so that
  `s3 fid-stats` can be checked against an independent implementation.

Run (needs numpy, scipy, pytorch-fid, onnxruntime; e.g. the venv of tools/onnx_export):

    python scripts/golden_fid.py
"""

import json
import pathlib
import subprocess
import sys

import numpy as np
from pytorch_fid.fid_score import calculate_frechet_distance

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "fid"


def stats(rng, d, rank=None):
    rank = rank or d
    a = rng.normal(size=(d, rank))
    sigma = a @ a.T / rank
    mu = rng.normal(size=d)
    return mu, sigma


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261122)
    sets = {
        "a": stats(rng, 16),
        "b": stats(rng, 16),
        "singular": stats(rng, 16, rank=5),
    }
    for name, (mu, sigma) in sets.items():
        np.savez_compressed(OUT / f"{name}.npz", mu=mu, sigma=sigma)
    pairs = [("a", "b"), ("a", "singular"), ("singular", "singular"), ("a", "a")]
    expected = {
        "description": "FID between statistics files, by pytorch_fid.fid_score."
        "calculate_frechet_distance (pytorch-fid 0.3.0, scipy sqrtm)",
        "pairs": [
            {
                "a": f"{x}.npz",
                "b": f"{y}.npz",
                "fid": float(calculate_frechet_distance(*sets[x], *sets[y])),
            }
            for x, y in pairs
        ],
    }
    (OUT / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    images = np.random.default_rng(7).integers(0, 256, size=(24, 32, 32, 3), dtype=np.uint8)
    np.save(OUT / "images.npy", images)
    extractor = ROOT / "tests" / "fixtures" / "models" / "cifar10" / "inception.json"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tools" / "onnx_export" / "export.py"),
            "cifar10-stats",
            "--extractor",
            str(extractor),
            "--npy",
            str(OUT / "images.npy"),
            "--out",
            str(OUT / "images_stats.npz"),
        ],
        check=True,
    )
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()

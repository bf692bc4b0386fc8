"""Driver of the Rust integration test ``tests/python.rs`` (not a pytest module): runs every
case of a manifest written by that test with s3schedule and the package's numpy mixture, in
float64, and saves each output for the test to compare with s3's.

Usage: python rust_cases.py MANIFEST.json
The manifest holds ``mixtures`` (s3 mixture files) and ``cases`` (``id``, ``family``,
``schedule`` file, ``mixture`` index, ``x_T`` and ``out`` .npy paths, and optionally
``frame``). The noise schedule of each case is resolved from the schedule file itself (its
name and sigmas), as a user's would be.

``frame: "ve"`` runs the case in the variance-exploding frame x/alpha that k-diffusion and
ComfyUI use for VP models (starting at x_T/alpha_0; the output is mapped back to s3's frame:
times alpha_N, or as is when the schedule denoises to x0), which is where time offsets
rescale the model's input (x~ alpha_t/alpha_m).
"""

import json
import sys
import time

import numpy as np

import s3schedule


def main(path: str) -> int:
    with open(path, encoding="utf-8") as f:
        manifest = json.load(f)
    mixtures = [s3schedule.GaussianMixture.from_json(p) for p in manifest["mixtures"]]
    start = time.perf_counter()
    for case in manifest["cases"]:
        mix = mixtures[case["mixture"]]
        x_T = np.load(case["x_T"])
        try:
            frame = case.get("frame", "native")
            plan = s3schedule.plan(case["schedule"], frame=frame)
            start, end = 1.0, 1.0
            if frame == "ve":
                start = 1.0 / plan.points[0].meta.alpha
                end = 1.0 if plan.schedule.denoises else plan.points[-1].meta.alpha
            out = s3schedule.run(plan, mix, x_T * start, output="both", model_time="point",
                                 data_mean=mix.data_mean) * end
        except Exception as e:  # report the case, then fail the whole run
            print(f"case {case['id']} ({case['family']}): {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        np.save(case["out"], np.asarray(out, dtype=np.float64))
    n = len(manifest["cases"])
    print(f"{n} cases run by s3schedule in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

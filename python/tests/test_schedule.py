"""The loader (s3's rules and messages), noise-schedule binding, and the numpy runner's
bookkeeping: model-call counts, AFS, frames. Agreement with s3 itself is tests/python.rs."""

import copy
import json
import math

import numpy as np
import pytest

import s3schedule as s3s
from helpers import doc, fixture, mixture, reference, relerr, with_afs

UNIPC = "vp-discrete_unipc-bh2-3_logsnr.json"


def error_of(d, source="bad.json") -> str:
    with pytest.raises(s3s.ScheduleError) as e:
        s3s.parse(d, source)
    return str(e.value)


def test_fixtures_load_and_round_trip():
    for name in [UNIPC, "vp-discrete_dpm-solver++-3M_trailing.json", "edm_dpm-solver-3M_karras-rho-7.json",
                 "flow_unipc-bh2-3_flow-euler.json", "vp-linear_unipc-bh1-3_time-quadratic.json",
                 "vp-discrete-scaled_unipc-bh1-3_time-quadratic.json"]:
        s = s3s.load(fixture(name))
        assert s.nfe == 5 and s.counted_nfe() == 5
        assert s3s.to_dict(s) == doc(name), name


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d.update(format="other"), 'field `format` is "other"; expected "s3-schedule"'),
    (lambda d: d.update(version=2), "field `version` is 2; this package reads version 1"),
    (lambda d: d.update(extra=1), "unknown field `extra`"),
    (lambda d: d["steps"][1].update(order=3),
     "step 1: order 3 needs 3 history points but only 2 exist before step 1 (order_i ≤ i + 1)"),
    (lambda d: d.update(nfe=4), "field `nfe` is 4 but the decisions make 5 model calls (5 steps)"),
    (lambda d: d["timesteps"].__setitem__(2, 0.9),
     "timesteps must strictly decrease: timesteps[2] = 0.9 is not below timesteps[1]"),
    (lambda d: d["steps"][4].update(corrector={"type": "pseudo", "order": 2, "derivatives": [{"points": [-1]}]}),
     "step 4: the last step cannot have a corrector"),
    (lambda d: d["steps"][1]["derivatives"][0].update(points=[-3]),
     "step 1: predictor: derivative 1: point -3 is not in the history (2 points: -1 … -2)"),
    (lambda d: d["steps"][1]["derivatives"][0].update(points=[-1]),
     "step 1: predictor: derivative 1: point -1 is the start point itself"),
    (lambda d: d["steps"][1]["derivatives"][0].update(relaxation={"type": "cubic"}),
     "steps[1].derivatives[0].relaxation: unknown type 'cubic'"),
    (lambda d: d["steps"][1]["derivatives"][0].update(relaxation={"type": "linear"}),
     "relaxation `linear` needs field `c`"),
    (lambda d: d["steps"][2].update(prediction="score"), 'steps[2].prediction: "score"; expected "noise" or "data"'),
    (lambda d: d["steps"][2]["corrector"].update(derivatives=[]),
     "step 2: corrector: order 4 needs 3 derivative entries (d = 1..3), got 0"),
    (lambda d: d.update(afs="zero"), 'field `afs` is "zero"; expected one of none, zero_x0, average_x0'),
    (lambda d: d["timesteps"].__setitem__(1, -0.5), "timesteps[1] = -0.5; expected a finite positive time"),
])
def test_bad_schedules_name_the_step_or_field(edit, expected):
    d = copy.deepcopy(doc(UNIPC))
    edit(d)
    msg = error_of(d)
    assert msg.startswith("bad.json: ") and expected in msg, msg


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(s3s.ScheduleError, match="nope.json: cannot read the schedule file"):
        s3s.load(tmp_path / "nope.json")
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(s3s.ScheduleError, match="broken.json: not a valid s3 schedule"):
        s3s.load(p)


def test_flow_pure_noise_start_rules_name_the_step():
    d = copy.deepcopy(doc("flow_unipc-bh2-3_flow-euler.json"))
    d["steps"][1] = {"prediction": "data", "order": 2, "derivatives": [{"points": [-2]}]}
    d["steps"][0].pop("corrector", None)
    with pytest.raises(s3s.ScheduleError) as e:
        s3s.plan(d)
    assert "step 1: predictor: derivative 1 uses point -2; t_0 = 1.0 is pure noise under flow" in str(e.value)


def test_noise_schedule_binding():
    # vp-discrete betas come from the file's sigmas; a wrong choice is refused.
    s = s3s.load(fixture("vp-discrete-scaled_unipc-bh1-3_time-quadratic.json"))
    assert s3s.resolve_noise_schedule(s).spec() == {"name": "vp-discrete", "betas": "scaled_linear"}
    assert s3s.resolve_noise_schedule(s3s.load(fixture(UNIPC))).spec()["betas"] == "linear"
    with pytest.raises(s3s.ScheduleError, match=r"sigmas\[0\] = .* written for another noise schedule"):
        s3s.resolve_noise_schedule(s, {"name": "vp-discrete", "betas": "linear"})
    with pytest.raises(s3s.ScheduleError, match="written for `vp-discrete` but is run under `edm`"):
        s3s.resolve_noise_schedule(s, "edm")
    bare = doc(UNIPC)
    del bare["noise_schedule"], bare["sigmas"]
    with pytest.raises(s3s.ScheduleError, match="does not name its noise schedule"):
        s3s.plan(bare)
    assert s3s.plan(bare, "vp-discrete").noise_schedule.spec()["betas"] == "linear"


def test_noise_schedules_agree_with_the_sigmas_s3_wrote():
    # Every fixture's sigmas are s3's own sampler sigmas; recomputing them must agree.
    for name in ["edm_dpm-solver-3M_karras-rho-7.json", "flow_unipc-bh2-3_flow-euler.json",
                 "vp-linear_unipc-bh1-3_time-quadratic.json"]:
        s = s3s.load(fixture(name))
        ns = s3s.resolve_noise_schedule(s)
        for t, sig in zip(s.timesteps, s.sigmas):
            assert ns.sampler_sigma(t) == pytest.approx(sig, rel=1e-14, abs=0)
    for ns in [s3s.noise_schedule(n) for n in ["vp-linear", "vp-cosine", "edm", "flow"]] + [
            s3s.noise_schedule({"name": "vp-discrete", "betas": b}) for b in ["linear", "scaled_linear"]]:
        for t in np.linspace(ns.t_min(), ns.t_max() * 0.999, 50):
            assert ns.t_of_lambda(ns.lambda_(t)) == pytest.approx(t, rel=1e-9)


class Counting:
    """An eps model of the mixture that counts its calls and records its times."""

    def __init__(self):
        self.mix, self.times = mixture(), []

    def __call__(self, x, point):
        self.times.append(point.t)
        return self.mix(x, point)[0]


@pytest.mark.parametrize("afs", ["none", "zero_x0", "average_x0"])
def test_runner_calls_the_model_nfe_times_at_the_schedule_times(afs):
    d = doc(UNIPC) if afs == "none" else with_afs(UNIPC, afs)
    model = Counting()
    z = np.random.default_rng(0).standard_normal((6, 2, 2, 2))
    out = s3s.run(d, model, z, model_time="point", data_mean=model.mix.data_mean)
    assert len(model.times) == d["nfe"]
    first = 0 if afs == "none" else 1
    assert model.times == d["timesteps"][first:first + d["nfe"]]
    assert out.shape == z.shape and np.isfinite(out).all()


def test_average_x0_needs_the_data_mean():
    with pytest.raises(s3s.RunError, match="afs `average_x0` needs the data mean"):
        s3s.run(with_afs(UNIPC, "average_x0"), Counting(), np.zeros((2, 2, 2, 2)), model_time="point")


def test_eps_output_refused_at_pure_noise():
    with pytest.raises(s3s.ModelError, match="gives no x0 at α = 0.0"):
        s3s.run(fixture("flow_unipc-bh2-3_flow-euler.json"), Counting(), np.ones((2, 2, 2, 2)),
                model_time="point")


@pytest.mark.parametrize("name", [UNIPC, "vp-linear_unipc-bh1-3_time-quadratic.json"])
def test_variance_exploding_frame_runs_the_same_solver(name):
    """The VE frame (k-diffusion, ComfyUI) carries x/alpha; the run is the same."""
    mix = mixture()
    z = np.random.default_rng(1).standard_normal((5, 2, 2, 2))
    native = reference(fixture(name), z)
    p = s3s.plan(fixture(name), frame="ve")
    ve = s3s.run(p, mix, z / p.points[0].meta.alpha, output="both", model_time="point")
    a_end = p.points[-1].meta.alpha
    assert relerr(ve * a_end, native) < 1e-12


def test_outputs_convert_consistently():
    """eps, x0, v and velocity outputs of the same model give the same run."""
    mix = mixture()
    z = np.random.default_rng(2).standard_normal((4, 2, 2, 2))
    ref = reference(fixture(UNIPC), z)

    def out(kind):
        def model(x, p):
            eps, x0 = mix(x, p)
            return {"eps": eps, "x0": x0, "v": p.alpha * eps - p.sigma * x0, "velocity": eps - x0}[kind]
        return model

    for kind in ["eps", "x0", "v", "velocity"]:
        got = s3s.run(fixture(UNIPC), out(kind), z, output=kind, model_time="point")
        assert relerr(got, ref) < 1e-10, kind


def test_phi_and_finite_differences():
    from s3schedule.fd import derivative_weights
    from s3schedule.phi import phi

    for z in [-3.0, -0.999, -1e-8, 0.0, 0.5, 1.0, 2.5]:
        closed = (math.expm1(z) - z) / (z * z) if abs(z) > 1e-3 else 0.5 + z / 6
        assert phi(2, z) == pytest.approx(closed, rel=1e-6)
    f = lambda x: 1 + 2 * x - 3 * x * x + 0.5 * x ** 3  # noqa: E731
    off = [-0.4, -0.9, 0.3]
    est = lambda d: sum(a * (f(o) - f(0)) for a, o in zip(derivative_weights(off, d), off))  # noqa: E731
    assert est(1) == pytest.approx(2.0) and est(2) == pytest.approx(-6.0) and est(3) == pytest.approx(3.0)


def test_json_written_by_to_dict_is_loadable(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps(with_afs(UNIPC, "zero_x0")))
    assert s3s.load(p).afs == "zero_x0"

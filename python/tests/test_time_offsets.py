"""``time_offsets`` in the loader and the numpy runner (no torch): s3's rules and messages,
the round trip, the times the model is told, the semantics (the eps predicted at t + delta is
kept, x0 recomputed at t) and the same network input in the native and the VE frame.
Agreement with s3's own sampler is tests/python.rs (its "offsets" families)."""

import copy
import json
import math

import numpy as np
import pytest

import s3schedule as s3s
from helpers import doc, fixture, mixture, reference, relerr, with_offsets

UNIPC = "vp-discrete_unipc-bh2-3_logsnr.json"  # data prediction, correctors
NOISE = "edm_dpm-solver-3M_karras-rho-7.json"  # noise prediction
FLOW = "flow_unipc-bh2-3_flow-euler.json"  # t_0 = 1: pure noise
LINEAR = "vp-linear_unipc-bh1-3_time-quadratic.json"


def error_of(d, source="bad.json") -> str:
    with pytest.raises(s3s.ScheduleError) as e:
        s3s.plan(s3s.parse(d, source) if not isinstance(d, s3s.Schedule) else d)
    return str(e.value)


def test_offsets_load_round_trip_and_are_optional():
    d = with_offsets(UNIPC)
    s = s3s.parse(d)
    assert s.time_offsets == d["time_offsets"] and s.has_time_offsets
    assert s3s.to_dict(s) == d
    assert [s.model_time(i) for i in range(5)] == [t + o for t, o in zip(d["timesteps"], d["time_offsets"])]
    plain = s3s.load(fixture(UNIPC))
    assert plain.time_offsets is None and "time_offsets" not in s3s.to_dict(plain)
    assert not plain.has_time_offsets and plain.time_offset(3) == 0.0
    zeros = copy.deepcopy(doc(UNIPC))
    zeros["time_offsets"] = [0.0] * 5
    assert not s3s.parse(zeros).has_time_offsets and s3s.to_dict(s3s.parse(zeros)) == zeros
    nulls = copy.deepcopy(doc(UNIPC))
    nulls["time_offsets"] = None  # serde reads null as absent
    assert s3s.parse(nulls).time_offsets is None


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d.update(time_offsets=[0.0] * 4),
     "field `time_offsets`: 4 values for 5 steps; expected one per step"),
    (lambda d: d.update(time_offsets=0.1), "field `time_offsets`: expected a list, got 0.1"),
    (lambda d: d.update(time_offsets=[0.0, "x", 0.0, 0.0, 0.0]),
     'field `time_offsets`: time_offsets[1]: expected a number, got "x"'),
    (lambda d: d.update(time_offsets=[0.0, 0.0, 0.0, float("nan"), 0.0]),
     "field `time_offsets`: time_offsets[3] = nan gives the model time nan"),
    (lambda d: d.update(time_offsets=[0.0, 0.0, 0.0, 0.0, -0.5]),
     "field `time_offsets`: time_offsets[4] = -0.5 gives the model time"),
    (lambda d: d.update(afs="zero_x0", nfe=4, time_offsets=[-0.1, 0.0, 0.0, 0.0, 0.0]),
     "field `time_offsets`: time_offsets[0] = -0.1, but the analytical first step makes no model "
     "call at t_0; expected 0"),
])
def test_bad_offsets_name_the_field(edit, expected):
    d = copy.deepcopy(doc(UNIPC))
    edit(d)
    with pytest.raises(s3s.ScheduleError) as e:
        s3s.parse(d, "bad.json")
    msg = str(e.value)
    assert msg.startswith("bad.json: ") and expected in msg, msg


def test_offsets_are_checked_against_the_noise_schedule():
    d = copy.deepcopy(doc(UNIPC))
    d["time_offsets"] = [0.01, 0.0, 0.0, 0.0, 0.0]  # t_0 = T = 1
    msg = error_of(d)
    assert ("field `time_offsets`: time_offsets[0] = 0.01 puts the model time 1.01 outside the "
            "vp-discrete schedule (0, 1.0]") in msg, msg
    f = copy.deepcopy(doc(FLOW))
    f["time_offsets"] = [-0.01, 0.0, 0.0, 0.0, 0.0]
    msg = error_of(f)
    assert ("time_offsets[0] = -0.01, but t_0 is pure noise under flow (α = 0), where x0 cannot "
            "be converted from a shifted ε; expected 0") in msg, msg
    # A small offset at T within the slack s3 allows for times written in decimal is fine.
    d["time_offsets"][0] = 1e-12
    s3s.plan(d)


class Recording:
    """The mixture as an eps model that records the points it is told and its inputs."""

    def __init__(self):
        self.mix, self.points, self.inputs = mixture(), [], []

    def __call__(self, x, point):
        self.points.append(point)
        self.inputs.append(np.array(x))
        return self.mix(x, point)  # (eps, x0): output "both"


@pytest.mark.parametrize("name, afs", [(UNIPC, "none"), (UNIPC, "average_x0"), (NOISE, "none"),
                                       (FLOW, "none"), (LINEAR, "zero_x0")])
def test_the_model_is_told_t_plus_delta(name, afs):
    d = with_offsets(name, afs)
    model = Recording()
    z = np.random.default_rng(0).standard_normal((4, 2, 2, 2)) * (d["timesteps"][0] if name == NOISE else 1)
    seen = []
    s3s.run(d, model, z, output="both", model_time="point", data_mean=model.mix.data_mean,
            callback=lambda i, p, x, eps, x0: seen.append(p.t))
    first = 0 if afs == "none" else 1
    calls = range(first, first + d["nfe"])
    assert [p.t for p in model.points] == [d["timesteps"][i] + d["time_offsets"][i] for i in calls]
    assert seen == [d["timesteps"][i] for i in calls]  # the callback gets the solver's points
    assert sum(d["time_offsets"][i] != 0 for i in calls) >= 3


def shifted_model(d, ns):
    """The semantics spelt out: at the solver's point t, the mixture's eps at t + delta(t) for
    the same x, and x0 = (x - sigma_t eps)/alpha_t."""
    mix = mixture()
    delta = dict(zip(d["timesteps"], d["time_offsets"]))

    def model(x, p):
        if delta.get(p.t, 0.0) == 0.0:
            return mix(x, p)
        m = p.t + delta[p.t]
        eps = mix.predictions(x, ns.alpha(m), ns.sigma(m))[0]
        return eps, (x - p.sigma * eps) * (1.0 / p.alpha)

    return model


@pytest.mark.parametrize("name, afs", [(UNIPC, "none"), (UNIPC, "zero_x0"), (NOISE, "none"),
                                       (FLOW, "none"), (LINEAR, "average_x0")])
def test_the_eps_at_t_plus_delta_is_kept_and_x0_recomputed_at_t(name, afs):
    d = with_offsets(name, afs)
    plain = copy.deepcopy(d)
    del plain["time_offsets"]
    ns = s3s.resolve_noise_schedule(s3s.parse(d))
    mean = mixture().data_mean
    z = np.random.default_rng(1).standard_normal((5, 2, 2, 2)) * (d["timesteps"][0] if name == NOISE else 1)
    got = reference(d, z, data_mean=mean)
    want = s3s.run(plain, shifted_model(d, ns), z, output="both", model_time="point", data_mean=mean)
    assert relerr(got, want) < 1e-13
    assert relerr(reference(plain, z, data_mean=mean), want) > 1e-4  # the offsets matter


def test_zero_offsets_run_exactly_as_none():
    z = np.random.default_rng(2).standard_normal((3, 2, 2, 2))
    zeros = copy.deepcopy(doc(UNIPC))
    zeros["time_offsets"] = [0.0] * 5
    assert np.array_equal(reference(zeros, z), reference(fixture(UNIPC), z))


class VeDenoiser:
    """A k-diffusion-style VP denoiser in the VE frame x~ = x0 + sigma~ eps: it scales its input
    by c_in = 1/sqrt(sigma~^2 + 1) (= alpha) before the network and returns x0 (output "x0" with
    model_time "sigma"). The network (the mixture's eps at the VP point of sigma~) records what
    it sees."""

    def __init__(self):
        self.mix, self.inputs = mixture(), []

    def __call__(self, x, sigma):
        a = 1.0 / math.sqrt(sigma * sigma + 1.0)
        raw = x * a
        self.inputs.append((raw, sigma))
        eps = self.mix.predictions(raw, a, sigma * a)[0]
        return x - sigma * eps


@pytest.mark.parametrize("name, afs", [(UNIPC, "none"), (LINEAR, "zero_x0"),
                                       ("vp-discrete_dpm-solver++-3M_trailing.json", "none")])
def test_the_ve_frame_gives_the_network_the_same_raw_x_at_t_plus_delta(name, afs):
    """Native frame: the network gets x at m = t + delta. VE frame: the state is x~ = x/alpha_t
    and the model is given x~ alpha_t/alpha_m at sigma~_m, so c_in = alpha_m hands the network
    x again; both runs see the same inputs and give the same samples."""
    d = with_offsets(name, afs)
    z = np.random.default_rng(3).standard_normal((4, 2, 2, 2))
    native = Recording()
    want = s3s.run(d, native, z, output="both", model_time="point")
    p = s3s.plan(d, frame="ve")
    ve = VeDenoiser()
    got = s3s.run(p, ve, z / p.points[0].meta.alpha, output="x0", model_time="sigma")
    end_alpha = 1.0 if d["timesteps"][-1] == 0.0 else p.points[-1].meta.alpha  # x0, or x/alpha
    assert relerr(got * end_alpha, want) < 1e-12
    assert len(ve.inputs) == len(native.inputs) == d["nfe"]
    for (raw, sigma), x, mp in zip(ve.inputs, native.inputs, native.points):
        assert relerr(raw, x) < 1e-13
        assert sigma == pytest.approx(mp.sigma / mp.alpha, rel=1e-14)


def test_a_stepper_fed_without_pending_call_refuses_a_shifted_point():
    plan = s3s.plan(with_offsets(UNIPC))
    st = s3s.Stepper(plan, np.zeros((1, 2, 2, 2)))
    x, p = st.pending()
    # Point 0 of UNIPC is shifted (delta_0 < 0): feeding pending()'s predictions is refused.
    assert plan.is_shifted(0)
    eps, x0 = mixture()(x, p)
    with pytest.raises(s3s.RunError, match=r"time_offsets\[0\] = .*pending_call\(\)"):
        st.feed(eps, x0)
    x_in, mp = st.pending_call()
    assert mp.t == p.t + plan.schedule.time_offsets[0] and x_in is x
    st.feed(*mixture()(x_in, mp))
    assert st.calls == 1


def test_json_with_offsets_written_by_to_dict_loads(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(s3s.to_dict(s3s.parse(with_offsets(NOISE)))))
    assert s3s.load(path).time_offsets == with_offsets(NOISE)["time_offsets"]

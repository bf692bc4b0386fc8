"""sample_s3 under k-diffusion's calling convention, with k-diffusion's own
DiscreteEpsDDPMDenoiser (from the PyPI package k-diffusion 0.1.1.post1) wrapping an exact
eps model: equal to the numpy runner; sigmas checked; callback and extra_args passed.

k-diffusion's package __init__ imports training-only libraries (wandb, clip, kornia,
torchvision, …) that its model wrappers never use, so ``k_diffusion/external.py`` is
loaded here under an empty package, with those of its imports that are missing stubbed."""

import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest

from conftest import require
from helpers import fixture, mixture, reference, relerr, with_afs, with_offsets

torch = require("torch")

import s3schedule as s3s  # noqa: E402
from s3schedule.k_diffusion import make_sampler  # noqa: E402

UNIPC = "vp-discrete_unipc-bh2-3_logsnr.json"


def k_external():
    """k_diffusion.external without running the package's __init__."""
    if "k_diffusion.external" in sys.modules:
        return sys.modules["k_diffusion.external"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        pytest.fail("k-diffusion is not installed; run `bash scripts/install_python_test_deps.sh`",
                    pytrace=False)
    for name, attrs in [("torchvision", ()), ("torchvision.transforms", ()),
                        ("torchvision.transforms.functional", ()), ("torchdiffeq", ("odeint",)),
                        ("torchsde", ()), ("scipy", ()), ("scipy.integrate", ())]:
        try:
            importlib.import_module(name)
        except ImportError:
            mod = types.ModuleType(name)
            for a in attrs:
                setattr(mod, a, None)
            sys.modules[name] = mod
            parent, _, child = name.rpartition(".")
            if parent:
                setattr(sys.modules[parent], child, mod)
    pkg = importlib.util.module_from_spec(spec)  # the package, its __init__ not executed
    sys.modules["k_diffusion"] = pkg
    return importlib.import_module("k_diffusion.external")


class ExactEps(torch.nn.Module):
    """An eps network of the mixture on k-diffusion's fractional training index t: the noise
    level of t is recovered from the wrapper's own log-sigma table (the exact inverse of its
    sigma_to_t), so the comparison is not blurred by the index's interpolation."""

    def __init__(self, log_sigmas):
        super().__init__()
        self.mix, self.log_sigmas, self.calls = mixture(), log_sigmas, []

    def forward(self, x, t, cond=None):
        self.calls.append(cond)
        lo = t.floor().long().clamp(max=len(self.log_sigmas) - 2)
        w = t - lo
        sigma = ((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[lo + 1]).exp()[0].item()
        alpha = 1.0 / (1.0 + sigma * sigma) ** 0.5
        return self.mix.predictions(x, alpha, sigma * alpha)[0]


def denoiser():
    ext = k_external()
    ns = s3s.noise_schedule({"name": "vp-discrete", "betas": "linear"})
    acp = torch.tensor([ns.alphas_cumprod(i) for i in range(1000)], dtype=torch.float64)
    sigmas = ((1 - acp) / acp) ** 0.5
    inner = ExactEps(sigmas.log())
    return ext.DiscreteEpsDDPMDenoiser(inner, acp, quantize=False), inner


@pytest.mark.parametrize("afs", ["none", "zero_x0", "average_x0"])
def test_sample_s3_with_k_diffusions_discrete_eps_denoiser(afs):
    doc = fixture(UNIPC) if afs == "none" else with_afs(UNIPC, afs)
    mean = mixture().data_mean
    sample = make_sampler(doc, data_mean=mean if afs == "average_x0" else None)
    model, inner = denoiser()
    sigmas = torch.tensor(sample.sigmas, dtype=torch.float64)
    z = torch.randn(4, 2, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    alpha0 = sample.plan.points[0].meta.alpha
    seen = []
    out = sample(model, z / alpha0, sigmas, extra_args={"cond": "c"},
                 callback=lambda d: seen.append((d["i"], float(d["sigma"]))))
    want = reference(doc, z.numpy(), data_mean=mean if afs == "average_x0" else None)
    # The run ends at t_N > 0 in the VE frame x/alpha.
    assert relerr(out.numpy() * sample.plan.points[-1].meta.alpha, want) < 1e-12
    nfe = sample.schedule.nfe
    assert inner.calls == ["c"] * nfe
    first = 0 if afs == "none" else 1
    assert [i for i, _ in seen] == list(range(first, first + nfe))
    assert [s for _, s in seen] == sample.sigmas[first:first + nfe]


@pytest.mark.parametrize("afs", ["none", "zero_x0"])
def test_time_offsets_with_k_diffusions_discrete_eps_denoiser(afs):
    """The model is told sigma~ of t + delta and given x~ alpha_t/alpha_m, which the
    denoiser's c_in = alpha_m turns into the network's x: equal to the native runner."""
    doc = with_offsets(UNIPC, afs)
    sample = make_sampler(doc)
    model, inner = denoiser()
    told = []

    def recorded(x, sigma, **kw):
        told.append(float(sigma[0]))
        return model(x, sigma, **kw)

    sigmas = torch.tensor(sample.sigmas, dtype=torch.float64)
    z = torch.randn(4, 2, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    pts = sample.plan.points
    seen = []
    out = sample(recorded, z / pts[0].meta.alpha, sigmas, extra_args={"cond": "c"},
                 callback=lambda d: seen.append(float(d["sigma"])))
    want = reference(doc, z.numpy())
    assert relerr(out.numpy() * pts[-1].meta.alpha, want) < 1e-12
    first, nfe = (0 if afs == "none" else 1), sample.schedule.nfe
    ns = sample.noise_schedule
    shifted = [ns.ve_sigma(doc["timesteps"][i] + doc["time_offsets"][i]) for i in range(first, first + nfe)]
    assert told == pytest.approx(shifted, rel=1e-14)
    assert sample.model_sigmas[first:first + nfe] == told
    assert seen == sample.sigmas[first:first + nfe]  # the callback reports the schedule's sigmas
    assert inner.calls == ["c"] * nfe


def test_time_offsets_in_edms_own_frame():
    """EDM runs in its own frame: the denoiser gets x itself at sigma = t + delta."""
    name = "edm_dpm-solver-3M_karras-rho-7.json"
    doc = with_offsets(name)
    sample = make_sampler(doc)
    mix, told = mixture(), []

    def model(x, sigma):
        told.append(float(sigma[0]))
        return mix.predictions(x, 1.0, float(sigma[0]))[1]

    z = np.random.default_rng(6).standard_normal((3, 2, 2, 2)) * doc["timesteps"][0]
    out = sample(model, torch.tensor(z), torch.tensor(sample.sigmas, dtype=torch.float64))
    assert relerr(out.numpy(), reference(doc, z)) < 1e-12
    assert told == [t + d for t, d in zip(doc["timesteps"], doc["time_offsets"])]


def test_a_schedule_ending_above_zero_returns_the_ve_state():
    name = "vp-linear_unipc-bh1-3_time-quadratic.json"
    sample = make_sampler(fixture(name))
    mix = mixture()
    z = np.random.default_rng(4).standard_normal((3, 2, 2, 2))

    def model(x, sigma):  # an exact VE-frame denoiser: x = x0 + sigma eps
        s = float(sigma[0])
        a = 1.0 / (1.0 + s * s) ** 0.5
        return mix.predictions(x * a, a, s * a)[1]

    pts = sample.plan.points
    out = sample(model, torch.tensor(z / pts[0].meta.alpha),
                 torch.tensor(sample.sigmas, dtype=torch.float64))
    assert relerr(out.numpy() * pts[-1].meta.alpha, reference(fixture(name), z)) < 1e-12


def test_sigmas_that_are_not_the_schedules_are_refused():
    sample = make_sampler(fixture(UNIPC))
    model, _ = denoiser()
    x = torch.zeros(1, 2, 2, 2, dtype=torch.float64)
    with pytest.raises(s3s.ScheduleError, match="not this schedule's: got .* \\(6 values\\), expected"):
        sample(model, x, torch.tensor(sample.sigmas[:-1] + [0.5]))
    with pytest.raises(s3s.ScheduleError, match="uncut \\(denoise = 1\\)"):
        sample(model, x, torch.tensor(sample.sigmas[1:]))
    # float32 sigmas (ComfyUI's SIGMAS) are accepted.
    sample(model, x, torch.tensor(sample.sigmas, dtype=torch.float32))

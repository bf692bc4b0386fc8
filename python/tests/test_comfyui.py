"""The ComfyUI node. ComfyUI is not on PyPI (the name `comfyui` holds no release that
installs), so the node is tested against ComfyUI's node interface (INPUT_TYPES,
RETURN_TYPES, FUNCTION, CATEGORY, NODE_CLASS_MAPPINGS) and a stand-in for
``comfy.samplers.KSAMPLER`` written to ComfyUI's calling convention: ``sample()`` scales the
noise into the model's frame at sigmas[0] (EPS: noise * sqrt(1 + sigma^2) at the model's
largest sigma; CONST/flow: sigma * noise + (1 - sigma) * latent), calls
``sampler_function(model_k, noise, sigmas, extra_args=..., callback=..., disable=...)`` with
a denoiser model_k(x, sigma, **extra_args) -> x0, and undoes the scaling at sigmas[-1]."""

import sys
import types

import numpy as np
import pytest

from conftest import require
from helpers import fixture, mixture, reference, relerr, with_afs, with_offsets

torch = require("torch")

import s3schedule as s3s  # noqa: E402
import s3schedule.comfyui as node  # noqa: E402


class EpsSampling:
    """ComfyUI's EPS model sampling of a VP model (SD1.x-style)."""

    def __init__(self, sigma_max):
        self.sigma_max = sigma_max

    def noise_scaling(self, sigma, noise, latent, max_denoise):
        scaled = noise * torch.sqrt(1.0 + sigma ** 2) if max_denoise else noise * sigma
        return scaled + latent

    def inverse_noise_scaling(self, sigma, latent):
        return latent

    def denoised(self, inner, x, sigma):
        out = inner(x / (sigma ** 2 + 1.0) ** 0.5, sigma)
        return x - out * sigma


class ConstSampling:
    """ComfyUI's CONST model sampling of a flow model (SD3/Flux-style)."""

    sigma_max = 1.0

    def noise_scaling(self, sigma, noise, latent, max_denoise):
        return sigma * noise + (1.0 - sigma) * latent

    def inverse_noise_scaling(self, sigma, latent):
        return latent / (1.0 - sigma)

    def denoised(self, inner, x, sigma):
        return x - inner(x, sigma) * sigma


class FakeKSampler:
    """comfy.samplers.KSAMPLER's calling convention (see the module notes)."""

    def __init__(self, sampler_function, extra_options={}, inpaint_options={}):  # noqa: B006
        self.sampler_function, self.extra_options = sampler_function, extra_options

    def sample(self, sampling, inner, sigmas, extra_args, callback, noise, latent_image):
        max_denoise = abs(float(sigmas[0]) - sampling.sigma_max) <= 1e-5 * sampling.sigma_max
        x = sampling.noise_scaling(sigmas[0], noise, latent_image, max_denoise)

        def model_k(x, sigma, **kwargs):
            assert set(kwargs) == {"denoise_mask", "model_options", "seed"}
            return sampling.denoised(inner, x, sigma.reshape(-1, 1, 1, 1))

        total = len(sigmas) - 1
        k_callback = lambda d: callback(d["i"], d["denoised"], d["x"], total)  # noqa: E731
        out = self.sampler_function(model_k, x, sigmas, extra_args=extra_args, callback=k_callback,
                                    disable=True, **self.extra_options)
        return sampling.inverse_noise_scaling(sigmas[-1], out)


@pytest.fixture
def fake_comfy(monkeypatch):
    comfy = types.ModuleType("comfy")
    samplers = types.ModuleType("comfy.samplers")
    samplers.KSAMPLER = FakeKSampler
    comfy.samplers = samplers
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.samplers", samplers)


def test_node_interface():
    assert node.NODE_CLASS_MAPPINGS == {"S3ScheduleSampler": node.S3ScheduleSampler}
    assert set(node.NODE_DISPLAY_NAME_MAPPINGS) == set(node.NODE_CLASS_MAPPINGS)
    cls = node.S3ScheduleSampler
    types_ = cls.INPUT_TYPES()
    assert types_["required"]["schedule_path"][0] == "STRING"
    assert {k: v[0] for k, v in types_["optional"].items()} == {"noise_schedule": "STRING",
                                                                "data_mean_path": "STRING"}
    assert cls.RETURN_TYPES == ("SAMPLER", "SIGMAS") and callable(getattr(cls(), cls.FUNCTION))
    assert isinstance(cls.CATEGORY, str) and cls.CATEGORY.startswith("sampling/")


def test_outside_comfyui_the_node_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "comfy", None)
    with pytest.raises(ImportError, match="runs inside ComfyUI"):
        node.S3ScheduleSampler().load(fixture("vp-discrete_unipc-bh2-3_logsnr.json"))


def exact_inner(kind):
    """The network inside ComfyUI's model sampling: eps of the mixture on VP inputs, or the
    flow velocity eps - x0 at t = sigma."""
    mix = mixture()

    def inner(x_in, sigma):
        s = float(sigma.flatten()[0])
        if kind == "eps":
            a = 1.0 / (1.0 + s * s) ** 0.5
            return mix.predictions(x_in, a, s * a)[0]
        eps, x0 = mix.predictions(x_in, 1.0 - s, s)
        return eps - x0

    return inner


@pytest.mark.parametrize("name, afs, kind, offsets", [
    ("vp-discrete_unipc-bh2-3_logsnr.json", "none", "eps", False),
    ("vp-discrete_unipc-bh2-3_logsnr.json", "average_x0", "eps", False),
    ("vp-discrete_dpm-solver++-3M_trailing.json", "zero_x0", "eps", False),
    ("flow_unipc-bh2-3_flow-euler.json", "none", "flow", False),
    ("flow_unipc-bh2-3_flow-euler.json", "zero_x0", "flow", False),
    # time_offsets: the model is told the sigma of t + delta (EPS: with x~ alpha_t/alpha_m)
    ("vp-discrete_unipc-bh2-3_logsnr.json", "none", "eps", True),
    ("vp-discrete_dpm-solver++-3M_trailing.json", "average_x0", "eps", True),
    ("flow_unipc-bh2-3_flow-euler.json", "none", "flow", True),
])
def test_sampler_custom_path_equals_the_numpy_runner(fake_comfy, tmp_path, name, afs, kind,
                                                     offsets):
    path = fixture(name)
    mean = mixture().data_mean
    if afs != "none" or offsets:
        path = tmp_path / "s.json"
        path.write_text(__import__("json").dumps(
            with_offsets(name, afs) if offsets else with_afs(name, afs)))
    mean_path = ""
    if afs == "average_x0":
        mean_path = str(tmp_path / "mean.npy")
        np.save(mean_path, mean)
    sampler, sigmas = node.S3ScheduleSampler().load(str(path), "", mean_path)
    assert isinstance(sampler, FakeKSampler) and sigmas.dtype == torch.float32 and sigmas.ndim == 1
    fn = sampler.sampler_function
    np.testing.assert_allclose(sigmas.numpy(), fn.sigmas, rtol=1e-7)
    z = torch.randn(2, 2, 2, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    sampling = EpsSampling(fn.sigmas[0]) if kind == "eps" else ConstSampling()
    steps = []
    out = sampler.sample(sampling, exact_inner(kind), sigmas.double(),
                         {"denoise_mask": None, "model_options": {}, "seed": 0},
                         lambda i, den, x, total: steps.append((i, total)), z, torch.zeros_like(z))
    want = reference(path, z.numpy(), data_mean=mean if afs == "average_x0" else None)
    # VP runs end in the VE frame x/alpha unless they denoise (x0).
    end_alpha = 1.0 if kind == "flow" or fn.schedule.denoises else fn.plan.points[-1].meta.alpha
    assert relerr(out.numpy() * end_alpha, want) < 1e-6  # the model sees float32 sigmas
    assert len(steps) == fn.schedule.nfe and all(t == len(fn.sigmas) - 1 for _, t in steps)


def test_a_noise_schedule_override_is_checked(fake_comfy):
    with pytest.raises(s3s.ScheduleError, match="written for another noise schedule"):
        node.S3ScheduleSampler().load(fixture("vp-discrete-scaled_unipc-bh1-3_time-quadratic.json"),
                                      '{"name": "vp-discrete", "betas": "linear"}')

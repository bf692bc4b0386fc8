"""S3Scheduler: in diffusers' DDPMPipeline with a tiny random UNet2DModel (model calls,
timesteps, errors), and through the scheduler's step loop on the exact mixture, equal to the
numpy runner in float64 (with and without scale_model_input, AFS, every prediction type)."""

import types

import numpy as np
import pytest

from conftest import require
from helpers import fixture, mixture, reference, relerr, with_afs, with_offsets

torch = require("torch")
require("diffusers")
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel  # noqa: E402

from s3schedule.diffusers import S3Scheduler  # noqa: E402
from s3schedule import RunError, ScheduleError  # noqa: E402

UNIPC = "vp-discrete_unipc-bh2-3_logsnr.json"


def tiny_unet():
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=2, out_channels=2, layers_per_block=1,
                       block_out_channels=(8, 8), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D")).eval()


def recorded_pipeline(scheduler):
    unet = tiny_unet()
    seen = []
    unet.register_forward_pre_hook(lambda m, args: seen.append(float(args[1])))
    return DDPMPipeline(unet=unet, scheduler=scheduler), seen


def test_ddpm_pipeline_calls_the_unet_nfe_times_at_the_schedule_times():
    sched = S3Scheduler(schedule=fixture(UNIPC))
    pipe, seen = recorded_pipeline(sched)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=2, num_inference_steps=sched.nfe, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    ts = sched.schedule.timesteps
    assert len(seen) == sched.nfe == 5
    np.testing.assert_allclose(seen, [1000 * t - 1 for t in ts[:5]], rtol=1e-6)
    assert out.shape == (2, 8, 8, 2) and np.isfinite(out).all()


def test_ddpm_pipeline_calls_the_unet_at_the_shifted_model_times():
    doc = with_offsets(UNIPC)
    sched = S3Scheduler(schedule=doc)
    pipe, seen = recorded_pipeline(sched)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=2, num_inference_steps=sched.nfe, output_type="np",
               generator=torch.Generator().manual_seed(0)).images
    want = [1000 * (t + d) - 1 for t, d in zip(doc["timesteps"], doc["time_offsets"])]
    np.testing.assert_allclose(seen, want, rtol=1e-6)
    assert all(abs(a - 1000 * t + 1) > 1 for a, t in zip(seen, doc["timesteps"]))
    assert out.shape == (2, 8, 8, 2) and np.isfinite(out).all()


def test_ddpm_pipeline_refuses_a_wrong_step_count_and_afs():
    sched = S3Scheduler(schedule=fixture(UNIPC))
    pipe, _ = recorded_pipeline(sched)
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(ValueError, match="num_inference_steps=5 \\(got 1000\\)"):
        pipe(batch_size=1)  # DDPMPipeline's default is 1000 steps
    afs = S3Scheduler(schedule=with_afs(UNIPC, "zero_x0"))
    pipe, seen = recorded_pipeline(afs)
    pipe.set_progress_bar_config(disable=True)
    with pytest.raises(RunError, match="never called scale_model_input\\(\\) \\(e.g. DDPMPipeline\\)"):
        pipe(batch_size=1, num_inference_steps=afs.nfe)
    assert len(seen) == 1


def model_output(mix, x, k, sched, kind):
    """The exact mixture's output of ``kind`` at model call k (at its exact float64 time,
    t + delta under a time offset: the float32 timesteps a UNet gets would blur the
    comparison by ~1e-7)."""
    p = sched.plan.model_point(sched.plan.call_points()[k])
    a, s = p.alpha, p.sigma
    eps, x0 = mix.predictions(x, a, s)
    return {"epsilon": eps, "sample": x0, "v_prediction": a * eps - s * x0,
            "flow_prediction": eps - x0}[kind]


def step_loop(sched, z, kind, scale_input, cfg=False):
    """A pipeline's denoising loop: optional CFG-style doubled batch through
    scale_model_input, one step() per timestep."""
    mix = mixture()
    sched.set_timesteps(sched.nfe)
    latents = z * sched.init_noise_sigma
    for k, t in enumerate(sched.timesteps):
        inp = torch.cat([latents] * 2) if cfg else latents
        if scale_input:
            inp = sched.scale_model_input(inp, t)
        out = model_output(mix, inp, k, sched, kind)
        if cfg:
            out = out.chunk(2)[0]
        latents = sched.step(out, t, latents).prev_sample
    return latents


@pytest.mark.parametrize("name, afs, kind, cfg", [
    (UNIPC, "none", "epsilon", False),
    (UNIPC, "zero_x0", "epsilon", True),
    (UNIPC, "average_x0", "v_prediction", False),
    ("vp-discrete_dpm-solver++-3M_trailing.json", "none", "sample", False),
    ("vp-discrete-scaled_unipc-bh1-3_time-quadratic.json", "zero_x0", "epsilon", False),
    ("edm_dpm-solver-3M_karras-rho-7.json", "none", "sample", False),
    ("edm_dpm-solver-3M_karras-rho-7.json", "average_x0", "epsilon", False),
    ("flow_unipc-bh2-3_flow-euler.json", "none", "flow_prediction", True),
    ("vp-linear_unipc-bh1-3_time-quadratic.json", "zero_x0", "epsilon", False),
])
def test_step_loop_equals_the_numpy_runner(name, afs, kind, cfg):
    doc = fixture(name) if afs == "none" else with_afs(name, afs)
    check_step_loop(doc, afs, kind, cfg)


@pytest.mark.parametrize("name, afs, kind", [
    (UNIPC, "none", "epsilon"),
    (UNIPC, "zero_x0", "v_prediction"),
    ("vp-discrete_dpm-solver++-3M_trailing.json", "none", "sample"),
    ("edm_dpm-solver-3M_karras-rho-7.json", "none", "epsilon"),
    ("flow_unipc-bh2-3_flow-euler.json", "none", "flow_prediction"),
])
def test_step_loop_with_time_offsets_equals_the_numpy_runner(name, afs, kind):
    """The timesteps are the model times of t + delta; the run is the runner's."""
    doc = with_offsets(name, afs)
    sched = S3Scheduler(schedule=doc, prediction_type=kind)
    first = 0 if afs == "none" else 1
    calls = range(first, first + doc["nfe"])
    scale, off = (1.0, 0.0) if name.startswith("edm") else (1000.0, -1.0 if name.startswith("vp") else 0.0)
    want = [scale * (doc["timesteps"][i] + doc["time_offsets"][i]) + off for i in calls]
    np.testing.assert_allclose(sched.timesteps.numpy(), want, rtol=1e-6)
    unshifted = [scale * doc["timesteps"][i] + off for i in calls]
    assert not np.allclose(sched.timesteps.numpy(), unshifted, rtol=1e-4)
    check_step_loop(doc, afs, kind, False)


def check_step_loop(doc, afs, kind, cfg):
    mix = mixture()
    mean = mix.data_mean if afs == "average_x0" else None
    sched = S3Scheduler(schedule=doc, prediction_type=kind,
                        data_mean=None if mean is None else mean.tolist())
    z = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = step_loop(sched, z, kind, scale_input=True, cfg=cfg)
    want = reference(doc, (z * sched.init_noise_sigma).numpy(), data_mean=mean)
    assert got.dtype == torch.float64
    assert relerr(got.numpy(), want) < 1e-12
    if afs == "none":  # without AFS the identity scale_model_input may be skipped
        again = step_loop(sched, z, kind, scale_input=False)
        assert relerr(again.numpy(), want) < 1e-12


def test_float32_step_loop_is_close():
    sched = S3Scheduler(schedule=fixture(UNIPC))
    z = torch.randn(4, 2, 2, 2, generator=torch.Generator().manual_seed(2))
    got = step_loop(sched, z, "epsilon", scale_input=True)
    assert got.dtype == torch.float32
    assert relerr(got.numpy(), reference(fixture(UNIPC), z.numpy())) < 1e-5


def test_from_config_takes_the_pipelines_settings_and_checks_its_betas(tmp_path):
    ddpm = DDPMScheduler(beta_schedule="linear", prediction_type="v_prediction")
    sched = S3Scheduler.from_config(ddpm.config, schedule=fixture(UNIPC))
    assert sched.output == "v" and sched.noise.spec()["betas"] == "linear"
    with pytest.raises(ScheduleError, match="written for vp-discrete with scaled_linear betas but the "
                       "pipeline's model was trained with linear betas"):
        S3Scheduler.from_config(ddpm.config, schedule=fixture("vp-discrete-scaled_unipc-bh1-3_time-quadratic.json"))
    with pytest.raises(ScheduleError, match="beta_schedule 'squaredcos_cap_v2'"):
        S3Scheduler.from_config(DDPMScheduler(beta_schedule="squaredcos_cap_v2").config,
                                schedule=fixture(UNIPC))
    # The configuration (with the schedule inside) saves and loads.
    sched.save_pretrained(tmp_path)
    back = S3Scheduler.from_pretrained(tmp_path)
    assert back.schedule == sched.schedule and torch.equal(back.timesteps, sched.timesteps)


def test_out_of_order_use_is_refused():
    sched = S3Scheduler(schedule=fixture(UNIPC))
    x = torch.zeros(1, 2, 2, 2)
    with pytest.raises(RunError, match="got timestep 5.0 but model call 0 of this schedule is at 999.0"):
        sched.step(x, 5.0, x)
    with pytest.raises(ValueError, match="do not pass timesteps= or sigmas="):
        sched.set_timesteps(timesteps=[999, 500])


class Component(torch.nn.Module):
    """What a pipeline asks of its model components besides calling them."""

    device = torch.device("cpu")
    dtype = torch.float32


class MixtureUNet(Component):
    """An exact eps "UNet" of the mixture for a pipeline, evaluated at the exact time of the
    model call its (float32) timestep names."""

    def __init__(self, sched):
        super().__init__()
        self.config = types.SimpleNamespace(in_channels=2, sample_size=2)
        self.sched, self.mix, self.times = sched, mixture(), []

    def forward(self, x, t):
        self.times.append(float(t))
        k = int(np.argmin(np.abs(self.sched.timesteps.numpy() - float(t))))
        p = self.sched.plan.model_point(self.sched.plan.call_points()[k])
        return types.SimpleNamespace(sample=self.mix.predictions(x, p.alpha, p.sigma)[0])


class IdentityVQ(Component):
    def __init__(self):
        super().__init__()
        self.config = types.SimpleNamespace(scaling_factor=10.0)

    def decode(self, z):
        return types.SimpleNamespace(sample=z)


@pytest.mark.parametrize("afs", ["zero_x0", "average_x0"])
def test_afs_runs_in_a_pipeline_that_calls_scale_model_input(afs):
    """diffusers' LDMPipeline (init_noise_sigma, scale_model_input, step) with an AFS
    schedule: NFE calls from t_1 on, and the runner's result to float32 precision."""
    from diffusers import LDMPipeline

    mean = mixture().data_mean
    doc = with_afs(UNIPC, afs)
    sched = S3Scheduler(schedule=doc, data_mean=mean.tolist() if afs == "average_x0" else None)
    unet = MixtureUNet(sched)
    pipe = LDMPipeline(vqvae=IdentityVQ(), unet=unet, scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(7)
    img = pipe(batch_size=3, num_inference_steps=sched.nfe, generator=gen, output_type="np").images
    z = torch.randn(3, 2, 2, 2, generator=torch.Generator().manual_seed(7))
    want = reference(doc, z.double().numpy(), data_mean=mean if afs == "average_x0" else None)
    got = (img.transpose(0, 3, 1, 2).astype(np.float64) - 0.5) * 2 * 10.0
    assert len(unet.times) == sched.nfe == 4
    np.testing.assert_allclose(unet.times, [1000 * t - 1 for t in sched.schedule.timesteps[1:5]], rtol=1e-6)
    assert relerr(got, want) < 1e-5

"""An s3 schedule as a k-diffusion sampler function: ``make_sampler(schedule)`` returns
``sample_s3(model, x, sigmas, extra_args=None, callback=None, disable=None)``, called like
k-diffusion's ``sample_*`` functions (and ComfyUI's, which share the convention).

The convention: ``model(x, sigma * s_in, **extra_args)`` is a denoiser returning the x0
prediction, and x lives in the frame the model wrapper expects:
- VP and EDM models: the variance-exploding frame x = x0 + sigma eps with sigma = sigma/alpha
  of the VP process (k-diffusion's ``DiscreteEpsDDPMDenoiser`` and ``DiscreteVDDPMDenoiser``,
  ComfyUI's EPS/V model sampling);
- flow models as ComfyUI frames them (CONST model sampling, SD3, Flux): x = (1 - sigma) x0
  + sigma eps with sigma = t.

``sigmas`` must be the schedule's own: its N + 1 sampler sigmas (``schedule.sigmas`` as s3
writes it, also ``sample_s3.sigmas``), 0 last when it denoises. Anything else (a k-diffusion
or ComfyUI scheduler's sigmas, a list truncated by ``denoise < 1``) is refused with both lists
in the message: the schedule's decisions belong to its own timesteps. The run is the s3
schedule exactly, with the analytical first step and the correctors; the model is called
NFE times. A diffusers UNet is wrapped with k-diffusion's ``DiscreteEpsDDPMDenoiser(unet,
alphas_cumprod, quantize=False)`` (not ``CompVisDenoiser``, which expects a CompVis model).

Time offsets (a schedule's ``time_offsets``): the call at sigma_i is made at the sampler sigma
of m = t_i + delta_i instead, with an input chosen so that the network sees the same raw
state x = alpha_t x0 + sigma_t eps as s3's sampler gives its model:
- VE frame (VP models): the carried state is x~ = x/alpha_t; the model gets
  x~ * alpha_t/alpha_m at sigma~_m = sigma_m/alpha_m. Its wrapper scales the input by
  c_in = 1/sqrt(sigma~_m^2 + 1) = alpha_m, so the network sees x~ alpha_t = x at the time of
  sigma~_m (k-diffusion's ``DiscreteEpsDDPMDenoiser``, ComfyUI's EPS/V sampling).
- EDM and flow (native frame, x carried as is): the model gets x at sigma = m.
The eps of the denoised output, eps = (x_in - denoised)/sigma_in, is kept and x0 is
recomputed at t_i (x0 = x~ - sigma~_t eps in the VE frame); the callback's ``denoised`` is
that x0 at sigma_i.
"""

from __future__ import annotations

import math
import os

from .bind import resolve_noise_schedule
from .models import to_predictions
from .plan import plan as make_plan
from .runner import Stepper
from .schedule import Schedule, ScheduleError, load, parse

SIGMA_RTOL = 1e-5  # float32 sigma lists (ComfyUI's SIGMAS) round at ~6e-8


def frame_for(noise_name: str) -> str:
    """The frame k-diffusion and ComfyUI use for a noise-schedule family: flow and EDM run in
    their own frame, VP models in the variance-exploding one."""
    return "native" if noise_name in ("edm", "flow") else "ve"


def _schedule_of(schedule) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, dict):
        return parse(schedule)
    if isinstance(schedule, (str, os.PathLike)):
        return load(schedule)
    raise TypeError(f"schedule: expected a path, a JSON object or a Schedule, got {type(schedule)}")


def check_sigmas(given, expected, source: str) -> None:
    """Raises unless ``given`` equals ``expected`` to float32 precision."""
    got = [float(v) for v in given]
    ok = len(got) == len(expected) and all(
        g == e or abs(g - e) <= SIGMA_RTOL * abs(e) for g, e in zip(got, expected))
    if not ok:
        fmt = lambda v: "[" + ", ".join(f"{x:.6g}" for x in v) + "]"  # noqa: E731
        raise ScheduleError(
            f"{source}: the sigmas passed to the sampler are not this schedule's: got "
            f"{fmt(got)} ({len(got)} values), expected {fmt(expected)} ({len(expected)} values). "
            "An s3 schedule's decisions belong to its own timesteps: pass the schedule's sigmas "
            "(sample_s3.sigmas, or the SIGMAS output of the ComfyUI node), uncut (denoise = 1)")


def make_sampler(schedule, noise_schedule=None, data_mean=None):
    """Binds ``schedule`` (a path, JSON object or Schedule) to a k-diffusion-style sampler
    function. ``data_mean`` (one sample's mean in the model's x0 space, broadcastable) is
    needed for ``afs: average_x0``. The function has attributes ``sigmas`` (the list to pass),
    ``model_sigmas`` (the sigma the model is told at each of the first N: the sampler sigma of
    t_i + delta_i, equal to ``sigmas`` without time offsets), ``schedule``,
    ``noise_schedule`` and ``plan``."""
    s = _schedule_of(schedule)
    ns = resolve_noise_schedule(s, noise_schedule)
    frame = frame_for(ns.name)
    plan = make_plan(s, ns, frame)
    expected = [ns.sampler_sigma(t) for t in s.timesteps]
    if not all(math.isfinite(v) for v in expected):
        raise ScheduleError(f"{s.source}: a timestep has no finite sampler sigma under {ns.name}")
    # What the model is told at each point: the sampler sigma of t_i + delta_i.
    model_sigmas = [ns.sampler_sigma(s.model_time(i)) for i in range(len(s.steps))]

    def sample_s3(model, x, sigmas, extra_args=None, callback=None, disable=None):
        """Runs the bound s3 schedule (see the module notes); returns the final samples."""
        check_sigmas(sigmas, expected, s.source)
        extra_args = {} if extra_args is None else extra_args
        s_in = x.new_ones([x.shape[0]])
        mean = None
        if data_mean is not None:
            import torch

            mean = torch.as_tensor(data_mean, dtype=x.dtype, device=x.device)
        st = Stepper(plan, x, mean)
        while not st.done:
            i = st.pending_index
            xi, p = st.pending()
            x_in, mp = st.pending_call()
            # The schedule's sigma, or the model sigma of t_i + delta_i under a time offset.
            sigma_in = sigmas[i] * s_in if mp is p else s_in * model_sigmas[i]
            denoised = model(x_in, sigma_in, **extra_args)
            eps, x0 = to_predictions("x0", denoised, x_in, mp.alpha, mp.sigma, mp.t)
            if callback is not None:
                callback({"x": xi, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i],
                          "denoised": st.at_point(eps, x0)[1]})
            st.feed(eps, x0)
        return st.result

    sample_s3.sigmas = expected
    sample_s3.model_sigmas = model_sigmas
    sample_s3.schedule = s
    sample_s3.noise_schedule = ns
    sample_s3.plan = plan
    return sample_s3

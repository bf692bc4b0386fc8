"""A ComfyUI custom node that loads an s3 schedule file and outputs the SAMPLER and SIGMAS
for ``SamplerCustom`` (or ``SamplerCustomAdvanced``): the sampler runs the whole schedule
exactly (per-step predictions, orders, derivative estimates, correctors, the analytical first
step), the sigmas are the schedule's own and must reach the sampler unchanged.

Install: ``pip install`` this package into ComfyUI's Python and create
``ComfyUI/custom_nodes/s3schedule/__init__.py`` containing::

    from s3schedule.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

ComfyUI's conventions used here: a node class declares ``INPUT_TYPES`` (a classmethod),
``RETURN_TYPES``, ``FUNCTION`` and ``CATEGORY``; a SAMPLER is
``comfy.samplers.KSAMPLER(sampler_function)``, whose ``sample()`` scales the noise into the
model's frame at ``sigmas[0]`` and calls ``sampler_function(model_k, noise, sigmas,
extra_args=..., callback=..., disable=...)``; SIGMAS is a 1-D float tensor. VP models (SD1.x,
SDXL: EPS/V model sampling) run in the variance-exploding frame x = x0 + sigma eps and flow
models (SD3, Flux: CONST) in x = (1 - sigma) x0 + sigma eps; see :mod:`s3schedule.k_diffusion`.
For SD-class models use schedules searched on ``vp-discrete`` with the model's betas
(``scaled_linear`` for SD); ComfyUI then calls the model at the nearest training timestep of
each sigma, as it does for every sampler.

A schedule's ``time_offsets`` are honoured: at a shifted call the model is told the sigma of
t + delta (and, for VP models, given x~ alpha_t/alpha_m so that its c_in scaling hands the
network the unshifted state); see :mod:`s3schedule.k_diffusion`.
"""

from __future__ import annotations

import json

from .k_diffusion import make_sampler

CATEGORY = "sampling/custom_sampling/samplers"


def _parse_noise_schedule(text: str):
    """'' (the file's), a name such as ``vp-linear``, or a JSON object."""
    text = text.strip()
    if not text:
        return None
    return json.loads(text) if text.startswith("{") else text


def _load_mean(path: str):
    """The data mean for ``afs: average_x0``: a .npy file or a JSON list; None if empty."""
    path = path.strip()
    if not path:
        return None
    import numpy as np

    if path.endswith(".npy"):
        return np.load(path)
    with open(path, encoding="utf-8") as f:
        return np.asarray(json.load(f), dtype=np.float64)


def ksampler_class():
    """``comfy.samplers.KSAMPLER``; a clear error outside ComfyUI."""
    try:
        from comfy.samplers import KSAMPLER
    except ImportError as e:
        raise ImportError(
            "s3schedule.comfyui: ComfyUI's `comfy.samplers` is not importable; this node runs "
            "inside ComfyUI (use s3schedule.k_diffusion.make_sampler elsewhere)") from e
    return KSAMPLER


class S3ScheduleSampler:
    """Loads an s3 schedule: SAMPLER (the exact s3 solver) and SIGMAS (its noise levels)."""

    DESCRIPTION = (
        "Runs an s3 schedule file exactly: connect both outputs to SamplerCustom (sampler and "
        "sigmas). The sigmas must not be changed or cut (denoise 1).")
    RETURN_TYPES = ("SAMPLER", "SIGMAS")
    RETURN_NAMES = ("sampler", "sigmas")
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "schedule_path": ("STRING", {"default": "best.json", "multiline": False,
                                             "tooltip": "an s3 schedule file (s3 export --format s3)"}),
            },
            "optional": {
                "noise_schedule": ("STRING", {"default": "", "multiline": False,
                                              "tooltip": "empty: the file's; or e.g. {\"name\": \"vp-discrete\", \"betas\": \"scaled_linear\"}"}),
                "data_mean_path": ("STRING", {"default": "", "multiline": False,
                                              "tooltip": "for afs average_x0: a .npy or JSON list of the latent mean"}),
            },
        }

    def load(self, schedule_path, noise_schedule="", data_mean_path=""):
        import torch

        fn = make_sampler(schedule_path, _parse_noise_schedule(noise_schedule),
                          _load_mean(data_mean_path))
        sampler = ksampler_class()(fn)
        sigmas = torch.tensor(fn.sigmas, dtype=torch.float32)
        return (sampler, sigmas)


NODE_CLASS_MAPPINGS = {"S3ScheduleSampler": S3ScheduleSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"S3ScheduleSampler": "s3 schedule (sampler + sigmas)"}

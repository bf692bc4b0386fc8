"""s3schedule: runs s3 solver schedules (``format: "s3-schedule"``) exactly, outside s3.

A schedule file holds every per-step decision of a few-step diffusion sampler (timesteps,
noise or data prediction, Taylor order, finite-difference points and relaxations, pseudo
correctors, the analytical first step). This package reads it with s3's rules, plans every
coefficient in float64 with s3's formulas and runs it on any model, with numpy arrays or torch
tensors::

    import s3schedule as s3s
    sched = s3s.load("best.json")
    x0 = s3s.run(sched, eps_model, x_T)          # eps_model(x, t) -> eps

Integrations (torch needed): :mod:`s3schedule.diffusers` (a diffusers scheduler),
:mod:`s3schedule.k_diffusion` (a k-diffusion-style sampler function) and
:mod:`s3schedule.comfyui` (a ComfyUI custom node).
"""

from __future__ import annotations

from .bind import resolve_noise_schedule
from .mixture import GaussianMixture
from .models import ModelError, output_kind, to_predictions
from .noise import NoiseSchedule, TimePoint, noise_schedule
from .plan import Plan, PlanError
from .plan import plan as _plan
from .runner import RunError, Stepper
from .runner import run as _run
from .schedule import Schedule, ScheduleError, load, parse, to_dict, validate, validate_on

__version__ = "0.1.0"

__all__ = [
    "GaussianMixture", "ModelError", "NoiseSchedule", "Plan", "PlanError", "RunError",
    "Schedule", "ScheduleError", "Stepper", "TimePoint", "load", "noise_schedule",
    "output_kind", "parse", "plan", "resolve_noise_schedule", "run", "to_dict",
    "to_predictions", "validate", "validate_on",
]


def _as_schedule(schedule) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(schedule, dict):
        return parse(schedule)
    return load(schedule)


def plan(schedule, noise_schedule=None, frame: str = "native") -> Plan:
    """Plans ``schedule`` (a Schedule, a parsed JSON object or a path) under its noise
    schedule (``noise_schedule=`` overrides the file's; see :func:`resolve_noise_schedule`).
    ``frame``: ``"native"`` carries x = alpha x0 + sigma eps, ``"ve"`` carries x/alpha."""
    s = _as_schedule(schedule)
    return _plan(s, resolve_noise_schedule(s, noise_schedule), frame)


def run(schedule, model, x_T, *, noise_schedule=None, frame: str = "native", output="eps",
        model_time=None, data_mean=None, callback=None):
    """Runs a schedule (a Plan, a Schedule, a JSON object or a path) on ``model`` from the
    initial state ``x_T`` and returns the final samples.

    ``model(x, time)`` returns ``output`` (``eps`` by default; ``x0``, ``v``, ``velocity``,
    ``both`` for a pair (eps, x0), or diffusers' names) at time ``model_time(point)``, by
    default the continuous time t. s3 starts VP and flow schedules at x_T = z ~ N(0, I) and
    EDM at x_T = t_0 z. ``data_mean`` is needed for ``afs: average_x0``.
    """
    p = schedule if isinstance(schedule, Plan) else plan(schedule, noise_schedule, frame)
    return _run(p, model, x_T, output=output, model_time=model_time, data_mean=data_mean,
                callback=callback)

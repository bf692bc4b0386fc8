"""A diffusers scheduler that runs an s3 schedule exactly: :class:`S3Scheduler`.

Each ``step()`` is one model call: the scheduler's ``timesteps`` are the model times of the
schedule's NFE model calls, ``step(model_output, t, sample)`` feeds the output at ``sample``
and returns, as ``prev_sample``, the state at which the model is called next (after the
corrector of the step just finished and the next predictor), or the final samples after the
last call. The state is the pipeline's own (x = alpha x0 + sigma eps, what DDPM/SD UNets, EDM
denoisers and flow transformers take), so ``scale_model_input`` is the identity and
``init_noise_sigma`` is 1 (t_0 for EDM), as s3 starts its runs.

Model times (``timestep_scale * t + timestep_offset``, by default): ``vp-*`` 1000 t - 1, the
training-timestep index of DDPM/SD UNets (t = (k + 1)/1000), fractional between training
steps; ``edm`` sigma = t; ``flow`` 1000 t, as diffusers' flow schedulers pass them.

Time offsets (a schedule's ``time_offsets``): the pipeline calls the model at
``scheduler.timesteps[k]``, so with an offset delta at a call that timestep is the model time
of t + delta (e.g. 1000 (t + delta) - 1), while the latents stay the state at the solver's t
(the model gets the same x, told another time). ``step()`` converts the output with alpha and
sigma at t + delta, keeps its eps and recomputes x0 at t, as s3's sampler does; the solver's
own times are ``schedule.timesteps`` (``sigmas``), unshifted.

The analytical first step (``afs`` other than ``none``) skips the model call at t_0: the
first call is at x_1, computed from x_T without the model. This works in pipelines that call
``scale_model_input`` (Stable Diffusion and most others): at the first timestep it returns
x_1 instead of x_T. ``DDPMPipeline`` never calls it and would call the model at x_T: the
first ``step()`` then raises instead of running a wrong solver.

Use it in a pipeline::

    from s3schedule.diffusers import S3Scheduler
    pipe.scheduler = S3Scheduler.from_config(pipe.scheduler.config, schedule="best.json")
    image = pipe(num_inference_steps=pipe.scheduler.nfe).images[0]

``from_config`` picks up ``prediction_type``, ``num_train_timesteps`` and the beta layout of
the pipeline's scheduler (a vp-discrete schedule is checked against it).

The plain lists of ``s3 export --format diffusers`` (which drop the per-step decisions) run in
pipelines without a ``timesteps=``/``sigmas=`` argument, such as ``DDPMPipeline``, through
:func:`scheduler_from_export` (the export's ``usage_ddpm_pipeline`` lines); :func:`pin` pins
any diffusers scheduler to a list.
"""

from __future__ import annotations

import inspect
import json
import os

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_edm_euler import EDMEulerScheduler
from diffusers.schedulers.scheduling_euler_discrete import (EulerDiscreteScheduler,
                                                            EulerDiscreteSchedulerOutput)
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput

from .bind import resolve_noise_schedule
from .models import output_kind, to_predictions
from .plan import plan as make_plan
from .runner import RunError, Stepper
from .schedule import ScheduleError, load, parse, to_dict

_BETAS = {"linear": (0.0001, 0.02), "scaled_linear": (0.00085, 0.012)}


class S3Scheduler(SchedulerMixin, ConfigMixin):
    """Runs an s3 schedule (``schedule``: a path or the parsed JSON) in a diffusers pipeline.

    ``noise_schedule`` overrides the file's (e.g. ``{"name": "vp-discrete", "betas":
    "scaled_linear"}``); ``beta_schedule``/``beta_start``/``beta_end`` (from a pipeline's
    config) are checked against a vp-discrete schedule; ``prediction_type`` is what the model
    returns (``epsilon``, ``sample``, ``v_prediction``, ``flow_prediction``);
    ``timestep_scale``/``timestep_offset`` override the model-time mapping; ``data_mean``
    (one sample's mean, broadcastable) is needed for ``afs: average_x0``.
    """

    order = 1
    _compatibles = []

    @register_to_config
    def __init__(self, schedule=None, noise_schedule=None, prediction_type: str = "epsilon",
                 num_train_timesteps: int = 1000, beta_schedule: str | None = None,
                 beta_start: float | None = None, beta_end: float | None = None,
                 timestep_scale: float | None = None, timestep_offset: float | None = None,
                 data_mean=None):
        if schedule is None:
            raise ScheduleError("S3Scheduler needs schedule= (an s3 schedule file or its JSON)")
        if isinstance(schedule, (str, os.PathLike)):
            self.schedule = load(schedule)
            self.register_to_config(schedule=to_dict(self.schedule))
        else:
            self.schedule = parse(schedule)
        self.noise = resolve_noise_schedule(self.schedule, noise_schedule)
        self._check_betas(beta_schedule, beta_start, beta_end, num_train_timesteps)
        self.output = output_kind(prediction_type)
        scale, offset = _default_time_map(self.noise.name, num_train_timesteps)
        self.time_scale = scale if timestep_scale is None else float(timestep_scale)
        self.time_offset = offset if timestep_offset is None else float(timestep_offset)
        self.plan = make_plan(self.schedule, self.noise, "native")
        if noise_schedule is not None:
            self.register_to_config(noise_schedule=self.noise.spec())
        self.data_mean = None
        if data_mean is not None:  # kept as a JSON list so the config saves
            self.data_mean = np.asarray(data_mean, dtype=np.float64)
            self.register_to_config(data_mean=self.data_mean.tolist())
        self.init_noise_sigma = self.schedule.timesteps[0] if self.noise.name == "edm" else 1.0
        self.set_timesteps()

    def _check_betas(self, beta_schedule, beta_start, beta_end, n_train) -> None:
        if self.noise.name != "vp-discrete" or beta_schedule is None:
            return
        src = self.schedule.source
        if beta_schedule not in _BETAS:
            raise ScheduleError(
                f"{src}: the pipeline's beta_schedule {beta_schedule!r} is not one s3's "
                f"vp-discrete defines ({', '.join(_BETAS)}); this schedule's times mean nothing "
                "for that model")
        want = _BETAS[beta_schedule]
        given = (beta_start if beta_start is not None else want[0],
                 beta_end if beta_end is not None else want[1])
        if any(abs(a - b) > 1e-12 for a, b in zip(given, want)) or n_train != 1000:
            raise ScheduleError(
                f"{src}: the pipeline's betas ({beta_schedule}, {given[0]}..{given[1]}, "
                f"{n_train} steps) are not s3's vp-discrete {beta_schedule} (1000 steps, "
                f"{want[0]}..{want[1]})")
        if self.noise.betas != beta_schedule:
            raise ScheduleError(
                f"{src}: the schedule was written for vp-discrete with {self.noise.betas} betas "
                f"but the pipeline's model was trained with {beta_schedule} betas")

    @property
    def nfe(self) -> int:
        """The number of model calls (what ``num_inference_steps`` must be)."""
        return self.schedule.nfe

    def model_time(self, t: float) -> float:
        """The model's time input at continuous time t."""
        return self.time_scale * t + self.time_offset

    def set_timesteps(self, num_inference_steps: int | None = None, device=None,
                      timesteps=None, sigmas=None, **kwargs) -> None:
        """Prepares a run. The timesteps come from the schedule: ``num_inference_steps`` may
        only be its NFE, and custom ``timesteps``/``sigmas`` are refused."""
        if timesteps is not None or sigmas is not None:
            raise ValueError(
                "S3Scheduler takes its timesteps from the s3 schedule; do not pass "
                "timesteps= or sigmas= to the pipeline")
        if num_inference_steps is not None and num_inference_steps != self.nfe:
            raise ValueError(
                f"this s3 schedule makes exactly {self.nfe} model calls; call the pipeline with "
                f"num_inference_steps={self.nfe} (got {num_inference_steps})")
        calls = self.plan.call_points()
        # The times the model is told: t + delta under a time offset.
        times = [self.model_time(self.plan.model_point(i).t) for i in calls]
        self.timesteps = torch.tensor(times, dtype=torch.float32, device=device)
        self.sigmas = torch.tensor([self.noise.sampler_sigma(t) for t in self.schedule.timesteps],
                                   dtype=torch.float32, device=device)
        self.num_inference_steps = self.nfe
        self._call_points = calls
        self._stepper = None
        self._afs_scaled = False
        self._step_index = 0

    @property
    def step_index(self) -> int:
        """How many model outputs have been fed in this run."""
        return self._step_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        if begin_index != 0:
            raise ValueError("an s3 schedule runs whole: begin_index must be 0")

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def _afs_start(self, sample: torch.Tensor) -> Stepper:
        return Stepper(self.plan, sample, self._mean_like(sample))

    def _mean_like(self, sample):
        if self.data_mean is None:
            return None
        return torch.as_tensor(self.data_mean, dtype=sample.dtype, device=sample.device)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        """The identity, except before the first model call of an AFS schedule: there the
        pipeline holds x_T and the model must see x_1, which is returned."""
        if self.plan.afs != "none" and self._stepper is None:
            self._afs_scaled = True
            return self._afs_start(sample).pending()[0]
        return sample

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor,
             generator=None, return_dict: bool = True, **kwargs):
        """Feeds the model output at the current call and returns the state of the next call
        (or the final samples after the last one)."""
        k = self._step_index
        if k >= len(self._call_points):
            raise RunError(f"step() called {k + 1} times for a schedule of NFE {self.nfe}; "
                           "call set_timesteps() before a new run")
        self._check_timestep(timestep, k)
        if self._stepper is None:
            if self.plan.afs != "none":
                if not self._afs_scaled:
                    raise RunError(
                        f"this s3 schedule uses an analytical first step (afs = {self.plan.afs}): "
                        "the model must be called at x_1, which scale_model_input() returns, but "
                        "this pipeline never called scale_model_input() (e.g. DDPMPipeline) and "
                        "called the model at x_T. Use a pipeline that calls it, or a schedule "
                        "with afs = none")
                self._stepper = self._afs_start(sample)
                given = None
            else:
                self._stepper = Stepper(self.plan, sample)
                given = sample
        else:
            given = sample
        st = self._stepper
        x, _ = st.pending()
        x = x if given is None else given
        # The model was called at x (the native frame: no rescaling) and told the time of the
        # model point (t + delta under an offset); feed() keeps its eps and, under an offset,
        # recomputes x0 at t.
        mp = st.pending_call()[1]
        eps, x0 = to_predictions(self.output, model_output.to(x.dtype), x, mp.alpha, mp.sigma,
                                 mp.t)
        st.feed(eps, x0, x=given)
        self._step_index += 1
        prev = st.result if st.done else st.pending()[0]
        if not return_dict:
            return (prev,)
        return SchedulerOutput(prev_sample=prev)

    def _check_timestep(self, timestep, k: int) -> None:
        want = float(self.timesteps[k])
        got = float(timestep.flatten()[0]) if torch.is_tensor(timestep) else float(timestep)
        if abs(got - want) > 1e-4 * max(1.0, abs(want)):
            raise RunError(
                f"step() got timestep {got} but model call {k} of this schedule is at {want}; "
                "iterate over scheduler.timesteps in order, one step() per model call")


def _default_time_map(family: str, n_train: int):
    """(scale, offset) of the model time: VP 1000 t - 1, EDM t, flow 1000 t."""
    if family == "edm":
        return 1.0, 0.0
    if family == "flow":
        return float(n_train), 0.0
    return float(n_train), -1.0


# --- Plain lists exported by `s3 export --format diffusers`, in any pipeline -----------------
#
# DDPMPipeline (and other pipelines whose __call__ takes no timesteps=/sigmas=) calls
# scheduler.set_timesteps(num_inference_steps) itself, so a custom list cannot be passed to it.
# pin() makes a diffusers scheduler keep a list whatever set_timesteps it gets (refusing another
# step count or another list rather than running something else), and scheduler_from_export()
# builds an export's hinted scheduler pinned to the export's list.

EXPORT_FORMAT = "s3-diffusers-export"


def scheduler_from_export(export, config):
    """The scheduler an s3 diffusers export hints at, built from a pipeline scheduler's
    ``config`` (with the hint's overrides) and pinned to the export's list (see :func:`pin`).

    ``export``: the export file's path or its parsed JSON. Errors name the file and field.
    Use it as the export's ``usage_ddpm_pipeline`` lines do::

        pipe.scheduler = scheduler_from_export("export.json", pipe.scheduler.config)
        image = pipe(num_inference_steps=N).images[0]
    """
    doc, src = _read_export(export)
    hint = _field(doc, src, "scheduler_hint", dict)
    name = _field(hint, src, "class", str, "scheduler_hint.")
    overrides = _field(hint, src, "config", dict, "scheduler_hint.")
    import diffusers

    base = getattr(diffusers, name, None)
    if not (isinstance(base, type) and issubclass(base, SchedulerMixin)):
        raise ScheduleError(f"{src}: field scheduler_hint.class: {name!r} is not a scheduler "
                            f"class of the installed diffusers {diffusers.__version__}")
    # EDM: EDMEulerScheduler reads set_timesteps(sigmas=...) as positions of its own schedule.
    key = "timesteps" if "timesteps" in doc else "sigmas"
    if key == "sigmas" and issubclass(base, EDMEulerScheduler):
        key = "sigma_ramp"
    values = _field(doc, src, key, list)
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                             for v in values):
        raise ScheduleError(f"{src}: field {key}: expected a non-empty list of numbers")
    return _pinned_class(base).from_config(config, **overrides)._pin(
        {"sigma_ramp": "sigmas"}.get(key, key), values, f"{src} ({key})")


def pin(scheduler, *, timesteps=None, sigmas=None):
    """A copy of ``scheduler`` (same class and config) that keeps ``timesteps`` or ``sigmas``
    (as its own ``set_timesteps`` takes them) whatever ``set_timesteps`` a pipeline calls.

    ``set_timesteps(num_inference_steps)`` must then name the list's step count, and a
    ``timesteps=``/``sigmas=`` passed along must be that list; anything else raises
    ``ValueError``. The copy runs the whole list (``set_begin_index`` only takes 0).

    EulerDiscreteScheduler copies carry the latents in the model's frame x = alpha x0 +
    sigma eps instead of Euler's x/alpha: ``init_noise_sigma`` is 1, ``scale_model_input`` the
    identity and ``step()`` converts in and out, which is the same Euler step in pipelines that
    apply neither (DDPMPipeline) and in those that apply both. EDMEulerScheduler copies refuse
    to step when ``scale_model_input`` (EDM's input scaling) was not called before the model.
    """
    if (timesteps is None) == (sigmas is None):
        raise ValueError("pin() takes exactly one of timesteps= or sigmas=")
    key, values = ("timesteps", timesteps) if timesteps is not None else ("sigmas", sigmas)
    values = np.asarray(values.cpu() if torch.is_tensor(values) else values,
                        dtype=np.float64).tolist()
    return _pinned_class(type(scheduler)).from_config(scheduler.config)._pin(
        key, values, f"pin({key}=...)")


def _read_export(export):
    if isinstance(export, dict):
        doc, src = export, "the export"
    else:
        src = os.fspath(export)
        try:
            with open(src, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError as e:
            raise ScheduleError(f"{src}: cannot read the export ({e.strerror})") from e
        except json.JSONDecodeError as e:
            raise ScheduleError(f"{src}: not JSON ({e})") from e
        if not isinstance(doc, dict):
            raise ScheduleError(f"{src}: expected a JSON object (an s3 diffusers export)")
    fmt = doc.get("format")
    if fmt != EXPORT_FORMAT:
        raise ScheduleError(f"{src}: field format: expected {EXPORT_FORMAT!r} (written by "
                            f"`s3 export --format diffusers`), got {fmt!r}")
    if doc.get("version") != 1:
        raise ScheduleError(f"{src}: field version: expected 1, got {doc.get('version')!r}")
    return doc, src


def _field(obj, src, name, kind, prefix=""):
    if name not in obj:
        raise ScheduleError(f"{src}: field {prefix}{name} is missing")
    value = obj[name]
    if not isinstance(value, kind):
        want = {dict: "an object", list: "a list", str: "a string"}[kind]
        raise ScheduleError(f"{src}: field {prefix}{name}: expected {want}, got "
                            f"{type(value).__name__}")
    return value


class _Pinned:
    """Keeps one list (``_pin``) whatever ``set_timesteps`` the pipeline calls."""

    def _pin(self, key, values, source):
        self._s3_pin = (key, list(values), source)
        self._s3_steps = None
        self.set_timesteps()
        self._s3_steps = len(self.timesteps)
        return self

    def _pinned_argument(self):
        key, values, _ = self._s3_pin
        if key == "timesteps":
            return [int(v) if float(v).is_integer() else float(v) for v in values]
        if isinstance(self, EDMEulerScheduler):  # it calls sigmas.to(...)
            return torch.tensor(values, dtype=torch.float64)
        return np.asarray(values, dtype=np.float64)  # UniPC's set_timesteps needs an array

    def set_timesteps(self, num_inference_steps=None, device=None, timesteps=None, sigmas=None,
                      **kwargs):
        """The pinned list, on ``device``; ``num_inference_steps`` must be its step count and
        a ``timesteps``/``sigmas`` list given must be the pinned one."""
        if not hasattr(self, "_s3_pin"):  # the base class's own __init__ calling it
            given = {k: v for k, v in (("timesteps", timesteps), ("sigmas", sigmas))
                     if v is not None}
            return super().set_timesteps(num_inference_steps, device, **given, **kwargs)
        key, values, source = self._s3_pin
        steps = self._s3_steps
        for name, given in (("timesteps", timesteps), ("sigmas", sigmas)):
            if given is not None and not (name == key and _same_values(given, values)):
                raise ValueError(
                    f"this {type(self).__name__} is pinned to the {len(values)} {key} of "
                    f"{source}; the pipeline passed other {name}= ({_short(given)}). Call it "
                    f"with num_inference_steps={steps} and no timesteps=/sigmas=")
        if num_inference_steps is not None and steps is not None and num_inference_steps != steps:
            raise ValueError(
                f"this {type(self).__name__} is pinned to the {len(values)} {key} of {source}, "
                f"{steps} model calls; call the pipeline with num_inference_steps={steps} (got "
                f"{num_inference_steps})")
        super().set_timesteps(device=device, **{key: self._pinned_argument()}, **kwargs)

    def set_begin_index(self, begin_index: int = 0):
        if begin_index != 0:
            raise ValueError(f"{type(self).__name__} runs its pinned list whole: begin_index "
                             f"must be 0 (got {begin_index}; img2img strength < 1 cuts the list)")
        super().set_begin_index(begin_index)

    def step(self, model_output, timestep, sample, *args, **kwargs):
        # DDPMPipeline passes generator=; deterministic schedulers such as UniPC take none.
        if "generator" in kwargs and "generator" not in _step_parameters(type(self)):
            kwargs.pop("generator")
        return super().step(model_output, timestep, sample, *args, **kwargs)


class _ModelFrame:
    """EulerDiscreteScheduler with the latents in the model's frame x = alpha x0 + sigma eps.

    EulerDiscreteScheduler steps x/alpha = x sqrt(sigma^2 + 1) (sigma = sigma/alpha): pipelines
    start it at ``init_noise_sigma`` and feed the model ``scale_model_input``'s x/sqrt(sigma^2 +
    1). Here the pipeline holds x itself: it starts at 1 (x_T = z, as s3), the model input is x
    and ``step()`` scales into Euler's frame and back, so DDPMPipeline, which applies neither,
    runs the same Euler step."""

    @property
    def init_noise_sigma(self):
        return 1.0

    def scale_model_input(self, sample, timestep=None):
        self.is_scale_input_called = True
        return sample

    def step(self, model_output, timestep, sample, *args, return_dict=True, **kwargs):
        if self.step_index is None:
            self._init_step_index(timestep)
        self.is_scale_input_called = True  # the identity scaling is implied
        sigma, sigma_next = (float(s) for s in self.sigmas[self.step_index:self.step_index + 2])
        prev, x0 = super().step(model_output, timestep, sample * (sigma ** 2 + 1) ** 0.5, *args,
                                return_dict=False, **kwargs)
        prev = prev / (sigma_next ** 2 + 1) ** 0.5
        if not return_dict:
            return prev, x0
        return EulerDiscreteSchedulerOutput(prev_sample=prev, pred_original_sample=x0)


class _NeedsScaledInput:
    """EDMEulerScheduler that refuses to step after a model call without
    ``scale_model_input`` (EDM's c_in scaling), e.g. in DDPMPipeline."""

    def scale_model_input(self, sample, timestep):
        self._s3_scaled = True
        return super().scale_model_input(sample, timestep)

    def step(self, *args, **kwargs):
        if not getattr(self, "_s3_scaled", False):
            raise RunError(
                f"{type(self).__name__}: the model was called without scale_model_input(), "
                "where EDMEulerScheduler scales the input by c_in = 1/sqrt(sigma^2 + "
                "sigma_data^2), and the latents did not start at init_noise_sigma: this pipeline "
                "(e.g. DDPMPipeline) cannot run EDM sigmas. Use one that calls "
                "scale_model_input (StableDiffusionXLPipeline, ...)")
        self._s3_scaled = False
        return super().step(*args, **kwargs)


_PINNED_CLASSES: dict = {}


def _pinned_class(base):
    """``Pinned<base>``: ``base`` with :class:`_Pinned` (and the frame mixins it needs)."""
    if issubclass(base, _Pinned):
        base = next(c for c in base.__mro__ if not issubclass(c, (_Pinned, _ModelFrame,
                                                                   _NeedsScaledInput)))
    if base not in _PINNED_CLASSES:
        mixins = [_Pinned]
        if issubclass(base, EulerDiscreteScheduler):
            mixins.append(_ModelFrame)
        if issubclass(base, EDMEulerScheduler):
            mixins.append(_NeedsScaledInput)
        _PINNED_CLASSES[base] = type(f"Pinned{base.__name__}", (*mixins, base), {
            "__module__": __name__,
            "__doc__": f"{base.__name__} pinned to one list by s3schedule.diffusers.pin().",
        })
    return _PINNED_CLASSES[base]


def _step_parameters(cls):
    base = next(c for c in cls.__mro__ if "step" in vars(c)
                and not issubclass(c, (_Pinned, _ModelFrame, _NeedsScaledInput)))
    return inspect.signature(base.step).parameters


def _same_values(given, values) -> bool:
    a = np.asarray(given.cpu() if torch.is_tensor(given) else given, dtype=np.float64).ravel()
    b = np.asarray(values, dtype=np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=0.0))


def _short(values) -> str:
    v = np.asarray(values.cpu() if torch.is_tensor(values) else values, dtype=np.float64).ravel()
    text = ", ".join(f"{x:g}" for x in v[:6])
    return f"{len(v)} values: {text}{', ...' if len(v) > 6 else ''}"

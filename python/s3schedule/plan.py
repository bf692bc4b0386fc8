"""The coefficients of every update of a schedule, planned in float64 before any model call
(as ``src/solver/update.rs``): each update is x_new = c * x_start + sum_j w_j F_j over stored
points, F being the points' noise (eps) or data (x0) predictions.

With h = lambda_t - lambda_s:
  noise prediction: x_t = (alpha_t/alpha_s) x_s - sigma_t sum_k h^(k+1) phi_(k+1)(h)  F^(k)
  data prediction:  x_t = (sigma_t/sigma_s) x_s + alpha_t sum_k h^(k+1) phi_(k+1)(-h) F^(k)
with F^(k) estimated by finite differences in lambda (``fd``) times its relaxation r(h).
From a pure-noise start (alpha_s = 0: flow at t = 1) only order 1 exists, planned as its
finite limit x_t = (sigma_t/sigma_s) x_s + alpha_t x0 whatever the step's prediction.

A *frame* rescales the state: the runner may carry x * scale(t) instead of x (scale = 1/alpha
gives the variance-exploding frame x0 + (sigma/alpha) eps of k-diffusion and ComfyUI); the
coefficients are rescaled here so that every frame runs the same solver.

Time offsets (the schedule's ``time_offsets``): the model call at point i is made at the
*model point* m_i = t_i + delta_i (``Plan.model_points``), with the same native state
x = alpha_t x0 + sigma_t eps; only the eps it predicts there is kept, and x0 is recomputed at
the solver's own t_i, x0 = (x - sigma_t eps)/alpha_t. In a frame x_f = scale(t) x the model,
which reads its input in that frame at *its* time, is given
x_f * scale(m)/scale(t) = scale(m) x (``Plan.model_input_scale``): in the VE frame
x~ = x/alpha_t, that is x~ * alpha_t/alpha_m with sigma~ = sigma_m/alpha_m, so a k-diffusion
or ComfyUI VP denoiser, which scales its input by c_in = 1/sqrt(sigma~^2 + 1) = alpha_m,
hands the network x~ alpha_t = x, the same raw x, at the time m. See
:meth:`s3schedule.runner.Stepper.pending_call`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .fd import SingularSystem, derivative_weights
from .noise import NoiseSchedule, TimePoint
from .phi import phi
from .schedule import Schedule, ScheduleError, validate_on


class PlanError(ScheduleError):
    """A schedule that validates but cannot be planned (a non-positive lambda step, a singular
    finite-difference system); the message names the step."""


@dataclass(frozen=True)
class Update:
    """x_new = x_coef * x[start] + sum(w * F[j] for j, w in terms), F the ``source``
    prediction (``"noise"``: eps, ``"data"``: x0) of point j (absolute point indices)."""

    start: int
    x_coef: float
    terms: tuple
    source: str

    def points(self) -> set:
        return {self.start, *(j for j, _ in self.terms)}


@dataclass(frozen=True)
class StepPlan:
    """Step i: the predictor to point i + 1 (None when it denoises: the result is then the x0
    prediction of point i), whether the model is called at point i + 1, and the corrector
    that replaces x[i + 1] after that call."""

    index: int
    predictor: Update | None
    calls_model: bool
    corrector: Update | None


@dataclass(frozen=True)
class FramePoint:
    """A point as the runner and the model see it: its time, its noise-schedule values, and
    the frame's alpha, sigma and scale (x_frame = scale * x, so x_frame = alpha_f x0 +
    sigma_f eps)."""

    t: float
    meta: TimePoint
    alpha: float
    sigma: float
    scale: float


@dataclass(frozen=True)
class Plan:
    """Everything a run needs besides the model and the noise: the points (one per
    timestep), the points the model is told at each of them (``model_points``: the point
    itself, or the point at t_i + delta_i under a time offset), the AFS kind, and one
    StepPlan per step."""

    schedule: Schedule
    noise_schedule: NoiseSchedule
    frame: str
    points: tuple
    afs: str
    steps: tuple
    model_points: tuple = ()

    @property
    def nfe(self) -> int:
        return self.schedule.nfe

    def model_point(self, i: int) -> FramePoint:
        """The FramePoint the model is told at point i (t_i + delta_i)."""
        return self.model_points[i] if self.model_points else self.points[i]

    def is_shifted(self, i: int) -> bool:
        """Whether the model call at point i is made at a shifted time (delta_i != 0)."""
        return self.model_point(i) is not self.points[i]

    def model_input_scale(self, i: int) -> float:
        """The factor from the state at point i (in the plan's frame) to the model's input at
        its model point: scale(t_i + delta_i)/scale(t_i); 1 in the native frame."""
        return self.model_point(i).scale / self.points[i].scale

    def call_points(self) -> list:
        """Indices of the points where the model is called, in order."""
        calls = [] if self.afs != "none" else [0]
        calls += [s.index + 1 for s in self.steps if s.calls_model]
        return calls

    def last_use(self) -> dict:
        """For each point, the last step whose updates read it (to free memory early)."""
        use = {}
        for s in self.steps:
            for u in (s.predictor, s.corrector):
                if u is not None:
                    for j in u.points():
                        use[j] = s.index
            if s.predictor is None:
                use[s.index] = s.index
        return use


def _frame_point(ns: NoiseSchedule, meta: TimePoint, frame: str) -> FramePoint:
    if frame == "native":
        return FramePoint(meta.t, meta, meta.alpha, meta.sigma, 1.0)
    if frame == "ve":
        if not meta.alpha > 0.0:
            raise PlanError(
                f"t = {meta.t} is pure noise (α = 0): the variance-exploding frame x/α does not "
                f"exist there; run {ns.name} in its native frame")
        return FramePoint(meta.t, meta, 1.0, ns.ve_sigma(meta.t), 1.0 / meta.alpha)
    raise ValueError(f"frame {frame!r}: expected \"native\" or \"ve\"")


def plan_update(history, start: int, target: TimePoint, prediction: str, order: int,
                derivatives) -> Update:
    """Plans one update over ``history`` (TimePoints, oldest first) from the negative index
    ``start`` to ``target``; point indices in the result are positions in ``history``."""
    n = len(history)

    def slot(p: int) -> int:
        if p >= 0 or n + p < 0:
            raise PlanError(f"history point {p} does not exist ({n} points)")
        return n + p

    s_slot = slot(start)
    s = history[s_slot]
    if s.is_pure_noise:
        return _from_pure_noise(s_slot, s, target, order)
    h = target.lam - s.lam
    if not (math.isfinite(h) and h > 0.0):
        raise PlanError(
            f"step from t = {s.t} to t = {target.t} has λ-size h = {h}; expected a finite positive h")
    data = prediction == "data"
    if data:
        x_coef, zh, scale = target.sigma / s.sigma, -h, target.alpha
    else:
        x_coef, zh, scale = math.exp(target.log_alpha - s.log_alpha), h, -target.sigma

    def coef(k: int) -> float:
        return scale * _powi(h, k + 1) * phi(k + 1, zh)

    terms = [(s_slot, coef(0))]
    for k0, der in enumerate(derivatives[: max(order - 1, 0)]):
        d = k0 + 1
        slots = [slot(p) for p in der.points]
        for p, j in zip(der.points, slots):
            if history[j].is_pure_noise:
                raise PlanError(
                    f"derivative {d}: point {p} is t = {history[j].t}, pure noise (α = 0, λ = −∞), "
                    "where finite differences in λ are undefined")
        offsets = [history[j].lam - s.lam for j in slots]
        try:
            a = derivative_weights(offsets, d)
        except SingularSystem as e:
            raise PlanError(str(e)) from None
        c = coef(d) * der.relaxation.factor(h, data)
        for j, aj in zip(slots, a):
            terms.append((j, c * aj))
            terms.append((s_slot, -c * aj))
    merged = {}
    for j, w in terms:  # dicts keep first-insertion order, as s3's merge does
        merged[j] = merged[j] + w if j in merged else w
    return Update(s_slot, x_coef, tuple(merged.items()), prediction)


def _powi(a: float, b: int) -> float:
    """a^b for b >= 1 by repeated squaring, as Rust's ``powi`` computes it (C's pow rounds
    once and may differ in the last bit)."""
    r = 1.0
    while True:
        if b & 1:
            r *= a
        b //= 2
        if b == 0:
            return r
        a *= a


def _from_pure_noise(s_slot: int, s: TimePoint, target: TimePoint, order: int) -> Update:
    if order != 1:
        raise PlanError(
            f"a step from t = {s.t}, pure noise (α = 0, λ = −∞), must have order 1 (got {order}): "
            "its λ-step is infinite and only the order-1 limit exists")
    if not (math.isfinite(target.lam) and target.sigma > 0.0):
        raise PlanError(
            f"step from t = {s.t} (pure noise) to t = {target.t} needs a target with finite log-SNR")
    return Update(s_slot, target.sigma / s.sigma, ((s_slot, target.alpha),), "data")


def plan(schedule: Schedule, ns: NoiseSchedule, frame: str = "native") -> Plan:
    """Validates ``schedule`` on ``ns`` and plans every update in float64."""
    validate_on(schedule, ns)
    metas = [TimePoint.at(ns, t) for t in schedule.timesteps]
    fpoints = [None] * len(metas)
    n = len(schedule.steps)
    steps = []
    for i, step in enumerate(schedule.steps):
        try:
            fpoints[i] = _frame_point(ns, metas[i], frame)
            fpoints[i + 1] = _frame_point(ns, metas[i + 1], frame)
            if schedule.timesteps[i + 1] == 0.0:
                steps.append(StepPlan(i, None, False, None))
                continue
            pred = plan_update(metas[: i + 1], -1, metas[i + 1], step.prediction, step.order,
                               step.derivatives)
            calls = i + 1 < n or step.corrector is not None
            corr = None
            if step.corrector is not None:
                corr = plan_update(metas[: i + 2], -2, metas[i + 1], step.prediction,
                                   step.corrector.order, step.corrector.derivatives)
            steps.append(StepPlan(i, _in_frame(pred, fpoints, i + 1), calls,
                                  corr and _in_frame(corr, fpoints, i + 1)))
        except ScheduleError as e:
            raise PlanError(f"{schedule.source}: step {i}: {e}") from None
    mpoints = list(fpoints)
    for i in range(n):
        if schedule.time_offset(i) != 0.0:
            try:
                mpoints[i] = _frame_point(ns, TimePoint.at(ns, schedule.model_time(i)), frame)
            except ScheduleError as e:
                raise PlanError(f"{schedule.source}: time_offsets[{i}]: {e}") from None
    return Plan(schedule, ns, frame, tuple(fpoints), schedule.afs, tuple(steps), tuple(mpoints))


def _in_frame(u: Update, fpoints, target: int) -> Update:
    """Rescales an update for states x_f = scale * x: c' = c * scale_t/scale_s, w' = w * scale_t."""
    st = fpoints[target].scale
    ss = fpoints[u.start].scale
    if st == 1.0 and ss == 1.0:
        return u
    return Update(u.start, u.x_coef * (st / ss), tuple((j, w * st) for j, w in u.terms), u.source)

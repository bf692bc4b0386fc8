"""Running a planned schedule: a step-wise form with one call per model evaluation
(:class:`Stepper`, what the diffusers scheduler drives) and :func:`run`, which owns the loop.

The arithmetic is array-agnostic: states and predictions are whatever the model returns
(numpy arrays, torch tensors), combined only with + and * by float64 coefficients, in the
arrays' own dtype. s3 applies the same coefficients to float32 buffers with float64
accumulation; with float64 arrays this runner reproduces s3's float64 sampler.

Order of events (as ``src/solver/sampler.rs``): the model is called at t_0 unless AFS replaces
that call; step i applies its predictor to reach point i + 1, the model is called there
unless it is the last step, and a corrector then replaces x[i + 1] (the stored predictions
stay those of the uncorrected x). A step into t = 0 returns the newest x0 prediction; a
last step into t_N > 0 returns x[N].

Time offsets (``time_offsets`` in the schedule): the call at point i is made as
:meth:`Stepper.pending_call` says, at the model point t_i + delta_i with the state rescaled to
the model's frame there (unchanged in the native frame); :meth:`Stepper.feed` then keeps the
eps of that call and recomputes x0 at t_i, as s3's sampler does.
"""

from __future__ import annotations

from .models import output_kind, to_predictions
from .plan import Plan, Update


class RunError(RuntimeError):
    """A run used out of order, or a model that returned something unusable."""


def _like(x, value):
    """``value`` (a scalar, list or array) as an array of x's type, dtype and device."""
    mod = type(x).__module__
    if mod.startswith("torch"):
        import torch

        return torch.as_tensor(value, dtype=x.dtype, device=x.device)
    import numpy as np

    return np.asarray(value, dtype=getattr(x, "dtype", None))


def afs_predictions(kind: str, x, alpha: float, sigma: float, data_mean=None):
    """The analytical first step's (eps, x0) at x: ``zero_x0`` takes x0 = 0, hence
    eps = x/sigma; ``average_x0`` takes x0 = the data mean (broadcast against x)."""
    if kind == "zero_x0":
        return x * (1.0 / sigma), x * 0.0
    if data_mean is None:
        raise RunError(
            "afs `average_x0` needs the data mean; pass data_mean= (an array broadcastable to "
            "one sample, e.g. per channel as shape (C, 1, 1))")
    x0 = x * 0.0 + _like(x, data_mean)
    return (x - alpha * x0) * (1.0 / sigma), x0


def apply(u: Update, xs: dict, eps: dict, x0: dict):
    """x_coef * x[start] + sum_j w_j F_j, accumulated in the order s3 uses."""
    src = eps if u.source == "noise" else x0
    out = u.x_coef * xs[u.start]
    for j, w in u.terms:
        out = out + w * src[j]
    return out


class Stepper:
    """A run of ``plan`` from ``x_T`` (in the plan's frame), advanced one model call at a
    time::

        st = Stepper(plan, x_T)
        while not st.done:
            x_in, mpoint = st.pending_call()  # call the model at x_in, mpoint.t
            st.feed(eps, x0)                  # its predictions there (eps, x0 of x_in)
        result = st.result

    Without time offsets ``pending_call()`` is ``pending()``: the state and the point itself.
    """

    def __init__(self, plan: Plan, x_T, data_mean=None):
        self.plan = plan
        self._last_use = plan.last_use()
        self.xs, self.eps, self.x0 = {0: x_T}, {}, {}
        self._next_step = 0
        self._pending = None
        self._asked = None  # the point whose pending_call() was asked for
        self.result = None
        self.calls = 0
        if plan.afs == "none":
            self._pending = 0
        else:
            p = plan.points[0]
            self.eps[0], self.x0[0] = afs_predictions(plan.afs, x_T, p.alpha, p.sigma, data_mean)
            self._advance()

    @property
    def done(self) -> bool:
        return self.result is not None

    @property
    def pending_index(self):
        """The point index where the model must be called next (None when done)."""
        return self._pending

    def pending(self):
        """(x, point) of the next model call: the state and the solver's FramePoint. Under a
        time offset the model is called elsewhere: see :meth:`pending_call`."""
        if self._pending is None:
            raise RunError("the run is finished; no model call is pending")
        return self.xs[self._pending], self.plan.points[self._pending]

    def pending_call(self):
        """(x_in, model_point) of the next model call: the input the model gets and the
        FramePoint it is told (alpha, sigma of the plan's frame at that time).

        Without a time offset at the pending point they are ``pending()``'s state and point.
        With an offset delta the model is told m = t + delta and, so that the network sees
        the same raw x = alpha_t x0 + sigma_t eps in every frame, gets the state rescaled to
        its frame at m: x_in = x_f * scale(m)/scale(t) (x_f = scale(t) x the carried state).
        Native frame: x_in = x. VE frame (scale = 1/alpha): x_in = x~ * alpha_t/alpha_m at
        sigma~_m = sigma_m/alpha_m, which a VP denoiser's c_in = 1/sqrt(sigma~_m^2 + 1) =
        alpha_m turns back into x. Convert the output with the model point's alpha, sigma
        and x_in, and :meth:`feed` the result."""
        x, p = self.pending()
        i = self._pending
        self._asked = i
        mp = self.plan.model_point(i)
        if mp is p:
            return x, p
        r = self.plan.model_input_scale(i)
        return (x if r == 1.0 else x * r), mp

    def at_point(self, eps, x0, x=None):
        """The predictions of the pending call as the solver keeps them at the point's own t:
        unchanged without a time offset; with one, eps is kept and x0 is recomputed at t,
        x0 = (x - sigma eps)/alpha (the frame's alpha, sigma at t; ``x`` the state at the
        point, by default the stored one)."""
        i = self._pending
        if i is None:
            raise RunError("no model call is pending (the run is finished)")
        if not self.plan.is_shifted(i):
            return eps, x0
        p = self.plan.points[i]
        x = self.xs[i] if x is None else x
        return eps, (x - p.sigma * eps) * (1.0 / p.alpha)

    def newest_x0(self):
        """The x0 prediction of the newest evaluated point (for progress callbacks)."""
        return self.x0[max(self.x0)] if self.x0 else None

    def feed(self, eps, x0, x=None) -> None:
        """The predictions (eps, x0) of the pending model call, made as :meth:`pending_call`
        says; with a time offset there only eps is kept and x0 is recomputed at the point's
        own t (:meth:`at_point`). ``x`` replaces that point's state first (a pipeline may hand
        back its own copy; the state at t in the plan's frame, not the model input). Runs the
        corrector and predictors up to the next model call or the end."""
        p = self._pending
        if p is None:
            raise RunError("feed() called with no model call pending (the run is finished)")
        if self.plan.is_shifted(p) and self._asked != p:
            raise RunError(
                f"the model call at timesteps[{p}] has time_offsets[{p}] = "
                f"{self.plan.schedule.time_offset(p)}: the model must be called as pending_call() "
                "says (told t + delta, with its input), not at pending()'s point; feed() got "
                "predictions without pending_call() being asked")
        if x is not None:
            self.xs[p] = x
        self.eps[p], self.x0[p] = self.at_point(eps, x0)
        self.calls += 1
        self._pending = None
        if p > 0:
            c = self.plan.steps[p - 1].corrector
            if c is not None:
                self.xs[p] = apply(c, self.xs, self.eps, self.x0)
            self._release(p - 1)
        self._advance()

    def _advance(self) -> None:
        steps = self.plan.steps
        while self._next_step < len(steps):
            s = steps[self._next_step]
            self._next_step += 1
            if s.predictor is None:  # denoise: the newest x0 prediction
                self.result = self.x0[s.index]
                return
            self.xs[s.index + 1] = apply(s.predictor, self.xs, self.eps, self.x0)
            if s.calls_model:
                self._pending = s.index + 1
                return
            self._release(s.index)
        self.result = self.xs[len(steps)]

    def _release(self, step: int) -> None:
        """Drops stored arrays no step after ``step`` reads."""
        for j in [j for j in self.xs if self._last_use.get(j, -1) <= step and j <= step]:
            self.xs.pop(j, None)
            self.eps.pop(j, None)
            self.x0.pop(j, None)


_TIME_NAMES = {"t": lambda p: p.t, "sigma": lambda p: p.sigma, "point": lambda p: p}


def _time_mapping(model_time):
    if model_time is None:
        return _TIME_NAMES["t"]
    if isinstance(model_time, str):
        if model_time not in _TIME_NAMES:
            raise ValueError(f"model_time {model_time!r}: expected a callable or one of "
                             f"{', '.join(_TIME_NAMES)}")
        return _TIME_NAMES[model_time]
    return model_time


def run(plan: Plan, model, x_T, *, output: str = "eps", model_time=None, data_mean=None,
        callback=None):
    """Runs ``plan`` (see :func:`s3schedule.plan`) on ``model`` from ``x_T``.

    ``model(x, time)`` returns its output at state x (in the plan's frame) and time
    ``model_time(point)``, or for the names ``"t"`` (the default: the continuous time),
    ``"sigma"`` (the frame's sigma) and ``"point"`` (the FramePoint itself, with t, alpha,
    sigma and the noise-schedule values). ``output`` says what it returns: ``eps``,
    ``x0``, ``v``, ``velocity`` or ``both`` (a pair (eps, x0)), or diffusers' names.
    ``data_mean`` is needed for ``afs: average_x0``. ``callback(i, point, x, eps, x0)``
    is called after each model call with the solver's point, state and predictions there.
    Makes exactly ``plan.nfe`` model calls.

    With ``time_offsets`` the model is called as :meth:`Stepper.pending_call` says: at the
    point t_i + delta_i (what ``model_time`` receives) and, in the VE frame, with the state
    rescaled to that point (x~ alpha_t/alpha_m); the eps it returns is kept and x0 recomputed
    at t_i.
    """
    kind = output_kind(output)
    time_of = _time_mapping(model_time)
    st = Stepper(plan, x_T, data_mean)
    while not st.done:
        x_in, mp = st.pending_call()
        out = model(x_in, time_of(mp))
        eps, x0 = to_predictions(kind, out, x_in, mp.alpha, mp.sigma, mp.t)
        if callback is not None:
            x, p = st.pending()
            callback(st.calls, p, x, *st.at_point(eps, x0))
        st.feed(eps, x0)
    if st.calls != plan.nfe:
        raise RunError(f"internal: made {st.calls} model calls for a schedule of NFE {plan.nfe}")
    return st.result

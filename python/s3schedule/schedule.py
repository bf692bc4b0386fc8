"""The s3 schedule file (``format: "s3-schedule"``, version 1): every per-step decision of a
few-step sampler, read strictly and checked with s3's rules (``src/solver/schedule.rs``).

A schedule with N steps has N + 1 strictly decreasing timesteps; step i goes from t_i to
t_{i+1} starting from the newest history point, and a final timestep of exactly 0 means
"denoise" (that step returns the newest x0 prediction). The model is called at t_0 unless an
analytical first step (AFS) replaces that call, and after every step but the last, so
NFE = N - [afs != none]. Errors name the file, the field or the step, and what was expected.

The optional ``time_offsets`` (one delta_i per step, i = 0 … N - 1; absent means all zero)
shift the time the model is *told*: the call at timesteps[i] asks the model for its noise
prediction at t_i + delta_i, while the solver keeps t_i for alpha, sigma, lambda and converts
that eps to x0 at t_i (the "time shift" of LD3 and the exposure-bias literature).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

from .phi import phi

FORMAT = "s3-schedule"
VERSION = 1
MAX_ORDER = 4
AFS_KINDS = ("none", "zero_x0", "average_x0")
PREDICTIONS = ("noise", "data")
RELAXATIONS = (
    "none", "linear", "scale", "dpmsolver-2", "unipc-bh1", "unipc-bh2", "0.5exp", "-0.5exp",
)


class ScheduleError(ValueError):
    """An unreadable or impossible schedule; the message names the file, field or step."""


@dataclass(frozen=True)
class Relaxation:
    """A multiplier r(h) on an estimated derivative; named kinds use -h with data prediction
    (as USF), ``linear`` (1 + c h) and ``scale`` (k) do not."""

    kind: str = "none"
    value: float = 0.0  # c for linear, k for scale

    def factor(self, h: float, data: bool) -> float:
        hr = -h if data else h

        def em1_minus(x: float) -> float:  # e^x - 1 - x, accurate for small x
            return x * x * phi(2, x)

        k = self.kind
        if k == "none":
            return 1.0
        if k == "linear":
            return 1.0 + self.value * h
        if k == "scale":
            return self.value
        if k in ("dpmsolver-2", "unipc-bh2"):
            return 0.5 * hr * math.expm1(hr) / em1_minus(hr)
        if k == "unipc-bh1":
            return 0.5 * hr * hr / em1_minus(hr)
        if k == "0.5exp":
            return 1.0 + 0.5 * math.expm1(hr)
        return 1.0 - 0.5 * math.expm1(hr)  # -0.5exp


@dataclass(frozen=True)
class Derivative:
    """Derivative d estimated over ``points`` (negative history indices, -1 newest)."""

    points: tuple
    relaxation: Relaxation = Relaxation()


@dataclass(frozen=True)
class Corrector:
    """USF's pseudo corrector: redo the step from t_i (point -2) with this order and these
    derivatives (which may use the new point -1) after the model call at t_{i+1}."""

    order: int
    derivatives: tuple


@dataclass(frozen=True)
class Step:
    prediction: str
    order: int
    derivatives: tuple = ()
    corrector: Corrector | None = None


@dataclass
class Schedule:
    """A complete s3 schedule. ``noise_schedule`` and ``sigmas`` are the informational fields
    s3 writes on save (the family name and the sigma-list value of each timestep)."""

    nfe: int
    afs: str
    timesteps: list
    steps: list
    name: str | None = None
    noise_schedule: str | None = None
    sigmas: list | None = None
    time_offsets: list | None = None
    source: str = field(default="schedule", compare=False)

    @property
    def denoises(self) -> bool:
        return self.timesteps[-1] == 0.0

    def time_offset(self, i: int) -> float:
        """delta_i, the offset of the model's time at timesteps[i] (0 without offsets and at
        t_N, where no call is made)."""
        if self.time_offsets is None or i >= len(self.time_offsets):
            return 0.0
        return self.time_offsets[i]

    def model_time(self, i: int) -> float:
        """The time the model is told at timesteps[i]: t_i + delta_i."""
        return self.timesteps[i] + self.time_offset(i)

    @property
    def has_time_offsets(self) -> bool:
        """Whether any time offset is non-zero."""
        return self.time_offsets is not None and any(d != 0.0 for d in self.time_offsets)

    def counted_nfe(self) -> int:
        """The model calls the decisions imply."""
        n = len(self.steps)
        last_corrector = bool(self.steps) and self.steps[-1].corrector is not None
        return int(self.afs == "none") + max(n - 1, 0) + int(last_corrector)


# ---------------------------------------------------------------------------------------
# Parsing: strict, like s3's serde types (unknown fields are errors).


def _fail(ctx: str, msg: str):
    raise ScheduleError(f"{ctx}: {msg}")


def _fields(obj, ctx: str, required: tuple, optional: tuple) -> dict:
    if not isinstance(obj, dict):
        _fail(ctx, f"expected an object, got {json.dumps(obj)}")
    unknown = sorted(set(obj) - set(required) - set(optional))
    if unknown:
        _fail(ctx, f"unknown field `{unknown[0]}`; expected {', '.join(required + optional)}")
    for k in required:
        if k not in obj:
            _fail(ctx, f"missing field `{k}`")
    return obj


def _int(v, ctx: str, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
        _fail(ctx, f"expected an integer{'' if lo is None else f' >= {lo}'}, got {json.dumps(v)}")
    return v


def _num(v, ctx: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        _fail(ctx, f"expected a number, got {json.dumps(v)}")
    return float(v)


def _list(v, ctx: str) -> list:
    if not isinstance(v, list):
        _fail(ctx, f"expected a list, got {json.dumps(v)}")
    return v


def _relaxation(obj, ctx: str) -> Relaxation:
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        _fail(ctx, 'expected an object {"type": ...}')
    kind = obj["type"]
    if kind not in RELAXATIONS:
        _fail(ctx, f"unknown type {kind!r}; expected one of {', '.join(RELAXATIONS)}")
    key = {"linear": "c", "scale": "k"}.get(kind)
    if key is None:
        return Relaxation(kind)
    if key not in obj:
        _fail(ctx, f"relaxation `{kind}` needs field `{key}`")
    return Relaxation(kind, _num(obj[key], f"{ctx}.{key}"))


def _derivatives(v, ctx: str) -> tuple:
    out = []
    for j, d in enumerate(_list(v, ctx)):
        c = f"{ctx}[{j}]"
        _fields(d, c, ("points",), ("relaxation",))
        pts = tuple(_int(p, f"{c}.points") for p in _list(d["points"], f"{c}.points"))
        rel = _relaxation(d["relaxation"], f"{c}.relaxation") if "relaxation" in d else Relaxation()
        out.append(Derivative(pts, rel))
    return tuple(out)


def _step(obj, ctx: str) -> Step:
    _fields(obj, ctx, ("prediction", "order"), ("derivatives", "corrector"))
    pred = obj["prediction"]
    if pred not in PREDICTIONS:
        _fail(f"{ctx}.prediction", f"{json.dumps(pred)}; expected \"noise\" or \"data\"")
    order = _int(obj["order"], f"{ctx}.order", 0)
    ders = _derivatives(obj.get("derivatives", []), f"{ctx}.derivatives")
    corr = None
    if obj.get("corrector") is not None:
        c = f"{ctx}.corrector"
        _fields(obj["corrector"], c, ("type", "order", "derivatives"), ())
        if obj["corrector"]["type"] != "pseudo":
            _fail(f"{c}.type", f"{json.dumps(obj['corrector']['type'])}; expected \"pseudo\"")
        corr = Corrector(
            _int(obj["corrector"]["order"], f"{c}.order", 0),
            _derivatives(obj["corrector"]["derivatives"], f"{c}.derivatives"),
        )
    return Step(pred, order, ders, corr)


def parse(doc, source: str = "schedule") -> Schedule:
    """A schedule from its JSON object, checked with :func:`validate`; errors start with
    ``source`` (usually the file name)."""
    ctx = source
    _fields(
        doc, ctx, ("format", "version", "nfe", "timesteps", "steps"),
        ("name", "afs", "noise_schedule", "sigmas", "time_offsets"),
    )
    if doc["format"] != FORMAT:
        _fail(ctx, f"field `format` is {json.dumps(doc['format'])}; expected \"{FORMAT}\"")
    if doc["version"] != VERSION:
        _fail(ctx, f"field `version` is {json.dumps(doc['version'])}; this package reads version {VERSION}")
    afs = doc.get("afs", "none")
    if afs not in AFS_KINDS:
        _fail(ctx, f"field `afs` is {json.dumps(afs)}; expected one of {', '.join(AFS_KINDS)}")
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        _fail(ctx, "field `name`: expected a string")
    ns = doc.get("noise_schedule")
    if ns is not None and not isinstance(ns, str):
        _fail(ctx, "field `noise_schedule`: expected a name such as \"vp-linear\"")
    sigmas = doc.get("sigmas")
    if sigmas is not None:
        sigmas = [_num(v, f"{ctx}: sigmas[{i}]") for i, v in enumerate(_list(sigmas, f"{ctx}: field `sigmas`"))]
    offsets = doc.get("time_offsets")
    if offsets is not None:
        offsets = [_num(v, f"{ctx}: field `time_offsets`: time_offsets[{i}]")
                   for i, v in enumerate(_list(offsets, f"{ctx}: field `time_offsets`"))]
    s = Schedule(
        nfe=_int(doc["nfe"], f"{ctx}: field `nfe`", 0),
        afs=afs,
        timesteps=[_num(v, f"{ctx}: timesteps[{i}]") for i, v in enumerate(_list(doc["timesteps"], f"{ctx}: field `timesteps`"))],
        steps=[_step(st, f"{ctx}: steps[{i}]") for i, st in enumerate(_list(doc["steps"], f"{ctx}: field `steps`"))],
        name=name,
        noise_schedule=ns,
        sigmas=sigmas,
        time_offsets=offsets,
        source=source,
    )
    try:
        validate(s)
    except ScheduleError as e:
        raise ScheduleError(f"{source}: invalid schedule: {e}") from None
    return s


def load(path) -> Schedule:
    """Reads and validates a schedule file; errors name the file."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ScheduleError(f"{path}: cannot read the schedule file: {e.strerror or e}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise ScheduleError(f"{path}: not a valid s3 schedule: {e}") from None
    return parse(doc, path)


def to_dict(s: Schedule) -> dict:
    """The JSON object of a schedule (inverse of :func:`parse`)."""

    def der(d: Derivative) -> dict:
        r = d.relaxation
        rel = {"type": r.kind}
        if r.kind in ("linear", "scale"):
            rel["c" if r.kind == "linear" else "k"] = r.value
        return {"points": list(d.points), "relaxation": rel}

    def step(st: Step) -> dict:
        out = {"prediction": st.prediction, "order": st.order,
               "derivatives": [der(d) for d in st.derivatives]}
        if st.corrector is not None:
            out["corrector"] = {"type": "pseudo", "order": st.corrector.order,
                                "derivatives": [der(d) for d in st.corrector.derivatives]}
        return out

    doc = {"format": FORMAT, "version": VERSION}
    if s.name is not None:
        doc["name"] = s.name
    doc.update(nfe=s.nfe, afs=s.afs, timesteps=list(s.timesteps), steps=[step(x) for x in s.steps])
    if s.noise_schedule is not None:
        doc["noise_schedule"] = s.noise_schedule
    if s.sigmas is not None:
        doc["sigmas"] = list(s.sigmas)
    if s.time_offsets is not None:
        doc["time_offsets"] = list(s.time_offsets)
    return doc


# ---------------------------------------------------------------------------------------
# Validation: s3's rules, with its messages.


def validate(s: Schedule) -> None:
    """Checks every rule that does not depend on the noise schedule; the error names the
    step and the rule broken."""
    n = len(s.steps)
    if n == 0:
        raise ScheduleError("field `steps` is empty; a schedule needs at least one step")
    if len(s.timesteps) != n + 1:
        raise ScheduleError(
            f"field `timesteps` has {len(s.timesteps)} values for {n} steps; expected {n + 1}")
    for i, t in enumerate(s.timesteps):
        if not math.isfinite(t) or t < 0.0 or (t == 0.0 and i != n):
            raise ScheduleError(
                f"timesteps[{i}] = {t}; expected a finite positive time (only the last may be 0, meaning denoise)")
    for i in range(n):
        if s.timesteps[i + 1] >= s.timesteps[i]:
            raise ScheduleError(
                f"timesteps must strictly decrease: timesteps[{i + 1}] = {s.timesteps[i + 1]} "
                f"is not below timesteps[{i}] = {s.timesteps[i]}")
    for i, step in enumerate(s.steps):
        _validate_step(s, i, step)
    _validate_offsets(s)
    counted = s.counted_nfe()
    if counted == 0:
        raise ScheduleError("the schedule never calls the model (NFE 0)")
    if s.nfe != counted:
        saved = ", one saved by the analytical first step" if s.afs != "none" else ""
        raise ScheduleError(
            f"field `nfe` is {s.nfe} but the decisions make {counted} model calls ({n} steps{saved})")


def _validate_offsets(s: Schedule) -> None:
    """The rules of ``time_offsets`` that need no noise schedule: one finite value per step,
    a positive model time, and 0 where no model call is made (t_0 under AFS)."""
    offsets = s.time_offsets
    if offsets is None:
        return

    def bad(m: str):
        raise ScheduleError(f"field `time_offsets`: {m}")

    if len(offsets) != len(s.steps):
        bad(f"{len(offsets)} values for {len(s.steps)} steps; expected one per step")
    for i, d in enumerate(offsets):
        t = s.timesteps[i]
        if not math.isfinite(d) or t + d <= 0.0:
            bad(f"time_offsets[{i}] = {d} gives the model time {t + d} at timesteps[{i}] = {t}; "
                "expected a finite offset with a positive model time")
    if s.afs != "none" and offsets[0] != 0.0:
        bad(f"time_offsets[0] = {offsets[0]}, but the analytical first step makes no model "
            "call at t_0; expected 0")


def _validate_offsets_on(s: Schedule, ns, pure_start: bool) -> None:
    """The rules of ``time_offsets`` under ``ns``: every model time lies within the schedule
    (<= T, finite log-SNR), and a pure-noise t_0 takes no offset (its x0 is the model's)."""
    if not s.has_time_offsets:
        return

    def bad(m: str):
        raise ScheduleError(f"field `time_offsets`: {m}")

    if pure_start and s.time_offset(0) != 0.0:
        bad(f"time_offsets[0] = {s.time_offset(0)}, but t_0 is pure noise under {ns.name} "
            "(α = 0), where x0 cannot be converted from a shifted ε; expected 0")
    # A pure-noise t_0 (delta_0 = 0, checked above) has lambda = -inf by design; the timestep
    # rules already allow it there.
    for i in range(1 if pure_start else 0, len(s.steps)):
        m = s.model_time(i)
        if m > ns.t_max() * (1.0 + 1e-9) or not math.isfinite(ns.lambda_(m)):
            bad(f"time_offsets[{i}] = {s.time_offset(i)} puts the model time {m} outside the "
                f"{ns.name} schedule (0, {ns.t_max()}] or where its log-SNR is not finite")


def _validate_step(s: Schedule, i: int, step: Step) -> None:
    def bad(m: str):
        raise ScheduleError(f"step {i}: {m}")

    last = i + 1 == len(s.steps)
    if not 1 <= step.order <= MAX_ORDER:
        bad(f"order {step.order} is outside 1..={MAX_ORDER}")
    if step.order > i + 1:
        bad(f"order {step.order} needs {step.order} history points but only {i + 1} exist "
            f"before step {i} (order_i ≤ i + 1)")
    msg = _check_derivatives(step.order, step.derivatives, i + 1, -1)
    if msg:
        bad(f"predictor: {msg}")
    if last and s.denoises and step.order != 1:
        bad(f"the final step denoises (timestep 0) and must have order 1, got {step.order}")
    c = step.corrector
    if c is not None:
        if last:
            bad("the last step cannot have a corrector (it would need one more model call)")
        if not 1 <= c.order <= MAX_ORDER + 1:
            bad(f"corrector order {c.order} is outside 1..={MAX_ORDER + 1}")
        msg = _check_derivatives(c.order, c.derivatives, i + 2, -2)
        if msg:
            bad(f"corrector: {msg}")


def _check_derivatives(order: int, ders, available: int, start: int) -> str | None:
    if len(ders) != order - 1:
        return (f"order {order} needs {order - 1} derivative entries (d = 1..{order - 1}), "
                f"got {len(ders)}")
    for k, d in enumerate(ders):
        deriv = k + 1
        if len(d.points) < deriv:
            return (f"derivative {deriv} uses {len(d.points)} point(s); the {deriv}-th "
                    f"derivative needs at least {deriv}")
        for j, p in enumerate(d.points):
            if p >= 0 or -p > available:
                return (f"derivative {deriv}: point {p} is not in the history "
                        f"({available} points: -1 … -{available})")
            if p == start:
                return f"derivative {deriv}: point {p} is the start point itself"
            if p in d.points[:j]:
                return f"derivative {deriv}: point {p} is listed twice"
        if d.relaxation.kind in ("linear", "scale") and not math.isfinite(d.relaxation.value):
            return f"derivative {deriv}: relaxation coefficient is not finite"
    return None


def validate_on(s: Schedule, ns) -> None:
    """:func:`validate` plus the rules that depend on the noise schedule ``ns``: t_0 within
    it, a finite log-SNR at every positive time except a pure-noise start, every model time
    t_i + delta_i within it with a finite log-SNR (delta_0 = 0 at a pure-noise t_0), and a
    pure-noise t_0 (flow at t = 1) only as the start of an order-1 first step without
    corrector that no later derivative or corrector uses."""
    validate(s)
    t_max = ns.t_max()
    if s.timesteps[0] > t_max * (1.0 + 1e-9):
        raise ScheduleError(
            f"timesteps[0] = {s.timesteps[0]} is beyond the {ns.name} schedule's end T = {t_max}")
    pure = ns.is_pure_noise(s.timesteps[0])
    for i, t in enumerate(s.timesteps):
        if t > 0.0 and not (i == 0 and pure) and not math.isfinite(ns.lambda_(t)):
            raise ScheduleError(f"timesteps[{i}] = {t} has no finite log-SNR under {ns.name}")
    _validate_offsets_on(s, ns, pure)
    if not pure:
        return
    why = (f"t_0 = {s.timesteps[0]} is pure noise under {ns.name} (α = 0, λ = −∞), where "
           "finite differences in λ are undefined")
    if s.steps[0].corrector is not None:
        raise ScheduleError(
            "step 0: a corrector would redo the step from t_0 with finite differences through "
            f"it; {why}, so the first step takes no corrector")
    for i, step in enumerate(s.steps[1:], start=1):
        p0 = -(i + 1)
        for k, d in enumerate(step.derivatives):
            if p0 in d.points:
                raise ScheduleError(f"step {i}: predictor: derivative {k + 1} uses point {p0}; {why}")
        if step.corrector is not None:
            for k, d in enumerate(step.corrector.derivatives):
                if p0 - 1 in d.points:
                    raise ScheduleError(
                        f"step {i}: corrector: derivative {k + 1} uses point {p0 - 1}; {why}")

"""Noise schedules in float64: alpha(t), sigma(t), lambda(t) = log alpha - log sigma and the
exact inverse t(lambda), written with the same formulas as s3 (``src/noise/``) so that the
coefficients planned here equal s3's to the last bits.

Time is continuous everywhere. ``x_t = alpha(t) * x0 + sigma(t) * eps``. The five families:

- ``vp-linear``: ScoreSDE's VP SDE, log alpha = -t^2 (b1 - b0)/4 - t b0/2, b0 = 0.1, b1 = 20.
- ``vp-discrete``: DDPM's 1000 training betas (``linear`` or ``scaled_linear``, rounded to
  float32 as diffusers stores them) on t_i = (i + 1)/1000, log alpha piecewise linear.
- ``vp-cosine``: improved DDPM's cosine schedule, s = 0.008, T = 0.9946.
- ``edm``: alpha = 1, sigma = t.
- ``flow``: alpha = 1 - t, sigma = t (t = 1 is pure noise: alpha = 0, lambda = -inf); the
  time ``shift`` only moves grids, never alpha or sigma.

Python's ``math`` raises where IEEE arithmetic returns +-inf (log(0), exp overflow); the
helpers ``_ln``, ``_exp`` and ``_ln_1p`` return what Rust's f64 methods return instead.
"""

from __future__ import annotations

import bisect
import math
import struct
from dataclasses import dataclass

NAMES = ("vp-linear", "vp-discrete", "vp-cosine", "edm", "flow")
BETA_SCHEDULES = ("linear", "scaled_linear")
TRAIN_TIMESTEPS = 1000


def _ln(x: float) -> float:
    """ln x with IEEE results: -inf at 0, nan below."""
    if x > 0.0:
        return math.log(x)
    return -math.inf if x == 0.0 else math.nan


def _ln_1p(x: float) -> float:
    """ln(1 + x) with IEEE results: -inf at -1, nan below."""
    if x > -1.0:
        return math.log1p(x)
    return -math.inf if x == -1.0 else math.nan


def _exp(x: float) -> float:
    """e^x, +inf on overflow."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _exp_m1(x: float) -> float:
    """e^x - 1, +inf on overflow."""
    try:
        return math.expm1(x)
    except OverflowError:
        return math.inf


def _softplus(x: float) -> float:
    """log(1 + e^x) without overflow."""
    if x > 0.0:
        return x + _ln_1p(_exp(-x))
    return _ln_1p(_exp(x))


def _f32(x: float) -> float:
    """x rounded to float32 (to nearest), as a Python float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def vp_log_alpha_of_lambda(lam: float) -> float:
    """log alpha of a VP schedule with half-log-SNR lambda: alpha^2 = 1/(1 + e^(-2 lambda))."""
    return -0.5 * _softplus(-2.0 * lam)


class NoiseSchedule:
    """A forward process x_t = alpha(t) x0 + sigma(t) eps. Subclasses give log_alpha and the
    inverse of lambda; the VP formulas for sigma and lambda live here."""

    name = ""
    is_vp = True

    def spec(self) -> dict:
        """The JSON form s3 uses in mixture files and model configs."""
        return {"name": self.name}

    def t_max(self) -> float:
        """The largest time (where sampling starts by default)."""
        return 1.0

    def t_min(self) -> float:
        """s3's default final time of a solve."""
        return 1e-3

    def log_alpha(self, t: float) -> float:
        raise NotImplementedError

    def alpha(self, t: float) -> float:
        return _exp(self.log_alpha(t))

    def sigma(self, t: float) -> float:
        return math.sqrt(max(-_exp_m1(2.0 * self.log_alpha(t)), 0.0))

    def lambda_(self, t: float) -> float:
        """Half log-SNR; +inf at sigma = 0, -inf at alpha = 0."""
        la = self.log_alpha(t)
        return la - 0.5 * _ln(-_exp_m1(2.0 * la))

    def t_of_lambda(self, lam: float) -> float:
        raise NotImplementedError

    def is_pure_noise(self, t: float) -> bool:
        """Whether t is pure noise (alpha = 0, lambda = -inf): flow at t = 1."""
        return t > 0.0 and self.lambda_(t) == -math.inf

    def ve_sigma(self, t: float) -> float:
        """sigma/alpha = e^(-lambda), the noise level of the equivalent variance-exploding
        process (k-diffusion's and ComfyUI's sigma for VP models); +inf at pure noise."""
        if t == 0.0:
            return 0.0
        return _exp(-self.lambda_(t))

    def sampler_sigma(self, t: float) -> float:
        """The sigma that sigma-list tools take at t: sigma/alpha for VP, t for EDM and flow
        (what s3 writes into a schedule file's ``sigmas``)."""
        return self.ve_sigma(t)

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.spec()})"

    def __eq__(self, other) -> bool:
        return isinstance(other, NoiseSchedule) and self.spec() == other.spec()

    def __hash__(self) -> int:
        return hash(str(self.spec()))


class VpLinear(NoiseSchedule):
    """ScoreSDE's linear VP SDE: beta(t) = b0 + t (b1 - b0)."""

    name = "vp-linear"

    def __init__(self, beta_0: float = 0.1, beta_1: float = 20.0):
        self.beta_0, self.beta_1 = beta_0, beta_1

    def log_alpha(self, t: float) -> float:
        return -0.25 * t * t * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def t_of_lambda(self, lam: float) -> float:
        b0, b1 = self.beta_0, self.beta_1
        tmp = 2.0 * (b1 - b0) * _softplus(-2.0 * lam)
        delta = b0 * b0 + tmp
        return tmp / (math.sqrt(delta) + b0) / (b1 - b0)


def beta_values(betas: str, n: int = TRAIN_TIMESTEPS) -> list:
    """DDPM's n training betas, rounded to float32 as diffusers stores them."""
    if betas not in BETA_SCHEDULES:
        raise ValueError(f"betas {betas!r}: expected one of {', '.join(BETA_SCHEDULES)}")
    if betas == "linear":
        a, b = 1e-4, 0.02
    else:
        a, b = math.sqrt(0.00085), math.sqrt(0.012)
    raw = [a + (b - a) * i / (n - 1) for i in range(n)]
    if betas == "scaled_linear":
        raw = [v * v for v in raw]
    return [_f32(v) for v in raw]


def _interp_extrapolate(x: float, xp: list, yp: list) -> float:
    """Piecewise-linear interpolation through (xp, yp), xp increasing; the outer segments
    are extended beyond the ends."""
    n = len(xp)
    k = bisect.bisect_left(xp, x)
    i = 0 if k == 0 else (n - 2 if k >= n else k - 1)
    x0, x1, y0, y1 = xp[i], xp[i + 1], yp[i], yp[i + 1]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class VpDiscrete(NoiseSchedule):
    """DDPM's discrete schedule on t_i = (i + 1)/N with log alpha piecewise linear, so that
    alpha(t_i)^2 = alphas_cumprod[i] exactly."""

    name = "vp-discrete"

    def __init__(self, betas: str = "linear", n: int = TRAIN_TIMESTEPS):
        self.betas = betas
        acc, grid = 0.0, []
        for b in beta_values(betas, n):
            acc += _ln_1p(-b)
            grid.append(0.5 * acc)
        self.t_grid = [(i + 1) / n for i in range(n)]
        self.log_alpha_grid = grid
        self._rev_log_alpha = grid[::-1]
        self._rev_t = self.t_grid[::-1]

    def spec(self) -> dict:
        return {"name": self.name, "betas": self.betas}

    def t_min(self) -> float:
        return 1.0 / len(self.t_grid)

    def alphas_cumprod(self, i: int) -> float:
        return _exp(2.0 * self.log_alpha_grid[i])

    def log_alpha(self, t: float) -> float:
        return _interp_extrapolate(t, self.t_grid, self.log_alpha_grid)

    def t_of_lambda(self, lam: float) -> float:
        la = vp_log_alpha_of_lambda(lam)
        return _interp_extrapolate(la, self._rev_log_alpha, self._rev_t)


class VpCosine(NoiseSchedule):
    """Improved DDPM's cosine schedule, s = 0.008, defined on [0, 0.9946]."""

    name = "vp-cosine"

    def __init__(self, s: float = 0.008):
        self.s = s
        self.log_alpha_0 = _ln(math.cos(s / (1.0 + s) * (math.pi / 2)))

    def t_max(self) -> float:
        return 0.9946

    def log_alpha(self, t: float) -> float:
        return _ln(math.cos((t + self.s) / (1.0 + self.s) * (math.pi / 2))) - self.log_alpha_0

    def t_of_lambda(self, lam: float) -> float:
        la = vp_log_alpha_of_lambda(lam)
        return math.acos(_exp(la + self.log_alpha_0)) * 2.0 * (1.0 + self.s) / math.pi - self.s


class Edm(NoiseSchedule):
    """EDM (Karras et al. 2022): alpha = 1, sigma = t on [0.002, 80]."""

    name = "edm"
    is_vp = False

    def t_max(self) -> float:
        return 80.0

    def t_min(self) -> float:
        return 0.002

    def log_alpha(self, t: float) -> float:
        return 0.0

    def alpha(self, t: float) -> float:
        return 1.0

    def sigma(self, t: float) -> float:
        return t

    def lambda_(self, t: float) -> float:
        return -_ln(t)

    def t_of_lambda(self, lam: float) -> float:
        return _exp(-lam)

    def sampler_sigma(self, t: float) -> float:
        return t


class Flow(NoiseSchedule):
    """Flow matching (SD3, Flux): alpha = 1 - t, sigma = t; ``shift`` is diffusers' time
    shift, which moves the grids of the classic spacings and the smallest training time."""

    name = "flow"
    is_vp = False

    def __init__(self, shift: float = 1.0):
        if not (isinstance(shift, (int, float)) and math.isfinite(shift) and shift > 0):
            raise ValueError(f"flow shift {shift!r} is not a finite positive number")
        self.shift = float(shift)

    def spec(self) -> dict:
        return {"name": self.name, "shift": self.shift}

    def t_min(self) -> float:
        u = 1.0 / TRAIN_TIMESTEPS
        return self.shift * u / (1.0 + (self.shift - 1.0) * u)

    def log_alpha(self, t: float) -> float:
        return _ln_1p(-t)

    def alpha(self, t: float) -> float:
        return 1.0 - t

    def sigma(self, t: float) -> float:
        return t

    def lambda_(self, t: float) -> float:
        return _ln_1p(-t) - _ln(t)

    def t_of_lambda(self, lam: float) -> float:
        if lam > 0.0:
            e = _exp(-lam)
            return e / (1.0 + e)
        return 1.0 / (1.0 + _exp(lam))

    def sampler_sigma(self, t: float) -> float:
        return t


@dataclass(frozen=True)
class TimePoint:
    """Where a point lies on a noise schedule (all float64)."""

    t: float
    lam: float
    log_alpha: float
    alpha: float
    sigma: float

    @staticmethod
    def at(ns: NoiseSchedule, t: float) -> "TimePoint":
        return TimePoint(t, ns.lambda_(t), ns.log_alpha(t), ns.alpha(t), ns.sigma(t))

    @property
    def is_pure_noise(self) -> bool:
        return self.lam == -math.inf


def noise_schedule(spec) -> NoiseSchedule:
    """A noise schedule from a name (``"edm"``), an object (``{"name": "vp-discrete",
    "betas": "scaled_linear"}``, ``{"name": "flow", "shift": 3.0}``) or a NoiseSchedule."""
    if isinstance(spec, NoiseSchedule):
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(
            f"noise schedule {spec!r}: expected a name such as \"flow\" or an object "
            "{\"name\": ..., \"betas\"?: ..., \"shift\"?: ...}"
        )
    extra = set(spec) - {"name", "betas", "shift"}
    if extra:
        raise ValueError(f"noise schedule {spec!r}: unknown field(s) {sorted(extra)}")
    name = spec["name"]
    if "shift" in spec and name != "flow" and spec["shift"] != 1.0:
        raise ValueError(f"noise schedule {name}: field `shift`: only flow takes a time shift")
    if name == "vp-linear":
        return VpLinear()
    if name == "vp-discrete":
        return VpDiscrete(spec.get("betas", "linear"))
    if name == "vp-cosine":
        return VpCosine()
    if name == "edm":
        return Edm()
    if name == "flow":
        return Flow(spec.get("shift", 1.0))
    raise ValueError(f"unknown noise schedule {name!r}; expected one of {', '.join(NAMES)}")

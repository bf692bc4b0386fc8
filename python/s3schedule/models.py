"""Model outputs to the two predictions the solver uses, in one place (as s3's
``output_to_predictions``), for any array type that supports + and *.

With x = alpha x0 + sigma eps (alpha, sigma those of the frame the model sees):
- ``eps``: eps = out, x0 = (x - sigma eps)/alpha (needs alpha > 0)
- ``x0``: x0 = out, eps = (x - alpha x0)/sigma (needs sigma > 0)
- ``v`` (alpha eps - sigma x0, VP): eps = alpha v + sigma x, x0 = (x - sigma eps)/alpha
- ``velocity`` (flow's eps - x0): eps = (x + alpha v)/(alpha + sigma),
  x0 = (x - sigma v)/(alpha + sigma)
- ``both``: the model returns the pair (eps, x0) itself (exact models do).

diffusers calls these ``epsilon``, ``sample``, ``v_prediction`` and ``flow_prediction``.
"""

from __future__ import annotations

OUTPUTS = ("eps", "x0", "v", "velocity", "both")
DIFFUSERS_NAMES = {
    "epsilon": "eps", "sample": "x0", "v_prediction": "v", "flow_prediction": "velocity",
}


class ModelError(ValueError):
    """A model output that cannot be converted at this point (e.g. eps at pure noise)."""


def output_kind(name: str) -> str:
    """The canonical output name for s3's or diffusers' spelling."""
    kind = DIFFUSERS_NAMES.get(name, name)
    if kind not in OUTPUTS:
        raise ValueError(
            f"model output {name!r}: expected one of {', '.join(OUTPUTS)} "
            f"(or diffusers' {', '.join(DIFFUSERS_NAMES)})")
    return kind


def to_predictions(kind: str, out, x, alpha: float, sigma: float, t: float):
    """(eps, x0) from the model output ``out`` at state ``x``; raises ModelError where the
    conversion does not exist."""
    if kind == "both":
        eps, x0 = out
        return eps, x0
    if kind in ("eps", "v") and not alpha > 0.0:
        what = "ε" if kind == "eps" else "v = α·ε − σ·x0"
        raise ModelError(
            f"a model predicting {what} gives no x0 at α = {alpha} (t = {t}, pure noise); a model "
            "called there must predict x0 or the flow velocity")
    if kind == "eps":
        return out, (x - sigma * out) * (1.0 / alpha)
    if kind == "x0":
        if not sigma > 0.0:
            raise ModelError(f"cannot convert an x0 output to ε at σ = 0 (t = {t})")
        return (x - alpha * out) * (1.0 / sigma), out
    if kind == "v":
        eps = alpha * out + sigma * x
        return eps, (x - sigma * eps) * (1.0 / alpha)
    if kind == "velocity":
        d = alpha + sigma
        if not d > 0.0:
            raise ModelError(f"cannot convert a velocity output at α + σ = {d} (t = {t})")
        inv = 1.0 / d
        return (x + alpha * out) * inv, (x - sigma * out) * inv
    raise ValueError(f"unknown model output {kind!r}")

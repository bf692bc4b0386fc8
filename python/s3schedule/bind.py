"""Binding a schedule to its noise schedule.

A schedule's timesteps only mean something under the noise schedule they were written for.
s3 records its family name (``noise_schedule``) and, per timestep, the sigma-list value
(``sigmas``: sigma/alpha for VP, t for EDM and flow). The family name does not say which
betas a ``vp-discrete`` schedule had, so when the caller does not say, the betas are taken
from the file's own sigmas (the one layout that reproduces them); a caller's choice is checked
against the sigmas too. Flow's shift moves no alpha or sigma, so it never matters here.
"""

from __future__ import annotations

from .noise import BETA_SCHEDULES, NoiseSchedule, VpDiscrete, noise_schedule
from .schedule import Schedule, ScheduleError

SIGMA_RTOL = 1e-9


def _sigmas_match(schedule: Schedule, ns: NoiseSchedule):
    """The first (index, file value, computed value) that differs, or None."""
    for i, (t, s) in enumerate(zip(schedule.timesteps, schedule.sigmas)):
        want = ns.sampler_sigma(t)
        if not (s == want or abs(s - want) <= SIGMA_RTOL * max(abs(want), 1e-300)):
            return i, s, want
    return None


def resolve_noise_schedule(schedule: Schedule, spec=None) -> NoiseSchedule:
    """The noise schedule to run ``schedule`` under: ``spec`` (a name, an object such as
    ``{"name": "vp-discrete", "betas": "scaled_linear"}`` or a NoiseSchedule) or else the
    file's ``noise_schedule``; checked against the file's ``sigmas`` when it has them."""
    src = schedule.source
    if spec is None:
        if schedule.noise_schedule is None:
            raise ScheduleError(
                f"{src}: the schedule does not name its noise schedule (field `noise_schedule`); "
                "pass noise_schedule=, e.g. \"vp-linear\" or {\"name\": \"vp-discrete\", "
                "\"betas\": \"scaled_linear\"}")
        if schedule.noise_schedule == "vp-discrete" and schedule.sigmas is not None:
            return _infer_betas(schedule)
        spec = schedule.noise_schedule
    try:
        ns = noise_schedule(spec)
    except ValueError as e:
        raise ScheduleError(f"{src}: {e}") from None
    if schedule.noise_schedule is not None and schedule.noise_schedule != ns.name:
        raise ScheduleError(
            f"{src}: the schedule was written for `{schedule.noise_schedule}` but is run under "
            f"`{ns.name}`; its timesteps only mean something under its own noise schedule")
    if schedule.sigmas is not None:
        if len(schedule.sigmas) != len(schedule.timesteps):
            raise ScheduleError(
                f"{src}: field `sigmas` has {len(schedule.sigmas)} values for "
                f"{len(schedule.timesteps)} timesteps")
        bad = _sigmas_match(schedule, ns)
        if bad is not None:
            i, got, want = bad
            raise ScheduleError(
                f"{src}: sigmas[{i}] = {got} but {ns.spec()} gives {want} at timesteps[{i}] = "
                f"{schedule.timesteps[i]}; the schedule was written for another noise schedule")
    return ns


def _infer_betas(schedule: Schedule) -> NoiseSchedule:
    found = []
    for betas in BETA_SCHEDULES:
        ns = VpDiscrete(betas)
        if len(schedule.sigmas) == len(schedule.timesteps) and _sigmas_match(schedule, ns) is None:
            found.append(ns)
    if len(found) == 1:
        return found[0]
    raise ScheduleError(
        f"{schedule.source}: the file's `sigmas` match {'both' if found else 'neither'} of the "
        f"vp-discrete beta layouts ({', '.join(BETA_SCHEDULES)}); pass noise_schedule="
        "{\"name\": \"vp-discrete\", \"betas\": ...}")


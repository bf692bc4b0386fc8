//! Continuous refinement of one schedule: its timesteps (in λ, order-preserving, t_end
//! included), its relaxation coefficients and per-call time offsets ([`Params`]) are tuned
//! by argmin's Nelder–Mead on a cheap tier (e.g. the MSE to the exact ODE solution on a few
//! hundred samples), under a budget counted in model calls. The discrete decisions stay the
//! parent's. Whether a refinement is kept is the caller's call, on the true metric.
//!
//! The loop is deterministic: the same parent, tier values and budget take the same path, so
//! a refinement interrupted and replayed over a cache of tier values ends where the
//! uninterrupted one would, paying only for what was not cached.

mod objective;
mod params;

pub use params::{Knobs, Params};

use crate::error::{Result, S3Error};
use crate::noise::NoiseSchedule;
use crate::solver::SolverSchedule;
use argmin::core::{Executor, State};
use argmin::solver::neldermead::NelderMead;
use objective::{Budgeted, Objective};
use serde::Serialize;

/// Nelder–Mead stops once the spread of the simplex's costs falls below this (relative to
/// nothing: tier values are MSEs of order 1e-4–1e-1, so this is effectively "no progress").
const SD_TOLERANCE: f64 = 1e-12;
/// An upper bound on iterations, far above what any model-call budget allows; the budget
/// is what ends a refinement.
const MAX_ITERS: u64 = 100_000;

/// One cheap-tier measurement.
#[derive(Debug, Clone, Copy)]
pub struct Measure {
    /// The tier's value (lower is better).
    pub value: f64,
    /// Whether it was computed now (false: served by a cache).
    pub paid: bool,
}

/// The cheap tier a refinement optimises.
pub trait Tier {
    /// The value of `s` (lower is better); an error from the model or the metric is the
    /// schedule's failure, a store error is an error.
    fn measure(&self, s: &SolverSchedule) -> Result<std::result::Result<Measure, String>>;

    /// Model calls one measurement of a schedule of `nfe` makes (samples × NFE).
    fn calls(&self, nfe: usize) -> u64;
}

/// How a refinement runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Settings {
    pub knobs: Knobs,
    /// Model calls the refinement may count (cached measurements count too, so a replay
    /// stops where the original did).
    pub max_calls: u64,
}

/// What a refinement found.
#[derive(Debug, Clone, Serialize)]
pub struct Refined {
    /// The best schedule found (the parent itself when nothing beat it).
    pub schedule: SolverSchedule,
    /// Parameters refined.
    pub parameters: usize,
    /// The parent's tier value.
    pub start_value: f64,
    /// The best tier value.
    pub value: f64,
    /// Tier measurements made (cached ones included).
    pub measurements: usize,
    /// Model calls counted against the budget.
    pub calls: u64,
    /// Model calls paid now (the rest came from the cache).
    pub paid_calls: u64,
    /// Why Nelder–Mead stopped.
    pub termination: String,
    /// Wall seconds the refinement took.
    pub seconds: f64,
}

/// Refines `parent` under `ns` on `tier`; `stop` is asked between measurements and ends the
/// refinement early (its result is then the best so far). The inner error is the parent's
/// own failure on the tier (nothing to refine from); the outer one a store error.
pub fn refine(
    parent: &SolverSchedule,
    ns: &NoiseSchedule,
    tier: &dyn Tier,
    settings: Settings,
    stop: &dyn Fn() -> bool,
) -> Result<std::result::Result<Refined, String>> {
    let start = std::time::Instant::now();
    let params = Params::new(parent, ns, settings.knobs);
    let objective = Objective::new(&params, tier, settings.max_calls, stop);
    let start_value = objective.cost_of(params.start());
    objective.take_error()?;
    if start_value >= objective::INVALID_COST {
        let why = objective
            .last_failure()
            .unwrap_or_else(|| "it stopped before the first measurement".into());
        return Ok(Err(why));
    }
    let mut refined = Refined {
        schedule: parent.clone(),
        parameters: params.len(),
        start_value,
        value: start_value,
        measurements: 0,
        calls: 0,
        paid_calls: 0,
        termination: "nothing to refine".into(),
        seconds: 0.0,
    };
    if !params.is_empty() {
        let solver = NelderMead::new(params.simplex())
            .with_sd_tolerance(SD_TOLERANCE)
            .map_err(|e| S3Error::Numerical(format!("Nelder–Mead: {e}")))?;
        let result = Executor::new(&objective, Budgeted::new(solver, &objective))
            .configure(|s| s.max_iters(MAX_ITERS))
            .run()
            .map_err(|e| S3Error::Numerical(format!("refinement: {e}")))?;
        objective.take_error()?;
        let state = result.state();
        refined.termination = state.get_termination_status().to_string();
        if let Some(theta) = state.get_best_param()
            && state.get_best_cost() < start_value
            && let Some(s) = params.schedule(theta)
        {
            refined.schedule = s;
            refined.value = state.get_best_cost();
        }
    }
    let counts = objective.counts();
    refined.measurements = counts.measurements;
    refined.calls = counts.calls;
    refined.paid_calls = counts.paid_calls;
    refined.seconds = start.elapsed().as_secs_f64();
    Ok(Ok(refined))
}

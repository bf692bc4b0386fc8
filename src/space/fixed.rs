//! Fixed-solver candidates (`s3 search --solver NAME`): every per-step decision is the named
//! classic solver's and only the model-call times are searched, so the result is a plain
//! list of times that a tool running that solver reproduces exactly (a lossless plain-list
//! export).
//!
//! Such a schedule ends the way the tools end their own lists: by denoising to σ = 0, except
//! noise-prediction DPM-Solver, which diffusers runs down to its smallest training time
//! ([`classic_end`] of a discrete spacing). On a discrete noise schedule the model-call times
//! are the integer training timesteps t = (k + 1)/N the export writes, so what the search
//! measured is what diffusers runs.

use crate::noise::NoiseSchedule;
use crate::solver::{ClassicSolver, SolverSchedule, Spacing, classic_end};

/// The final time of a fixed-solver schedule for `solver` on `ns`.
pub(super) fn final_time(solver: ClassicSolver, ns: &NoiseSchedule) -> f64 {
    classic_end(solver, Spacing::DiffusersTrailing, ns)
}

/// Moves the model-call times `calls[1..]` (t_0 = t_max is on every grid) onto a discrete
/// schedule's training grid above the final time `end`, keeping them strictly decreasing: a
/// time that lands on its predecessor's timestep moves to the next lower one, and a run
/// pushed below the lowest allowed timestep is pushed back up from there. Other schedules
/// are left as they are.
pub(super) fn snap_to_training_grid(ns: &NoiseSchedule, calls: &mut [f64], end: f64) {
    let NoiseSchedule::VpDiscrete(d) = ns else {
        return;
    };
    let lowest = if end > 0.0 {
        d.nearest_timestep(end).0 as i64 + 1
    } else {
        0
    };
    let mut ks: Vec<i64> = calls
        .iter()
        .map(|&t| d.nearest_timestep(t).0 as i64)
        .collect();
    for i in 1..ks.len() {
        ks[i] = ks[i].min(ks[i - 1] - 1);
    }
    for i in (0..ks.len()).rev() {
        let floor = lowest + (ks.len() - 1 - i) as i64;
        ks[i] = ks[i].max(floor);
    }
    for (t, k) in calls.iter_mut().zip(ks).skip(1) {
        *t = d.t_of_timestep(k as usize);
    }
}

/// The fixed solver's schedule over `times` (t_0 > … > t_N), named after the solver.
pub(super) fn build(solver: ClassicSolver, ns: &NoiseSchedule, times: Vec<f64>) -> SolverSchedule {
    solver
        .build_for(ns, times, true)
        .expect("a classic solver builds on strictly decreasing times from t_max")
        .with_name(format!("{} (searched times)", solver.label()))
}

//! The plain samplers a target tool runs over an exported list, as s3 schedules: what a
//! full per-step schedule becomes once only its model-call times survive the export.
//!
//! Every target calls the model at the N listed times and ends at σ = 0 (diffusers' discrete
//! lists: at training timestep 0 when the schedule stops there). What each tool runs
//! over such a list (as the export notes say and the golden tests check): diffusers runs
//! integer timesteps (vp-discrete, the times rounded as the export rounds them) with
//! DPMSolverMultistepScheduler — order 1 (= DDIM), DPM-Solver++(2M) or (3M), with its
//! `lower_order_final` rules — and sigma lists with Euler (= DDIM; flow Euler on flow);
//! k-diffusion and ComfyUI run Euler and, except on flow, DPM-Solver++(2M) without lowering
//! the final orders.

use super::ExportFormat;
use crate::noise::NoiseSchedule;
use crate::solver::{ClassicSolver, SolverSchedule};

/// One plain sampler over the exported times.
#[derive(Debug, Clone)]
pub struct PlainSampler {
    /// The classic solver the tool runs.
    pub solver: ClassicSolver,
    /// That solver over the exported times, as the tool runs it.
    pub schedule: SolverSchedule,
}

/// The plain samplers `format` can run over `schedule`'s model-call times on `ns` (none for
/// the `s3` format, which keeps every decision).
pub fn plain_samplers(
    format: ExportFormat,
    ns: &NoiseSchedule,
    schedule: &SolverSchedule,
) -> Vec<PlainSampler> {
    let Some(mut times) = tool_times(ns, &schedule.timesteps[..schedule.steps.len()]) else {
        return Vec::new();
    };
    let end = match (format, ns) {
        (ExportFormat::Diffusers, NoiseSchedule::VpDiscrete(d)) => {
            let last_k = d.nearest_timestep(times[times.len() - 1]).0;
            super::diffusers::discrete_end(schedule, d, last_k).1
        }
        _ => 0.0,
    };
    times.push(end);
    let flow = matches!(ns, NoiseSchedule::Flow(_));
    let discrete = matches!(ns, NoiseSchedule::VpDiscrete(_));
    let (ddim, dpm2, dpm3) = (
        ClassicSolver::Ddim,
        ClassicSolver::DpmSolverPp { order: 2 },
        ClassicSolver::DpmSolverPp { order: 3 },
    );
    let (solvers, lower_order_final) = match format {
        ExportFormat::S3 => return Vec::new(),
        ExportFormat::Diffusers if discrete => (vec![ddim, dpm2, dpm3], true),
        ExportFormat::Diffusers => (vec![ddim], true),
        ExportFormat::KDiffusion | ExportFormat::ComfyUi if flow => (vec![ddim], false),
        ExportFormat::KDiffusion | ExportFormat::ComfyUi => (vec![ddim, dpm2], false),
    };
    solvers
        .into_iter()
        .filter_map(|solver| {
            let schedule = solver
                .build_for(ns, times.clone(), lower_order_final)
                .ok()?
                .with_name(format!("{} over the exported times", solver.label()));
            Some(PlainSampler { solver, schedule })
        })
        .collect()
}

/// The model-call times as the tool receives them: on a discrete schedule the integer
/// training timesteps the export rounds to (None when two round together: no export), else
/// the times themselves.
fn tool_times(ns: &NoiseSchedule, calls: &[f64]) -> Option<Vec<f64>> {
    let NoiseSchedule::VpDiscrete(d) = ns else {
        return Some(calls.to_vec());
    };
    let ks: Vec<usize> = calls.iter().map(|&t| d.nearest_timestep(t).0).collect();
    ks.windows(2)
        .all(|w| w[1] < w[0])
        .then(|| ks.iter().map(|&k| d.t_of_timestep(k)).collect())
}

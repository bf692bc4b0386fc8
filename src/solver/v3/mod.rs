//! DPM-Solver-v3 (Zheng, Lu, Chen, Zhu, NeurIPS 2023: "DPM-Solver-v3: Improved Diffusion ODE
//! Solver with Empirical Model Statistics") as a classic solver with its own runner.
//!
//! Its updates use per-element empirical model statistics (EMS) l, s, b of the model, so
//! they are not USF updates and cannot be written as a [`crate::solver::SolverSchedule`]:
//!
//! - [`ems`]: the statistics on their λ grid and the cumulative integrals L, S, I, B, C, E_k;
//! - [`mixture_ems`]: the statistics of a Gaussian mixture, exact per draw (analytic ε,
//!   Jacobian diagonal and total derivative along the ODE);
//! - [`cache`]: a folder of computed statistics keyed by model, noise schedule and settings;
//! - [`sampler`]: the multistep predictor (order ≤ 3, optional pseudo-order), the corrector
//!   with its EMS cache replacement, lower-order final steps, timesteps uniform in λ snapped
//!   to the EMS grid.
//!
//! Supported noise schedules: vp-linear, vp-discrete, vp-cosine and edm. Flow is refused (its
//! start t = 1 is pure noise, α = 0, where the v3 step divides by α_s).

pub mod cache;
pub mod ems;
pub mod mixture_ems;
pub mod sampler;

pub use cache::{EmsCache, EmsOrigin};
pub use ems::{Ems, EmsIntegrals, LambdaGrid};
pub use mixture_ems::{EmsSettings, mixture_ems};
pub use sampler::{V3Sampler, V3Settings};

use crate::error::Result;
use crate::model::Denoiser;
use crate::noise::NoiseSchedule;

/// The label DPM-Solver-v3 goes by in tables.
pub const V3_LABEL: &str = "dpm-solver-v3";

/// DPM-Solver-v3 with the official ScoreSDE settings for `nfe` ([`V3Settings::score_sde`]):
/// the samples at the EMS grid's end from the initial noise `x_t` (`batch × dim`, drawn at
/// the grid's start, e.g. `Evaluator::initial_noise(ems.grid.t_start)`).
pub fn dpm_solver_v3(
    model: &dyn Denoiser,
    ns: &NoiseSchedule,
    ems: &Ems,
    nfe: usize,
    x_t: &[f32],
) -> Result<Vec<f32>> {
    V3Sampler::new(model, ns, ems, nfe, V3Settings::score_sde(nfe))?.sample(x_t)
}

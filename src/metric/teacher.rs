//! The teacher of a network: a reference solve of the same model from the same noise, for
//! the data-free MSE metric. It is classical RK4 in λ (the solver of the mixtures' exact
//! reference, independent of the USF update code) with a fixed number of model calls, and
//! its convergence is checked by doubling: the solve with half the calls must agree with it.

use crate::error::{Result, S3Error};
use crate::model::{Denoiser, TimePoint, eval_eps};
use crate::noise::NoiseSchedule;
use crate::solver::reference::rk4_solve;

/// Model calls per sample of a network's teacher unless `--reference-nfe` says otherwise.
pub const DEFAULT_REFERENCE_NFE: usize = 200;
/// Model calls per RK4 step.
const CALLS_PER_STEP: usize = 4;
/// The fewest model calls a teacher may use: the half solve still takes two RK4 steps.
pub const MIN_REFERENCE_NFE: usize = 4 * CALLS_PER_STEP;

/// Both solves of the doubling check, denoised to x0 at the end time.
#[derive(Debug, Clone)]
pub struct TeacherSolves {
    /// The accepted solve (`nfe` calls).
    pub full: Vec<f32>,
    /// The solve with half the RK4 steps.
    pub half: Vec<f32>,
    /// Model calls per sample of the accepted solve (RK4 steps × 4, plus the final x0).
    pub nfe: usize,
}

/// RK4 from `t0` to `t1` with `nfe / 4` and `nfe / 8` steps from the same start, each
/// ended with the model's x0 prediction at `t1`.
pub fn teacher_solves(
    model: &dyn Denoiser,
    ns: &NoiseSchedule,
    x_start: &[f32],
    (t0, t1): (f64, f64),
    nfe: usize,
) -> Result<TeacherSolves> {
    if nfe < MIN_REFERENCE_NFE {
        return Err(S3Error::field(
            "metric",
            "--reference-nfe",
            format!("{nfe}; expected at least {MIN_REFERENCE_NFE}"),
        ));
    }
    let steps = nfe / CALLS_PER_STEP;
    let x: Vec<f64> = x_start.iter().map(|&v| v as f64).collect();
    let solve = |steps: usize| -> Result<Vec<f32>> {
        let end = rk4_solve(model, ns, &x, t0, t1, steps)?;
        denoise(model, ns, &end, t1)
    };
    Ok(TeacherSolves {
        full: solve(steps)?,
        half: solve(steps / 2)?,
        nfe: steps * CALLS_PER_STEP + 1,
    })
}

/// The model's x0 prediction at `t` (what a final "denoise" step returns).
pub fn denoise(model: &dyn Denoiser, ns: &NoiseSchedule, x: &[f64], t: f64) -> Result<Vec<f32>> {
    let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let (a, s) = (ns.alpha(t), ns.sigma(t));
    let mut eps = vec![0f32; xf.len()];
    eval_eps(
        model,
        &xf,
        TimePoint {
            t,
            alpha: a,
            sigma: s,
        },
        &mut eps,
    )?;
    Ok(x.iter()
        .zip(&eps)
        .map(|(&xi, &e)| ((xi - s * e as f64) / a) as f32)
        .collect())
}

/// The mean squared difference of two equally long arrays.
pub fn mse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    s / a.len().max(1) as f64
}

/// PSNR in dB of an MSE for values in [−1, 1] (peak-to-peak 2).
pub fn psnr_db(mse: f64) -> f64 {
    10.0 * (4.0 / mse).log10()
}

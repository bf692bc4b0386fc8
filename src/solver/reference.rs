//! A high-accuracy reference solve of the probability-flow ODE, independent of the USF update
//! code, in f64 (model calls included): classical RK4 in λ on y = x/α, where dy/dλ = −e^{−λ} ε(α·y, t(λ)), with uniform
//! λ-steps doubled until two solves agree to the requested tolerance.

use crate::error::{Result, S3Error};
use crate::model::{Denoiser, TimePoint, eval_eps};
use crate::noise::NoiseSchedule;

/// A reference solution and how it was obtained.
#[derive(Debug, Clone)]
pub struct ReferenceSolution {
    /// The solution at the end time (f64, `batch × dim`).
    pub x: Vec<f64>,
    /// RK4 steps of the accepted solve.
    pub steps: usize,
    /// max |x_steps − x_{steps/2}| / max(1, max |x|): the estimated error of the coarser solve,
    /// which bounds the accepted one's from above.
    pub estimated_error: f64,
}

/// RK4 with `steps` uniform λ-steps from `t_start` to `t_end` (both > 0).
pub fn rk4_solve(
    model: &dyn Denoiser,
    ns: &NoiseSchedule,
    x_start: &[f64],
    t_start: f64,
    t_end: f64,
    steps: usize,
) -> Result<Vec<f64>> {
    let (l0, l1) = (ns.lambda(t_start), ns.lambda(t_end));
    if !(l0.is_finite() && l1.is_finite() && l1 > l0) {
        return Err(S3Error::Numerical(format!(
            "reference solve needs finite log-SNR increasing from t = {t_start} to t = {t_end}"
        )));
    }
    let h = (l1 - l0) / steps as f64;
    // y = x/α
    let mut y: Vec<f64> = {
        let a = ns.alpha(t_start);
        x_start.iter().map(|&v| v / a).collect()
    };
    let n = y.len();
    let mut xin = vec![0f64; n];
    let mut eps = vec![0f64; n];
    let mut f = |lambda: f64, y: &[f64], out: &mut Vec<f64>| -> Result<()> {
        let t = ns.t_of_lambda(lambda);
        let (a, s) = (ns.alpha(t), ns.sigma(t));
        for (xi, &yi) in xin.iter_mut().zip(y) {
            *xi = a * yi;
        }
        eval_eps(
            model,
            &xin,
            TimePoint {
                t,
                alpha: a,
                sigma: s,
            },
            &mut eps,
        )?;
        let c = -(-lambda).exp();
        out.clear();
        out.extend(eps.iter().map(|&e| c * e));
        Ok(())
    };
    let (mut k1, mut k2, mut k3, mut k4) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tmp = vec![0f64; n];
    for i in 0..steps {
        let l = l0 + h * i as f64;
        f(l, &y, &mut k1)?;
        for j in 0..n {
            tmp[j] = y[j] + 0.5 * h * k1[j];
        }
        f(l + 0.5 * h, &tmp, &mut k2)?;
        for j in 0..n {
            tmp[j] = y[j] + 0.5 * h * k2[j];
        }
        f(l + 0.5 * h, &tmp, &mut k3)?;
        for j in 0..n {
            tmp[j] = y[j] + h * k3[j];
        }
        f(l + h, &tmp, &mut k4)?;
        for j in 0..n {
            y[j] += h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j]);
        }
    }
    let a = ns.alpha(t_end);
    Ok(y.into_iter().map(|v| v * a).collect())
}

/// Doubles RK4 steps from `min_steps` until two successive solves differ by at most `tol`
/// (relative to max(1, max |x|)) or `max_steps` is reached (then an error says so).
pub fn reference_solve(
    model: &dyn Denoiser,
    ns: &NoiseSchedule,
    x_start: &[f64],
    t_start: f64,
    t_end: f64,
    tol: f64,
    max_steps: usize,
) -> Result<ReferenceSolution> {
    let mut steps = 32;
    let mut prev = rk4_solve(model, ns, x_start, t_start, t_end, steps)?;
    loop {
        steps *= 2;
        let next = rk4_solve(model, ns, x_start, t_start, t_end, steps)?;
        let scale = next.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let diff = next
            .iter()
            .zip(&prev)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        if diff <= tol {
            return Ok(ReferenceSolution {
                x: next,
                steps,
                estimated_error: diff,
            });
        }
        if steps >= max_steps {
            return Err(S3Error::Numerical(format!(
                "reference solve did not reach tolerance {tol:e} within {max_steps} RK4 steps (last change {diff:e})"
            )));
        }
        prev = next;
    }
}

//! A high-accuracy reference solve of the probability-flow ODE, independent of the USF update
//! code, in f64 (model calls included): classical RK4 in λ on y = x/α, where dy/dλ = −e^{−λ} ε(α·y, t(λ)), with uniform
//! λ-steps doubled until two solves agree to the requested tolerance.
//!
//! From pure noise (α = 0, λ = −∞: flow at t = 1) y = x/α and λ are infinite, so the stretch
//! up to λ = 0 (where α = σ) is solved in u = e^λ = α/σ on z = x/σ instead: dz/du = x0(σ·z, t),
//! the data-prediction form of the same ODE, finite from u = 0.

use crate::error::{Result, S3Error};
use crate::model::{Denoiser, TimePoint, eval_eps, eval_predictions};
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

/// RK4 with `steps` uniform steps from `t_start` to `t_end` (both > 0; `t_start` may be pure
/// noise): in λ on y = x/α, preceded from a pure-noise start by `steps` uniform steps in
/// u = e^λ on z = x/σ up to λ = min(0, λ(t_end)).
pub fn rk4_solve(
    model: &dyn Denoiser,
    ns: &NoiseSchedule,
    x_start: &[f64],
    t_start: f64,
    t_end: f64,
    steps: usize,
) -> Result<Vec<f64>> {
    let (l0, l1) = (ns.lambda(t_start), ns.lambda(t_end));
    let pure = l0 == f64::NEG_INFINITY;
    if !((l0.is_finite() || pure) && l1.is_finite() && l1 > l0) {
        return Err(S3Error::Numerical(format!(
            "reference solve needs finite log-SNR increasing from t = {t_start} to t = {t_end}"
        )));
    }
    if !pure {
        return rk4_lambda(model, ns, x_start, t_start, t_end, steps);
    }
    // λ = 0 splits the solve where α = σ; both forms are well conditioned on their side.
    if l1 <= 0.0 {
        return rk4_u(model, ns, x_start, t_end, steps);
    }
    let t_mid = ns.t_of_lambda(0.0);
    let x_mid = rk4_u(model, ns, x_start, t_mid, steps)?;
    rk4_lambda(model, ns, &x_mid, t_mid, t_end, steps)
}

/// Classical RK4 for dy/ds = f(s, y) with `steps` uniform steps from s0 to s1.
fn rk4(
    y: &mut [f64],
    s0: f64,
    s1: f64,
    steps: usize,
    mut f: impl FnMut(f64, &[f64], &mut Vec<f64>) -> Result<()>,
) -> Result<()> {
    let n = y.len();
    let h = (s1 - s0) / steps as f64;
    let (mut k1, mut k2, mut k3, mut k4) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tmp = vec![0f64; n];
    for i in 0..steps {
        let s = s0 + h * i as f64;
        f(s, y, &mut k1)?;
        for j in 0..n {
            tmp[j] = y[j] + 0.5 * h * k1[j];
        }
        f(s + 0.5 * h, &tmp, &mut k2)?;
        for j in 0..n {
            tmp[j] = y[j] + 0.5 * h * k2[j];
        }
        f(s + 0.5 * h, &tmp, &mut k3)?;
        for j in 0..n {
            tmp[j] = y[j] + h * k3[j];
        }
        f(s + h, &tmp, &mut k4)?;
        for j in 0..n {
            y[j] += h / 6.0 * (k1[j] + 2.0 * k2[j] + 2.0 * k3[j] + k4[j]);
        }
    }
    Ok(())
}

fn time_at(ns: &NoiseSchedule, lambda: f64) -> TimePoint {
    let t = ns.t_of_lambda(lambda);
    TimePoint {
        t,
        alpha: ns.alpha(t),
        sigma: ns.sigma(t),
    }
}

/// RK4 in λ on y = x/α from t0 to t1 (finite log-SNR at both): dy/dλ = −e^{−λ} ε.
fn rk4_lambda(
    model: &dyn Denoiser,
    ns: &NoiseSchedule,
    x_start: &[f64],
    t0: f64,
    t1: f64,
    steps: usize,
) -> Result<Vec<f64>> {
    let (l0, l1) = (ns.lambda(t0), ns.lambda(t1));
    let a0 = ns.alpha(t0);
    let mut y: Vec<f64> = x_start.iter().map(|&v| v / a0).collect();
    let n = y.len();
    let (mut xin, mut eps) = (vec![0f64; n], vec![0f64; n]);
    rk4(&mut y, l0, l1, steps, |lambda, y, out| {
        let time = time_at(ns, lambda);
        for (xi, &yi) in xin.iter_mut().zip(y) {
            *xi = time.alpha * yi;
        }
        eval_eps(model, &xin, time, &mut eps)?;
        let c = -(-lambda).exp();
        out.clear();
        out.extend(eps.iter().map(|&e| c * e));
        Ok(())
    })?;
    let a1 = ns.alpha(t1);
    Ok(y.into_iter().map(|v| v * a1).collect())
}

/// RK4 in u = e^λ on z = x/σ from pure noise (u = 0) to t1: dz/du = x0(σ·z, t(log u)).
fn rk4_u(
    model: &dyn Denoiser,
    ns: &NoiseSchedule,
    x_start: &[f64],
    t1: f64,
    steps: usize,
) -> Result<Vec<f64>> {
    let u1 = ns.lambda(t1).exp();
    let s0 = time_at(ns, f64::NEG_INFINITY).sigma;
    let mut z: Vec<f64> = x_start.iter().map(|&v| v / s0).collect();
    let n = z.len();
    let (mut xin, mut eps, mut x0) = (vec![0f64; n], vec![0f64; n], vec![0f64; n]);
    rk4(&mut z, 0.0, u1, steps, |u, z, out| {
        let time = time_at(ns, u.ln());
        for (xi, &zi) in xin.iter_mut().zip(z) {
            *xi = time.sigma * zi;
        }
        eval_predictions(model, &xin, time, &mut eps, &mut x0)?;
        out.clear();
        out.extend_from_slice(&x0);
        Ok(())
    })?;
    let s1 = ns.sigma(t1);
    Ok(z.into_iter().map(|v| v * s1).collect())
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

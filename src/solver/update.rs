//! One USF update as a linear combination: x_t = c·x_s + Σ_j w_j F_j over history buffers.
//! All coefficients are computed here in f64; the sampler applies them in one fused pass.
//!
//! Noise prediction (F = ε):  x_t = (α_t/α_s) x_s − σ_t Σ_{k<K} h^{k+1} φ_{k+1}(h)  F^(k)(λ_s)
//! Data prediction (F = x0):  x_t = (σ_t/σ_s) x_s + α_t Σ_{k<K} h^{k+1} φ_{k+1}(−h) F^(k)(λ_s)
//! with h = λ_t − λ_s and F^(k) estimated by finite differences (see `fd`), times r(h).

use super::fd::derivative_weights;
use super::phi::phi;
use super::schedule::{Derivative, Prediction};
use crate::error::{Result, S3Error};
use crate::noise::NoiseSchedule;

/// Where a history point or target lies on the noise schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointMeta {
    pub t: f64,
    pub lambda: f64,
    pub log_alpha: f64,
    pub alpha: f64,
    pub sigma: f64,
}

impl PointMeta {
    /// The schedule's values at time `t` (> 0).
    pub fn at(ns: &NoiseSchedule, t: f64) -> Self {
        let log_alpha = ns.log_alpha(t);
        Self {
            t,
            lambda: ns.lambda(t),
            log_alpha,
            alpha: log_alpha.exp(),
            sigma: ns.sigma(t),
        }
    }
}

/// The coefficients of one update over history slots (0 = oldest kept point).
#[derive(Debug, Clone, PartialEq)]
pub struct UpdatePlan {
    /// Slot of the start point x_s.
    pub start: usize,
    /// Coefficient of x_s.
    pub x_coef: f64,
    /// (slot, weight) for the model outputs F of the prediction type.
    pub model_terms: Vec<(usize, f64)>,
}

/// Plans the update from history point `start` (a negative index, −1 = newest) to `target`.
pub fn plan_update(
    history: &[PointMeta],
    start: i32,
    target: &PointMeta,
    prediction: Prediction,
    order: usize,
    derivatives: &[Derivative],
) -> Result<UpdatePlan> {
    let slot = |p: i32| -> Result<usize> {
        let idx = history.len() as i64 + p as i64;
        if p >= 0 || idx < 0 {
            return Err(S3Error::InvalidSchedule(format!(
                "history point {p} does not exist ({} points)",
                history.len()
            )));
        }
        Ok(idx as usize)
    };
    let s_slot = slot(start)?;
    let s = &history[s_slot];
    let h = target.lambda - s.lambda;
    if !(h.is_finite() && h > 0.0) {
        return Err(S3Error::Numerical(format!(
            "step from t = {} to t = {} has λ-size h = {h}; expected a finite positive h",
            s.t, target.t
        )));
    }
    let data = prediction == Prediction::Data;
    let (x_coef, zh, scale) = match prediction {
        Prediction::Noise => ((target.log_alpha - s.log_alpha).exp(), h, -target.sigma),
        Prediction::Data => (target.sigma / s.sigma, -h, target.alpha),
    };
    // c_k = scale · h^{k+1} φ_{k+1}(±h)
    let coef = |k: usize| scale * h.powi(k as i32 + 1) * phi(k + 1, zh);
    let mut terms: Vec<(usize, f64)> = vec![(s_slot, coef(0))];
    for (k0, der) in derivatives.iter().take(order.saturating_sub(1)).enumerate() {
        let d = k0 + 1;
        let slots: Vec<usize> = der.points.iter().map(|&p| slot(p)).collect::<Result<_>>()?;
        let offsets: Vec<f64> = slots
            .iter()
            .map(|&j| history[j].lambda - s.lambda)
            .collect();
        let a = derivative_weights(&offsets, d)?;
        let c = coef(d) * der.relaxation.factor(h, data);
        for (&j, &aj) in slots.iter().zip(&a) {
            terms.push((j, c * aj));
            terms.push((s_slot, -c * aj));
        }
    }
    // Merge weights per slot so each buffer is read once.
    let mut merged: Vec<(usize, f64)> = Vec::with_capacity(terms.len());
    for (j, w) in terms {
        match merged.iter_mut().find(|(k, _)| *k == j) {
            Some(e) => e.1 += w,
            None => merged.push((j, w)),
        }
    }
    Ok(UpdatePlan {
        start: s_slot,
        x_coef,
        model_terms: merged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(ns: &NoiseSchedule, ts: &[f64]) -> Vec<PointMeta> {
        ts.iter().map(|&t| PointMeta::at(ns, t)).collect()
    }

    /// First order with data prediction is DDIM: x_t = (σ_t/σ_s) x_s + α_t (1 − e^{−h}) x0.
    #[test]
    fn first_order_is_ddim_in_both_parameterisations() {
        let ns = NoiseSchedule::vp_linear();
        let h = meta(&ns, &[0.8]);
        let t = PointMeta::at(&ns, 0.5);
        let d = plan_update(&h, -1, &t, Prediction::Data, 1, &[]).unwrap();
        let hh = t.lambda - h[0].lambda;
        assert!((d.x_coef - t.sigma / h[0].sigma).abs() < 1e-15);
        assert!((d.model_terms[0].1 - t.alpha * -(-hh).exp_m1()).abs() < 1e-14);
        let n = plan_update(&h, -1, &t, Prediction::Noise, 1, &[]).unwrap();
        assert!((n.model_terms[0].1 + t.sigma * hh.exp_m1()).abs() < 1e-14);
        // Both give the same x_t when x0 = (x − σ ε)/α.
        let (x, eps) = (0.3, -1.1);
        let x0 = (x - h[0].sigma * eps) / h[0].alpha;
        let xd = d.x_coef * x + d.model_terms[0].1 * x0;
        let xn = n.x_coef * x + n.model_terms[0].1 * eps;
        assert!((xd - xn).abs() < 1e-12, "{xd} vs {xn}");
    }

    /// The derivative weights sum to zero: a constant F contributes only through c_0.
    #[test]
    fn higher_order_terms_vanish_for_constant_outputs() {
        let ns = NoiseSchedule::vp_linear();
        let h = meta(&ns, &[1.0, 0.8, 0.6]);
        let t = PointMeta::at(&ns, 0.4);
        let ders = [Derivative::new(vec![-2, -3]), Derivative::new(vec![-2, -3])];
        let p = plan_update(&h, -1, &t, Prediction::Data, 3, &ders).unwrap();
        let p1 = plan_update(&h, -1, &t, Prediction::Data, 1, &[]).unwrap();
        let total: f64 = p.model_terms.iter().map(|e| e.1).sum();
        assert!((total - p1.model_terms[0].1).abs() < 1e-12);
    }
}

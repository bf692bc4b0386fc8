//! One USF update as a linear combination: x_t = c·x_s + Σ_j w_j F_j over history buffers.
//! All coefficients are computed here in f64; the sampler applies them in one fused pass.
//!
//! Noise prediction (F = ε):  x_t = (α_t/α_s) x_s − σ_t Σ_{k<K} h^{k+1} φ_{k+1}(h)  F^(k)(λ_s)
//! Data prediction (F = x0):  x_t = (σ_t/σ_s) x_s + α_t Σ_{k<K} h^{k+1} φ_{k+1}(−h) F^(k)(λ_s)
//! with h = λ_t − λ_s and F^(k) estimated by finite differences (see `fd`), times r(h).
//!
//! From a pure-noise start (α_s = 0, λ_s = −∞: flow at t = 1) h is infinite; both expansions
//! of an order-1 step then have the same finite limit x_t = α_t·x̂0 + σ_t·ε̂, and since
//! ε̂ = x_s/σ_s exactly there, it is planned as x_t = (σ_t/σ_s)·x_s + α_t·x̂0 over the x0
//! buffer whatever the step's prediction (the ε form would be ∞ − ∞). Higher orders and
//! finite differences through such a point are undefined and refused.

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
        Self {
            t,
            lambda: ns.lambda(t),
            log_alpha: ns.log_alpha(t),
            alpha: ns.alpha(t),
            sigma: ns.sigma(t),
        }
    }

    /// Whether the point is pure noise (α = 0, λ = −∞).
    pub fn is_pure_noise(&self) -> bool {
        self.lambda == f64::NEG_INFINITY
    }
}

/// The coefficients of one update over history slots (0 = oldest kept point).
#[derive(Debug, Clone, PartialEq)]
pub struct UpdatePlan {
    /// Slot of the start point x_s.
    pub start: usize,
    /// Coefficient of x_s.
    pub x_coef: f64,
    /// (slot, weight) for the model outputs F of `source`.
    pub model_terms: Vec<(usize, f64)>,
    /// Which model output the weights multiply: the step's prediction, except from a
    /// pure-noise start (always the x0 buffer, see the module notes).
    pub source: Prediction,
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
    if s.is_pure_noise() {
        return plan_from_pure_noise(s_slot, s, target, order);
    }
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
        if let Some((&p, j)) = der
            .points
            .iter()
            .zip(&slots)
            .find(|(_, j)| history[**j].is_pure_noise())
        {
            return Err(S3Error::InvalidSchedule(format!(
                "derivative {d}: point {p} is t = {}, pure noise (α = 0, λ = −∞), where finite differences in λ are undefined",
                history[*j].t
            )));
        }
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
        source: prediction,
    })
}

/// The order-1 step from a pure-noise point: x_t = (σ_t/σ_s)·x_s + α_t·x̂0 (the h → ∞ limit of
/// both expansions).
fn plan_from_pure_noise(
    s_slot: usize,
    s: &PointMeta,
    target: &PointMeta,
    order: usize,
) -> Result<UpdatePlan> {
    if order != 1 {
        return Err(S3Error::InvalidSchedule(format!(
            "a step from t = {}, pure noise (α = 0, λ = −∞), must have order 1 (got {order}): its λ-step is infinite and only the order-1 limit exists",
            s.t
        )));
    }
    if !(target.lambda.is_finite() && target.sigma > 0.0) {
        return Err(S3Error::Numerical(format!(
            "step from t = {} (pure noise) to t = {} needs a target with finite log-SNR",
            s.t, target.t
        )));
    }
    Ok(UpdatePlan {
        start: s_slot,
        x_coef: target.sigma / s.sigma,
        model_terms: vec![(s_slot, target.alpha)],
        source: Prediction::Data,
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

    /// From flow's t = 1 an order-1 step of either prediction is x_t = σ_t·x_s + α_t·x̂0 (the
    /// σ_s = 1 start has ε̂ = x_s); it equals the flow Euler step x_s + (σ_t − σ_s)·v.
    #[test]
    fn first_order_from_pure_noise_is_the_finite_limit() {
        let ns = NoiseSchedule::Flow(crate::noise::FlowMatch::new(3.0).unwrap());
        let h = meta(&ns, &[1.0]);
        assert!(h[0].is_pure_noise() && h[0].alpha == 0.0);
        let t = PointMeta::at(&ns, 0.6);
        for pred in [Prediction::Data, Prediction::Noise] {
            let p = plan_update(&h, -1, &t, pred, 1, &[]).unwrap();
            assert_eq!(p.source, Prediction::Data);
            assert_eq!((p.x_coef, p.model_terms.clone()), (0.6, vec![(0, 0.4)]));
            let (x, x0) = (0.9, -0.3);
            let v = x - x0; // ε − x0 with ε = x at t = 1
            assert!((p.x_coef * x + p.model_terms[0].1 * x0 - (x + (0.6 - 1.0) * v)).abs() < 1e-15);
        }
        let e = plan_update(
            &h,
            -1,
            &t,
            Prediction::Data,
            2,
            &[Derivative::new(vec![-2])],
        )
        .unwrap_err();
        assert!(e.to_string().contains("order 1"), "{e}");
        // A pure-noise point inside a finite difference is refused, not turned into NaN.
        let h2 = meta(&ns, &[1.0, 0.7]);
        let e = plan_update(
            &h2,
            -1,
            &t,
            Prediction::Data,
            2,
            &[Derivative::new(vec![-2])],
        )
        .unwrap_err();
        assert!(e.to_string().contains("pure noise"), "{e}");
    }

    /// Flow Euler x + (σ_t − σ_s)·v is DDIM (first-order data prediction) on the flow grid.
    #[test]
    fn flow_euler_is_ddim() {
        let ns = NoiseSchedule::Flow(crate::noise::FlowMatch::new(1.0).unwrap());
        let (ts, tt) = (0.8, 0.35);
        let h = meta(&ns, &[ts]);
        let t = PointMeta::at(&ns, tt);
        let (x0, eps) = (0.4, -1.2);
        let x = (1.0 - ts) * x0 + ts * eps;
        let euler = x + (tt - ts) * (eps - x0);
        for (pred, f) in [(Prediction::Data, x0), (Prediction::Noise, eps)] {
            let p = plan_update(&h, -1, &t, pred, 1, &[]).unwrap();
            let got = p.x_coef * x + p.model_terms[0].1 * f;
            assert!((got - euler).abs() < 1e-14, "{pred:?}: {got} vs {euler}");
        }
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

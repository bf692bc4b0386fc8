//! ε and x0 of a mixture with per-dimension stds s_kd, one sample at a time.
//!
//! With v_kd = α²s_kd² + σ², component k's log-density at x is
//! ℓ_k = log w_k − ½ Σ_d ln(2π v_kd) − ½ Σ_d (x_d − α m_kd)²/v_kd. Everything that does not
//! depend on x — the normaliser (D logarithms per component), 1/v_kd, α·m_kd and α s_kd²/v_kd —
//! is tabulated once per call ([`Diagonal::new`]), so each sample costs one pass of
//! multiply-adds over the `K × D` tables, with the distances formed directly (no cancellation).
//! The responsibilities γ are the stable softmax of ℓ (see [`kernels`]), and
//!
//! ```text
//! ε  = σ Σ_k γ_k (x − α m_k)/v_k,
//! x0 = Σ_k γ_k (m_k + α s_k² (x − α m_k)/v_k),
//! ```
//!
//! summed over the components with γ_k ≠ 0 only.

use super::GaussianMixture;
use super::kernels;
use crate::model::Real;

/// The `K × D` tables of one call at (α, σ), shared by all samples.
pub(super) struct Diagonal<'a> {
    mixture: &'a GaussianMixture,
    sigma: f64,
    /// Whether the output is x0 (else ε).
    data: bool,
    /// α·m_kd.
    scaled_means: Vec<f64>,
    /// 1/v_kd.
    inv_v: Vec<f64>,
    /// α s_kd²/v_kd.
    gain: Vec<f64>,
    /// log w_k − ½ Σ_d ln(2π v_kd).
    base: Vec<f64>,
}

impl<'a> Diagonal<'a> {
    /// The tables at (α, σ) for a mixture whose stds are `stds` (`K × D` row-major).
    pub(super) fn new(
        mixture: &'a GaussianMixture,
        stds: &[f64],
        alpha: f64,
        sigma: f64,
        data: bool,
    ) -> Self {
        let ln_2pi = (2.0 * std::f64::consts::PI).ln();
        let v: Vec<f64> = stds
            .iter()
            .map(|s| alpha * alpha * s * s + sigma * sigma)
            .collect();
        let base = (v.chunks(mixture.dim).zip(&mixture.log_weights))
            .map(|(vk, lw)| lw - 0.5 * vk.iter().map(|v| ln_2pi + v.ln()).sum::<f64>())
            .collect();
        Self {
            mixture,
            sigma,
            data,
            scaled_means: mixture.means.iter().map(|m| alpha * m).collect(),
            gain: stds
                .iter()
                .zip(&v)
                .map(|(s, v)| alpha * s * s / v)
                .collect(),
            inv_v: v.iter().map(|v| 1.0 / v).collect(),
            base,
        }
    }

    /// The output for one sample `x` into `out`, using `scratch` (length K + 2D).
    pub(super) fn predict_one<T: Real>(&self, x: &[T], scratch: &mut [f64], out: &mut [T]) {
        let d = self.mixture.dim;
        let (logp, rest) = scratch.split_at_mut(self.mixture.components());
        let (xs, r) = rest.split_at_mut(d);
        for (a, &b) in xs.iter_mut().zip(x) {
            *a = b.to_f64();
        }
        let rows = self.scaled_means.chunks(d).zip(self.inv_v.chunks(d));
        for ((lp, (am, iv)), &b) in logp.iter_mut().zip(rows).zip(&self.base) {
            for ((rj, &xj), &amj) in r.iter_mut().zip(&*xs).zip(am) {
                let diff = xj - amj;
                *rj = diff * diff;
            }
            *lp = b - 0.5 * kernels::dot(r, iv);
        }
        let norm = kernels::exp_shifted(logp, kernels::max(logp));
        let mut acc = vec![0.0; d];
        for (k, &e) in logp.iter().enumerate().filter(|(_, e)| **e != 0.0) {
            self.accumulate(k, e / norm, xs, &mut acc);
        }
        let scale = if self.data { 1.0 } else { self.sigma };
        for (o, a) in out.iter_mut().zip(acc) {
            *o = T::from_f64(scale * a);
        }
    }

    /// Adds component k's prediction, weighted by its responsibility `gamma`, to `acc`.
    fn accumulate(&self, k: usize, gamma: f64, x: &[f64], acc: &mut [f64]) {
        let row = k * self.mixture.dim..(k + 1) * self.mixture.dim;
        let terms = (self.scaled_means[row.clone()].iter())
            .zip(&self.inv_v[row.clone()])
            .zip(&self.gain[row.clone()])
            .zip(self.mixture.mean_of(k));
        for ((a, &xj), (((&amj, &ivj), &gj), &mj)) in acc.iter_mut().zip(x).zip(terms) {
            let r = xj - amj;
            *a += gamma * if self.data { mj + gj * r } else { r * ivj };
        }
    }
}

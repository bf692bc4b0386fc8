//! ε and x0 of a mixture with isotropic components (std s_k) for a block of samples, laid out
//! as matrix products so that most of the work runs in an optimised GEMM.
//!
//! With v_k = α²s_k² + σ², component k's log-density at x (up to a common constant) is
//!
//! ```text
//! ℓ_k(x) = log w_k − D/2·ln v_k − ‖x − α m_k‖² / (2 v_k),
//! ‖x − α m_k‖² = ‖x‖² − 2α x·m_k + α²‖m_k‖²,
//! ```
//!
//! so the only term coupling samples and components is x·m_k: for a block of B samples one
//! `K × D` by `D × B` product (the means against the samples). The responsibilities γ_k are a
//! softmax of ℓ over k, taken per sample on a contiguous column of K values (maximum
//! subtracted first, so every exponent is ≤ 0 and the sum is ≥ 1: no overflow, no 0/0), with
//! the exp in [`kernels`]. With g_k = γ_k/v_k the predictions are
//!
//! ```text
//! ε  = σ [(Σ_k g_k) x − α Σ_k g_k m_k],
//! x0 = σ² Σ_k g_k m_k + α (Σ_k g_k s_k²) x,
//! ```
//!
//! the second product `D × K` by `K × B` (Σ_k g_k m_k). Where the softmax is peaked (small σ)
//! almost all g_k are exactly 0 and the product is replaced by a sum over the few that are not.
//!
//! Accuracy: the expansion of ‖x − α m_k‖² cancels, losing about u·(‖x‖ + α‖m_k‖)² of its
//! absolute accuracy (u the unit roundoff), which divided by 2v_k is the error of ℓ_k. Where
//! that error, times how much the components' predictions differ, could reach
//! [`REFINE_TOLERANCE`] (small σ, or x far from the data) the distances of all components that
//! can matter are recomputed directly; the softmax is then peaked, so they are few, and the
//! output is summed directly too (no cancellation in x − α m_k). Results match a direct
//! per-component evaluation to about 10⁻¹³ of the output's scale.

use super::GaussianMixture;
use super::kernels::{self, LOG_NEGLIGIBLE};
use crate::model::Real;
use nalgebra::{DMatrixView, DMatrixViewMut};

/// Samples per block: each block is two GEMMs of this many columns. Large enough to amortise
/// the packing of the means, small enough that a block's K × B responsibilities stay in cache
/// for a few thousand components.
pub(super) const BLOCK_SAMPLES: usize = 128;

/// Output error (on the unit scale of ε and of the data) above which the expanded distances
/// of the components that matter are recomputed directly.
const REFINE_TOLERANCE: f64 = 1e-12;

/// max_d (max_k − min_k of m_kd·scale_k): how far the components' scaled means spread in the
/// widest dimension.
fn mean_spread(mixture: &GaussianMixture, scale: &[f64]) -> f64 {
    let d = mixture.dim;
    let (mut lo, mut hi) = (vec![f64::INFINITY; d], vec![f64::NEG_INFINITY; d]);
    for (m, &s) in mixture.means.chunks(d).zip(scale) {
        for ((l, h), &v) in lo.iter_mut().zip(&mut hi).zip(m) {
            *l = l.min(v * s);
            *h = h.max(v * s);
        }
    }
    lo.iter().zip(&hi).fold(0.0, |w, (l, h)| w.max(h - l))
}

/// max − min of `v` (0 if empty).
fn range(v: &[f64]) -> f64 {
    let lo = v.iter().fold(f64::INFINITY, |m, &x| m.min(x));
    (kernels::max(v) - lo).max(0.0)
}

/// Unit roundoff of f64.
const UNIT_ROUNDOFF: f64 = f64::EPSILON / 2.0;

/// Added to √D in the rounding growth of the expanded distance: the three terms' own roundings.
const DOT_ROUNDING_OFFSET: f64 = 2.0;

/// Beyond this share of non-zero responsibilities in a block, the dense product Σ_k g_k m_k is
/// cheaper than summing over the non-zero terms one by one.
const SPARSE_MAX_DENSITY: f64 = 0.125;

/// The per-component constants of one call at (α, σ), shared by all blocks.
pub(super) struct Isotropic<'a> {
    mixture: &'a GaussianMixture,
    alpha: f64,
    sigma: f64,
    /// Whether the output is x0 (else ε).
    data: bool,
    /// s_k².
    var: Vec<f64>,
    /// 1/v_k.
    inv_v: Vec<f64>,
    /// 1/(2 v_k).
    half_inv_v: Vec<f64>,
    /// log w_k − D/2·(ln 2π + ln v_k).
    base: Vec<f64>,
    /// α²‖m_k‖².
    scaled_norms: Vec<f64>,
    /// α max_k ‖m_k‖.
    scaled_max_norm: f64,
    /// The error bound of ℓ per unit of (‖x‖ + α max‖m_k‖)² (see [`Isotropic::log_error`]).
    log_error_per_term: f64,
    /// How far the components' predictions spread, as a·‖x‖_∞ + b (see
    /// [`Isotropic::refinement_window`]).
    spread: (f64, f64),
}

/// Per-thread buffers of one block, column-major: the block's samples in f64 (`D × B`), the
/// products m_k·x then g_k (`K × B`), Σ_k g_k m_k (`D × B`), and per-sample sums. Kept per
/// thread between calls ([`with_scratch`]): a fresh K × B buffer per block (1.8 MB for
/// `digits`) would cost more in page faults and zeroing than its softmax.
#[derive(Default)]
pub(super) struct Scratch {
    x: Vec<f64>,
    g: Vec<f64>,
    gm: Vec<f64>,
    coefs: Vec<Coefs>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Runs `f` with this thread's [`Scratch`], sized for blocks of `mixture`.
pub(super) fn with_scratch<R>(mixture: &GaussianMixture, f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with_borrow_mut(|s| {
        let (d, k) = (mixture.dim, mixture.components());
        s.x.resize(d * BLOCK_SAMPLES, 0.0);
        s.g.resize(k * BLOCK_SAMPLES, 0.0);
        s.gm.resize(d * BLOCK_SAMPLES, 0.0);
        s.coefs.resize(BLOCK_SAMPLES, Coefs::default());
        f(s)
    })
}

/// Per-sample sums over components: Σ g_k and Σ g_k s_k².
#[derive(Clone, Copy, Default)]
struct Coefs {
    x: f64,
    var: f64,
}

impl<'a> Isotropic<'a> {
    /// The constants at (α, σ) for a mixture whose stds are `stds` (one per component).
    pub(super) fn new(
        mixture: &'a GaussianMixture,
        stds: &[f64],
        alpha: f64,
        sigma: f64,
        data: bool,
    ) -> Self {
        let d = mixture.dim as f64;
        let ln_2pi = (2.0 * std::f64::consts::PI).ln();
        let var: Vec<f64> = stds.iter().map(|s| s * s).collect();
        let v: Vec<f64> = var
            .iter()
            .map(|s2| alpha * alpha * s2 + sigma * sigma)
            .collect();
        let inv_v: Vec<f64> = v.iter().map(|v| 1.0 / v).collect();
        let base = (mixture.log_weights.iter().zip(&v))
            .map(|(lw, v)| lw - 0.5 * d * (ln_2pi + v.ln()))
            .collect();
        let max_norm = mixture
            .mean_norms
            .iter()
            .fold(0.0f64, |m, &n| m.max(n))
            .sqrt();
        let growth = d.sqrt() + DOT_ROUNDING_OFFSET;
        // ε_k = σ x/v_k − σα m_k/v_k and x0_k = α (s_k²/v_k) x + σ² m_k/v_k.
        let spread = if data {
            let gain: Vec<f64> = var.iter().zip(&inv_v).map(|(s2, iv)| s2 * iv).collect();
            (
                alpha * range(&gain),
                sigma * sigma * mean_spread(mixture, &inv_v),
            )
        } else {
            (
                sigma * range(&inv_v),
                sigma * alpha * mean_spread(mixture, &inv_v),
            )
        };
        Self {
            mixture,
            alpha,
            sigma,
            data,
            half_inv_v: v.iter().map(|v| 0.5 / v).collect(),
            log_error_per_term: growth * UNIT_ROUNDOFF * 0.5 * kernels::max(&inv_v),
            inv_v,
            base,
            scaled_norms: mixture
                .mean_norms
                .iter()
                .map(|n| alpha * alpha * n)
                .collect(),
            scaled_max_norm: alpha * max_norm,
            spread,
            var,
        }
    }

    /// The output for the samples `x` (at most [`BLOCK_SAMPLES`] of them) into `out`.
    pub(super) fn block<T: Real>(&self, x: &[T], out: &mut [T], scratch: &mut Scratch) {
        let (d, k) = (self.mixture.dim, self.mixture.components());
        let n = x.len() / d;
        let xs = &mut scratch.x[..d * n];
        for (a, &b) in xs.iter_mut().zip(x) {
            *a = b.to_f64();
        }
        let xs = &scratch.x[..d * n];
        let g = &mut scratch.g[..k * n];
        // Row k of the means is column k of the row-major K × D list read as D × K.
        let means = DMatrixView::from_slice_with_strides(&self.mixture.means, k, d, d, 1);
        DMatrixViewMut::from_slice(g, k, n).gemm(
            1.0,
            &means,
            &DMatrixView::from_slice(xs, d, n),
            0.0,
        );
        let coefs = &mut scratch.coefs[..n];
        let mut nonzero = 0;
        for ((col, xi), c) in g.chunks_mut(k).zip(xs.chunks(d)).zip(coefs.iter_mut()) {
            let (cf, nz) = self.responsibilities(col, xi);
            *c = cf;
            nonzero += nz;
        }
        if (nonzero as f64) <= SPARSE_MAX_DENSITY * (n * k) as f64 {
            self.sparse_output(xs, g, coefs, out);
        } else {
            self.dense_output(xs, g, coefs, &mut scratch.gm[..d * n], out);
        }
    }

    /// Turns `col` (m_k·x for each k) into g_k = γ_k/v_k for the sample `x`; returns Σ g_k,
    /// Σ g_k s_k² and the number of non-zero g_k.
    fn responsibilities(&self, col: &mut [f64], x: &[f64]) -> (Coefs, usize) {
        let x2 = kernels::dot(x, x);
        let two_alpha = 2.0 * self.alpha;
        let terms = self
            .base
            .iter()
            .zip(&self.half_inv_v)
            .zip(&self.scaled_norms);
        for (e, ((&b, &h), &a)) in col.iter_mut().zip(terms) {
            let dist = x2 - two_alpha * *e + a;
            *e = b - h * if dist > 0.0 { dist } else { 0.0 };
        }
        if let Some(window) = self.refinement_window(x, self.log_error(x2)) {
            self.refine(col, x, window);
        }
        let top = kernels::max(col);
        let norm = kernels::exp_shifted(col, top);
        let (mut nonzero, inv_norm) = (0, 1.0 / norm);
        for (e, &iv) in col.iter_mut().zip(&self.inv_v) {
            nonzero += usize::from(*e != 0.0);
            *e *= iv * inv_norm;
        }
        let coefs = Coefs {
            x: kernels::sum(col),
            var: kernels::dot(col, &self.var),
        };
        (coefs, nonzero)
    }

    /// A bound on the rounding error of the expanded ℓ_k for a sample with ‖x‖² = `x2`: the
    /// expansion's terms are up to (‖x‖ + α max‖m_k‖)², the GEMM's D-term dot products round
    /// like √D terms (a random walk), and ℓ_k divides by 2v_k.
    fn log_error(&self, x2: f64) -> f64 {
        (x2.sqrt() + self.scaled_max_norm).powi(2) * self.log_error_per_term
    }

    /// How far below the most likely component ℓ must be recomputed, or `None` if errors of
    /// `log_error` in ℓ cannot move the output by [`REFINE_TOLERANCE`]. Errors δ in ℓ change
    /// each γ_k by at most a factor e^{±2δ}, and as Σ_k γ_k = 1 the output by at most 2δ times
    /// the spread of the components' predictions. Components more than W below the top hold
    /// at most K·e^{−W} of the mass together, so leaving them unrefined costs at most that
    /// fraction of the error: W = ln(K · error / tolerance) (at most −[`LOG_NEGLIGIBLE`]).
    fn refinement_window(&self, x: &[f64], log_error: f64) -> Option<f64> {
        let x_max = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let spread = self.spread.0 * x_max + self.spread.1;
        let excess = 2.0 * log_error * spread / REFINE_TOLERANCE;
        (excess > 1.0).then(|| {
            let k = self.mixture.components() as f64;
            (k * excess).ln().min(-LOG_NEGLIGIBLE) + 2.0 * log_error
        })
    }

    /// Recomputes ℓ_k from the direct distance ‖x − α m_k‖² for every component within
    /// `window` of the maximum.
    fn refine(&self, col: &mut [f64], x: &[f64], window: f64) {
        let floor = kernels::max(col) - window;
        for (c, e) in col.iter_mut().enumerate() {
            if *e >= floor {
                let dist = kernels::scaled_distance(x, self.alpha, self.mixture.mean_of(c));
                *e = self.base[c] - self.half_inv_v[c] * dist;
            }
        }
    }

    /// The output from the dense product Σ_k g_k m_k (`gm`, `D × B`).
    fn dense_output<T: Real>(
        &self,
        xs: &[f64],
        g: &[f64],
        coefs: &[Coefs],
        gm: &mut [f64],
        out: &mut [T],
    ) {
        let (d, k, n) = (self.mixture.dim, self.mixture.components(), coefs.len());
        let means_t = DMatrixView::from_slice(&self.mixture.means, d, k);
        DMatrixViewMut::from_slice(gm, d, n).gemm(
            1.0,
            &means_t,
            &DMatrixView::from_slice(g, k, n),
            0.0,
        );
        let (alpha, sigma) = (self.alpha, self.sigma);
        let rows = out.chunks_mut(d).zip(xs.chunks(d)).zip(gm.chunks(d));
        for (((o, xi), gmi), c) in rows.zip(coefs) {
            for ((oj, &xj), &gj) in o.iter_mut().zip(xi).zip(gmi) {
                *oj = T::from_f64(if self.data {
                    sigma * sigma * gj + alpha * c.var * xj
                } else {
                    sigma * (c.x * xj - alpha * gj)
                });
            }
        }
    }

    /// The output summed over the non-zero g_k only; ε as σ Σ_k g_k (x − α m_k), without the
    /// cancellation of the expanded form.
    fn sparse_output<T: Real>(&self, xs: &[f64], g: &[f64], coefs: &[Coefs], out: &mut [T]) {
        let (d, k) = (self.mixture.dim, self.mixture.components());
        let (alpha, sigma) = (self.alpha, self.sigma);
        let mut acc = vec![0.0; d];
        let rows = out.chunks_mut(d).zip(xs.chunks(d)).zip(g.chunks(k));
        for (((o, xi), gi), c) in rows.zip(coefs) {
            acc.fill(0.0);
            for (comp, &gk) in gi.iter().enumerate().filter(|(_, g)| **g != 0.0) {
                let m = self.mixture.mean_of(comp);
                for ((a, &xj), &mj) in acc.iter_mut().zip(xi).zip(m) {
                    *a += gk * if self.data { mj } else { xj - alpha * mj };
                }
            }
            for ((oj, &xj), &aj) in o.iter_mut().zip(xi).zip(&acc) {
                *oj = T::from_f64(if self.data {
                    sigma * sigma * aj + alpha * c.var * xj
                } else {
                    sigma * aj
                });
            }
        }
    }
}

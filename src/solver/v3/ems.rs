//! DPM-Solver-v3's empirical model statistics (EMS) and their cumulative integrals.
//!
//! The EMS are three per-element vectors l_λ, s_λ, b_λ (one value per sample element, as
//! many as the model's sample has) on a uniform grid of N + 1 points in λ from λ_T = λ(t_start)
//! to λ_0 = λ(t_end). The solver needs them only through the running integrals, all by the
//! trapezoid rule over the grid (official `DPM_Solver_v3.__init__`,
//! `weighted_cumsumexp_trapezoid`):
//!
//! - L = ∫ l, S = ∫ s
//! - I = ∫ e^{L+S}
//! - B = ∫ e^{−S} b
//! - C = ∫ e^{L+S} B
//!
//! each from λ_T (value 0 at grid index 0), and the high-order coefficients
//! E_k(s, t) = ∫_{λ_s}^{λ_t} e^{(L+S)(λ) − (L+S)(λ_s)} (λ − λ_s)^k / k! dλ
//! (`compute_exponential_coefficients_high_order`). Exponentials are integrated with the
//! official code's shift by the per-element maximum of the exponent.

use crate::error::{Result, S3Error};
use crate::noise::NoiseSchedule;
use serde::{Deserialize, Serialize};

/// The uniform λ grid the EMS live on: λ_j = λ_T + j·(λ_0 − λ_T)/N, j = 0..=N (official
/// `ts`: `get_time_steps("logSNR", t_T, t_0, N)` mapped back to λ).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LambdaGrid {
    /// The time the grid starts at (the noisiest point, grid index 0).
    pub t_start: f64,
    /// The time the grid ends at (grid index N).
    pub t_end: f64,
    /// λ_T = λ(t_start).
    pub lambda_start: f64,
    /// λ_0 = λ(t_end).
    pub lambda_end: f64,
    /// N: the grid has N + 1 points.
    pub intervals: usize,
}

impl LambdaGrid {
    /// The grid of `intervals` uniform λ-intervals from `t_start` to `t_end` under `ns`.
    /// Both ends must have a finite λ (flow's pure-noise start t = 1 has none: DPM-Solver-v3
    /// divides by α_s, which is 0 there) and λ must increase from start to end.
    pub fn new(ns: &NoiseSchedule, t_start: f64, t_end: f64, intervals: usize) -> Result<Self> {
        let bad = |field: &str, msg: String| S3Error::field("DPM-Solver-v3 EMS grid", field, msg);
        if intervals == 0 {
            return Err(bad("intervals", "expected at least 1".into()));
        }
        let (l0, l1) = (ns.lambda(t_start), ns.lambda(t_end));
        if !l0.is_finite() {
            return Err(bad(
                "t_start",
                format!(
                    "λ({t_start}) = {l0} under {}; DPM-Solver-v3 needs a finite log-SNR at the \
                     start (flow's pure-noise t = 1 is not supported)",
                    ns.name()
                ),
            ));
        }
        if !(l1.is_finite() && l1 > l0) {
            return Err(bad(
                "t_end",
                format!("λ({t_end}) = {l1}; expected finite and above λ(t_start) = {l0}"),
            ));
        }
        Ok(Self {
            t_start,
            t_end,
            lambda_start: l0,
            lambda_end: l1,
            intervals,
        })
    }

    /// The number of grid points, N + 1.
    pub fn len(&self) -> usize {
        self.intervals + 1
    }

    /// Always false (a grid has at least two points).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// λ at grid index `j`.
    pub fn lambda(&self, j: usize) -> f64 {
        self.lambda_start + (self.lambda_end - self.lambda_start) * j as f64 / self.intervals as f64
    }

    /// The grid spacing Δλ.
    pub fn step(&self) -> f64 {
        (self.lambda_end - self.lambda_start) / self.intervals as f64
    }

    /// The grid index nearest to λ (official `convert_to_indexes`:
    /// round(N·(λ − λ_T)/(λ_0 − λ_T))), clamped to the grid.
    pub fn index_of(&self, lambda: f64) -> usize {
        let r = self.intervals as f64 * (lambda - self.lambda_start)
            / (self.lambda_end - self.lambda_start);
        r.round().clamp(0.0, self.intervals as f64) as usize
    }

    /// The grid indices of `steps` steps uniform in λ over the whole grid, snapped to the
    /// grid: round(N·i/steps), computed in integers (ties round up; the official code rounds
    /// the float λ, which agrees wherever N·i/steps is not a tie).
    pub fn uniform_indices(&self, steps: usize) -> Vec<usize> {
        let n = self.intervals;
        (0..=steps)
            .map(|i| (2 * n * i + steps) / (2 * steps))
            .collect()
    }
}

/// DPM-Solver-v3's empirical model statistics on a [`LambdaGrid`]: l, s, b per grid point and
/// sample element (`(N + 1) × dim`, row-major), held in f64.
#[derive(Debug, Clone, PartialEq)]
pub struct Ems {
    pub grid: LambdaGrid,
    /// The shape of one model sample (the EMS have one value per element).
    pub shape: Vec<usize>,
    l: Vec<f64>,
    s: Vec<f64>,
    b: Vec<f64>,
}

impl Ems {
    /// EMS from their arrays (`(N + 1) × dim` each, finite).
    pub fn new(
        grid: LambdaGrid,
        shape: Vec<usize>,
        l: Vec<f64>,
        s: Vec<f64>,
        b: Vec<f64>,
    ) -> Result<Self> {
        let dim: usize = shape.iter().product();
        let want = grid.len() * dim;
        for (name, v) in [("l", &l), ("s", &s), ("b", &b)] {
            if v.len() != want {
                return Err(S3Error::field(
                    "DPM-Solver-v3 EMS",
                    name,
                    format!(
                        "{} values; expected (N + 1) × dim = {} × {dim} = {want}",
                        v.len(),
                        grid.len()
                    ),
                ));
            }
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(S3Error::field(
                    "DPM-Solver-v3 EMS",
                    name,
                    format!("value {i} is not finite; expected finite statistics"),
                ));
            }
        }
        Ok(Self {
            grid,
            shape,
            l,
            s,
            b,
        })
    }

    /// The `degenerated` EMS l = 1, s = b = 0, with which DPM-Solver-v3 is DPM-Solver++
    /// (data prediction) in its Taylor form (paper App. A.2; official `degenerated=True`).
    pub fn degenerated(grid: LambdaGrid, shape: Vec<usize>) -> Self {
        let n = grid.len() * shape.iter().product::<usize>();
        Self {
            grid,
            shape,
            l: vec![1.0; n],
            s: vec![0.0; n],
            b: vec![0.0; n],
        }
    }

    /// The values of one sample.
    pub fn dim(&self) -> usize {
        self.shape.iter().product()
    }

    /// l at grid index `j` (one value per element).
    pub fn l_at(&self, j: usize) -> &[f64] {
        let d = self.dim();
        &self.l[j * d..(j + 1) * d]
    }

    /// s at grid index `j`.
    pub fn s_at(&self, j: usize) -> &[f64] {
        let d = self.dim();
        &self.s[j * d..(j + 1) * d]
    }

    /// b at grid index `j`.
    pub fn b_at(&self, j: usize) -> &[f64] {
        let d = self.dim();
        &self.b[j * d..(j + 1) * d]
    }

    /// The whole arrays (l, s, b), `(N + 1) × dim` each.
    pub fn arrays(&self) -> (&[f64], &[f64], &[f64]) {
        (&self.l, &self.s, &self.b)
    }

    /// The same statistics rounded to f32 (how they are stored on disk), so that a freshly
    /// computed EMS and one read back from the cache give identical samples.
    pub fn rounded_to_f32(mut self) -> Self {
        for v in [&mut self.l, &mut self.s, &mut self.b] {
            for x in v.iter_mut() {
                *x = *x as f32 as f64;
            }
        }
        self
    }
}

/// Σ-weighted cumulative trapezoid of b·e^a over the grid, per element (official
/// `weighted_cumsumexp_trapezoid`): y_0 = 0, y_n = Σ_{i=1}^{n} ½Δλ (b_i e^{a_i} + b_{i−1}
/// e^{a_{i−1}}), with e^a computed as e^{a − max a}·e^{max a} per element. `a` and `b` are
/// `rows × dim` (b = None is 1).
fn cumulative_trapezoid_exp(a: &[f64], b: Option<&[f64]>, lambdas: &[f64], dim: usize) -> Vec<f64> {
    let rows = lambdas.len();
    let mut out = vec![0.0; rows * dim];
    for d in 0..dim {
        let a_max = (0..rows).map(|j| a[j * dim + d]).fold(f64::MIN, f64::max);
        let term = |j: usize| b.map_or(1.0, |b| b[j * dim + d]) * (a[j * dim + d] - a_max).exp();
        let mut acc = 0.0;
        let mut prev = term(0);
        for j in 1..rows {
            let cur = term(j);
            acc += 0.5 * (lambdas[j] - lambdas[j - 1]) * (cur + prev);
            out[j * dim + d] = acc;
            prev = cur;
        }
        let scale = a_max.exp();
        for j in 1..rows {
            out[j * dim + d] *= scale;
        }
    }
    out
}

/// The cumulative integrals of an [`Ems`] that the solver's coefficients are built from.
#[derive(Debug, Clone)]
pub struct EmsIntegrals {
    dim: usize,
    lambdas: Vec<f64>,
    /// L = ∫ l.
    pub big_l: Vec<f64>,
    /// S = ∫ s.
    pub big_s: Vec<f64>,
    /// I = ∫ e^{L+S}.
    pub big_i: Vec<f64>,
    /// B = ∫ e^{−S} b.
    pub big_b: Vec<f64>,
    /// C = ∫ e^{L+S} B.
    pub big_c: Vec<f64>,
}

impl EmsIntegrals {
    /// Integrates `ems` over its grid (f64 throughout).
    pub fn new(ems: &Ems) -> Self {
        let dim = ems.dim();
        let lambdas: Vec<f64> = (0..ems.grid.len()).map(|j| ems.grid.lambda(j)).collect();
        let zeros = vec![0.0; ems.l.len()];
        let big_l = cumulative_trapezoid_exp(&zeros, Some(&ems.l), &lambdas, dim);
        let big_s = cumulative_trapezoid_exp(&zeros, Some(&ems.s), &lambdas, dim);
        let ls: Vec<f64> = big_l.iter().zip(&big_s).map(|(l, s)| l + s).collect();
        let neg_s: Vec<f64> = big_s.iter().map(|s| -s).collect();
        let big_i = cumulative_trapezoid_exp(&ls, None, &lambdas, dim);
        let big_b = cumulative_trapezoid_exp(&neg_s, Some(&ems.b), &lambdas, dim);
        let big_c = cumulative_trapezoid_exp(&ls, Some(&big_b), &lambdas, dim);
        Self {
            dim,
            lambdas,
            big_l,
            big_s,
            big_i,
            big_b,
            big_c,
        }
    }

    /// The row of `v` at grid index `j`.
    pub fn row<'v>(&self, v: &'v [f64], j: usize) -> &'v [f64] {
        &v[j * self.dim..(j + 1) * self.dim]
    }

    /// E_k(i_s, i_t) = ∫_{λ_s}^{λ_t} e^{(L+S)(λ) − (L+S)(λ_s)} (λ − λ_s)^k / k! dλ per element,
    /// by the trapezoid rule over grid indices i_s..=i_t with the max shift (official
    /// `compute_exponential_coefficients_high_order(i_s, i_t, order = k + 1)`; 0 when
    /// i_s = i_t). Requires i_s ≤ i_t.
    pub fn e_k(&self, i_s: usize, i_t: usize, k: usize) -> Vec<f64> {
        let dim = self.dim;
        let fact: f64 = (1..=k).map(|i| i as f64).product();
        let ls = |j: usize, d: usize| self.big_l[j * dim + d] + self.big_s[j * dim + d];
        let lam_s = self.lambdas[i_s];
        (0..dim)
            .map(|d| {
                let base = ls(i_s, d);
                let a_max = (i_s..=i_t)
                    .map(|j| ls(j, d) - base)
                    .fold(f64::MIN, f64::max);
                let term = |j: usize| {
                    (self.lambdas[j] - lam_s).powi(k as i32) / fact
                        * (ls(j, d) - base - a_max).exp()
                };
                let sum: f64 = (i_s + 1..=i_t)
                    .map(|j| {
                        0.5 * (self.lambdas[j] - self.lambdas[j - 1]) * (term(j) + term(j - 1))
                    })
                    .sum();
                sum * a_max.exp()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize) -> LambdaGrid {
        LambdaGrid::new(&NoiseSchedule::vp_linear(), 1.0, 1e-3, n).unwrap()
    }

    /// With l = 1, s = b = 0: L = λ − λ_T, S = B = C = 0 and I = ∫ e^{λ−λ_T} to the
    /// trapezoid rule's O(Δλ²) accuracy; E_1 likewise.
    #[test]
    fn degenerate_integrals_have_their_closed_forms() {
        let g = grid(4000);
        let ems = Ems::degenerated(g, vec![2]);
        let int = EmsIntegrals::new(&ems);
        let j = 3000;
        let (lt, l0) = (g.lambda(j), g.lambda_start);
        assert!((int.row(&int.big_l, j)[1] - (lt - l0)).abs() < 1e-12);
        assert!(int.row(&int.big_s, j).iter().all(|&v| v == 0.0));
        assert!(int.row(&int.big_c, j).iter().all(|&v| v == 0.0));
        let exact_i = (lt - l0).exp() - 1.0;
        let rel = (int.row(&int.big_i, j)[0] - exact_i).abs() / exact_i;
        assert!(rel < g.step().powi(2), "{rel}");
        let h = g.lambda(3600) - g.lambda(3000);
        let exact_e1 = (h - 1.0) * h.exp() + 1.0;
        let e1 = int.e_k(3000, 3600, 1)[0];
        assert!(
            ((e1 - exact_e1) / exact_e1).abs() < g.step().powi(2),
            "{e1} {exact_e1}"
        );
        assert_eq!(int.e_k(5, 5, 2), vec![0.0, 0.0]);
    }

    #[test]
    fn grid_snaps_uniform_steps_and_refuses_pure_noise() {
        let g = grid(1200);
        assert_eq!(g.uniform_indices(7)[1], 171); // 1200/7 = 171.43
        assert_eq!(g.uniform_indices(5), vec![0, 240, 480, 720, 960, 1200]);
        assert_eq!(g.index_of(g.lambda(37) + 0.4 * g.step()), 37);
        let flow = NoiseSchedule::Flow(crate::noise::FlowMatch::new(1.0).unwrap());
        let e = LambdaGrid::new(&flow, 1.0, 1e-3, 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t_start") && e.contains("flow"), "{e}");
        let e = Ems::new(g, vec![2], vec![0.0; 3], vec![], vec![])
            .unwrap_err()
            .to_string();
        assert!(e.contains("`l`") && e.contains("1201 × 2"), "{e}");
    }
}

//! Exact empirical model statistics for Gaussian mixtures with diagonal component
//! covariances (paper App. C.1.1; the estimator of `compute_EMS_scoresde.py`, reproduced in
//! the F-scheduler repository, with its two Monte-Carlo noise sources removed).
//!
//! For x0 ~ Σ_k w_k N(m_k, diag(s_k²)) and x_λ = α x0 + σ z the noise prediction is
//! ε(x) = σ Σ_k γ_k u_k with u_k = (x − α m_k)/v_k, v_k = α² s_k² + σ² (per element) and the
//! posterior responsibilities γ_k ∝ w_k N(x; α m_k, diag v_k). Its Jacobian is
//! ∂ε/∂x = σ [Σ_k γ_k diag(1/v_k) − (Σ_k γ_k u_k u_kᵀ − ū ūᵀ)], ū = Σ_k γ_k u_k, so its
//! diagonal is exact (no Hutchinson probe), and its total derivative along the ODE
//! dx/dλ = ρ x − σ ε (ρ = d log α/dλ: σ² for VP, 0 for EDM) is exact as well (no
//! forward-mode AD). Per grid point λ_j:
//!
//! - l = E[σ · diag(∂ε/∂x)]
//! - l′ by central differences over the grid (one-sided at the ends), then a moving average
//!   over ±[`L_DERIVATIVE_WINDOW`] points, truncated at the ends (official `compute_l_d`)
//! - f = (σ ε − l x)/α and f′ = e^{−λ}((l − 1) ε + ε′) − l′ x/α
//! - s = Cov(f, f′)/Var(f), b = E f′ − s E f, element-wise.
//!
//! The expectation over x_λ is Monte-Carlo over K seeded (x0, z) draws, the same draws at every
//! grid point (common random numbers: l is then a smooth function of λ and its finite
//! differences carry no sampling noise). Where f has no variance (a single Gaussian: f is
//! then the constant −l·m) the regression is undefined and s = 0, b = E f′: g = f exactly.

use super::ems::{Ems, LambdaGrid};
use crate::error::{Result, S3Error};
use crate::model::GaussianMixture;
use crate::noise::NoiseSchedule;
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Grid intervals N of the mixture EMS (the paper's ScoreSDE statistics use 1200; 240 is
/// divisible by the NFEs 5, 6, 8, 10, 12, 15, 20, 24, whose runs then need no snapping, and
/// keeps the `digits` statistics well under a minute on 2 cores).
pub const EMS_GRID_INTERVALS: usize = 240;
/// Data draws K of the Monte-Carlo expectation (the paper uses 4096 images with one
/// Hutchinson probe each; with the exact Jacobian diagonal the only noise left is the draw of
/// (x0, z), so fewer do).
pub const EMS_DATA_DRAWS: usize = 256;
/// Half-width of the moving average that smooths l′ (official `compute_l_d`: 5).
pub const L_DERIVATIVE_WINDOW: usize = 5;
/// The seed of the (x0, z) draws.
pub const EMS_SEED: u64 = 0x0e35_d3b3;
/// Components whose responsibility is below e^{this} times the largest one are skipped:
/// their share of every sum is below 1e-35 relative.
const LOG_RESPONSIBILITY_CUTOFF: f64 = -80.0;
/// Var f below this fraction of E[(σε)² + (l x)²]/α² counts as zero (s = 0, b = E f′; see
/// the module docs): the element's ε is then linear in x to within 1e-5 and f = (σε − l x)/α
/// nearly constant. Where the small coefficient of x left in f crosses zero, s = Cov/Var has a
/// pole (s ≈ c′/c) that no λ grid resolves — e^{∫s} over- or underflows — so this is a
/// deliberate deviation from the official script, which has no floor (its networks'
/// elements are never linear); the golden script applies the same rule.
const VAR_REL_FLOOR: f64 = 1e-10;

/// How mixture EMS are computed: grid, draws and seed (part of the cache key).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmsSettings {
    pub t_start: f64,
    pub t_end: f64,
    pub intervals: usize,
    pub draws: usize,
    pub seed: u64,
}

impl EmsSettings {
    /// The defaults for `ns`: its whole default range t_max → t_min, [`EMS_GRID_INTERVALS`],
    /// [`EMS_DATA_DRAWS`], [`EMS_SEED`].
    pub fn for_schedule(ns: &NoiseSchedule) -> Self {
        Self {
            t_start: ns.t_max(),
            t_end: ns.t_min(),
            intervals: EMS_GRID_INTERVALS,
            draws: EMS_DATA_DRAWS,
            seed: EMS_SEED,
        }
    }
}

/// d log α / dλ, which sets the ODE's drift dx/dλ = ρ x − σ ε: σ² for VP schedules
/// (α² + σ² = 1), 0 for EDM (α = 1). Flow is refused by the grid already.
fn dlog_alpha_dlambda(ns: &NoiseSchedule, sigma: f64) -> Result<f64> {
    match ns {
        NoiseSchedule::Edm => Ok(0.0),
        NoiseSchedule::Flow(_) => Err(S3Error::field(
            "DPM-Solver-v3 EMS",
            "noise schedule",
            "flow is not supported (its start t = 1 is pure noise); expected vp-linear, vp-discrete, vp-cosine or edm",
        )),
        _ => Ok(sigma * sigma),
    }
}

/// The mixture's parameters as flat f64 tables (from its public API), plus the matrices of
/// the batched path when every component is isotropic.
struct Tables {
    dim: usize,
    log_w: Vec<f64>,
    means: Vec<f64>,
    vars: Vec<f64>,
    iso: Option<Isotropic>,
}

/// An isotropic mixture (each component's variance the same in every element) as matrices:
/// its EMS are computed for all K draws of a grid point at once, in six matrix products.
struct Isotropic {
    /// Per component variance s_k².
    var: Vec<f64>,
    /// Means M (C × D), Mᵀ and M ∘ M.
    m: DMatrix<f64>,
    mt: DMatrix<f64>,
    msq: DMatrix<f64>,
    /// ‖m_k‖².
    norms: Vec<f64>,
}

impl Tables {
    fn new(m: &GaussianMixture) -> Self {
        let dim = m.mean_of(0).len();
        let comps = m.components();
        let vars: Vec<f64> = (0..comps)
            .flat_map(|k| (0..dim).map(move |d| m.component_variance(k, d)))
            .collect();
        let means: Vec<f64> = (0..comps).flat_map(|k| m.mean_of(k).to_vec()).collect();
        let isotropic = vars.chunks(dim).all(|v| v.iter().all(|&x| x == v[0]));
        let iso = isotropic.then(|| {
            let mm = DMatrix::from_row_slice(comps, dim, &means);
            Isotropic {
                var: vars.iter().step_by(dim).copied().collect(),
                mt: mm.transpose(),
                msq: mm.map(|v| v * v),
                norms: (0..comps).map(|k| mm.row(k).norm_squared()).collect(),
                m: mm,
            }
        });
        Self {
            dim,
            log_w: m.weights().iter().map(|w| w.ln()).collect(),
            means,
            vars,
            iso,
        }
    }
}

/// What one grid point needs: α, σ, their λ-derivatives α′ = ρα, σ′ = (ρ − 1)σ, and per
/// component 1/v_k, v′_k = dv_k/dλ and log w_k − ½ Σ_d log v_kd.
struct PointTables {
    alpha: f64,
    sigma: f64,
    d_alpha: f64,
    d_sigma: f64,
    inv_v: Vec<f64>,
    dv: Vec<f64>,
    log_norm: Vec<f64>,
}

impl PointTables {
    fn new(tab: &Tables, alpha: f64, sigma: f64, rho: f64) -> Self {
        let (a2, s2) = (alpha * alpha, sigma * sigma);
        let v: Vec<f64> = tab.vars.iter().map(|s| a2 * s + s2).collect();
        let log_norm = tab
            .log_w
            .iter()
            .enumerate()
            .map(|(k, lw)| {
                lw - 0.5
                    * v[k * tab.dim..(k + 1) * tab.dim]
                        .iter()
                        .map(|v| v.ln())
                        .sum::<f64>()
            })
            .collect();
        Self {
            alpha,
            sigma,
            d_alpha: rho * alpha,
            d_sigma: (rho - 1.0) * sigma,
            inv_v: v.iter().map(|v| 1.0 / v).collect(),
            // v′ = 2αα′ s² + 2σσ′
            dv: tab
                .vars
                .iter()
                .map(|s| 2.0 * rho * a2 * s + 2.0 * (rho - 1.0) * s2)
                .collect(),
            log_norm,
        }
    }
}

/// ε(x), diag(∂ε/∂x) and the total derivative dε/dλ along the ODE at one x.
#[derive(Debug, Clone, Default)]
struct EpsDerivatives {
    eps: Vec<f64>,
    jac_diag: Vec<f64>,
    eps_total: Vec<f64>,
}

/// The responsibilities γ_k at x: (component, γ) for every component above the cutoff.
fn responsibilities(tab: &Tables, pt: &PointTables, x: &[f64]) -> Vec<(usize, f64)> {
    let dim = tab.dim;
    let log_p: Vec<f64> = (0..tab.log_w.len())
        .map(|k| {
            let (m, iv) = (
                &tab.means[k * dim..(k + 1) * dim],
                &pt.inv_v[k * dim..(k + 1) * dim],
            );
            let q: f64 = (0..dim)
                .map(|d| (x[d] - pt.alpha * m[d]).powi(2) * iv[d])
                .sum();
            pt.log_norm[k] - 0.5 * q
        })
        .collect();
    let max = log_p.iter().copied().fold(f64::MIN, f64::max);
    let mut act: Vec<(usize, f64)> = log_p
        .iter()
        .enumerate()
        .filter(|(_, lp)| **lp - max > LOG_RESPONSIBILITY_CUTOFF)
        .map(|(k, lp)| (k, (lp - max).exp()))
        .collect();
    let total: f64 = act.iter().map(|a| a.1).sum();
    for a in &mut act {
        a.1 /= total;
    }
    act
}

/// ε, diag(∂ε/∂x) and dε/dλ at `x` (see the module docs for the formulas). With
/// δx = dx/dλ: d log N_k = Σ_d [−u_kd(δx_d − α′m_kd) + ½(u_kd² − 1/v_kd) v′_kd],
/// dγ_k = γ_k(d log N_k − Σ_j γ_j d log N_j), du_k = (δx − α′m_k − u_k v′_k)/v_k and
/// dε = σ′ū + σ Σ_k (dγ_k u_k + γ_k du_k).
fn eps_derivatives(tab: &Tables, pt: &PointTables, rho: f64, x: &[f64]) -> EpsDerivatives {
    let dim = tab.dim;
    let act = responsibilities(tab, pt, x);
    let (mut ub, mut q, mut tt) = (vec![0.0; dim], vec![0.0; dim], vec![0.0; dim]);
    let comp = |k: usize| {
        (
            &tab.means[k * dim..(k + 1) * dim],
            &pt.inv_v[k * dim..(k + 1) * dim],
            &pt.dv[k * dim..(k + 1) * dim],
        )
    };
    for &(k, g) in &act {
        let (m, iv, _) = comp(k);
        for d in 0..dim {
            let u = (x[d] - pt.alpha * m[d]) * iv[d];
            ub[d] += g * u;
            q[d] += g * u * u;
            tt[d] += g * iv[d];
        }
    }
    let eps: Vec<f64> = ub.iter().map(|u| pt.sigma * u).collect();
    let jac_diag: Vec<f64> = (0..dim)
        .map(|d| pt.sigma * (tt[d] - q[d] + ub[d] * ub[d]))
        .collect();
    let dx: Vec<f64> = (0..dim).map(|d| rho * x[d] - pt.sigma * eps[d]).collect();
    let dlog: Vec<f64> = act
        .iter()
        .map(|&(k, _)| {
            let (m, iv, dv) = comp(k);
            (0..dim)
                .map(|d| {
                    let u = (x[d] - pt.alpha * m[d]) * iv[d];
                    -u * (dx[d] - pt.d_alpha * m[d]) + 0.5 * (u * u - iv[d]) * dv[d]
                })
                .sum()
        })
        .collect();
    let mean_dlog: f64 = act.iter().zip(&dlog).map(|(a, dl)| a.1 * dl).sum();
    let mut acc = vec![0.0; dim];
    for (&(k, g), dl) in act.iter().zip(&dlog) {
        let (m, iv, dv) = comp(k);
        let dg = g * (dl - mean_dlog);
        for d in 0..dim {
            let u = (x[d] - pt.alpha * m[d]) * iv[d];
            acc[d] += dg * u + g * (dx[d] - pt.d_alpha * m[d] - u * dv[d]) * iv[d];
        }
    }
    let eps_total = (0..dim)
        .map(|d| pt.d_sigma * ub[d] + pt.sigma * acc[d])
        .collect();
    EpsDerivatives {
        eps,
        jac_diag,
        eps_total,
    }
}

/// The per-element moments at one grid point over the K draws: the mean of σ·diag(∂ε/∂x)
/// (that is, l), the means of ε, x, ε′ and of f = (σε − l x)/α (computed per draw, so Var f
/// carries no cancellation), Var f, the rounding scale of f, and Cov(f, ε), Cov(f, ε′),
/// Cov(f, x).
struct Moments {
    l: Vec<f64>,
    mean: [Vec<f64>; 4],
    var_f: Vec<f64>,
    scale_f: Vec<f64>,
    cov_f: [Vec<f64>; 3],
}

/// Per-sample values at one grid point: the (ε, x, ε′) rows of the K draws and the mean of
/// σ·diag(∂ε/∂x) over them.
type Samples = (Vec<[Vec<f64>; 3]>, Vec<f64>);

/// [`Samples`] one draw at a time ([`eps_derivatives`]), for any diagonal mixture.
fn generic_samples(tab: &Tables, pt: &PointTables, rho: f64, x0: &[f64], z: &[f64]) -> Samples {
    let dim = tab.dim;
    let k = x0.len() / dim;
    let mut vals: Vec<[Vec<f64>; 3]> = Vec::with_capacity(k);
    let mut l = vec![0.0; dim];
    for i in 0..k {
        let x: Vec<f64> = (0..dim)
            .map(|d| pt.alpha * x0[i * dim + d] + pt.sigma * z[i * dim + d])
            .collect();
        let e = eps_derivatives(tab, pt, rho, &x);
        for (l, j) in l.iter_mut().zip(&e.jac_diag) {
            *l += pt.sigma * j / k as f64;
        }
        vals.push([e.eps, x, e.eps_total]);
    }
    (vals, l)
}

/// Row-wise responsibilities from squared distances ‖x_i − α m_k‖² (K × C): γ_ik ∝
/// w_k v_k^{−D/2} e^{−dist/(2 v_k)}, zero below the cutoff.
fn responsibility_rows(dist: &DMatrix<f64>, log_w: &[f64], v: &[f64], dim: usize) -> DMatrix<f64> {
    let norm: Vec<f64> = log_w
        .iter()
        .zip(v)
        .map(|(lw, v)| lw - 0.5 * dim as f64 * v.ln())
        .collect();
    let mut g = DMatrix::from_fn(dist.nrows(), dist.ncols(), |i, c| {
        norm[c] - 0.5 * dist[(i, c)] / v[c]
    });
    for i in 0..g.nrows() {
        let max = g.row(i).max();
        let mut row = g.row_mut(i);
        row.apply(|lp| {
            *lp = if *lp - max > LOG_RESPONSIBILITY_CUTOFF {
                (*lp - max).exp()
            } else {
                0.0
            }
        });
        let total = row.sum();
        row /= total;
    }
    g
}

/// [`Samples`] for an isotropic mixture, all draws at once: the same formulas as
/// [`eps_derivatives`] with v_k scalar, the sums over components written as matrix products
/// (XMᵀ, ΓM, ΓM∘M, δX Mᵀ, HM).
fn isotropic_samples(
    tab: &Tables,
    iso: &Isotropic,
    pt: &PointTables,
    rho: f64,
    x0: &[f64],
    z: &[f64],
) -> Samples {
    let (dim, a, s, da) = (tab.dim, pt.alpha, pt.sigma, pt.d_alpha);
    let (k, comps) = (x0.len() / dim, iso.var.len());
    let v: Vec<f64> = iso.var.iter().map(|w| a * a * w + s * s).collect();
    let iv: Vec<f64> = v.iter().map(|v| 1.0 / v).collect();
    let dv: Vec<f64> = iso
        .var
        .iter()
        .map(|w| 2.0 * rho * a * a * w + 2.0 * (rho - 1.0) * s * s)
        .collect();
    let x = DMatrix::from_fn(k, dim, |i, d| a * x0[i * dim + d] + s * z[i * dim + d]);
    let xm = &x * &iso.mt;
    let xn: Vec<f64> = (0..k).map(|i| x.row(i).norm_squared()).collect();
    let dist = DMatrix::from_fn(k, comps, |i, c| {
        (xn[i] - 2.0 * a * xm[(i, c)] + a * a * iso.norms[c]).max(0.0)
    });
    let gam = responsibility_rows(&dist, &tab.log_w, &v, dim);
    let g1 = DMatrix::from_fn(k, comps, |i, c| gam[(i, c)] * iv[c]);
    let g2 = DMatrix::from_fn(k, comps, |i, c| gam[(i, c)] * iv[c] * iv[c]);
    let (g1m, g2m, g2m2) = (&g1 * &iso.m, &g2 * &iso.m, &g2 * &iso.msq);
    let (sum1, sum2): (Vec<f64>, Vec<f64>) =
        (0..k).map(|i| (g1.row(i).sum(), g2.row(i).sum())).unzip();
    let ub = DMatrix::from_fn(k, dim, |i, d| x[(i, d)] * sum1[i] - a * g1m[(i, d)]);
    let eps = &ub * s;
    let dx = DMatrix::from_fn(k, dim, |i, d| rho * x[(i, d)] - s * eps[(i, d)]);
    let dm = &dx * &iso.mt;
    let xdx: Vec<f64> = (0..k).map(|i| x.row(i).dot(&dx.row(i))).collect();
    let dlog = DMatrix::from_fn(k, comps, |i, c| {
        -iv[c] * (xdx[i] - da * xm[(i, c)] - a * dm[(i, c)] + a * da * iso.norms[c])
            + 0.5 * dv[c] * (iv[c] * iv[c] * dist[(i, c)] - dim as f64 * iv[c])
    });
    let mean: Vec<f64> = (0..k).map(|i| gam.row(i).dot(&dlog.row(i))).collect();
    let dg = DMatrix::from_fn(k, comps, |i, c| gam[(i, c)] * (dlog[(i, c)] - mean[i]));
    let h = DMatrix::from_fn(k, comps, |i, c| {
        -a * dg[(i, c)] * iv[c] - da * g1[(i, c)] + a * g2[(i, c)] * dv[c]
    });
    let hm = &h * &iso.m;
    let mut l = vec![0.0; dim];
    let vals = (0..k)
        .map(|i| {
            let c1: f64 = (0..comps)
                .map(|c| dg[(i, c)] * iv[c] - g2[(i, c)] * dv[c])
                .sum();
            let mut row = [vec![0.0; dim], vec![0.0; dim], vec![0.0; dim]];
            for d in 0..dim {
                let (xi, u) = (x[(i, d)], ub[(i, d)]);
                let q = xi * xi * sum2[i] - 2.0 * a * xi * g2m[(i, d)] + a * a * g2m2[(i, d)];
                l[d] += s * s * (sum1[i] - q + u * u) / k as f64;
                let acc = xi * c1 + dx[(i, d)] * sum1[i] + hm[(i, d)];
                row[0][d] = eps[(i, d)];
                row[1][d] = xi;
                row[2][d] = pt.d_sigma * u + s * acc;
            }
            row
        })
        .collect();
    (vals, l)
}

fn moments_at(tab: &Tables, pt: &PointTables, rho: f64, x0: &[f64], z: &[f64]) -> Moments {
    let (dim, k) = (tab.dim, (x0.len() / tab.dim) as f64);
    let (rows, l) = match &tab.iso {
        Some(iso) => isotropic_samples(tab, iso, pt, rho, x0, z),
        None => generic_samples(tab, pt, rho, x0, z),
    };
    let mut vals: Vec<Vec<Vec<f64>>> = rows.into_iter().map(Vec::from).collect();
    let (a, s) = (pt.alpha, pt.sigma);
    let mut scale_f = vec![0.0; dim];
    for v in &mut vals {
        let f: Vec<f64> = (0..dim)
            .map(|d| (s * v[0][d] - l[d] * v[1][d]) / a)
            .collect();
        for (d, sc) in scale_f.iter_mut().enumerate() {
            *sc += ((s * v[0][d]).powi(2) + (l[d] * v[1][d]).powi(2)) / (a * a * k);
        }
        v.push(f);
    }
    let mean: [Vec<f64>; 4] = std::array::from_fn(|c| {
        (0..dim)
            .map(|d| vals.iter().map(|v| v[c][d]).sum::<f64>() / k)
            .collect()
    });
    let cov = |c: usize| -> Vec<f64> {
        (0..dim)
            .map(|d| {
                let cf = |v: &Vec<Vec<f64>>| (v[3][d] - mean[3][d]) * (v[c][d] - mean[c][d]);
                vals.iter().map(cf).sum::<f64>() / k
            })
            .collect()
    };
    Moments {
        l,
        var_f: cov(3),
        scale_f,
        cov_f: [cov(0), cov(2), cov(1)],
        mean,
    }
}

/// l′ by central differences over the grid (one-sided at the ends), smoothed by a moving
/// average over ±`window` points truncated at the ends (official `compute_l_d`).
fn smoothed_derivative(l: &[Vec<f64>], step: f64, window: usize) -> Vec<Vec<f64>> {
    let n = l.len();
    let dim = l[0].len();
    let raw: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let (a, b, h) = match i {
                0 => (1, 0, step),
                _ if i == n - 1 => (n - 1, n - 2, step),
                _ => (i + 1, i - 1, 2.0 * step),
            };
            (0..dim).map(|d| (l[a][d] - l[b][d]) / h).collect()
        })
        .collect();
    (0..n)
        .map(|i| {
            let lo = i.saturating_sub(window);
            let hi = (i + window + 1).min(n);
            (0..dim)
                .map(|d| raw[lo..hi].iter().map(|r| r[d]).sum::<f64>() / (hi - lo) as f64)
                .collect()
        })
        .collect()
}

/// Exact mixture EMS from given draws: `x0` and `z` are K × dim each (x_λ = α x0 + σ z at
/// every grid point). This is [`mixture_ems`] without the sampling; the golden test feeds it
/// the same draws as its numpy port.
pub fn mixture_ems_from_draws(
    mixture: &GaussianMixture,
    ns: &NoiseSchedule,
    grid: LambdaGrid,
    x0: &[f64],
    z: &[f64],
) -> Result<Ems> {
    let tab = Tables::new(mixture);
    let dim = tab.dim;
    if x0.is_empty() || x0.len() != z.len() || !x0.len().is_multiple_of(dim) {
        return Err(S3Error::Shape(format!(
            "EMS draws: x0 has {} and z {} values; expected the same positive multiple of {dim}",
            x0.len(),
            z.len()
        )));
    }
    let points: Vec<(f64, f64, f64, f64)> = (0..grid.len())
        .map(|j| {
            let lambda = grid.lambda(j);
            let t = ns.t_of_lambda(lambda);
            let sigma = ns.sigma(t);
            Ok((lambda, ns.alpha(t), sigma, dlog_alpha_dlambda(ns, sigma)?))
        })
        .collect::<Result<_>>()?;
    let moments: Vec<Moments> = points
        .par_iter()
        .map(|&(_, a, s, rho)| moments_at(&tab, &PointTables::new(&tab, a, s, rho), rho, x0, z))
        .collect();
    let l: Vec<Vec<f64>> = moments.iter().map(|m| m.l.clone()).collect();
    let l_d = smoothed_derivative(&l, grid.step(), L_DERIVATIVE_WINDOW);
    let (mut s_out, mut b_out) = (Vec::new(), Vec::new());
    for (j, m) in moments.iter().enumerate() {
        let (lambda, alpha, _, _) = points[j];
        for d in 0..dim {
            let (s, b) = regression(m, d, lambda, alpha, l[j][d], l_d[j][d]);
            s_out.push(s);
            b_out.push(b);
        }
    }
    let shape = mixture_shape(dim, mixture);
    Ems::new(grid, shape, l.concat(), s_out, b_out)
}

/// s and b of element `d`: with f′ = C ε + D ε′ − F x, C = e^{−λ}(l − 1), D = e^{−λ},
/// F = l′/α: E f′ = C Eε + D Eε′ − F Ex, Cov(f, f′) = C Cov(f, ε) + D Cov(f, ε′) − F Cov(f, x),
/// s = Cov(f, f′)/Var f and b = E f′ − s E f.
fn regression(m: &Moments, d: usize, lambda: f64, alpha: f64, l: f64, l_d: f64) -> (f64, f64) {
    let (c, dd, f) = ((-lambda).exp() * (l - 1.0), (-lambda).exp(), l_d / alpha);
    let [me, mx, md, mf] = [m.mean[0][d], m.mean[1][d], m.mean[2][d], m.mean[3][d]];
    let mean_fd = c * me + dd * md - f * mx;
    let cov = c * m.cov_f[0][d] + dd * m.cov_f[1][d] - f * m.cov_f[2][d];
    let s = if m.var_f[d] > VAR_REL_FLOOR * m.scale_f[d] {
        cov / m.var_f[d]
    } else {
        0.0
    };
    (s, mean_fd - s * mf)
}

/// The sample shape of the mixture (as its `Denoiser` reports it).
fn mixture_shape(dim: usize, mixture: &GaussianMixture) -> Vec<usize> {
    use crate::model::Denoiser;
    let shape = mixture.sample_shape().to_vec();
    debug_assert_eq!(shape.iter().product::<usize>(), dim);
    shape
}

/// The seeded draws: K data samples x0 (exact mixture draws) and K standard normal z.
pub fn ems_draws(mixture: &GaussianMixture, draws: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let x0: Vec<f64> = mixture
        .sample_data(draws, &mut rng)
        .iter()
        .map(|&v| v as f64)
        .collect();
    let z = (0..x0.len())
        .map(|_| StandardNormal.sample(&mut rng))
        .collect();
    (x0, z)
}

/// The exact EMS of `mixture` under `ns` with `settings`, rounded to f32 as they are stored.
pub fn mixture_ems(
    mixture: &GaussianMixture,
    ns: &NoiseSchedule,
    settings: &EmsSettings,
) -> Result<Ems> {
    let grid = LambdaGrid::new(ns, settings.t_start, settings.t_end, settings.intervals)?;
    if settings.draws < 2 {
        return Err(S3Error::field(
            "DPM-Solver-v3 EMS",
            "draws",
            "expected at least 2",
        ));
    }
    let (x0, z) = ems_draws(mixture, settings.draws, settings.seed);
    Ok(mixture_ems_from_draws(mixture, ns, grid, &x0, &z)?.rounded_to_f32())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gmm::Stds;
    use crate::model::{Denoiser, TimePoint};

    fn mixture() -> GaussianMixture {
        GaussianMixture::new(
            "test",
            vec![3],
            vec![0.5, 0.3, 0.2],
            vec![
                vec![0.5, -0.2, 0.1],
                vec![-0.4, 0.3, 0.6],
                vec![0.1, 0.8, -0.7],
            ],
            Stds::Diagonal(vec![0.2, 0.3, 0.25, 0.15, 0.4, 0.1, 0.3, 0.2, 0.35]),
        )
        .unwrap()
    }

    fn eps_of(m: &GaussianMixture, ns: &NoiseSchedule, x: &[f64], lambda: f64) -> Vec<f64> {
        let t = ns.t_of_lambda(lambda);
        let time = TimePoint {
            t,
            alpha: ns.alpha(t),
            sigma: ns.sigma(t),
        };
        let mut out = vec![0.0; x.len()];
        m.forward_f64(x, time, &mut out).unwrap();
        out
    }

    /// ε matches the model, the Jacobian diagonal and the total derivative along the ODE match
    /// central finite differences of the model's own ε (VP and EDM).
    #[test]
    fn analytic_eps_jacobian_and_total_derivative_match_finite_differences() {
        let m = mixture();
        let tab = Tables::new(&m);
        let x = [0.3, -0.1, 0.5];
        for ns in [NoiseSchedule::vp_linear(), NoiseSchedule::Edm] {
            for lambda in [-1.5, 0.2, 1.7] {
                let t = ns.t_of_lambda(lambda);
                let (a, s) = (ns.alpha(t), ns.sigma(t));
                let rho = dlog_alpha_dlambda(&ns, s).unwrap();
                let e = eps_derivatives(&tab, &PointTables::new(&tab, a, s, rho), rho, &x);
                let model = eps_of(&m, &ns, &x, lambda);
                let h = 1e-5;
                for d in 0..3 {
                    assert!((e.eps[d] - model[d]).abs() < 1e-12, "{lambda} ε");
                    let (mut xp, mut xm) = (x, x);
                    xp[d] += h;
                    xm[d] -= h;
                    let fd = (eps_of(&m, &ns, &xp, lambda)[d] - eps_of(&m, &ns, &xm, lambda)[d])
                        / (2.0 * h);
                    assert!(
                        (e.jac_diag[d] - fd).abs() < 1e-7,
                        "{lambda} J: {} {fd}",
                        e.jac_diag[d]
                    );
                }
                // Along the ODE: x(λ ± h) = x ± h·(ρx − σε) + O(h²); the O(h²) part cancels
                // in the central difference only to O(h²), so compare to 1e-6.
                let dx: Vec<f64> = (0..3).map(|d| rho * x[d] - s * e.eps[d]).collect();
                let xp: Vec<f64> = (0..3).map(|d| x[d] + h * dx[d]).collect();
                let xm: Vec<f64> = (0..3).map(|d| x[d] - h * dx[d]).collect();
                let (ep, em) = (
                    eps_of(&m, &ns, &xp, lambda + h),
                    eps_of(&m, &ns, &xm, lambda - h),
                );
                for d in 0..3 {
                    let fd = (ep[d] - em[d]) / (2.0 * h);
                    assert!(
                        (e.eps_total[d] - fd).abs() < 1e-6,
                        "{lambda} ε′: {} {fd}",
                        e.eps_total[d]
                    );
                }
            }
        }
    }

    /// The batched isotropic path and the per-draw path give the same values.
    #[test]
    fn isotropic_matrix_path_matches_the_per_draw_path() {
        let m = GaussianMixture::new(
            "iso",
            vec![3],
            vec![0.2, 0.5, 0.3],
            vec![
                vec![0.5, -0.2, 0.1],
                vec![-0.4, 0.3, 0.6],
                vec![0.1, 0.8, -0.7],
            ],
            Stds::Isotropic(vec![0.05, 0.3, 0.1]),
        )
        .unwrap();
        let tab = Tables::new(&m);
        let iso = tab.iso.as_ref().expect("isotropic");
        let (x0, z) = ems_draws(&m, 7, 3);
        for ns in [NoiseSchedule::vp_linear(), NoiseSchedule::Edm] {
            for lambda in [-4.0, 0.3, 3.0] {
                let t = ns.t_of_lambda(lambda);
                let (a, s) = (ns.alpha(t), ns.sigma(t));
                let rho = dlog_alpha_dlambda(&ns, s).unwrap();
                let pt = PointTables::new(&tab, a, s, rho);
                let (v1, l1) = generic_samples(&tab, &pt, rho, &x0, &z);
                let (v2, l2) = isotropic_samples(&tab, iso, &pt, rho, &x0, &z);
                let close = |p: f64, q: f64| (p - q).abs() <= 1e-9 * p.abs().max(1.0);
                assert!(
                    l1.iter().zip(&l2).all(|(p, q)| close(*p, *q)),
                    "{lambda}: {l1:?} {l2:?}"
                );
                for (r1, r2) in v1.iter().zip(&v2) {
                    for c in 0..3 {
                        assert!(
                            r1[c].iter().zip(&r2[c]).all(|(p, q)| close(*p, *q)),
                            "{lambda} {c}: {r1:?} {r2:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn flow_is_refused_with_the_supported_schedules_named() {
        let flow = NoiseSchedule::Flow(crate::noise::FlowMatch::new(1.0).unwrap());
        let e = dlog_alpha_dlambda(&flow, 0.5).unwrap_err().to_string();
        assert!(e.contains("vp-linear") && e.contains("edm"), "{e}");
    }
}

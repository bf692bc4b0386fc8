//! KID, the kernel inception distance (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018):
//! the unbiased estimate of the squared maximum mean discrepancy between sample and reference
//! features under the cubic polynomial kernel k(x, y) = (x·y/d + 1)³, averaged over random
//! subsets — computed as torch-fidelity (`kid_features_to_metric`, `mmd2`) and clean-fid
//! (`kernel_distance`) do:
//!
//! MMD²_u = Σ_{i≠j} k(x_i, x_j)/(m(m−1)) + Σ_{i≠j} k(y_i, y_j)/(m(m−1)) − 2 Σ_{i,j} k(x_i, y_j)/m²
//!
//! on [`KID_SUBSETS`] pairs of subsets of m = min([`KID_SUBSET_SIZE`], n_x, n_y) rows each,
//! drawn without replacement; KID is their mean (torch-fidelity also reports the std). Being
//! unbiased, it is ≈ 0 for exact data draws and can read slightly negative; unlike a
//! finite-sample FD it does not read lower for a sample set that lost diversity.
//!
//! Unlike the Fréchet distance, KID needs reference feature ROWS, not just (μ, Σ).

use crate::error::{Result, S3Error};
use nalgebra::DMatrix;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::Serialize;

/// Subsets averaged (torch-fidelity's `kid_subsets`, clean-fid's `num_subsets`).
pub const KID_SUBSETS: usize = 100;
/// The most rows per subset (torch-fidelity's `kid_subset_size`, clean-fid's
/// `max_subset_size`); fewer samples use all of them per subset, as clean-fid does.
pub const KID_SUBSET_SIZE: usize = 1000;
/// The kernel's degree (torch-fidelity's `kid_degree`).
pub const KID_DEGREE: i32 = 3;
/// The kernel's constant term (torch-fidelity's `kid_coef0`); its scale γ is 1/d.
pub const KID_COEF0: f64 = 1.0;
/// The seed of the sample-side subsets (fixed, so evaluations are reproducible and every
/// schedule is measured on the same indices).
pub const KID_SAMPLE_SUBSET_SEED: u64 = 0x0c1d_5a3b;
/// The seed of the reference-side subsets.
pub const KID_REFERENCE_SUBSET_SEED: u64 = 0x0c1d_4ef5;

/// The settings in a few words, for cache keys and reports.
pub fn kid_settings_id() -> String {
    format!(
        "subsets={KID_SUBSETS},size=min({KID_SUBSET_SIZE},n),kernel=(x.y/d+{KID_COEF0})^{KID_DEGREE},\
         seeds={KID_SAMPLE_SUBSET_SEED:#x}/{KID_REFERENCE_SUBSET_SEED:#x}"
    )
}

/// The rows per subset for `n_x` samples against `n_y` reference rows.
pub fn kid_subset_size(n_x: usize, n_y: usize) -> usize {
    KID_SUBSET_SIZE.min(n_x).min(n_y)
}

/// `count` subsets of `m` distinct indices from `0..n`: successive `rand`
/// `seq::index::sample` draws from one `StdRng` seeded with `seed`.
pub fn kid_subsets(n: usize, m: usize, count: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| rand::seq::index::sample(&mut rng, n, m).into_vec())
        .collect()
}

/// The reference side of KID: feature rows, their subsets, and each subset's
/// Σ_{i≠j} k(y_i, y_j) (computed once, reused for every sample set).
#[derive(Debug, Clone)]
pub struct KidReference {
    rows: Vec<f64>,
    d: usize,
    subsets: Vec<Vec<usize>>,
    within: Vec<f64>,
}

impl KidReference {
    /// Prepares `rows` (`n × d`, row-major) with one subset per KID subset.
    pub fn new(rows: Vec<f64>, d: usize, subsets: Vec<Vec<usize>>) -> Result<Self> {
        check_subsets(&rows, d, &subsets, "reference")?;
        let within = subsets
            .par_iter()
            .map(|idx| {
                let y = gather(&rows, d, idx);
                let (all, diag) = kernel_sums(&y, &y, d);
                all - diag
            })
            .collect();
        Ok(Self {
            rows,
            d,
            subsets,
            within,
        })
    }

    /// The number of reference rows.
    pub fn samples(&self) -> usize {
        self.rows.len() / self.d
    }

    /// The feature dimension.
    pub fn dim(&self) -> usize {
        self.d
    }
}

/// A KID value: the mean over subsets, and their standard deviation (divisor = the number of
/// subsets, as `np.std` in torch-fidelity).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Kid {
    pub value: f64,
    pub std: f64,
    pub subsets: usize,
    pub subset_size: usize,
}

/// KID of `x` (`n × d` feature rows) against `reference`, with the sample-side subset i
/// (`x_subsets[i]`) paired with the reference's subset i.
pub fn kid(x: &[f64], reference: &KidReference, x_subsets: &[Vec<usize>]) -> Result<Kid> {
    let d = reference.d;
    check_subsets(x, d, x_subsets, "sample")?;
    let m = reference.subsets.first().map_or(0, Vec::len);
    if x_subsets.len() != reference.subsets.len() || x_subsets.iter().any(|s| s.len() != m) {
        return Err(S3Error::Shape(format!(
            "KID pairs {} sample subsets with {} reference subsets of {m} rows",
            x_subsets.len(),
            reference.subsets.len()
        )));
    }
    let mmds: Vec<f64> = x_subsets
        .par_iter()
        .zip(&reference.subsets)
        .zip(&reference.within)
        .map(|((xi, yi), &yy)| {
            let xs = gather(x, d, xi);
            let ys = gather(&reference.rows, d, yi);
            let (xx_all, xx_diag) = kernel_sums(&xs, &xs, d);
            let (xy, _) = kernel_sums(&xs, &ys, d);
            let mf = m as f64;
            (xx_all - xx_diag + yy) / (mf * (mf - 1.0)) - 2.0 * xy / (mf * mf)
        })
        .collect();
    let count = mmds.len() as f64;
    let value = mmds.iter().sum::<f64>() / count;
    let std = (mmds.iter().map(|v| (v - value).powi(2)).sum::<f64>() / count).sqrt();
    if !value.is_finite() {
        return Err(S3Error::Numerical("KID is not finite".into()));
    }
    Ok(Kid {
        value,
        std,
        subsets: mmds.len(),
        subset_size: m,
    })
}

/// Checks that `rows` are whole rows of `d`, and that the subsets are non-empty, of at least
/// 2 equal-sized in-range index lists.
fn check_subsets(rows: &[f64], d: usize, subsets: &[Vec<usize>], side: &str) -> Result<()> {
    if d == 0 || !rows.len().is_multiple_of(d) {
        return Err(S3Error::Shape(format!(
            "KID {side} features: {} values are not rows of {d}",
            rows.len()
        )));
    }
    let n = rows.len() / d;
    let m = subsets.first().map_or(0, Vec::len);
    if subsets.is_empty() || m < 2 || subsets.iter().any(|s| s.len() != m) {
        return Err(S3Error::Shape(format!(
            "KID {side} subsets: expected at least one, all of the same size ≥ 2"
        )));
    }
    if let Some(bad) = subsets.iter().flatten().find(|&&i| i >= n) {
        return Err(S3Error::Shape(format!(
            "KID {side} subset index {bad} out of range for {n} rows"
        )));
    }
    Ok(())
}

/// The rows `idx` of `rows` as an `m × d` matrix.
fn gather(rows: &[f64], d: usize, idx: &[usize]) -> DMatrix<f64> {
    DMatrix::from_row_iterator(
        idx.len(),
        d,
        idx.iter()
            .flat_map(|&i| rows[i * d..(i + 1) * d].iter().copied()),
    )
}

/// Σ_{i,j} k(a_i, b_j) and, for a square Gram matrix, Σ_i k(a_i, b_i).
fn kernel_sums(a: &DMatrix<f64>, b: &DMatrix<f64>, d: usize) -> (f64, f64) {
    let gamma = 1.0 / d as f64;
    let k = |g: f64| (g * gamma + KID_COEF0).powi(KID_DEGREE);
    let gram = a * b.transpose();
    let all: f64 = gram.iter().map(|&g| k(g)).sum();
    let diag: f64 = if gram.is_square() {
        gram.diagonal().iter().map(|&g| k(g)).sum()
    } else {
        0.0
    };
    (all, diag)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A direct double loop of the formula above.
    fn kid_by_loops(x: &[f64], y: &[f64], d: usize) -> f64 {
        let k = |a: &[f64], b: &[f64]| {
            (a.iter().zip(b).map(|(p, q)| p * q).sum::<f64>() / d as f64 + 1.0).powi(3)
        };
        let m = x.len() / d;
        let row = |v: &'_ [f64], i: usize| v[i * d..(i + 1) * d].to_vec();
        let (mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0);
        for i in 0..m {
            for j in 0..m {
                if i != j {
                    xx += k(&row(x, i), &row(x, j));
                    yy += k(&row(y, i), &row(y, j));
                }
                xy += k(&row(x, i), &row(y, j));
            }
        }
        let mf = m as f64;
        (xx + yy) / (mf * (mf - 1.0)) - 2.0 * xy / (mf * mf)
    }

    #[test]
    fn one_full_subset_is_the_unbiased_mmd() {
        let d = 3;
        let x: Vec<f64> = (0..7 * d)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) / 4.0)
            .collect();
        let y: Vec<f64> = (0..7 * d)
            .map(|i| ((i * 17 % 13) as f64 - 6.0) / 5.0)
            .collect();
        let all: Vec<usize> = (0..7).collect();
        let r = KidReference::new(y.clone(), d, vec![all.clone()]).unwrap();
        let got = kid(&x, &r, &[all]).unwrap();
        let want = kid_by_loops(&x, &y, d);
        assert!(
            (got.value - want).abs() < 1e-12 * want.abs().max(1.0),
            "{got:?} vs {want}"
        );
        assert_eq!(got.std, 0.0);
    }

    #[test]
    fn mismatched_subsets_are_refused() {
        let r = KidReference::new(vec![0.0; 10], 2, vec![vec![0, 1, 2]]).unwrap();
        assert!(kid(&[0.0; 10], &r, &[vec![0, 1]]).is_err());
        assert!(kid(&[0.0; 10], &r, &[vec![0, 1, 9]]).is_err());
    }

    #[test]
    fn subsets_are_seeded_and_without_replacement() {
        let a = kid_subsets(50, 20, 3, 1);
        assert_eq!(a, kid_subsets(50, 20, 3, 1));
        assert_ne!(a[0], a[1]);
        let mut u = a[0].clone();
        u.sort_unstable();
        u.dedup();
        assert_eq!(u.len(), 20);
        assert_eq!(kid_subset_size(5000, 10_000), KID_SUBSET_SIZE);
        assert_eq!(kid_subset_size(300, 10_000), 300);
    }
}

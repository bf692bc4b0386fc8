//! FD∞: the Fréchet distance extrapolated to infinitely many samples (Chong & Forsyth,
//! "Effectively Unbiased FID and Inception Score and where to find them", CVPR 2020).
//!
//! The FD of N samples against exact reference moments is biased upward: to first order
//! E[FD(N)] = FD∞ + k/N, where k grows with the samples' own covariance (tr Σ and how far it
//! is from the reference). So a sample set with too little variance reads a smaller bias, and
//! a finite-sample FD can rank a diversity-losing sampler below exact data. FD∞ removes the
//! k/N term: the FD is computed on subsets of the N samples at sizes n_j, and FD(n) = FD∞ + k/n
//! is fitted by least squares in 1/n; the intercept is FD∞. It is unbiased to first order and
//! so can read slightly negative for exact data.
//!
//! Settings (the paper: 15 sizes evenly spaced in n from N/10 to N, a fresh shuffle per size,
//! ordinary least squares): here [`FD_INF_POINTS`] sizes evenly spaced in 1/n (so the fit's
//! points spread evenly along its axis) from the smallest size of [`fd_inf_sizes`] to N, one
//! seeded subset per size ([`fd_inf_subsets`]), ordinary least squares ([`fit_inverse_n`]).

use super::frechet::{FrechetReference, Moments};
use crate::error::{Result, S3Error};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rayon::prelude::*;
use serde::Serialize;

/// How many subset sizes the fit uses (as Chong & Forsyth).
pub const FD_INF_POINTS: usize = 15;
/// The smallest subset holds at least 1/this of the samples (N/5): the fit spans a factor 5
/// in 1/n, so the extrapolation to 1/n = 0 is a quarter of the fitted range beyond its end.
pub const FD_INF_SMALLEST_DIVISOR: usize = 5;
/// The smallest subset also holds at least this many times the d + 1 samples a full-rank
/// d-dimensional covariance needs: near rank deficiency the bias is far from k/n.
pub const FD_INF_RANK_FACTOR: usize = 2;
/// The fit must span at least this factor in n: N ≥ this × the rank minimum above.
pub const FD_INF_MIN_SPAN: usize = 2;
/// Fewer distinct subset sizes than this cannot be fitted meaningfully.
pub const FD_INF_MIN_POINTS: usize = 3;
/// The seed of the evaluator's subsets: fixed, so every schedule measured at the same N is
/// fitted on the same sample indices (evaluations are reproducible and compare paired).
pub const FD_INF_SUBSET_SEED: u64 = 0xfd1f_5eed;

/// The settings in a few words, for cache keys and reports.
pub fn fd_inf_settings_id() -> String {
    format!(
        "points={FD_INF_POINTS},min=max(n/{FD_INF_SMALLEST_DIVISOR},{FD_INF_RANK_FACTOR}(d+1)),\
         spacing=1/n,seed={FD_INF_SUBSET_SEED:#x}"
    )
}

/// The fewest samples FD∞ accepts for `d` features.
pub fn fd_inf_min_samples(d: usize) -> usize {
    FD_INF_MIN_SPAN * FD_INF_RANK_FACTOR * (d + 1)
}

/// The subset sizes for `n` samples of `d` features, ascending and distinct, ending at `n`:
/// from n_min = max(⌈n/5⌉, 2(d + 1)) to n, at [`FD_INF_POINTS`] points evenly spaced in 1/n,
/// x_j = 1/n_min + j·(1/n − 1/n_min)/(P − 1), n_j = ⌊1/x_j + ½⌋ (duplicates dropped).
pub fn fd_inf_sizes(n: usize, d: usize) -> Result<Vec<usize>> {
    let min_samples = fd_inf_min_samples(d);
    if n < min_samples {
        return Err(S3Error::field(
            "metric fd-inf",
            "--samples",
            format!(
                "{n} samples of {d} features are too few: FD∞ fits subsets of at least \
                 {FD_INF_RANK_FACTOR}(d + 1) = {} samples up to N, over at least a factor \
                 {FD_INF_MIN_SPAN}, so it needs at least {min_samples} samples",
                FD_INF_RANK_FACTOR * (d + 1)
            ),
        ));
    }
    let smallest = n
        .div_ceil(FD_INF_SMALLEST_DIVISOR)
        .max(FD_INF_RANK_FACTOR * (d + 1));
    let (inv_lo, inv_hi) = (1.0 / smallest as f64, 1.0 / n as f64);
    let mut sizes: Vec<usize> = (0..FD_INF_POINTS)
        .map(|j| {
            let x = inv_lo + j as f64 * (inv_hi - inv_lo) / (FD_INF_POINTS - 1) as f64;
            ((1.0 / x + 0.5).floor() as usize).clamp(smallest, n)
        })
        .collect();
    sizes.dedup();
    if sizes.len() < FD_INF_MIN_POINTS {
        return Err(S3Error::field(
            "metric fd-inf",
            "--samples",
            format!(
                "{n} samples give only {} distinct subset sizes",
                sizes.len()
            ),
        ));
    }
    Ok(sizes)
}

/// One subset of `0..n` per size of [`fd_inf_sizes`]: subset j is `rand`'s
/// `seq::index::sample` of n_j distinct indices from an `StdRng` seeded with `seed + j` (a
/// fresh draw per size, as the paper reshuffles per size; the subset of size n is all rows).
pub fn fd_inf_subsets(n: usize, d: usize, seed: u64) -> Result<Vec<Vec<usize>>> {
    Ok(fd_inf_sizes(n, d)?
        .into_iter()
        .enumerate()
        .map(|(j, size)| {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(j as u64));
            rand::seq::index::sample(&mut rng, n, size).into_vec()
        })
        .collect())
}

/// The FD∞ estimate and the points it was fitted on.
#[derive(Debug, Clone, Serialize)]
pub struct FdInfinity {
    /// FD∞: the fitted FD at 1/n = 0.
    pub value: f64,
    /// k in FD(n) = FD∞ + k/n.
    pub slope: f64,
    /// The subset sizes.
    pub sizes: Vec<usize>,
    /// The FD of each subset.
    pub fds: Vec<f64>,
}

/// FD∞ of `rows` (`n × d`, row-major) against `reference`, fitted on the FD of each subset of
/// row indices in `subsets` (e.g. from [`fd_inf_subsets`]).
pub fn fd_infinity(
    rows: &[f64],
    d: usize,
    reference: &FrechetReference,
    subsets: &[Vec<usize>],
) -> Result<FdInfinity> {
    if d == 0 || !rows.len().is_multiple_of(d) || reference.dim() != d {
        return Err(S3Error::Shape(format!(
            "FD∞ of {} values in rows of {d} against a reference of dimension {}",
            rows.len(),
            reference.dim()
        )));
    }
    let n = rows.len() / d;
    if let Some(bad) = subsets.iter().flatten().find(|&&i| i >= n) {
        return Err(S3Error::Shape(format!(
            "FD∞ subset index {bad} out of range for {n} rows"
        )));
    }
    let fds = subsets
        .par_iter()
        .map(|idx| {
            let picked: Vec<f64> = idx
                .iter()
                .flat_map(|&i| rows[i * d..(i + 1) * d].iter().copied())
                .collect();
            reference.distance(&Moments::from_rows(&picked, d)?)
        })
        .collect::<Result<Vec<f64>>>()?;
    let sizes: Vec<usize> = subsets.iter().map(Vec::len).collect();
    let (value, slope) = fit_inverse_n(&sizes, &fds)?;
    Ok(FdInfinity {
        value,
        slope,
        sizes,
        fds,
    })
}

/// Ordinary least squares of `values` on 1/`sizes`: (intercept, slope) of v = a + b/n.
pub fn fit_inverse_n(sizes: &[usize], values: &[f64]) -> Result<(f64, f64)> {
    let m = sizes.len();
    if m != values.len() || m < 2 {
        return Err(S3Error::Shape(format!(
            "a fit in 1/n needs at least 2 (size, value) pairs, got {m} sizes and {} values",
            values.len()
        )));
    }
    let x: Vec<f64> = sizes.iter().map(|&s| 1.0 / s as f64).collect();
    let x_mean = x.iter().sum::<f64>() / m as f64;
    let y_mean = values.iter().sum::<f64>() / m as f64;
    let sxx: f64 = x.iter().map(|v| (v - x_mean).powi(2)).sum();
    if sxx <= 0.0 {
        return Err(S3Error::Numerical(
            "a fit in 1/n needs at least 2 distinct sizes".into(),
        ));
    }
    let sxy: f64 = x
        .iter()
        .zip(values)
        .map(|(a, b)| (a - x_mean) * (b - y_mean))
        .sum();
    let slope = sxy / sxx;
    let intercept = y_mean - slope * x_mean;
    if !intercept.is_finite() {
        return Err(S3Error::Numerical("FD∞ is not finite".into()));
    }
    Ok((intercept, slope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_span_n_over_5_to_n_evenly_in_inverse_n() {
        let s = fd_inf_sizes(5000, 64).unwrap();
        assert_eq!(s.len(), FD_INF_POINTS);
        assert_eq!((s[0], *s.last().unwrap()), (1000, 5000));
        assert!(s.windows(2).all(|w| w[0] < w[1]), "{s:?}");
        // The rank minimum wins for few samples: 2 (64 + 1) = 130 of 300.
        assert_eq!(fd_inf_sizes(300, 64).unwrap()[0], 130);
    }

    #[test]
    fn too_few_samples_name_the_flag_and_the_minimum() {
        let e = fd_inf_sizes(100, 64).unwrap_err().to_string();
        assert!(e.contains("--samples") && e.contains("260"), "{e}");
    }

    #[test]
    fn an_exact_line_in_inverse_n_is_recovered() {
        let sizes = [100, 150, 200, 400];
        let v: Vec<f64> = sizes.iter().map(|&n| 0.25 + 3.0 / n as f64).collect();
        let (a, b) = fit_inverse_n(&sizes, &v).unwrap();
        assert!(
            (a - 0.25).abs() < 1e-12 && (b - 3.0).abs() < 1e-9,
            "{a} {b}"
        );
    }

    #[test]
    fn subsets_are_seeded_distinct_and_end_with_all_rows() {
        let a = fd_inf_subsets(400, 8, 3).unwrap();
        assert_eq!(a, fd_inf_subsets(400, 8, 3).unwrap());
        assert_ne!(a, fd_inf_subsets(400, 8, 4).unwrap());
        for s in &a {
            let mut u = s.clone();
            u.sort_unstable();
            u.dedup();
            assert_eq!(u.len(), s.len());
        }
        assert_eq!(a.last().unwrap().len(), 400);
    }
}

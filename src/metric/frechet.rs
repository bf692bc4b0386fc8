//! The Fréchet distance between two Gaussians given by (μ, Σ), numerically the pytorch-fid
//! quantity ‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr √(Σ1 Σ2).
//!
//! tr √(Σ1 Σ2) is computed as tr √(√Σ1 Σ2 √Σ1) with symmetric eigendecompositions (negative
//! eigenvalues from rounding clamped to 0), which stays well defined when either Σ is
//! singular — pytorch-fid instead adds εI and retries.

use crate::error::{Result, S3Error};
use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Sample statistics of a set of feature vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub mu: Vec<f64>,
    /// `d × d` row-major.
    pub cov: Vec<f64>,
}

impl Moments {
    /// The feature dimension.
    pub fn dim(&self) -> usize {
        self.mu.len()
    }

    /// Mean and unbiased covariance (divisor n − 1, as `np.cov`) of `n × d` row-major rows.
    pub fn from_rows(rows: &[f64], d: usize) -> Result<Self> {
        let n = rows.len() / d;
        if n < 2 || !rows.len().is_multiple_of(d) {
            return Err(S3Error::Shape(format!(
                "statistics need at least 2 feature vectors of length {d}, got {} values",
                rows.len()
            )));
        }
        let m = DMatrix::from_row_slice(n, d, rows);
        let mu: DVector<f64> = m.row_mean().transpose();
        let mut centered = m;
        for mut r in centered.row_iter_mut() {
            r -= mu.transpose();
        }
        let cov = centered.transpose() * &centered / (n as f64 - 1.0);
        Ok(Self {
            mu: mu.iter().copied().collect(),
            cov: row_major(&cov),
        })
    }
}

fn row_major(m: &DMatrix<f64>) -> Vec<f64> {
    m.transpose().as_slice().to_vec()
}

/// √S for a symmetric positive semi-definite S.
fn sqrt_psd(s: DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new(s);
    let roots = eig.eigenvalues.map(|v| v.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&roots) * eig.eigenvectors.transpose()
}

/// Fixed reference statistics prepared for many Fréchet distances: √Σ_ref and tr Σ_ref are
/// computed once, so each distance costs one symmetric eigendecomposition (of
/// √Σ_ref Σ √Σ_ref, whose eigenvalues are those of Σ Σ_ref) instead of two. FD∞ measures
/// [`super::fd_inf::FD_INF_POINTS`] subsets against the same reference.
#[derive(Debug, Clone)]
pub struct FrechetReference {
    mu: Vec<f64>,
    sqrt_cov: DMatrix<f64>,
    trace: f64,
}

impl FrechetReference {
    /// Prepares `reference` (its covariance must be `d × d` for `d` = its mean's length).
    pub fn new(reference: &Moments) -> Result<Self> {
        let d = reference.dim();
        if reference.cov.len() != d * d {
            return Err(S3Error::Shape(format!(
                "reference statistics: a mean of length {d} and {} covariance values",
                reference.cov.len()
            )));
        }
        let s = DMatrix::from_row_slice(d, d, &reference.cov);
        let trace = s.trace();
        let sym = (&s + s.transpose()) * 0.5;
        Ok(Self {
            mu: reference.mu.clone(),
            sqrt_cov: sqrt_psd(sym),
            trace,
        })
    }

    /// The feature dimension.
    pub fn dim(&self) -> usize {
        self.mu.len()
    }

    /// The Fréchet distance between N(m.mu, m.cov) and the reference (the same quantity as
    /// [`frechet_distance`]).
    pub fn distance(&self, m: &Moments) -> Result<f64> {
        let d = self.dim();
        if m.dim() != d || m.cov.len() != d * d {
            return Err(S3Error::Shape(format!(
                "Fréchet distance between statistics of dimension {} and {d}",
                m.dim()
            )));
        }
        let s = DMatrix::from_row_slice(d, d, &m.cov);
        let inner = &self.sqrt_cov * &s * &self.sqrt_cov;
        let inner = (&inner + inner.transpose()) * 0.5;
        let tr_covmean: f64 = SymmetricEigen::new(inner)
            .eigenvalues
            .iter()
            .map(|v| v.max(0.0).sqrt())
            .sum();
        let diff: f64 =
            m.mu.iter()
                .zip(&self.mu)
                .map(|(x, y)| (x - y).powi(2))
                .sum();
        let fd = diff + s.trace() + self.trace - 2.0 * tr_covmean;
        if !fd.is_finite() {
            return Err(S3Error::Numerical("Fréchet distance is not finite".into()));
        }
        Ok(fd)
    }
}

/// The Fréchet distance between N(a.mu, a.cov) and N(b.mu, b.cov).
pub fn frechet_distance(a: &Moments, b: &Moments) -> Result<f64> {
    let d = a.dim();
    if b.dim() != d || a.cov.len() != d * d || b.cov.len() != d * d {
        return Err(S3Error::Shape(format!(
            "Fréchet distance between statistics of dimension {d} and {}",
            b.dim()
        )));
    }
    let s1 = DMatrix::from_row_slice(d, d, &a.cov);
    let s2 = DMatrix::from_row_slice(d, d, &b.cov);
    let sym = |m: DMatrix<f64>| (&m + m.transpose()) * 0.5;
    let r1 = sqrt_psd(sym(s1.clone()));
    let inner = sym(&r1 * &s2 * &r1);
    let tr_covmean: f64 = SymmetricEigen::new(inner)
        .eigenvalues
        .iter()
        .map(|v| v.max(0.0).sqrt())
        .sum();
    let diff: f64 = a.mu.iter().zip(&b.mu).map(|(x, y)| (x - y).powi(2)).sum();
    let fd = diff + s1.trace() + s2.trace() - 2.0 * tr_covmean;
    if !fd.is_finite() {
        return Err(S3Error::Numerical("Fréchet distance is not finite".into()));
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dimensional_gaussians_have_the_closed_form() {
        // FD(N(m1, s1²), N(m2, s2²)) = (m1 − m2)² + (s1 − s2)²
        let a = Moments {
            mu: vec![1.0],
            cov: vec![4.0],
        };
        let b = Moments {
            mu: vec![-0.5],
            cov: vec![0.25],
        };
        let fd = frechet_distance(&a, &b).unwrap();
        assert!((fd - (2.25 + 2.25)).abs() < 1e-12, "{fd}");
    }

    #[test]
    fn identical_statistics_give_zero_even_when_singular() {
        let a = Moments {
            mu: vec![0.3, -0.2, 0.0],
            cov: vec![1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        };
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-12);
    }

    #[test]
    fn prepared_reference_gives_the_same_distance() {
        let a = Moments::from_rows(&[1.0, 2.0, 3.0, 6.0, 5.0, 4.0, 0.5, -1.0], 2).unwrap();
        let b = Moments::from_rows(&[0.0, 1.0, 2.0, 2.5, 1.5, -3.0, 4.0, 0.0], 2).unwrap();
        let direct = frechet_distance(&a, &b).unwrap();
        let prepared = FrechetReference::new(&b).unwrap().distance(&a).unwrap();
        assert!(
            (direct - prepared).abs() < 1e-12 * direct,
            "{direct} vs {prepared}"
        );
    }

    #[test]
    fn unbiased_covariance_like_numpy() {
        let m = Moments::from_rows(&[1.0, 2.0, 3.0, 6.0, 5.0, 4.0], 2).unwrap();
        assert_eq!(m.mu, vec![3.0, 4.0]);
        assert_eq!(m.cov, vec![4.0, 2.0, 2.0, 4.0]);
    }
}

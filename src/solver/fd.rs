//! Finite-difference derivative estimates in λ: USF's "Difference_m" rule.
//!
//! With m history points at offsets Δλ_j = λ_j − λ_s from the start point, the d-th derivative
//! at the start point is estimated as F^(d) ≈ Σ_j a_j (F_j − F_s), where a solves the m × m
//! Taylor system Σ_j a_j Δλ_j^i / i! = δ_{i,d} (i = 1 … m). Solved in f64.

use crate::error::{Result, S3Error};
use nalgebra::{DMatrix, DVector};

/// The weights a_j of the d-th derivative (1 ≤ d ≤ m) from the offsets `offsets` (Δλ_j, all
/// distinct and non-zero).
pub fn derivative_weights(offsets: &[f64], d: usize) -> Result<Vec<f64>> {
    let m = offsets.len();
    if d == 0 || d > m {
        return Err(S3Error::Numerical(format!(
            "derivative {d} cannot be estimated from {m} point(s)"
        )));
    }
    let mut a = DMatrix::<f64>::zeros(m, m);
    for (j, &dl) in offsets.iter().enumerate() {
        let mut term = 1.0;
        for i in 1..=m {
            term *= dl / i as f64;
            a[(i - 1, j)] = term;
        }
    }
    let mut rhs = DVector::<f64>::zeros(m);
    rhs[d - 1] = 1.0;
    let sol = a
        .lu()
        .solve(&rhs)
        .filter(|s| s.iter().all(|v| v.is_finite()))
        .ok_or_else(|| {
            S3Error::Numerical(format!(
                "singular finite-difference system for offsets {offsets:?} (repeated λ?)"
            ))
        })?;
    Ok(sol.iter().copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(f: impl Fn(f64) -> f64, offsets: &[f64], d: usize) -> f64 {
        let w = derivative_weights(offsets, d).unwrap();
        w.iter()
            .zip(offsets)
            .map(|(a, &o)| a * (f(o) - f(0.0)))
            .sum()
    }

    #[test]
    fn exact_on_polynomials_of_degree_m() {
        // f = 1 + 2x − 3x² + 0.5x³ : f' = 2, f'' = −6, f''' = 3 at 0
        let f = |x: f64| 1.0 + 2.0 * x - 3.0 * x * x + 0.5 * x.powi(3);
        let off = [-0.4, -0.9, 0.3];
        assert!((estimate(f, &off, 1) - 2.0).abs() < 1e-12);
        assert!((estimate(f, &off, 2) + 6.0).abs() < 1e-11);
        assert!((estimate(f, &off, 3) - 3.0).abs() < 1e-10);
    }

    #[test]
    fn one_point_is_the_divided_difference() {
        let w = derivative_weights(&[-0.25], 1).unwrap();
        assert!((w[0] + 4.0).abs() < 1e-15);
    }

    #[test]
    fn repeated_points_and_too_few_points_are_errors() {
        assert!(derivative_weights(&[-0.5, -0.5], 1).is_err());
        assert!(derivative_weights(&[-0.5], 2).is_err());
    }
}

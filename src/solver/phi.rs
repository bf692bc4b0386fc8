//! The φ-functions of exponential integrators: φ_1(z) = (e^z − 1)/z and
//! φ_{k+1}(z) = (φ_k(z) − 1/k!)/z, with φ_k(0) = 1/k!.

/// φ_k(z) for k ≥ 1, accurate to a few ulps for all finite z: a power series
/// Σ_j z^j/(j+k)! for |z| < 1, where the recursion would cancel, and the recursion otherwise.
pub fn phi(k: usize, z: f64) -> f64 {
    assert!(k >= 1, "φ_k is defined for k ≥ 1");
    if z.abs() < 1.0 {
        // Σ_{j≥0} z^j / (j + k)!
        let mut term = 1.0 / factorial(k);
        let mut sum = term;
        for j in 1..40 {
            term *= z / (j + k) as f64;
            sum += term;
            if term.abs() < 1e-18 * sum.abs() {
                break;
            }
        }
        return sum;
    }
    let mut p = z.exp_m1() / z;
    for j in 1..k {
        p = (p - 1.0 / factorial(j)) / z;
    }
    p
}

/// n! as f64.
pub fn factorial(n: usize) -> f64 {
    (1..=n).map(|i| i as f64).product()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_matches_closed_forms_on_both_sides_of_the_switch() {
        for &z in &[
            -3.0, -1.0, -0.999, -0.3, -1e-8, 0.0, 1e-8, 0.5, 0.999, 1.0, 2.5, 9.0,
        ] {
            let e = f64::exp(z);
            let closed = [
                if z == 0.0 { 1.0 } else { (e - 1.0) / z },
                if z == 0.0 {
                    0.5
                } else {
                    (e - 1.0 - z) / (z * z)
                },
                if z == 0.0 {
                    1.0 / 6.0
                } else {
                    (e - 1.0 - z - z * z / 2.0) / z.powi(3)
                },
            ];
            for k in 1..=3 {
                let tol = if z.abs() < 1e-3 && z != 0.0 {
                    1e-3
                } else {
                    1e-9
                };
                // The closed forms themselves cancel near 0; only check them away from it.
                if z.abs() >= 1e-3 || z == 0.0 {
                    assert!(
                        (phi(k, z) - closed[k - 1]).abs() <= tol * closed[k - 1].abs(),
                        "k={k} z={z}: {} vs {}",
                        phi(k, z),
                        closed[k - 1]
                    );
                }
            }
        }
    }

    #[test]
    fn phi_is_continuous_across_the_series_switch() {
        for k in 1..=5 {
            for &s in &[-1.0, 1.0] {
                let a = phi(k, s * (1.0 - 1e-12));
                let b = phi(k, s * (1.0 + 1e-12));
                assert!((a - b).abs() < 1e-10 * a.abs(), "k={k} at {s}: {a} vs {b}");
            }
        }
    }
}

//! A straightforward scalar evaluation of the mixture's predictions — per sample, per
//! component, direct distances, log-sum-exp with libm's exp, no cut-offs — as the test oracle
//! of the fast paths in [`super::isotropic`] and [`super::diagonal`]. It is the evaluation the
//! crate used for every mixture before those paths existed (`GaussianMixture::predict_one`),
//! written for clarity rather than speed.

use super::GaussianMixture;

/// ε(x), or x0(x) when `data`, for one sample `x` at (α, σ); and the largest
/// ½‖x − α m_k‖²/v_k among the components that matter (within 60 of the most likely one in
/// log-density): the size of the log-densities, whose f64 rounding (relative 10⁻¹⁶ of it)
/// bounds how closely any two evaluations can agree.
pub(super) fn predict(
    g: &GaussianMixture,
    x: &[f64],
    alpha: f64,
    sigma: f64,
    data: bool,
) -> (Vec<f64>, f64) {
    let d = g.dim;
    let var = |k: usize, j: usize| g.component_variance(k, j);
    let v = |k: usize, j: usize| alpha * alpha * var(k, j) + sigma * sigma;
    let ln_2pi = (2.0 * std::f64::consts::PI).ln();
    let quad: Vec<f64> = (0..g.components())
        .map(|k| {
            let m = g.mean_of(k);
            let sq = |j: usize| (x[j] - alpha * m[j]).powi(2) / v(k, j);
            0.5 * (0..d).map(sq).sum::<f64>()
        })
        .collect();
    let log_p: Vec<f64> = (0..g.components())
        .map(|k| {
            let norm: f64 = (0..d).map(|j| ln_2pi + v(k, j).ln()).sum();
            g.log_weights[k] - 0.5 * norm - quad[k]
        })
        .collect();
    let max = log_p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let log_norm = max + log_p.iter().map(|l| (l - max).exp()).sum::<f64>().ln();
    let mut out = vec![0.0; d];
    for (k, lp) in log_p.iter().enumerate() {
        let gamma = (lp - log_norm).exp();
        let m = g.mean_of(k);
        for (j, o) in out.iter_mut().enumerate() {
            let r = (x[j] - alpha * m[j]) / v(k, j);
            *o += gamma
                * if data {
                    m[j] + alpha * var(k, j) * r
                } else {
                    sigma * r
                };
        }
    }
    let size = (quad.iter().zip(&log_p))
        .filter(|(_, lp)| **lp >= max - 60.0)
        .fold(0.0f64, |s, (q, _)| s.max(*q));
    (out, size)
}

#[cfg(test)]
mod tests {
    use super::super::Stds;
    use super::*;
    use crate::model::{Denoiser, TimePoint};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use rand_distr::StandardNormal;

    /// Largest error of the f64 path, relative to the sample's largest output value (or 1 if
    /// that is smaller: ε and the data are of unit scale) ...
    const F64_TOLERANCE: f64 = 1e-12;

    /// ... plus this many ulps of the size of the log-densities (see [`predict`]): far from the
    /// data they reach 10⁴–10⁵, and no f64 evaluation, the oracle's included, knows the
    /// responsibilities better than that.
    const LOG_DENSITY_ULPS: f64 = 4.0;

    /// (α, σ) pairs: vp-linear from t_min to T, and the extremes of the other schedules —
    /// tiny σ (the data end, peaked softmax), α → 0 and α = 0 (pure noise), EDM's σ = 80,
    /// flow's t = 1 − 10⁻⁶.
    fn times() -> Vec<(f64, f64)> {
        let vp = crate::noise::NoiseSchedule::vp_linear();
        let mut out: Vec<(f64, f64)> = (0..=24)
            .map(|i| 1e-3_f64.powf(i as f64 / 24.0))
            .map(|t| (vp.alpha(t), vp.sigma(t)))
            .collect();
        out.extend([
            (1.0, 1e-6),
            (1.0, 1e-4),
            (1.0, 2e-3),
            (1.0, 80.0),
            (1e-6, 1.0 - 1e-6),
            (1e-8, 1.0),
            (0.0, 1.0),
            (0.7, 0.7),
        ]);
        out
    }

    /// Inputs at (α, σ): noised data x = α·x0 + σ·z, the same with 5× the noise, points far
    /// from the data, an exact component mean and the midpoint between it and its nearest neighbour (a tie:
    /// two components equally likely, however small σ is).
    fn inputs(g: &GaussianMixture, alpha: f64, sigma: f64, rng: &mut StdRng) -> Vec<Vec<f64>> {
        let d = g.dim;
        let x0 = g.sample_data(8, rng);
        let mut noise = |s: f64| -> Vec<f64> {
            (0..d)
                .map(|_| s * rng.sample::<f64, _>(StandardNormal))
                .collect()
        };
        let mut out = Vec::new();
        for (i, row) in x0.chunks(d).enumerate() {
            let z = noise(if i % 2 == 0 { 1.0 } else { 5.0 });
            out.push(
                row.iter()
                    .zip(&z)
                    .map(|(&a, b)| alpha * a as f64 + sigma * b)
                    .collect(),
            );
        }
        out.push(noise(30.0));
        let m0 = g.mean_of(0);
        out.push(m0.iter().map(|m| alpha * m).collect());
        if let Some(near) = nearest_other(g, 0) {
            let m1 = g.mean_of(near);
            out.push(
                m0.iter()
                    .zip(m1)
                    .map(|(a, b)| alpha * 0.5 * (a + b))
                    .collect(),
            );
        }
        out
    }

    /// The component whose mean is nearest to component `k`'s, if there is another.
    fn nearest_other(g: &GaussianMixture, k: usize) -> Option<usize> {
        let dist = |j: usize| -> f64 {
            let (a, b) = (g.mean_of(k), g.mean_of(j));
            a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum()
        };
        (0..g.components())
            .filter(|&j| j != k)
            .min_by(|&a, &b| dist(a).total_cmp(&dist(b)))
    }

    /// The largest error of `got` against `want`, relative to max(‖want‖_∞, 1).
    fn error(got: &[f64], want: &[f64]) -> f64 {
        let scale = want.iter().fold(1.0f64, |m, w| m.max(w.abs()));
        got.iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs() / scale)
            .fold(0.0, f64::max)
    }

    /// Checks both outputs of `g` (ε and x0, f64 and f32) against the oracle at every time.
    fn check(g: &GaussianMixture, seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let d = g.dim;
        let mut worst = 0.0f64;
        for (alpha, sigma) in times() {
            let time = TimePoint {
                t: sigma,
                alpha,
                sigma,
            };
            let xs = inputs(g, alpha, sigma, &mut rng);
            let x: Vec<f64> = xs.concat();
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            for data in [false, true] {
                let mut out = vec![0.0; x.len()];
                g.forward_real(&x, time, data, &mut out).unwrap();
                let mut out32 = vec![0f32; x.len()];
                g.forward_real(&x32, time, data, &mut out32).unwrap();
                for (i, xi) in xs.iter().enumerate() {
                    let (want, size) = predict(g, xi, alpha, sigma, data);
                    let tol = F64_TOLERANCE + LOG_DENSITY_ULPS * f64::EPSILON * size;
                    let e = error(&out[i * d..(i + 1) * d], &want);
                    assert!(
                        e <= tol,
                        "α={alpha} σ={sigma} data={data} input {i}: f64 error {e:e}"
                    );
                    worst = worst.max(e / tol);
                    let xi32: Vec<f64> =
                        x32[i * d..(i + 1) * d].iter().map(|&v| v as f64).collect();
                    let (want32, _) = predict(g, &xi32, alpha, sigma, data);
                    for (j, (&got, w)) in out32[i * d..(i + 1) * d].iter().zip(&want32).enumerate()
                    {
                        let tol = f32::EPSILON as f64 * w.abs() + tol * (1.0 + w.abs());
                        assert!(
                            (got as f64 - w).abs() <= tol,
                            "α={alpha} σ={sigma} data={data} input {i}[{j}]: f32 {got} vs {w}"
                        );
                    }
                }
            }
        }
        eprintln!("largest f64 error against the oracle, in tolerances: {worst:e}");
    }

    /// A mixture of `k` random components in `dim` dimensions, isotropic or diagonal.
    fn random_mixture(k: usize, dim: usize, diagonal: bool, seed: u64) -> GaussianMixture {
        let mut rng = StdRng::seed_from_u64(seed);
        let raw: Vec<f64> = (0..k).map(|_| rng.random_range(0.2..1.0)).collect();
        let total: f64 = raw.iter().sum();
        let means = (0..k)
            .map(|_| {
                (0..dim)
                    .map(|_| rng.sample::<f64, _>(StandardNormal))
                    .collect()
            })
            .collect();
        let n_stds = if diagonal { k * dim } else { k };
        let stds: Vec<f64> = (0..n_stds)
            .map(|_| 10f64.powf(rng.random_range(-2.5..-0.3)))
            .collect();
        let stds = if diagonal {
            Stds::Diagonal(stds)
        } else {
            Stds::Isotropic(stds)
        };
        let weights = raw.iter().map(|w| w / total).collect();
        GaussianMixture::new("random", vec![dim], weights, means, stds).unwrap()
    }

    #[test]
    fn isotropic_path_matches_the_oracle() {
        for (k, dim, seed) in [(1, 3, 1), (5, 2, 2), (40, 12, 3), (300, 20, 4)] {
            check(&random_mixture(k, dim, false, seed), seed);
        }
    }

    #[test]
    fn diagonal_path_matches_the_oracle() {
        for (k, dim, seed) in [(1, 3, 5), (5, 2, 6), (40, 12, 7)] {
            check(&random_mixture(k, dim, true, seed), seed);
        }
    }

    /// The `digits` preset's mixture (1797 components of std 0.01 in 64 dimensions), built
    /// here from the embedded data as the preset does.
    #[test]
    fn digits_matches_the_oracle() {
        let pixels = include_bytes!("../../../data/digits/digits.u8");
        let means: Vec<Vec<f64>> = pixels
            .chunks(64)
            .map(|img| img.iter().map(|&p| p as f64 / 8.0 - 1.0).collect())
            .collect();
        let k = means.len();
        let g = GaussianMixture::new(
            "digits",
            vec![1, 8, 8],
            vec![1.0 / k as f64; k],
            means,
            Stds::Isotropic(vec![0.01; k]),
        )
        .unwrap();
        check(&g, 9);
    }

    /// A batch larger than one block, with a partial last block, gives the same result per
    /// sample as evaluating each sample alone.
    #[test]
    fn blocks_do_not_mix_samples() {
        let g = random_mixture(30, 7, false, 11);
        let n = super::super::isotropic::BLOCK_SAMPLES * 2 + 5;
        let mut rng = StdRng::seed_from_u64(12);
        let x: Vec<f64> = (0..n * 7)
            .map(|_| rng.sample::<f64, _>(StandardNormal))
            .collect();
        let time = TimePoint {
            t: 0.5,
            alpha: 0.6,
            sigma: 0.8,
        };
        let mut all = vec![0.0; x.len()];
        g.forward_f64(&x, time, &mut all).unwrap();
        for (xi, oi) in x.chunks(7).zip(all.chunks(7)) {
            let mut one = vec![0.0; 7];
            g.forward_f64(xi, time, &mut one).unwrap();
            assert!(error(oi, &one) <= F64_TOLERANCE);
        }
    }
}

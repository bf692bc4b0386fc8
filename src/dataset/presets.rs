//! The built-in datasets. All are deterministic: the same build always yields the same model.

use super::{DataSource, Dataset};
use crate::metric::MetricKind;
use crate::model::GaussianMixture;
use crate::model::gmm::Stds;
use crate::noise::{NoiseScheduleName, NoiseScheduleSpec};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// The metric of the analytic presets and of mixture files without a `metric` field. FD on
/// all N samples, not FD∞: FD∞ does not reward diversity loss and costs little, but it is
/// signed (≈ 0 ± its noise near the floor) and the search's predictor trains only on positive
/// values, so switching waits for the search to accept signed metrics (docs/metrics.md).
pub const ANALYTIC_DEFAULT_METRIC: MetricKind = MetricKind::Fd;

/// The UCI handwritten digits (1797 images, 8×8, 0..16), exported by scripts/export_digits.py.
static DIGITS_U8: &[u8] = include_bytes!("../../data/digits/digits.u8");

/// The std of each `digits` component: well below the 1/8 gap between pixel levels.
pub const DIGITS_STD: f64 = 0.01;

/// `digits`: the empirical distribution of the UCI digits, one component per image with a
/// tiny std, pixels mapped from 0..16 to [−1, 1]. Metric: Fréchet distance on raw pixels
/// over 5000 samples (at 1000 the FD's sampling noise, ~0.14, hides the solvers' differences).
pub fn digits() -> Dataset {
    let means: Vec<Vec<f64>> = DIGITS_U8
        .chunks(64)
        .map(|img| img.iter().map(|&p| p as f64 / 8.0 - 1.0).collect())
        .collect();
    equal_weights("digits", vec![1, 8, 8], means, DIGITS_STD, 5000)
}

/// `toy2d`: 8 equal Gaussians (std 0.1) on the unit circle.
pub fn toy2d() -> Dataset {
    let k = 8;
    let means: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            let a = 2.0 * std::f64::consts::PI * i as f64 / k as f64;
            vec![a.cos(), a.sin()]
        })
        .collect();
    equal_weights("toy2d", vec![2], means, 0.1, 2000)
}

/// `gmm32`: 3×32×32 images, 10 equal components whose means are smooth random fields (sums
/// of 6 low-frequency cosines per channel, squashed by tanh into (−1, 1)), std 0.05. Seeded,
/// so every build has the same model. It has the memory and compute profile of CIFAR-10.
pub fn gmm32() -> Dataset {
    let (k, c, h, w) = (10, 3, 32, 32);
    let mut rng = StdRng::seed_from_u64(0x6d6d_3332);
    let means: Vec<Vec<f64>> = (0..k)
        .map(|_| {
            let mut m = vec![0.0; c * h * w];
            for ch in 0..c {
                let waves: Vec<(f64, f64, f64, f64)> = (0..6)
                    .map(|_| {
                        (
                            rng.random_range(0.0..3.0),
                            rng.random_range(0.0..3.0),
                            rng.random_range(0.0..std::f64::consts::TAU),
                            rng.random_range(-1.0..1.0),
                        )
                    })
                    .collect();
                for y in 0..h {
                    for x in 0..w {
                        let v: f64 = waves
                            .iter()
                            .map(|&(fy, fx, ph, amp)| {
                                amp * (std::f64::consts::PI
                                    * (fy * y as f64 / h as f64 + fx * x as f64 / w as f64)
                                    + ph)
                                    .cos()
                            })
                            .sum();
                        m[ch * h * w + y * w + x] = v.tanh();
                    }
                }
            }
            m
        })
        .collect();
    equal_weights("gmm32", vec![c, h, w], means, 0.05, 1000)
}

/// A preset of equally weighted isotropic components under `vp-linear`, measured by FD on
/// `samples` samples.
fn equal_weights(
    name: &str,
    shape: Vec<usize>,
    means: Vec<Vec<f64>>,
    std: f64,
    samples: usize,
) -> Dataset {
    let k = means.len();
    let mixture = GaussianMixture::new(
        name,
        shape,
        vec![1.0 / k as f64; k],
        means,
        Stds::Isotropic(vec![std; k]),
    )
    .expect("built-in presets are valid");
    Dataset {
        name: name.into(),
        source: DataSource::Mixture(Box::new(mixture)),
        noise: NoiseScheduleSpec::new(NoiseScheduleName::VpLinear),
        metric: ANALYTIC_DEFAULT_METRIC,
        samples,
    }
}

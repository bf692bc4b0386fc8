//! Metrics of a schedule: the Fréchet distance (FD) between the samples' feature statistics
//! and the exact data moments (or FID through a network's extractor), its finite-sample-bias-
//! free extrapolation FD∞ ([`fd_inf`]), the kernel distance KID to reference draws ([`kid`]),
//! or the MSE to a reference solve from the same noise (exact for mixtures, a teacher for
//! networks). Each comes with its floor: the value that exact samples would read with the
//! same sample count, or the teacher's own error. This module is the pure maths (statistics, distances,
//! teacher solves, the noise draw); running a schedule on a dataset and measuring it is
//! [`crate::eval`]'s.

pub mod fd_inf;
pub mod features;
pub mod frechet;
pub mod kid;
pub mod reference_cache;
pub mod stats_file;
pub mod teacher;

pub use features::FeatureMap;
pub use frechet::{FrechetReference, Moments, frechet_distance};
pub use reference_cache::{REFERENCES_DIR, ReferenceCache, ReferenceInfo};
pub use teacher::{DEFAULT_REFERENCE_NFE, MIN_REFERENCE_NFE, psnr_db};

use crate::error::Result;
use crate::names::Named;
use crate::noise::NoiseSchedule;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Which metric to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MetricKind {
    /// Fréchet distance of feature statistics to the exact data moments (FID-like), on all
    /// N samples: biased upward by ~k/N, and the bias shrinks with the samples' variance.
    Fd,
    /// FD∞ (Chong & Forsyth 2020): the FD extrapolated to N → ∞ from subsets, free of the
    /// k/N bias, so a sample set that lost diversity does not read better ([`fd_inf`]).
    FdInf,
    /// KID: unbiased MMD² with the cubic polynomial kernel against reference feature rows,
    /// averaged over subsets as torch-fidelity and clean-fid do ([`kid`]).
    Kid,
    /// Mean squared error to the reference ODE solution from the same noise.
    Mse,
}

impl Named for MetricKind {
    const KIND: &'static str = "metric";
    const ALL: &'static [Self] = &[Self::Fd, Self::FdInf, Self::Kid, Self::Mse];
}

impl MetricKind {
    /// Parses `--metric`.
    pub fn parse(s: &str) -> Result<Self> {
        <Self as Named>::from_name(s)
    }

    /// The short name.
    pub fn as_str(self) -> &'static str {
        self.name()
    }

    /// Whether the metric compares the distribution of the samples with the data (FD, FD∞,
    /// KID: it needs FID files or exact data, and its floor is what exact draws read), rather
    /// than each sample with its reference solve (MSE).
    pub fn is_distribution(self) -> bool {
        !matches!(self, Self::Mse)
    }

    /// Whether the metric is unbiased in the sample count (FD∞ and KID: it reads ≈ 0 for
    /// exact data and may read slightly negative).
    pub fn is_unbiased(self) -> bool {
        matches!(self, Self::FdInf | Self::Kid)
    }
}

pub use crate::limits::{MAX_SAMPLE_VALUES, check_sample_size};

/// Standard-normal noise z (`n × dim`, f32) from `seed`.
pub fn standard_noise(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n * dim)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            z as f32
        })
        .collect()
}

/// The std of x at the start of sampling: 1 for VP schedules (x_T ≈ z, as DPM-Solver and
/// diffusers take it) and σ(t_0) for EDM.
pub fn prior_std(ns: &NoiseSchedule, t0: f64) -> f64 {
    if ns.is_vp() { 1.0 } else { ns.sigma(t0) }
}

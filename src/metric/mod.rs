//! Metrics of a schedule on an analytic dataset: the Fréchet distance (FD) between the
//! samples' feature statistics and the exact data moments, or the MSE to a high-accuracy
//! reference solve from the same noise. Each comes with its floor: the value that exact
//! samples would read with the same sample count.

pub mod features;
pub mod frechet;

pub use features::FeatureMap;
pub use frechet::{Moments, frechet_distance};

use crate::dataset::{DataSource, Dataset};
use crate::error::{Result, S3Error};
use crate::model::{Denoiser, TimePoint, eval_eps};
use crate::noise::NoiseSchedule;
use crate::onnx::Images;
use crate::solver::reference::reference_solve;
use crate::solver::{Sampler, SolverSchedule};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// Which metric to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// Fréchet distance of feature statistics to the exact data moments (FID-like).
    Fd,
    /// Mean squared error to the reference ODE solution from the same noise.
    Mse,
}

impl MetricKind {
    /// Parses `--metric`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "fd" => Ok(Self::Fd),
            "mse" => Ok(Self::Mse),
            _ => Err(S3Error::UnknownName {
                kind: "metric",
                name: s.into(),
                expected: "fd, mse".into(),
            }),
        }
    }

    /// The short name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fd => "fd",
            Self::Mse => "mse",
        }
    }
}

/// Tolerance of the MSE reference solve (max change between RK4 solves, relative).
pub const REFERENCE_TOL: f64 = 1e-5;
/// The most RK4 steps the reference solve may take.
pub const REFERENCE_MAX_STEPS: usize = 8192;

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

/// How many independent exact-sample sets the FD floor averages.
pub const FLOOR_DRAWS: usize = 5;

/// The metric on exact samples: mean and spread over independent draws.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    pub mean: f64,
    pub std: f64,
    pub draws: usize,
}

impl std::fmt::Display for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.draws == 0 {
            write!(f, "{:.6} (exact)", self.mean)
        } else {
            write!(
                f,
                "{:.6} ± {:.6} (mean ± std over {} draws)",
                self.mean, self.std, self.draws
            )
        }
    }
}

/// One metric value.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub metric: MetricKind,
    pub value: f64,
    pub nfe: usize,
    pub samples: usize,
}

/// Evaluates schedules on one dataset, noise schedule, metric, sample count and noise seed.
/// The noise, the reference statistics and (for MSE) the reference solve are computed once
/// and reused for every schedule.
pub struct Evaluator<'a> {
    dataset: &'a Dataset,
    ns: &'a NoiseSchedule,
    kind: MetricKind,
    n: usize,
    seed: u64,
    z: Vec<f32>,
    features: FeatureMap,
    exact: OnceLock<Moments>,
    reference: OnceLock<Vec<f32>>,
}

impl<'a> Evaluator<'a> {
    /// An evaluator with `n` samples whose noise comes from `seed`.
    pub fn new(
        dataset: &'a Dataset,
        ns: &'a NoiseSchedule,
        kind: MetricKind,
        n: usize,
        seed: u64,
    ) -> Result<Self> {
        if n < 2 {
            return Err(S3Error::field("metric", "samples", "expected at least 2"));
        }
        let dim = dataset.dim();
        Ok(Self {
            dataset,
            ns,
            kind,
            n,
            seed,
            z: standard_noise(n, dim, seed),
            features: FeatureMap::for_shape(dataset.sample_shape()),
            exact: OnceLock::new(),
            reference: OnceLock::new(),
        })
    }

    /// The metric.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    /// The sample count.
    pub fn samples(&self) -> usize {
        self.n
    }

    /// The feature map the FD uses.
    pub fn feature_map(&self) -> &FeatureMap {
        &self.features
    }

    /// A sampler for the dataset's model (with the data mean for `average_x0`).
    pub fn sampler(&self) -> Sampler<'a> {
        self.dataset.sampler(self.ns)
    }

    /// The initial noise for a schedule starting at `t0`.
    pub fn initial_noise(&self, t0: f64) -> Vec<f32> {
        let s = prior_std(self.ns, t0) as f32;
        self.z.iter().map(|&v| v * s).collect()
    }

    /// The statistics the samples are compared with: the exact feature moments of a
    /// mixture, or a network's reference statistics (FID).
    fn reference_moments(&self) -> &Moments {
        match &self.dataset.source {
            DataSource::Mixture(m) => self.exact.get_or_init(|| self.features.mixture_moments(m)),
            DataSource::Network(n) => &n.stats,
        }
    }

    /// What the Fréchet distance is computed on, for cache keys and reports: the feature map
    /// of a mixture (e.g. `identity(64)`), or `fid/<extractor>/stats#<hash>` for a network.
    pub fn metric_id(&self) -> String {
        match (self.kind, &self.dataset.source) {
            (MetricKind::Mse, _) => format!("mse/tol={REFERENCE_TOL}"),
            (MetricKind::Fd, DataSource::Mixture(_)) => format!("fd/{}", self.features.label),
            (MetricKind::Fd, DataSource::Network(n)) => format!("fid/{}", n.metric_id),
        }
    }

    /// The metric's display name: `fid` for a network measured through its extractor,
    /// otherwise the metric's own name.
    pub fn metric_label(&self) -> &'static str {
        match (self.kind, &self.dataset.source) {
            (MetricKind::Fd, DataSource::Network(_)) => "fid",
            (k, _) => k.as_str(),
        }
    }

    /// Runs `schedule` on the evaluator's noise and returns the samples.
    pub fn samples_of(&self, schedule: &SolverSchedule) -> Result<Vec<f32>> {
        let x_t = self.initial_noise(schedule.timesteps[0]);
        Ok(self.sampler().sample(schedule, &x_t)?.samples)
    }

    /// The metric of `schedule`.
    pub fn evaluate(&self, schedule: &SolverSchedule) -> Result<Evaluation> {
        if self.kind == MetricKind::Mse && schedule.timesteps[0] != self.ns.t_max() {
            return Err(S3Error::field(
                "metric",
                "mse",
                format!(
                    "the MSE reference is solved from T = {}; this schedule starts at {}",
                    self.ns.t_max(),
                    schedule.timesteps[0]
                ),
            ));
        }
        let x = self.samples_of(schedule)?;
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(S3Error::Numerical(format!(
                "sampling produced a non-finite value (element {i})"
            )));
        }
        let value = self.value_of(&x)?;
        Ok(Evaluation {
            metric: self.kind,
            value,
            nfe: schedule.nfe,
            samples: self.n,
        })
    }

    /// The metric of final samples `x` (`n × dim`, from this evaluator's noise for MSE).
    pub fn value_of(&self, x: &[f32]) -> Result<f64> {
        match self.kind {
            MetricKind::Fd => {
                let m = match &self.dataset.source {
                    DataSource::Mixture(_) => {
                        Moments::from_rows(&self.features.apply(x), self.features.out_dim())?
                    }
                    DataSource::Network(n) => {
                        let images = Images::from_samples(x, self.dataset.sample_shape())?;
                        let f = n.extractor.features(&images)?;
                        Moments::from_rows(&f, n.extractor.dims())?
                    }
                };
                frechet_distance(&m, self.reference_moments())
            }
            MetricKind::Mse => {
                let r = self.reference()?;
                if r.len() != x.len() {
                    return Err(S3Error::Shape(
                        "samples and reference differ in size".into(),
                    ));
                }
                let s: f64 = x
                    .iter()
                    .zip(r)
                    .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                    .sum();
                Ok(s / x.len() as f64)
            }
        }
    }

    /// The metric's floor: what exact samples read with the same sample count. For FD, the
    /// mean and standard deviation over [`FLOOR_DRAWS`] independent sets of `n` exact data
    /// draws (seeded from the noise seed), so a reader sees both the bias and the noise of
    /// the estimator; for MSE, exactly 0 (the reference itself; its own error is below
    /// [`REFERENCE_TOL`]).
    pub fn floor(&self) -> Result<Option<Floor>> {
        match self.kind {
            MetricKind::Fd => {
                let Some(mixture) = self.dataset.mixture() else {
                    // A real network has no exact data to draw from.
                    return Ok(None);
                };
                let values = (0..FLOOR_DRAWS)
                    .map(|i| {
                        let mut rng =
                            StdRng::seed_from_u64(self.seed ^ (0x5eed_f100_u64 + i as u64));
                        let x = mixture.sample_data(self.n, &mut rng);
                        self.value_of(&x)
                    })
                    .collect::<Result<Vec<f64>>>()?;
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                    / (values.len() - 1) as f64;
                Ok(Some(Floor {
                    mean,
                    std: var.sqrt(),
                    draws: FLOOR_DRAWS,
                }))
            }
            MetricKind::Mse => Ok(Some(Floor {
                mean: 0.0,
                std: 0.0,
                draws: 0,
            })),
        }
    }

    /// The reference endpoint for MSE: the probability-flow ODE solved by RK4 from T to the
    /// schedule's default t_min (tolerance [`REFERENCE_TOL`]), then denoised with the exact
    /// x0 prediction there. Computed once per evaluator.
    pub fn reference(&self) -> Result<&[f32]> {
        if let Some(r) = self.reference.get() {
            return Ok(r);
        }
        let (t0, t1) = (self.ns.t_max(), self.ns.t_min());
        let x_t: Vec<f64> = self.initial_noise(t0).iter().map(|&v| v as f64).collect();
        let model: &dyn Denoiser = self.dataset.model();
        let sol = reference_solve(
            model,
            self.ns,
            &x_t,
            t0,
            t1,
            REFERENCE_TOL,
            REFERENCE_MAX_STEPS,
        )?;
        let x: Vec<f32> = sol.x.iter().map(|&v| v as f32).collect();
        let (a, s) = (self.ns.alpha(t1), self.ns.sigma(t1));
        let mut eps = vec![0f32; x.len()];
        eval_eps(
            model,
            &x,
            TimePoint {
                t: t1,
                alpha: a,
                sigma: s,
            },
            &mut eps,
        )?;
        let x0: Vec<f32> = x
            .iter()
            .zip(&eps)
            .map(|(&xi, &e)| ((xi as f64 - s * e as f64) / a) as f32)
            .collect();
        Ok(self.reference.get_or_init(|| x0))
    }
}

//! Evaluating schedules on a dataset: the [`Evaluator`] runs a schedule on the dataset's
//! model from fixed noise and measures it with the dataset's metric (FD against the exact
//! moments or FID features, or MSE to a reference solve), next to the metric's [`Floor`].
//! It sits above both `dataset` (what is sampled) and `metric` (the pure maths), so neither
//! of those imports the other's evaluation logic.

use crate::dataset::{DataSource, Dataset};
use crate::error::{Result, S3Error};
use crate::metric::{
    DEFAULT_REFERENCE_NFE, FeatureMap, MIN_REFERENCE_NFE, MetricKind, Moments, ReferenceCache,
    ReferenceInfo, check_sample_size, frechet_distance, prior_std, standard_noise, teacher,
};
use crate::model::Denoiser;
use crate::noise::NoiseSchedule;
use crate::onnx::Images;
use crate::solver::reference::reference_solve;
use crate::solver::{Sampler, SolverSchedule};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use std::sync::OnceLock;

/// Tolerance of the MSE reference solve (max change between RK4 solves, relative).
pub const REFERENCE_TOL: f64 = 1e-5;
/// The most RK4 steps the reference solve may take.
pub const REFERENCE_MAX_STEPS: usize = 8192;

/// How many independent exact-sample sets the FD floor averages.
pub const FLOOR_DRAWS: usize = 5;

/// The metric on exact samples: mean and spread over independent draws.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Floor {
    pub mean: f64,
    pub std: f64,
    pub draws: usize,
    /// For a network's teacher MSE: the teacher's model calls (the floor is then its
    /// doubling check, the MSE between it and the solve with half the calls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher_nfe: Option<usize>,
}

impl std::fmt::Display for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(n) = self.teacher_nfe {
            write!(
                f,
                "{:.3e} (the teacher's own error: its NFE-{n} solve and the one with half the \
                 calls differ by this MSE)",
                self.mean
            )
        } else if self.draws == 0 {
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

/// An evaluator's MSE reference: the outputs, how they were solved, and whether they came
/// from the reference cache.
struct Reference {
    outputs: Vec<f32>,
    info: ReferenceInfo,
    cached: bool,
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
    reference: OnceLock<Reference>,
    reference_cache: Option<ReferenceCache>,
    reference_nfe: usize,
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
        check_sample_size(n, dim, "samples")?;
        Ok(Self {
            dataset,
            ns,
            kind,
            n,
            seed,
            z: standard_noise(n, dim, seed),
            features: FeatureMap::for_shape(dataset.output_shape()),
            exact: OnceLock::new(),
            reference: OnceLock::new(),
            reference_cache: None,
            reference_nfe: DEFAULT_REFERENCE_NFE,
        })
    }

    /// Keeps MSE references in (and takes them from) `cache`.
    pub fn with_reference_cache(mut self, cache: ReferenceCache) -> Self {
        self.reference_cache = Some(cache);
        self
    }

    /// Model calls of a network's teacher (mixtures have an exact reference instead).
    pub fn with_reference_nfe(mut self, nfe: usize) -> Result<Self> {
        if nfe < MIN_REFERENCE_NFE {
            return Err(S3Error::field(
                "metric",
                "--reference-nfe",
                format!("{nfe}; expected at least {MIN_REFERENCE_NFE}"),
            ));
        }
        self.reference_nfe = nfe;
        Ok(self)
    }

    /// The seed of the evaluator's noise.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether the MSE reference is the teacher of a network (not an exact solve).
    fn uses_teacher(&self) -> bool {
        matches!(self.dataset.source, DataSource::Network(_))
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
    fn reference_moments(&self) -> Result<&Moments> {
        if let DataSource::Network(n) = &self.dataset.source
            && let Some(fid) = &n.fid
        {
            return Ok(&fid.stats);
        }
        let m = self.dataset.exact_data().ok_or_else(|| {
            S3Error::field(
                "metric",
                "fd",
                format!(
                    "{} has neither FID files nor exact data (`fid` / `data` in its model \
                     config); use --metric mse",
                    self.dataset.name
                ),
            )
        })?;
        Ok(self.exact.get_or_init(|| self.features.mixture_moments(m)))
    }

    /// The FID parts of a network measured through its extractor.
    fn fid(&self) -> Option<&crate::dataset::Fid> {
        match &self.dataset.source {
            DataSource::Network(n) => n.fid.as_ref(),
            DataSource::Mixture(_) => None,
        }
    }

    /// What the Fréchet distance is computed on, for cache keys and reports: the feature map
    /// of a mixture (e.g. `identity(64)`), or `fid/<extractor>/stats#<hash>` for a network.
    pub fn metric_id(&self) -> String {
        match (self.kind, self.fid()) {
            (MetricKind::Mse, _) if self.uses_teacher() => {
                format!("mse/teacher-rk4-nfe={}", self.reference_nfe)
            }
            (MetricKind::Mse, _) => format!("mse/tol={REFERENCE_TOL}"),
            (MetricKind::Fd, Some(fid)) => format!("fid/{}", fid.metric_id),
            (MetricKind::Fd, None) => format!("fd/{}", self.features.label),
        }
    }

    /// The metric's display name: `fid` for a network measured through its extractor,
    /// otherwise the metric's own name.
    pub fn metric_label(&self) -> &'static str {
        match (self.kind, self.fid()) {
            (MetricKind::Fd, Some(_)) => "fid",
            (k, _) => k.as_str(),
        }
    }

    /// Runs `schedule` on the evaluator's noise and returns the final outputs (after the
    /// network's decoder, if any).
    pub fn samples_of(&self, schedule: &SolverSchedule) -> Result<Vec<f32>> {
        let x_t = self.initial_noise(schedule.timesteps[0]);
        let x = self.sampler().sample(schedule, &x_t)?.samples;
        self.dataset.decode(x)
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

    /// The metric of final outputs `x` (`n × prod(output shape)`, after the decoder; from
    /// this evaluator's noise for MSE).
    pub fn value_of(&self, x: &[f32]) -> Result<f64> {
        match self.kind {
            MetricKind::Fd => {
                let m = match self.fid() {
                    None => Moments::from_rows(&self.features.apply(x), self.features.out_dim())?,
                    Some(fid) => {
                        let images = Images::from_samples(x, self.dataset.output_shape())?;
                        let f = fid.extractor.features(&images)?;
                        Moments::from_rows(&f, fid.extractor.dims())?
                    }
                };
                frechet_distance(&m, self.reference_moments()?)
            }
            MetricKind::Mse => {
                let r = self.reference()?;
                if r.len() != x.len() {
                    return Err(S3Error::Shape(
                        "samples and reference differ in size".into(),
                    ));
                }
                Ok(teacher::mse(x, r))
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
                let (None, Some(mixture)) = (self.fid(), self.dataset.exact_data()) else {
                    // FID on real data statistics: no exact data to draw from.
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
                    teacher_nfe: None,
                }))
            }
            MetricKind::Mse => {
                let info = self.reference_info()?;
                Ok(Some(Floor {
                    mean: info.doubling_mse,
                    std: 0.0,
                    draws: 0,
                    teacher_nfe: self.uses_teacher().then_some(info.nfe),
                }))
            }
        }
    }

    /// The reference outputs for MSE (after the decoder), computed once per evaluator and
    /// kept in the reference cache when it has one.
    pub fn reference(&self) -> Result<&[f32]> {
        Ok(&self.reference_entry()?.outputs)
    }

    /// Whether the MSE reference was taken from the reference cache (None before it was
    /// needed).
    pub fn reference_was_cached(&self) -> Option<bool> {
        self.reference.get().map(|r| r.cached)
    }

    /// How the MSE reference was obtained (model calls, the doubling check).
    pub fn reference_info(&self) -> Result<&ReferenceInfo> {
        Ok(&self.reference_entry()?.info)
    }

    /// The cache key of this evaluator's reference: model, noise schedule, noise, and how
    /// the reference is solved.
    fn reference_key(&self) -> String {
        format!(
            "{}|{}|seed={}|n={}|{}",
            self.dataset.identity(),
            self.ns.name(),
            self.seed,
            self.n,
            self.metric_id()
        )
    }

    fn reference_entry(&self) -> Result<&Reference> {
        if let Some(r) = self.reference.get() {
            return Ok(r);
        }
        let key = self.reference_key();
        let shape = self.dataset.output_shape();
        if let Some(cache) = &self.reference_cache
            && let Some(found) = cache.get(&key, shape)?
        {
            let (outputs, info) = found;
            return Ok(self.reference.get_or_init(|| Reference {
                outputs,
                info,
                cached: true,
            }));
        }
        let start = std::time::Instant::now();
        let (x, mut info) = if self.uses_teacher() {
            self.teacher_reference()?
        } else {
            self.exact_reference()?
        };
        info.seconds = start.elapsed().as_secs_f64();
        if let Some(cache) = &self.reference_cache {
            cache.put(&key, &x, shape, &info)?;
        }
        Ok(self.reference.get_or_init(|| Reference {
            outputs: x,
            info,
            cached: false,
        }))
    }

    /// A network's teacher: RK4 with [`Self::with_reference_nfe`] model calls from T to the
    /// schedule's default t_min, denoised there and decoded, checked against the solve with
    /// half the calls.
    fn teacher_reference(&self) -> Result<(Vec<f32>, ReferenceInfo)> {
        let (t0, t1) = (self.ns.t_max(), self.ns.t_min());
        let solves = teacher::teacher_solves(
            self.dataset.model(),
            self.ns,
            &self.initial_noise(t0),
            (t0, t1),
            self.reference_nfe,
        )?;
        let full = self.dataset.decode(solves.full)?;
        let half = self.dataset.decode(solves.half)?;
        let info = ReferenceInfo {
            nfe: solves.nfe,
            doubling_mse: teacher::mse(&full, &half),
            seconds: 0.0,
        };
        Ok((full, info))
    }

    /// A mixture's exact reference: the probability-flow ODE solved by RK4 from T to the
    /// schedule's default t_min (tolerance [`REFERENCE_TOL`]), then denoised with the exact
    /// x0 prediction there.
    fn exact_reference(&self) -> Result<(Vec<f32>, ReferenceInfo)> {
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
        let x0 = teacher::denoise(model, self.ns, &sol.x, t1)?;
        let info = ReferenceInfo {
            nfe: 4 * sol.steps + 1,
            doubling_mse: 0.0,
            seconds: 0.0,
        };
        Ok((x0, info))
    }
}

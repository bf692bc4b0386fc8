//! Evaluating schedules on a dataset: the [`Evaluator`] runs a schedule on the dataset's
//! model from fixed noise and measures it with the dataset's metric (FD or FD∞ against the
//! exact moments or FID statistics, KID against exact reference draws, or MSE to a reference
//! solve), next to the metric's [`Floor`].
//! It sits above both `dataset` (what is sampled) and `metric` (the pure maths), so neither
//! of those imports the other's evaluation logic.

use crate::dataset::{DataSource, Dataset};
use crate::error::{Result, S3Error};
use crate::metric::fd_inf::{
    FD_INF_SUBSET_SEED, fd_inf_settings_id, fd_inf_sizes, fd_inf_subsets, fd_infinity,
};
use crate::metric::kid::{
    KID_REFERENCE_SUBSET_SEED, KID_SAMPLE_SUBSET_SEED, KID_SUBSETS, KidReference, kid,
    kid_settings_id, kid_subset_size, kid_subsets,
};
use crate::metric::{
    DEFAULT_REFERENCE_NFE, FeatureMap, FrechetReference, MIN_REFERENCE_NFE, MetricKind, Moments,
    ReferenceCache, ReferenceInfo, check_sample_size, frechet_distance, prior_std, standard_noise,
    teacher,
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

/// Exact data draws in KID's reference set for a mixture (or a network's exact `data`): ten
/// times the largest subset, so the [`KID_SUBSETS`] reference subsets overlap little.
pub const KID_REFERENCE_SAMPLES: usize = 10_000;
/// The seed of KID's reference draws: fixed, so every evaluator of a dataset compares with the
/// same reference rows (the floor's draws are seeded from the noise seed, independently).
pub const KID_REFERENCE_SEED: u64 = 0x0c1d_da7a;
/// Reference draws are made and mapped to features this many at a time (bounds memory).
const KID_REFERENCE_CHUNK: usize = 1000;

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
    /// Printed in scientific notation: KID's values are of order 1e-4.
    #[serde(skip)]
    pub scientific: bool,
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
        } else if self.scientific {
            write!(
                f,
                "{:.3e} ± {:.3e} (mean ± std over {} draws)",
                self.mean, self.std, self.draws
            )
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
    /// Seconds spent computing the metric of the samples (not sampling them).
    pub metric_seconds: f64,
}

/// KID's reference side for one evaluator: the reference rows with their subsets, and the
/// sample-side subsets paired with them.
struct KidState {
    reference: KidReference,
    sample_subsets: Vec<Vec<usize>>,
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
    /// The reference statistics prepared for FD∞'s many distances.
    frechet: OnceLock<FrechetReference>,
    /// FD∞'s subsets of sample indices (they depend only on the sample count and dimension).
    fd_inf_subsets: OnceLock<Vec<Vec<usize>>>,
    /// KID's reference rows and both sides' subsets.
    kid: OnceLock<KidState>,
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
        let ev = Self {
            dataset,
            ns,
            kind,
            n,
            seed,
            z: standard_noise(n, dim, seed),
            features: FeatureMap::for_shape(dataset.output_shape()),
            exact: OnceLock::new(),
            frechet: OnceLock::new(),
            fd_inf_subsets: OnceLock::new(),
            kid: OnceLock::new(),
            reference: OnceLock::new(),
            reference_cache: None,
            reference_nfe: DEFAULT_REFERENCE_NFE,
        };
        ev.check_metric_available()?;
        Ok(ev)
    }

    /// The same evaluator measuring `kind` instead: the same dataset, noise schedule, sample
    /// count and noise, so its [`Self::value_of`] applies to this one's samples.
    pub fn with_kind(&self, kind: MetricKind) -> Result<Evaluator<'a>> {
        let ev = Evaluator::new(self.dataset, self.ns, kind, self.n, self.seed)?;
        match &self.reference_cache {
            Some(c) => Ok(ev.with_reference_cache(c.clone())),
            None => Ok(ev),
        }
    }

    /// Refuses, before any sampling, a metric the dataset cannot give: KID without reference
    /// feature rows (FID statistics hold only μ and Σ), FD∞ on too few samples.
    fn check_metric_available(&self) -> Result<()> {
        match self.kind {
            MetricKind::Kid => {
                if let Some(fid) = self.fid() {
                    return Err(S3Error::field(
                        "--metric",
                        "kid",
                        format!(
                            "{} is measured through FID statistics ({}), which hold only the \
                             mean and covariance of the reference features; KID needs the \
                             reference feature rows themselves. Use --metric fd-inf (or fd) \
                             with these statistics",
                            self.dataset.name,
                            fid.stats_path.display()
                        ),
                    ));
                }
                self.no_exact_data("kid").map_or(Ok(()), Err)
            }
            MetricKind::FdInf => fd_inf_sizes(self.n, self.feature_dim()).map(|_| ()),
            MetricKind::Fd | MetricKind::Mse => Ok(()),
        }
    }

    /// The error for a distribution metric `flag` on a dataset without exact data (None when
    /// it has some).
    fn no_exact_data(&self, flag: &str) -> Option<S3Error> {
        self.dataset.exact_data().is_none().then(|| {
            S3Error::field(
                "metric",
                flag,
                format!(
                    "{} has neither FID files nor exact data (`fid` / `data` in its model \
                     config); use --metric mse",
                    self.dataset.name
                ),
            )
        })
    }

    /// The number of features a distribution metric compares: the extractor's for a network
    /// with FID files, else the feature map's.
    pub fn feature_dim(&self) -> usize {
        match self.fid() {
            Some(fid) => fid.extractor.dims(),
            None => self.features.out_dim(),
        }
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
        let m = match self.dataset.exact_data() {
            Some(m) => m,
            None => return Err(self.no_exact_data(self.kind.as_str()).expect("no data")),
        };
        Ok(self.exact.get_or_init(|| self.features.mixture_moments(m)))
    }

    /// Builds what a distribution metric compares with (the exact moments, FD∞'s prepared
    /// reference, KID's reference draws and subsets) now rather than in the first
    /// evaluation, so that cost can be reported apart; nothing for MSE.
    pub fn prepare_reference(&self) -> Result<()> {
        match self.kind {
            MetricKind::Fd => self.reference_moments().map(|_| ()),
            MetricKind::FdInf => self.frechet_reference().map(|_| ()),
            MetricKind::Kid => self.kid_state().map(|_| ()),
            MetricKind::Mse => Ok(()),
        }
    }

    /// [`Self::reference_moments`] prepared for FD∞'s many distances.
    fn frechet_reference(&self) -> Result<&FrechetReference> {
        if let Some(r) = self.frechet.get() {
            return Ok(r);
        }
        let r = FrechetReference::new(self.reference_moments()?)?;
        Ok(self.frechet.get_or_init(|| r))
    }

    /// FD∞'s subsets for this evaluator's sample count and `d` features.
    fn fd_inf_subsets(&self, d: usize) -> Result<&[Vec<usize>]> {
        if let Some(s) = self.fd_inf_subsets.get() {
            return Ok(s);
        }
        let s = fd_inf_subsets(self.n, d, FD_INF_SUBSET_SEED)?;
        Ok(self.fd_inf_subsets.get_or_init(|| s))
    }

    /// KID's reference: [`KID_REFERENCE_SAMPLES`] exact data draws (seeded with
    /// [`KID_REFERENCE_SEED`]) through the feature map, with both sides' subsets; made once.
    fn kid_state(&self) -> Result<&KidState> {
        if let Some(k) = self.kid.get() {
            return Ok(k);
        }
        if let Some(e) = self.no_exact_data("kid") {
            return Err(e);
        }
        let mixture = self.dataset.exact_data().expect("checked above");
        let mut rng = StdRng::seed_from_u64(KID_REFERENCE_SEED);
        let mut rows = Vec::with_capacity(KID_REFERENCE_SAMPLES * self.features.out_dim());
        let mut left = KID_REFERENCE_SAMPLES;
        while left > 0 {
            let take = left.min(KID_REFERENCE_CHUNK);
            rows.extend(self.features.apply(&mixture.sample_data(take, &mut rng)));
            left -= take;
        }
        let m = kid_subset_size(self.n, KID_REFERENCE_SAMPLES);
        let ref_subsets = kid_subsets(
            KID_REFERENCE_SAMPLES,
            m,
            KID_SUBSETS,
            KID_REFERENCE_SUBSET_SEED,
        );
        let state = KidState {
            reference: KidReference::new(rows, self.features.out_dim(), ref_subsets)?,
            sample_subsets: kid_subsets(self.n, m, KID_SUBSETS, KID_SAMPLE_SUBSET_SEED),
        };
        Ok(self.kid.get_or_init(|| state))
    }

    /// The FID parts of a network measured through its extractor.
    fn fid(&self) -> Option<&crate::dataset::Fid> {
        match &self.dataset.source {
            DataSource::Network(n) => n.fid.as_ref(),
            DataSource::Mixture(_) => None,
        }
    }

    /// What the metric is computed on and how, for cache keys and reports: the feature map
    /// of a mixture (e.g. `fd/identity(64)`), or `fid/<extractor>/stats#<hash>` for a network;
    /// FD∞ and KID add their subset settings (and KID its reference draws), so a change of
    /// any of them is a new key.
    pub fn metric_id(&self) -> String {
        match (self.kind, self.fid()) {
            (MetricKind::Mse, _) if self.uses_teacher() => {
                format!("mse/teacher-rk4-nfe={}", self.reference_nfe)
            }
            (MetricKind::Mse, _) => format!("mse/tol={REFERENCE_TOL}"),
            (MetricKind::Fd, Some(fid)) => format!("fid/{}", fid.metric_id),
            (MetricKind::Fd, None) => format!("fd/{}", self.features.label),
            (MetricKind::FdInf, Some(fid)) => {
                format!("fid-inf[{}]/{}", fd_inf_settings_id(), fid.metric_id)
            }
            (MetricKind::FdInf, None) => {
                format!("fd-inf[{}]/{}", fd_inf_settings_id(), self.features.label)
            }
            (MetricKind::Kid, _) => format!(
                "kid[{},reference={KID_REFERENCE_SAMPLES}@{KID_REFERENCE_SEED:#x}]/{}",
                kid_settings_id(),
                self.features.label
            ),
        }
    }

    /// The metric's display name: `fid` (`fid-inf`) for FD (FD∞) through a network's
    /// extractor, otherwise the metric's own name.
    pub fn metric_label(&self) -> &'static str {
        match (self.kind, self.fid()) {
            (MetricKind::Fd, Some(_)) => "fid",
            (MetricKind::FdInf, Some(_)) => "fid-inf",
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
        Ok(self.evaluate_with_samples(schedule)?.0)
    }

    /// The metric of `schedule` and the outputs it was computed on (so other metrics of the
    /// same samples can be taken with [`Self::with_kind`] and [`Self::value_of`]).
    pub fn evaluate_with_samples(
        &self,
        schedule: &SolverSchedule,
    ) -> Result<(Evaluation, Vec<f32>)> {
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
        let start = std::time::Instant::now();
        let value = self.value_of(&x)?;
        let e = Evaluation {
            metric: self.kind,
            value,
            nfe: schedule.nfe,
            samples: self.n,
            metric_seconds: start.elapsed().as_secs_f64(),
        };
        Ok((e, x))
    }

    /// The metric of final outputs `x` (`n × prod(output shape)`, after the decoder; from
    /// this evaluator's noise for MSE).
    pub fn value_of(&self, x: &[f32]) -> Result<f64> {
        match self.kind {
            MetricKind::Fd => {
                let (rows, d) = self.feature_rows(x)?;
                frechet_distance(&Moments::from_rows(&rows, d)?, self.reference_moments()?)
            }
            MetricKind::FdInf => {
                let (rows, d) = self.feature_rows(x)?;
                let fit =
                    fd_infinity(&rows, d, self.frechet_reference()?, self.fd_inf_subsets(d)?)?;
                Ok(fit.value)
            }
            MetricKind::Kid => {
                let (rows, _) = self.feature_rows(x)?;
                let state = self.kid_state()?;
                Ok(kid(&rows, &state.reference, &state.sample_subsets)?.value)
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

    /// The feature rows of outputs `x` and their width: through the network's FID extractor,
    /// else the feature map.
    fn feature_rows(&self, x: &[f32]) -> Result<(Vec<f64>, usize)> {
        match self.fid() {
            None => Ok((self.features.apply(x), self.features.out_dim())),
            Some(fid) => {
                let images = Images::from_samples(x, self.dataset.output_shape())?;
                Ok((fid.extractor.features(&images)?, fid.extractor.dims()))
            }
        }
    }

    /// The metric's floor: what exact samples read with the same sample count. For FD, FD∞
    /// and KID, the mean and standard deviation over [`FLOOR_DRAWS`] independent sets of `n`
    /// exact data draws (seeded from the noise seed), so a reader sees both the bias and the
    /// noise of the estimator (FD's floor is its bias; FD∞'s and KID's are ≈ 0 within their
    /// noise); for MSE, exactly 0 (the reference itself; its own error is below
    /// [`REFERENCE_TOL`]).
    pub fn floor(&self) -> Result<Option<Floor>> {
        match self.kind {
            MetricKind::Fd | MetricKind::FdInf | MetricKind::Kid => {
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
                    scientific: self.kind == MetricKind::Kid,
                }))
            }
            MetricKind::Mse => {
                let info = self.reference_info()?;
                Ok(Some(Floor {
                    mean: info.doubling_mse,
                    std: 0.0,
                    draws: 0,
                    teacher_nfe: self.uses_teacher().then_some(info.nfe),
                    scientific: false,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluator<'a>(
        ds: &'a Dataset,
        ns: &'a NoiseSchedule,
        kind: MetricKind,
        n: usize,
    ) -> Result<Evaluator<'a>> {
        Evaluator::new(ds, ns, kind, n, 0)
    }

    /// Each metric has its own cache key, and FD∞ / KID keys carry their subset settings.
    #[test]
    fn metric_ids_differ_per_metric_and_name_the_settings() {
        let ds = Dataset::load("toy2d").unwrap();
        let ns = ds.noise.build();
        let ids: Vec<String> = <MetricKind as crate::names::Named>::ALL
            .iter()
            .map(|&k| evaluator(&ds, &ns, k, 300).unwrap().metric_id())
            .collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        assert_eq!(ids[0], "fd/identity(2)", "FD's key is unchanged");
        assert!(ids[1].starts_with("fd-inf[points=15,") && ids[1].contains("seed="));
        assert!(
            ids[2].starts_with("kid[subsets=100,size=min(1000,n)")
                && ids[2].contains("reference=10000")
        );
    }

    #[test]
    fn fd_inf_on_too_few_samples_is_refused_up_front() {
        let ds = Dataset::load("digits").unwrap();
        let ns = ds.noise.build();
        let e = evaluator(&ds, &ns, MetricKind::FdInf, 100)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--samples") && e.contains("260"), "{e}");
    }

    /// On exact toy2d draws FD∞ and KID read ≈ 0 (within a few floor std); FD reads its
    /// (small, in 2 dimensions) positive bias.
    #[test]
    fn unbiased_floors_are_near_zero() {
        let ds = Dataset::load("toy2d").unwrap();
        let ns = ds.noise.build();
        for kind in [MetricKind::FdInf, MetricKind::Kid] {
            let f = evaluator(&ds, &ns, kind, 600)
                .unwrap()
                .floor()
                .unwrap()
                .unwrap();
            assert!(f.mean.abs() < 3.0 * f.std, "{kind:?}: {f}");
        }
        let fd = evaluator(&ds, &ns, MetricKind::Fd, 600)
            .unwrap()
            .floor()
            .unwrap()
            .unwrap();
        assert!(fd.mean > 0.0, "{fd}");
    }
}

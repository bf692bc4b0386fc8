//! The configuration of one search run, stored with the run so `--resume` needs no flags.

use crate::error::{Result, S3Error};
use crate::metric::MetricKind;
use crate::names::Named;
use crate::noise::NoiseScheduleSpec;
use crate::refine::Knobs;
use crate::solver::{ClassicSolver, MAX_NFE};
use serde::{Deserialize, Serialize};

/// Which strategy proposes candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    /// S³: seed with the classic solvers and random schedules, then let a predictor trained
    /// on the trials so far pick each stage's candidates from a large evolved pool.
    S3,
    /// Seed with the classic solvers, then evolve (USF's search), without a predictor.
    Evolution,
    /// Uniform random schedules from the space.
    Random,
}

impl Named for StrategyKind {
    const KIND: &'static str = "strategy";
    const ALL: &'static [Self] = &[Self::S3, Self::Evolution, Self::Random];
}

impl StrategyKind {
    /// Parses `--strategy`.
    pub fn parse(s: &str) -> Result<Self> {
        <Self as Named>::from_name(s)
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        self.name()
    }
}

/// How many of the search's best schedules the final ranking re-evaluates by default.
pub const DEFAULT_FINAL_TOP: usize = 5;

/// How many of the search's best schedules are refined by default.
pub const DEFAULT_REFINE_TOP: usize = 2;
/// Samples of the cheap tier (MSE to the exact solution or the teacher) by default.
pub const DEFAULT_REFINE_SAMPLES: usize = 256;
/// Cheap-tier measurements a refinement may make by default; its model-call budget is this
/// times NFE times the tier's samples.
pub const DEFAULT_REFINE_MEASUREMENTS: u64 = 300;

/// The continuous refinement after the discrete search: the best `top` distinct schedules
/// have their timesteps, relaxation coefficients and model-time offsets tuned on the cheap
/// tier, and each refined schedule then pays one true-metric trial, which decides whether
/// it is kept (it enters the ranking only through that trial).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefineConfig {
    pub top: usize,
    /// Samples of the cheap tier (MSE, noise seed derived from the run's).
    pub samples: usize,
    /// Model calls (samples × NFE per measurement) each refinement may spend.
    pub calls: u64,
    pub knobs: Knobs,
}

impl RefineConfig {
    /// The default refinement of an NFE-`nfe` search.
    pub fn default_for(nfe: usize) -> Self {
        Self {
            top: DEFAULT_REFINE_TOP,
            samples: DEFAULT_REFINE_SAMPLES,
            calls: DEFAULT_REFINE_MEASUREMENTS * (nfe * DEFAULT_REFINE_SAMPLES) as u64,
            knobs: Knobs::ALL,
        }
    }
}

/// Everything that defines a search run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// Dataset preset name or mixture file path.
    pub dataset: String,
    pub noise: NoiseScheduleSpec,
    pub nfe: usize,
    pub strategy: StrategyKind,
    /// Search space name or file.
    pub space: String,
    /// True-metric evaluations the search may spend (distinct candidates evaluated in this
    /// run, whether computed or served by the store's cache).
    pub budget: usize,
    pub seed: u64,
    pub metric: MetricKind,
    /// Samples per evaluation during the search.
    pub samples: usize,
    /// Candidates evaluated per stage.
    pub stage_size: usize,
    /// How many of the best schedules are re-evaluated at the end.
    pub final_top: usize,
    /// Samples per final re-evaluation (on other noise: seed + 1).
    pub final_samples: usize,
    /// A saved predictor (path stem, without `.json`/`.safetensors`) that the `s3` strategy
    /// starts from instead of fresh weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predictor: Option<String>,
    /// The models directory of a real-network dataset (absolute), so `--resume` finds the
    /// same files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models_dir: Option<String>,
    /// Model calls of a network's teacher for the MSE metric (None: the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_nfe: Option<usize>,
    /// A classic solver whose decisions every candidate keeps (`--solver`): only the
    /// model-call times are searched, so a plain-list export for that solver is lossless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub solver: Option<ClassicSolver>,
    /// The dataset's identity (its name, noise schedule and the hash of every file it reads)
    /// when the run was created: a resume refuses a changed model or mixture file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_identity: Option<String>,
    /// The search space's hash when the run was created: a resume refuses a changed space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_hash: Option<String>,
    /// The continuous refinement after the search (None: none; runs made before it existed
    /// read as None and resume unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine: Option<RefineConfig>,
}

impl SearchConfig {
    /// Checks the numbers a user typed.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, m: &str| Err(S3Error::field("search", f, m));
        if self.nfe == 0 || self.nfe > MAX_NFE {
            return bad("--nfe", &format!("expected 1 to {MAX_NFE} model calls"));
        }
        if self.budget == 0 {
            return bad("--budget", "must be at least 1");
        }
        if self.samples < 2 || self.final_samples < 2 {
            return bad("--samples", "must be at least 2");
        }
        if self.stage_size == 0 {
            return bad("--stage-size", "must be at least 1");
        }
        if let Some(r) = &self.refine {
            if r.top == 0 {
                return bad("--refine", "must be at least 1 (or use --no-refine)");
            }
            if r.samples < 2 {
                return bad("--refine-samples", "must be at least 2");
            }
            if r.calls < (self.nfe * r.samples) as u64 {
                return bad(
                    "--refine-calls",
                    &format!(
                        "{} model calls cannot pay one cheap measurement ({} = NFE {} × {} samples)",
                        r.calls,
                        self.nfe * r.samples,
                        self.nfe,
                        r.samples
                    ),
                );
            }
        }
        if self.predictor.is_some() && self.strategy != StrategyKind::S3 {
            return bad(
                "--predictor",
                "only the s3 strategy uses a predictor; drop --predictor or use --strategy s3",
            );
        }
        Ok(())
    }
}

//! The configuration of one search run, stored with the run so `--resume` needs no flags.

use crate::error::{Result, S3Error};
use crate::metric::MetricKind;
use crate::names::Named;
use crate::noise::NoiseScheduleSpec;
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
        if self.predictor.is_some() && self.strategy != StrategyKind::S3 {
            return bad(
                "--predictor",
                "only the s3 strategy uses a predictor; drop --predictor or use --strategy s3",
            );
        }
        Ok(())
    }
}

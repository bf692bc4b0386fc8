//! The search-space file: which decisions a search may take and how likely each is.

use crate::error::{Result, S3Error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The value of the `format` field.
pub const SPACE_FORMAT: &str = "s3-search-space";
/// The schema version this build reads.
pub const SPACE_VERSION: u32 = 1;

/// The coordinate in which new interior timesteps are drawn and jittered. Both are
/// normalised to u ∈ [0, 1] from t_start (u = 0) to the noise schedule's t_min (u = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeCoordinate {
    /// Uniform in t (USF's choice for VP models).
    T,
    /// Uniform in λ = log-SNR (scale-free; suits EDM's σ range).
    Lambda,
}

/// Where timesteps may go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpace {
    pub coordinate: TimeCoordinate,
    /// The final time is drawn uniformly in [a·t_min, b·t_min], t_min being the noise
    /// schedule's default end (1e-3 for vp-linear: USF's [1e-4, 1e-3] is [0.1, 1.0]),
    /// clamped below at the schedule's `t_floor` (where it stops being defined: the first
    /// training time of a discrete schedule, EDM's σ_min), so one space fits every schedule.
    pub t_end_relative: [f64; 2],
    /// Std of the Gaussian jitter of a timestep, in u units.
    pub jitter_std: f64,
    /// Smallest allowed gap between neighbouring timesteps, in u units.
    pub min_gap: f64,
}

/// Probabilities of each choice (normalised on load).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Priors {
    /// Taylor order 1–4 (capped at i + 1 for step i).
    pub order: BTreeMap<String, f64>,
    /// `noise` / `data`.
    pub prediction: BTreeMap<String, f64>,
    /// Number of points for the first derivative (USF's "low-order estimation" when fewer
    /// than order − 1).
    pub first_derivative_points: BTreeMap<String, f64>,
    /// Probability that the first derivative carries a linear relaxation 1 + c·h.
    pub linear_relaxation: f64,
    /// Initial values of c (one drawn uniformly), then jittered by `relaxation_std`.
    pub relaxation_values: Vec<f64>,
    pub relaxation_std: f64,
    /// Probability of a pseudo corrector on a step (never on the last).
    pub corrector: f64,
    /// `none` / `zero_x0` / `average_x0`.
    pub afs: BTreeMap<String, f64>,
}

/// Mutation probabilities (USF §3a).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mutation {
    /// Insert a step (its NFE is then restored by deleting another).
    pub add_step: f64,
    /// Delete an interior step (restored likewise).
    pub delete_step: f64,
    /// Per step: each decision is resampled with this probability.
    pub per_step: f64,
    /// Resample the analytical first step.
    pub afs: f64,
}

/// Crossover probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crossover {
    /// Probability that a child comes from two parents (else from one, mutated).
    pub probability: f64,
    /// Probability of recombining per step rather than per whole list.
    pub deep: f64,
}

/// Evolution settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evolution {
    /// Parents are drawn from the best `rank_bar` schedules of the target NFE.
    pub rank_bar: usize,
}

/// A search space file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpace {
    pub format: String,
    pub version: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub time: TimeSpace,
    pub priors: Priors,
    pub mutation: Mutation,
    pub crossover: Crossover,
    pub evolution: Evolution,
    /// Settings of the predictor-guided `s3` strategy (defaults when the section is absent).
    #[serde(default)]
    pub s3: S3Settings,
}

/// How the `s3` strategy spends each stage: it generates `pool` candidates (a share
/// `evolve_fraction` evolved from the best, the rest random), ranks them with the predictor
/// and evaluates the best-ranked, except for a share `exploration` drawn at random from the
/// pool, so that a misled predictor cannot lock the search into one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Settings {
    /// Candidates generated and scored per stage.
    pub pool: usize,
    /// Share of the pool evolved from the best schedules (the rest is random).
    pub evolve_fraction: f64,
    /// Share of each stage's evaluations picked at random from the pool, not by score.
    pub exploration: f64,
    /// Random schedules evaluated after the classic seeds before the first predictor is
    /// trained (a warm-start predictor is used from the first stage instead).
    pub warmup: usize,
    /// Share of the trials held out of training to measure the predictor's Kendall τ.
    pub holdout: f64,
}

impl Default for S3Settings {
    /// Pool 500, 90 % evolved, 20 % exploration, 20 random warm-up trials, 20 % held out.
    fn default() -> Self {
        Self {
            pool: 500,
            evolve_fraction: 0.9,
            exploration: 0.2,
            warmup: 20,
            holdout: 0.2,
        }
    }
}

/// The most candidates one stage may generate and score (`s3.pool`): each is a schedule
/// held in memory and scored by the predictor, and 10⁵ already takes minutes a stage.
pub const MAX_POOL: usize = 100_000;
/// The most random warm-up trials (`s3.warmup`).
pub const MAX_WARMUP: usize = 100_000;
/// The most best schedules parents are drawn from (`evolution.rank_bar`).
pub const MAX_RANK_BAR: usize = 100_000;

/// The shipped spaces, embedded so a search runs with no files around.
const BUILTIN: [(&str, &str); 2] = [
    ("usf", include_str!("../../search_spaces/usf.json")),
    ("quick", include_str!("../../search_spaces/quick.json")),
];

impl SearchSpace {
    /// A stable identity of the space's contents (blake3 of its JSON, 32 hex digits).
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("spaces serialise");
        blake3::hash(&json).to_hex()[..32].to_string()
    }

    /// A shipped space by name (`usf`, `quick`) or a path to a space file.
    pub fn load(name_or_path: &str) -> Result<Self> {
        if let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name_or_path) {
            return Self::from_str(text, &format!("search space `{name_or_path}`"));
        }
        let path = Path::new(name_or_path);
        if !path.exists() && !name_or_path.ends_with(".json") {
            return Err(S3Error::UnknownName {
                kind: "search space",
                name: name_or_path.into(),
                expected: "usf, quick, or a path to a search-space .json file".into(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|e| S3Error::io(path, e))?;
        Self::from_str(&text, &path.display().to_string())
    }

    /// Parses and validates a space; `context` names the source in errors.
    pub fn from_str(text: &str, context: &str) -> Result<Self> {
        let s: SearchSpace = serde_json::from_str(text).map_err(|e| S3Error::Json {
            path: context.into(),
            message: format!("not a valid search space: {e}"),
        })?;
        s.validate(context)?;
        Ok(s)
    }

    fn validate(&self, ctx: &str) -> Result<()> {
        let bad = |f: &str, m: String| Err(S3Error::field(ctx, f, m));
        if self.format != SPACE_FORMAT {
            return bad(
                "format",
                format!("{:?}; expected {SPACE_FORMAT:?}", self.format),
            );
        }
        if self.version != SPACE_VERSION {
            return bad(
                "version",
                format!("{}; this build reads {SPACE_VERSION}", self.version),
            );
        }
        self.time.validate(ctx)?;
        self.validate_priors(ctx)?;
        self.validate_probabilities(ctx)?;
        self.validate_sizes(ctx)?;
        if !(0.0..0.9).contains(&self.s3.holdout) {
            return bad(
                "s3.holdout",
                format!("{}; expected a fraction in [0, 0.9)", self.s3.holdout),
            );
        }
        Ok(())
    }

    fn validate_priors(&self, ctx: &str) -> Result<()> {
        let p = &self.priors;
        check_prior(ctx, "priors.order", &p.order, &["1", "2", "3", "4"])?;
        check_prior(ctx, "priors.prediction", &p.prediction, &["noise", "data"])?;
        check_prior(
            ctx,
            "priors.first_derivative_points",
            &p.first_derivative_points,
            &["1", "2", "3"],
        )?;
        check_prior(
            ctx,
            "priors.afs",
            &p.afs,
            &["none", "zero_x0", "average_x0"],
        )?;
        if p.relaxation_values.is_empty() || p.relaxation_values.iter().any(|v| !v.is_finite()) {
            return Err(S3Error::field(
                ctx,
                "priors.relaxation_values",
                "expected a non-empty list of numbers",
            ));
        }
        if !(p.relaxation_std >= 0.0 && p.relaxation_std.is_finite()) {
            return Err(S3Error::field(
                ctx,
                "priors.relaxation_std",
                "expected a finite number ≥ 0",
            ));
        }
        Ok(())
    }

    fn validate_probabilities(&self, ctx: &str) -> Result<()> {
        let probs = [
            ("priors.linear_relaxation", self.priors.linear_relaxation),
            ("priors.corrector", self.priors.corrector),
            ("mutation.add_step", self.mutation.add_step),
            ("mutation.delete_step", self.mutation.delete_step),
            ("mutation.per_step", self.mutation.per_step),
            ("mutation.afs", self.mutation.afs),
            ("crossover.probability", self.crossover.probability),
            ("crossover.deep", self.crossover.deep),
            ("s3.evolve_fraction", self.s3.evolve_fraction),
            ("s3.exploration", self.s3.exploration),
        ];
        match probs.iter().find(|(_, p)| !(0.0..=1.0).contains(p)) {
            Some((f, p)) => Err(S3Error::field(
                ctx,
                *f,
                format!("{p}; expected a probability in [0, 1]"),
            )),
            None => Ok(()),
        }
    }

    /// The counts, each between 1 (0 for the warm-up) and its named limit, so an oversized
    /// space is refused when it is loaded, before a run is recorded or anything allocated.
    fn validate_sizes(&self, ctx: &str) -> Result<()> {
        let sizes = [
            (
                "evolution.rank_bar",
                self.evolution.rank_bar,
                1,
                MAX_RANK_BAR,
            ),
            ("s3.pool", self.s3.pool, 1, MAX_POOL),
            ("s3.warmup", self.s3.warmup, 0, MAX_WARMUP),
        ];
        match sizes.iter().find(|(_, n, lo, hi)| !(*lo..=*hi).contains(n)) {
            Some((f, n, lo, hi)) => Err(S3Error::field(
                ctx,
                *f,
                format!("{n}; expected {lo} to {hi}"),
            )),
            None => Ok(()),
        }
    }
}

impl TimeSpace {
    fn validate(&self, ctx: &str) -> Result<()> {
        let bad = |f: &str, m: String| Err(S3Error::field(ctx, f, m));
        let [a, b] = self.t_end_relative;
        if !(a > 0.0 && a <= b && b.is_finite()) {
            return bad(
                "time.t_end_relative",
                format!("[{a}, {b}]; expected 0 < a ≤ b"),
            );
        }
        if !(self.jitter_std >= 0.0 && self.jitter_std < 1.0) {
            return bad(
                "time.jitter_std",
                format!("{}; expected in [0, 1)", self.jitter_std),
            );
        }
        if !(self.min_gap > 0.0 && self.min_gap < 0.1) {
            return bad(
                "time.min_gap",
                format!("{}; expected in (0, 0.1)", self.min_gap),
            );
        }
        Ok(())
    }
}

fn check_prior(ctx: &str, field: &str, p: &BTreeMap<String, f64>, keys: &[&str]) -> Result<()> {
    for (k, v) in p {
        if !keys.contains(&k.as_str()) {
            return Err(S3Error::field(
                ctx,
                field,
                format!("unknown choice `{k}`; expected some of {}", keys.join(", ")),
            ));
        }
        if !(v.is_finite() && *v >= 0.0) {
            return Err(S3Error::field(
                ctx,
                field,
                format!("`{k}`: {v}; expected ≥ 0"),
            ));
        }
    }
    if p.values().sum::<f64>() <= 0.0 {
        return Err(S3Error::field(
            ctx,
            field,
            "expected at least one positive weight",
        ));
    }
    Ok(())
}

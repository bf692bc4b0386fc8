//! The interface every search strategy implements: given the archive of evaluated schedules,
//! propose the next stage's candidates. The runner owns evaluation, budget, storage, events
//! and the classic seeds (proposed first, whatever the strategy), so strategies compare at
//! an equal budget of true evaluations.

use super::source::TrialSource;
use crate::error::Result;
use crate::solver::SolverSchedule;
use crate::space::Candidates;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// A candidate and where it came from (recorded with the trial).
#[derive(Debug, Clone)]
pub struct Proposal {
    pub schedule: SolverSchedule,
    pub source: TrialSource,
}

/// An evaluated candidate.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub schedule: SolverSchedule,
    pub hash: String,
    pub value: f64,
}

/// How well a strategy's surrogate model (a predictor of the metric) did in a stage:
/// reported in the stage event and kept in the run's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorStats {
    /// Evaluated trials it was trained on (0: a warm-start predictor used as loaded).
    pub trials: usize,
    /// Kendall τ between its scores and the true metric on its training trials.
    pub train_tau: Option<f64>,
    /// The same on the held-out trials.
    pub holdout_tau: Option<f64>,
    /// Candidates scored this stage.
    pub scored: usize,
    /// Training and scoring time, seconds.
    pub seconds: f64,
}

/// What a strategy proposes for one stage.
#[derive(Debug, Clone, Default)]
pub struct StageProposal {
    /// Up to the requested number of candidates, best first when the strategy ranks them.
    pub proposals: Vec<Proposal>,
    /// The strategy's surrogate model in this stage, when it used one.
    pub report: Option<PredictorStats>,
}

impl StageProposal {
    /// Proposals without a surrogate report.
    pub fn plain(proposals: Vec<Proposal>) -> Self {
        Self {
            proposals,
            report: None,
        }
    }
}

/// Proposes candidates stage by stage.
pub trait Strategy {
    /// Up to `n` new candidates given everything evaluated so far (in any order).
    fn propose(
        &mut self,
        ops: &Candidates,
        archive: &[Evaluated],
        n: usize,
        rng: &mut StdRng,
    ) -> Result<StageProposal>;
}

//! The records the store keeps: runs, trials and cached evaluations, as they are serialised
//! (JSON) into the sled trees.

use serde::{Deserialize, Serialize};

use super::keys::EvalKey;

/// One true-metric evaluation as the cache keeps it: what the search needs to reuse the
/// value without paying for it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedEval {
    /// The metric value (finite; lower is better for every metric s3 has).
    pub value: f64,
    /// Model calls per sample the evaluated schedule made.
    pub nfe: usize,
    /// Wall-clock seconds the evaluation cost, so reports can say what the cache saved.
    pub seconds: f64,
}

/// Where a trial is in its life. Only `Running` trials change; `Finished` and `Failed` are
/// final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Proposed and being evaluated (or interrupted, until the store is reopened).
    Running,
    /// Evaluated; `value` holds the metric. Immutable.
    Finished,
    /// Could not be evaluated (or was interrupted by a crash); `error` says why. Immutable.
    Failed,
}

/// One schedule proposed by a search run and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// The run that proposed it.
    pub run_id: String,
    /// 0, 1, 2 … within the run, assigned by the store in proposal order.
    pub number: u64,
    /// Hex hash of the canonical schedule (computed by the caller); the eval-cache key of a
    /// finished trial carries the same hash.
    pub schedule_hash: String,
    /// The full schedule JSON, so a run can be exported without re-deriving anything.
    pub schedule: serde_json::Value,
    /// Search stage that proposed it.
    pub stage: u32,
    /// What proposed it, e.g. "seed:dpm-solver++(2M)", "mutation", "random".
    pub source: String,
    /// Running, Finished or Failed.
    pub status: TrialStatus,
    /// The metric when finished.
    pub value: Option<f64>,
    /// True if the value came from the evaluation cache (nothing was paid for it).
    pub cached: bool,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was begun (seconds since the Unix epoch).
    pub created_unix: f64,
    /// When it finished or failed.
    pub finished_unix: Option<f64>,
}

/// One search run: its configuration (fixed at creation) and the latest checkpoint of the
/// strategy's state, so `--resume` continues where the run stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id (non-empty, no control characters).
    pub id: String,
    /// The search configuration, immutable after creation.
    pub config: serde_json::Value,
    /// The latest checkpoint of the strategy's state (replaced on every checkpoint; `null`
    /// before the first).
    pub state: serde_json::Value,
    /// When the run was created (seconds since the Unix epoch).
    pub created_unix: f64,
    /// When the state was last checkpointed (or the run created).
    pub updated_unix: f64,
}

/// What the `evals` tree holds under a key digest: the full key (so a lookup can check it
/// got the evaluation it asked for, not a digest collision) and where the value came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct EvalRecord {
    /// The key whose digest this record is stored under.
    pub key: EvalKey,
    /// The evaluation.
    pub eval: CachedEval,
    /// The run and trial that paid for it.
    pub run_id: String,
    /// The trial number within `run_id`.
    pub trial: u64,
    /// When it was stored.
    pub created_unix: f64,
}

impl Trial {
    /// Whether a crash or kill interrupted this trial (the store marked it Failed when it
    /// was reopened): it was never evaluated, so it does not count against a budget.
    pub fn was_interrupted(&self) -> bool {
        self.status == TrialStatus::Failed && self.error.as_deref() == Some(super::INTERRUPTED)
    }
}

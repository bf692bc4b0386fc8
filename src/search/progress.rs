//! What a run has done so far: rebuilt from its trials in the store on (re)start, updated
//! after every trial. It holds the archive the strategies propose from, the best schedule,
//! the best classic seed and the measured cost per evaluation.

use super::evaluations::Measured;
use super::source::TrialSource;
use super::strategy::Evaluated;
use crate::error::{Result, S3Error};
use crate::solver::SolverSchedule;
use crate::store::{Store, TrialStatus};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// The best classic seed so far.
#[derive(Debug, Clone)]
pub(super) struct ClassicBest {
    /// The solver and spacing, e.g. `dpm-solver++(2M) logSNR`.
    pub(super) label: String,
    pub(super) value: f64,
    pub(super) schedule: SolverSchedule,
}

/// A run's progress.
#[derive(Default)]
pub(super) struct Progress {
    pub(super) archive: Vec<Evaluated>,
    pub(super) seen: HashSet<String>,
    /// Trials counted against the budget (finished or failed in evaluation).
    pub(super) evaluated: usize,
    pub(super) best: Option<Evaluated>,
    pub(super) best_classic: Option<ClassicBest>,
    /// The classic label of every seed evaluated, by schedule hash, so a ranking never calls
    /// a classic solver "searched".
    pub(super) seed_labels: HashMap<String, String>,
    /// The hashes of refined schedules (never refined again: the parents of a refinement
    /// are the search's own best, the same on every resume).
    pub(super) refined: HashSet<String>,
    /// Evaluations computed (not served by the cache) by this process, and when the first
    /// of them started.
    pub(super) computed: usize,
    first_computed: Option<Instant>,
    /// The expected cost of the final ranking's own MSE reference (other noise, more
    /// samples), seconds; 0 for other metrics.
    pub(super) final_reference_s: f64,
}

impl Progress {
    /// Rebuilds run `run_id`'s progress from its trials (trials a crash interrupted were
    /// never evaluated and do not count).
    pub(super) fn load(store: &Store, run_id: &str) -> Result<Self> {
        let mut p = Progress::default();
        for t in store.trials(run_id)? {
            if t.was_interrupted() {
                continue;
            }
            let source = TrialSource::parse(&t.source);
            p.evaluated += usize::from(source.counts_against_budget());
            p.seen.insert(t.schedule_hash.clone());
            let (TrialStatus::Finished, Some(value)) = (t.status, t.value) else {
                continue;
            };
            let schedule: SolverSchedule =
                serde_json::from_value(t.schedule).map_err(|e| S3Error::Store {
                    path: store.path().into(),
                    message: format!("run {run_id} trial {}: bad schedule: {e}", t.number),
                })?;
            let e = Evaluated {
                schedule,
                hash: t.schedule_hash,
                value,
            };
            p.record(e, &source);
        }
        Ok(p)
    }

    /// Adds a finished evaluation; true when it is the best so far.
    pub(super) fn record(&mut self, e: Evaluated, source: &TrialSource) -> bool {
        if let Some(label) = source.classic_label() {
            self.seed_labels.insert(e.hash.clone(), label.to_string());
            if self.best_classic.as_ref().is_none_or(|b| e.value < b.value) {
                self.best_classic = Some(ClassicBest {
                    label: label.to_string(),
                    value: e.value,
                    schedule: e.schedule.clone(),
                });
            }
        }
        if *source == TrialSource::Refined {
            self.refined.insert(e.hash.clone());
        }
        let improved = self.best_value().is_none_or(|b| e.value < b);
        if improved {
            self.best = Some(e.clone());
        }
        self.archive.push(e);
        improved
    }

    /// Counts one trial from `source` against the budget (unless it is outside it), and its
    /// cost when it was computed; true when it is the first computed evaluation of this
    /// process (the cost estimate can be made).
    pub(super) fn count(&mut self, measured: Option<&Measured>, source: &TrialSource) -> bool {
        self.evaluated += usize::from(source.counts_against_budget());
        let Some(m) = measured.filter(|m| m.computed) else {
            return false;
        };
        self.computed += 1;
        if self.first_computed.is_none() {
            self.first_computed = Instant::now().checked_sub(Duration::from_secs_f64(m.seconds));
        }
        self.computed == 1
    }

    /// The best `n` distinct schedules the search itself found (refined ones excluded),
    /// best first.
    pub(super) fn best_unrefined(&self, n: usize) -> Vec<Evaluated> {
        let mut found: Vec<&Evaluated> = self
            .archive
            .iter()
            .filter(|e| !self.refined.contains(&e.hash))
            .collect();
        found.sort_by(|a, b| a.value.total_cmp(&b.value));
        let mut taken = HashSet::new();
        found
            .into_iter()
            .filter(|e| taken.insert(e.hash.clone()))
            .take(n)
            .cloned()
            .collect()
    }

    /// The best value so far.
    pub(super) fn best_value(&self) -> Option<f64> {
        self.best.as_ref().map(|b| b.value)
    }

    /// Wall seconds per computed evaluation since the first one started: the evaluation
    /// itself and everything the search does around it (proposals, predictor training,
    /// the store), so the estimate covers the whole run.
    pub(super) fn seconds_each(&self) -> Option<f64> {
        let start = self.first_computed?;
        Some(start.elapsed().as_secs_f64() / self.computed.max(1) as f64)
    }
}

//! The one place a search pays for true-metric evaluations: every value comes from the
//! store's evaluation cache when it holds it and is computed (then cached) otherwise, and a
//! trial is recorded in the store before and after its evaluation. Seeds, stages and the
//! final ranking all go through here, so no evaluation is ever paid twice.

use crate::error::Result;
use crate::eval::Evaluator;
use crate::search::strategy::Proposal;
use crate::solver::SolverSchedule;
use crate::space::schedule_hash;
use crate::store::{CachedEval, EvalKey, Store};
use std::time::Instant;

/// One measured value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Measured {
    pub(super) value: f64,
    /// Whether it was computed now (false: served by the cache).
    pub(super) computed: bool,
    /// Seconds the computation took (0 from the cache).
    pub(super) seconds: f64,
}

/// A trial as the store recorded it: its number, and its value or why it failed.
pub(super) struct TrialResult {
    pub(super) number: u64,
    pub(super) outcome: std::result::Result<Measured, String>,
}

/// Cache-or-compute evaluations and trial records for one run on one model.
pub(super) struct Evaluations<'a> {
    store: &'a Store,
    run_id: String,
    /// The model's identity: part of every cache key.
    model: String,
}

impl<'a> Evaluations<'a> {
    pub(super) fn new(store: &'a Store, run_id: &str, model: String) -> Self {
        Self {
            store,
            run_id: run_id.to_string(),
            model,
        }
    }

    fn key(&self, ev: &Evaluator, hash: &str) -> EvalKey {
        EvalKey {
            schedule_hash: hash.to_string(),
            model: self.model.clone(),
            metric: ev.metric_id(),
            samples: ev.samples(),
            noise_seed: ev.seed(),
        }
    }

    /// The cached evaluation under `key`, or `s` evaluated now (not yet cached). The outer
    /// error is the store's; the inner one the evaluation's (the schedule's failure).
    fn cached_or_computed(
        &self,
        ev: &Evaluator,
        key: &EvalKey,
        s: &SolverSchedule,
    ) -> Result<Result<(CachedEval, bool)>> {
        if let Some(c) = self.store.cached_eval(key)? {
            return Ok(Ok((c, false)));
        }
        let start = Instant::now();
        Ok(ev.evaluate(s).map(|e| {
            let c = CachedEval {
                value: e.value,
                nfe: e.nfe,
                seconds: start.elapsed().as_secs_f64(),
            };
            (c, true)
        }))
    }

    /// The metric of `s` (outside any trial: the final ranking, an export's measurement),
    /// cached when computed.
    pub(super) fn value(&self, ev: &Evaluator, s: &SolverSchedule) -> Result<Measured> {
        self.value_or_failure(ev, s)?
    }

    /// [`Self::value`] with the schedule's own failure (from the model or the metric) as the
    /// inner error, so a caller can go on; store errors are the outer error. Failures are
    /// not cached.
    pub(super) fn value_or_failure(
        &self,
        ev: &Evaluator,
        s: &SolverSchedule,
    ) -> Result<Result<Measured>> {
        let key = self.key(ev, &schedule_hash(s));
        let (c, computed) = match self.cached_or_computed(ev, &key, s)? {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        if computed {
            self.store.put_eval(&key, &c, &self.run_id)?;
        }
        Ok(Ok(measured(&c, computed)))
    }

    /// Evaluates `p` (whose hash is `hash`) as trial of `stage`: begun in the store, then
    /// finished with its value (which the store also caches) or failed with the evaluation's
    /// error. Store errors are errors; an evaluation's error is the trial's outcome.
    pub(super) fn trial(
        &self,
        ev: &Evaluator,
        p: &Proposal,
        hash: &str,
        stage: u32,
    ) -> Result<TrialResult> {
        let json = serde_json::to_value(&p.schedule).expect("schedules serialise");
        let source = p.source.to_string();
        let trial = self
            .store
            .begin_trial(&self.run_id, hash, json, stage, &source)?;
        let key = self.key(ev, hash);
        let outcome = match self.cached_or_computed(ev, &key, &p.schedule)? {
            Ok((c, computed)) => {
                let cached = !computed;
                self.store
                    .finish_trial(&self.run_id, trial.number, &key, &c, cached)?;
                Ok(measured(&c, computed))
            }
            Err(e) => {
                let msg = e.to_string();
                self.store.fail_trial(&self.run_id, trial.number, &msg)?;
                Err(msg)
            }
        };
        Ok(TrialResult {
            number: trial.number,
            outcome,
        })
    }
}

fn measured(c: &CachedEval, computed: bool) -> Measured {
    Measured {
        value: c.value,
        computed,
        seconds: if computed { c.seconds } else { 0.0 },
    }
}

//! What a search reports while it runs: one [`Event`] per trial, stage and phase, appended
//! to the run's event log and handed to the caller (printed, or as JSON lines).

use super::files::RunFiles;
use super::stop::Termination;
use super::strategy::PredictorStats;
use crate::error::Result;
use serde::Serialize;

/// Progress reports, one per trial and stage (also printed as JSON lines with `--json`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        run_id: String,
        resumed: bool,
        evaluated: usize,
        budget: usize,
        recovered_trials: usize,
        /// Classic seeds this run evaluates first (part of the budget).
        seeds: usize,
    },
    /// The MSE reference, solved before the first evaluation (or taken from the store's
    /// references): model calls per sample, the doubling check, seconds it took.
    Reference {
        nfe: usize,
        doubling_mse: f64,
        seconds: f64,
        cached: bool,
    },
    /// The cost estimate, after the first evaluation this process computed: the remaining
    /// budget and the final ranking at the measured seconds per evaluation.
    Estimate {
        seconds_each: f64,
        evaluations_left: usize,
        final_evaluations: usize,
        total_s: f64,
    },
    Baselines {
        best_classic: String,
        value: f64,
    },
    Trial {
        number: u64,
        stage: u32,
        source: String,
        hash: String,
        value: Option<f64>,
        cached: bool,
        error: Option<String>,
        /// Seconds the evaluation took (0 from the cache).
        seconds: f64,
        evaluated: usize,
        best: Option<f64>,
        /// Seconds left at the measured rate (None before the first computed evaluation).
        eta_s: Option<f64>,
    },
    Stage {
        stage: u32,
        evaluated: usize,
        budget: usize,
        best: Option<f64>,
        best_classic: Option<f64>,
        elapsed_s: f64,
        eta_s: Option<f64>,
        /// The `s3` strategy's predictor in this stage (None before it is trained and for
        /// the other strategies).
        predictor: Option<PredictorStats>,
    },
    /// The run stopped before its budget was spent (or the space ran out of candidates).
    Stopped {
        termination: Termination,
        /// What happened and how to go on, in words.
        reason: String,
        evaluated: usize,
    },
    /// One of the search's best, refined on the cheap tier and measured on the true metric.
    Refined {
        /// The parent's schedule hash and true-metric value.
        parent: String,
        parent_value: f64,
        /// The refined schedule's hash and true-metric value (None: the refinement found
        /// nothing better on the cheap tier, or its trial failed).
        hash: Option<String>,
        value: Option<f64>,
        /// Kept: its true metric beats the parent's.
        accepted: bool,
        /// The cheap tier before and after (MSE on the tier's samples).
        tier_start: f64,
        tier_value: f64,
        parameters: usize,
        measurements: usize,
        /// Model calls counted against the refinement's budget, and those paid now (the
        /// rest came from the store's cache).
        calls: u64,
        paid_calls: u64,
        seconds: f64,
        termination: String,
    },
    /// A schedule that could not be refined (it fails on the cheap tier).
    RefineSkipped {
        parent: String,
        reason: String,
    },
    Final {
        /// The winner's label in the ranking (`classic …` or `searched <hash>`).
        winner: String,
        value: f64,
        best_classic: String,
        best_classic_value: f64,
        samples: usize,
        seed: u64,
        /// Evaluations the final ranking computed (outside the budget), and their time.
        evaluations: usize,
        seconds: f64,
    },
}

/// Where events go: the run's event log, then the caller's observer.
pub(super) struct Events<'f> {
    files: &'f RunFiles,
    observer: &'f mut dyn FnMut(&Event),
}

impl<'f> Events<'f> {
    pub(super) fn new(files: &'f RunFiles, observer: &'f mut dyn FnMut(&Event)) -> Self {
        Self { files, observer }
    }

    /// Appends `e` to the event log and hands it to the observer.
    pub(super) fn emit(&mut self, e: Event) -> Result<()> {
        let line = serde_json::to_string(&e).expect("events serialise");
        self.files.append_event(&line)?;
        (self.observer)(&e);
        Ok(())
    }
}

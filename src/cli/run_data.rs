//! One run's trials read back for analysis (`s3 runs plot|compare`): its configuration, its
//! trials in number order, and what both commands derive from them — the best-so-far curve
//! against evaluations, the best classic seed, when the search first beat it — computed in one
//! place so the picture and the table always agree.

use anyhow::{Context, Result};
use s3::search::{RunState, SearchConfig, TrialSource, check_run_id};
use s3::store::{StoreView, Trial, TrialStatus};
use serde::Serialize;

/// A run with its trials, in trial-number order.
pub(crate) struct RunTrials {
    pub(crate) id: String,
    pub(crate) config: SearchConfig,
    /// The run's latest checkpoint.
    pub(crate) state: RunState,
    pub(crate) trials: Vec<Trial>,
}

/// One point of the best-so-far curve: after `evaluations` trials counted against the budget,
/// the best finished value so far (none while every counted trial failed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CurvePoint {
    pub(crate) evaluations: usize,
    pub(crate) best: Option<f64>,
}

/// The best classic seed of a run: its solver × spacing label and value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Classic {
    pub(crate) label: String,
    pub(crate) value: f64,
}

/// Whether a trial counts against the budget, as the search counts it: it finished or failed
/// in evaluation (a running trial has not been paid for yet, and one a crash interrupted was
/// never evaluated).
fn counted(t: &Trial) -> bool {
    matches!(t.status, TrialStatus::Finished | TrialStatus::Failed) && !t.was_interrupted()
}

/// A finished trial's value.
fn finished_value(t: &Trial) -> Option<f64> {
    (t.status == TrialStatus::Finished)
        .then_some(t.value)
        .flatten()
}

impl RunTrials {
    /// Reads run `id` from `store`: an unknown run or a configuration this version cannot
    /// read is an error naming the run.
    pub(crate) fn load(store: &StoreView, id: &str) -> Result<Self> {
        check_run_id(id)?;
        let rec = store
            .run(id)?
            .with_context(|| format!("no run `{id}` in {}", store.path().display()))?;
        let config: SearchConfig = serde_json::from_value(rec.config)
            .with_context(|| format!("run `{id}`: reading its stored configuration"))?;
        let state = RunState::from_json(rec.state)
            .with_context(|| format!("run `{id}`: reading its checkpoint"))?;
        let mut trials = store.trials(id)?;
        trials.sort_by_key(|t| t.number);
        Ok(RunTrials {
            id: id.to_string(),
            config,
            state,
            trials,
        })
    }

    /// The finished trials, in number order.
    pub(crate) fn finished(&self) -> impl Iterator<Item = &Trial> {
        self.trials
            .iter()
            .filter(|t| t.status == TrialStatus::Finished)
    }

    /// The metric's name for axis labels and headers: `FD`, `FID`, `MSE` (as the run's
    /// checkpoint names it; runs checkpointed before it did read by their configuration).
    pub(crate) fn metric_label(&self) -> String {
        let name = self.state.metric.as_deref();
        name.unwrap_or(self.config.metric.as_str()).to_uppercase()
    }

    /// The best-so-far curve: one point per trial counted against the budget, in trial-number
    /// order.
    pub(crate) fn curve(&self) -> Vec<CurvePoint> {
        let mut best: Option<f64> = None;
        self.trials
            .iter()
            .filter(|t| counted(t))
            .enumerate()
            .map(|(i, t)| {
                if let Some(v) = finished_value(t) {
                    best = Some(best.map_or(v, |b| b.min(v)));
                }
                CurvePoint {
                    evaluations: i + 1,
                    best,
                }
            })
            .collect()
    }

    /// Trials counted against the budget so far.
    pub(crate) fn evaluated(&self) -> usize {
        self.trials.iter().filter(|t| counted(t)).count()
    }

    /// The best finished value of the run (classic seeds included).
    pub(crate) fn best(&self) -> Option<f64> {
        self.trials
            .iter()
            .filter_map(finished_value)
            .min_by(f64::total_cmp)
    }

    /// The best finished classic seed (the first such trial on a tie).
    pub(crate) fn best_classic(&self) -> Option<Classic> {
        let mut best: Option<Classic> = None;
        for t in &self.trials {
            let source = TrialSource::parse(&t.source);
            let (Some(label), Some(value)) = (source.classic_label(), finished_value(t)) else {
                continue;
            };
            if best.as_ref().is_none_or(|b| value < b.value) {
                best = Some(Classic {
                    label: label.to_string(),
                    value,
                });
            }
        }
        best
    }

    /// The evaluations after which the best so far was first strictly below the best classic
    /// seed; `None` if the search never beat it (or has no classic seed).
    pub(crate) fn first_beat(&self) -> Option<usize> {
        let classic = self.best_classic()?.value;
        self.curve()
            .into_iter()
            .find(|p| p.best.is_some_and(|b| b < classic))
            .map(|p| p.evaluations)
    }

    /// Seconds from the first trial's creation to the last trial's end.
    pub(crate) fn wall_seconds(&self) -> Option<f64> {
        let first = self
            .trials
            .iter()
            .map(|t| t.created_unix)
            .min_by(f64::total_cmp)?;
        let last = self
            .trials
            .iter()
            .filter_map(|t| t.finished_unix)
            .max_by(f64::total_cmp)?;
        Some(last - first)
    }
}

/// Reads every run named, in the order given.
pub(crate) fn load_runs(store: &StoreView, ids: &[String]) -> Result<Vec<RunTrials>> {
    if ids.is_empty() {
        anyhow::bail!("no runs given: name one or more runs (see `s3 runs list`)");
    }
    ids.iter().map(|id| RunTrials::load(store, id)).collect()
}

/// The settings that make runs comparable, and where they differ: one line per setting that
/// is not the same for every run (dataset, noise schedule, metric, NFE, samples).
fn unequal_settings(runs: &[RunTrials]) -> Vec<String> {
    type Setting = (&'static str, fn(&SearchConfig) -> String);
    let settings: [Setting; 5] = [
        ("dataset", |c| c.dataset.clone()),
        ("noise schedule", |c| {
            serde_json::to_string(&c.noise).unwrap_or_default()
        }),
        ("metric", |c| c.metric.as_str().to_string()),
        ("NFE", |c| c.nfe.to_string()),
        ("samples", |c| c.samples.to_string()),
    ];
    settings
        .iter()
        .filter_map(|(name, get)| {
            let values: Vec<String> = runs.iter().map(|r| get(&r.config)).collect();
            if values.windows(2).all(|w| w[0] == w[1]) {
                return None;
            }
            let each: Vec<String> = runs
                .iter()
                .zip(&values)
                .map(|(r, v)| format!("{} {v}", r.id))
                .collect();
            Some(format!("{name}: {}", each.join(", ")))
        })
        .collect()
}

/// Warns on standard error when the runs differ in a setting that makes their values
/// incomparable.
pub(crate) fn warn_unequal(runs: &[RunTrials]) -> Vec<String> {
    let unequal = unequal_settings(runs);
    for line in &unequal {
        eprintln!("warning: the runs differ in {line}: an unequal comparison");
    }
    unequal
}

//! The search runner: evaluates proposals with the true metric under the budget, records
//! every trial in the store before and after evaluating it, keeps `best.json` current in the
//! run directory, checkpoints after every stage, and resumes from the store after Ctrl-C, a
//! kill or a time limit without losing or re-paying any finished evaluation.

use super::config::SearchConfig;
use super::s3::{PredictorFiles, PredictorStats};
use super::strategy::{Evaluated, Proposal, StrategyContext, make_strategy, unseen_seeds};
use crate::dataset::{Dataset, LoadOptions};
use crate::error::{Result, S3Error};
use crate::eval::Evaluator;
use crate::metric::{DEFAULT_REFERENCE_NFE, MetricKind, ReferenceCache};
use crate::noise::NoiseSchedule;
use crate::solver::{SolverSchedule, classic_grid};
use crate::space::{Candidates, SearchSpace, schedule_hash};
use crate::store::{CachedEval, EvalKey, Store, TrialStatus};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Refuses to continue run `run_id` when what `source` names (its `what`) no longer has the
/// identity recorded when the run was created (runs from before identities were recorded
/// carry none and are not checked).
fn check_unchanged(
    run_id: &str,
    what: &str,
    source: &str,
    recorded: &Option<String>,
    now: String,
) -> Result<()> {
    match recorded {
        Some(r) if *r != now => Err(S3Error::field(
            format!("run {run_id}"),
            what,
            format!(
                "`{source}` has changed since the run was created (identity {r}, now {now}); its trials were measured on the old one: restore it or start a new run"
            ),
        )),
        _ => Ok(()),
    }
}

/// The longest run id accepted.
pub const MAX_RUN_ID_LEN: usize = 128;

/// Checks a run id a user typed: 1–128 characters from `[A-Za-z0-9._-]`, not starting with a
/// dot, so it names one folder inside the store's `runs/` and never a path outside it.
pub fn check_run_id(id: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > MAX_RUN_ID_LEN || id.starts_with('.') || !id.chars().all(allowed)
    {
        return Err(S3Error::field(
            format!("run id `{id}`"),
            "characters",
            format!(
                "expected 1–{MAX_RUN_ID_LEN} of A–Z, a–z, 0–9, '.', '_', '-', not starting with '.' (a run id names one folder in the store)"
            ),
        ));
    }
    Ok(())
}

/// Where a run's files live: `<store>/runs/<run id>/`.
pub fn run_dir(store: &Path, run_id: &str) -> PathBuf {
    store.join("runs").join(run_id)
}

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
    Stopped {
        reason: String,
        evaluated: usize,
    },
    Final {
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

/// What a run ended with.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    /// Whether the budget was spent (false: stopped by the time limit).
    pub completed: bool,
    /// Trials counted against the budget.
    pub evaluated: usize,
    /// Of the evaluations this process made in the search, how many it computed (the rest
    /// came from the cache).
    pub computed: usize,
    /// The best search value (on the search samples).
    pub best: Option<f64>,
    /// The best classic solver on the search samples.
    pub best_classic: Option<(String, f64)>,
    /// Final re-evaluation: (label, value) best first, on other noise and more samples.
    /// Labels are `classic <solver> <spacing>` for the classic seeds (whichever stage found
    /// them) and `searched <hash>` otherwise.
    pub final_ranking: Vec<(String, f64)>,
    /// The metric's display name (`fd`, `fid` or `mse`).
    pub metric: String,
}

/// The share of the budget the classic seeds may take: a small budget seeds with the
/// best-known few solvers, a large one with the whole grid.
pub const SEED_SHARE: f64 = 0.25;
/// Stages in a row that propose nothing new before a run stops as exhausted.
pub const IDLE_STAGE_LIMIT: u32 = 20;
/// The trial source of a classic seed: `seed:<solver> <spacing>`.
const SEED_SOURCE: &str = "seed:";
/// The label prefix of a classic solver's row in the final ranking.
pub const CLASSIC_ROW: &str = "classic ";
/// The label prefix of a searched schedule's row in the final ranking.
pub const SEARCHED_ROW: &str = "searched ";
/// The run's event log beside `best.json`: every event as one JSON line, in every mode.
pub const EVENT_LOG: &str = "events.jsonl";

/// How many classic seeds a run of `budget` evaluations takes (at least one).
pub fn seed_limit(budget: usize) -> usize {
    ((budget as f64 * SEED_SHARE).ceil() as usize).max(1)
}

/// What a run has done so far: rebuilt from the store on (re)start, updated per trial.
struct Progress {
    archive: Vec<Evaluated>,
    seen: HashSet<String>,
    /// Trials counted against the budget (finished or failed in evaluation).
    evaluated: usize,
    best: Option<Evaluated>,
    best_classic: Option<(String, f64, SolverSchedule)>,
    /// The classic label of every seed evaluated, by schedule hash, so a ranking never calls
    /// a classic solver "searched".
    seed_labels: HashMap<String, String>,
    /// Evaluations computed (not served by the cache) by this process, and when the first
    /// of them started.
    computed: usize,
    first_computed: Option<Instant>,
    /// The expected cost of the final ranking's own MSE reference (other noise, more
    /// samples), seconds; 0 for other metrics.
    final_reference_s: f64,
}

impl Progress {
    fn record(&mut self, e: Evaluated, source: &str) -> bool {
        if let Some(label) = source.strip_prefix(SEED_SOURCE) {
            self.seed_labels.insert(e.hash.clone(), label.to_string());
            if self.best_classic.as_ref().is_none_or(|b| e.value < b.1) {
                self.best_classic = Some((label.to_string(), e.value, e.schedule.clone()));
            }
        }
        let improved = self.best.as_ref().is_none_or(|b| e.value < b.value);
        if improved {
            self.best = Some(e.clone());
        }
        self.archive.push(e);
        improved
    }

    /// Wall seconds per computed evaluation since the first one started: the evaluation
    /// itself and everything the search does around it (proposals, predictor training,
    /// the store), so the estimate covers the whole run.
    fn seconds_each(&self) -> Option<f64> {
        let start = self.first_computed?;
        Some(start.elapsed().as_secs_f64() / self.computed.max(1) as f64)
    }
}

/// One search run over one store.
pub struct SearchRunner<'a> {
    store: &'a Store,
    run_id: String,
    config: SearchConfig,
    dataset: Dataset,
    ns: NoiseSchedule,
    space: SearchSpace,
    max_time: Option<Duration>,
    stop: Option<Arc<AtomicBool>>,
}

impl<'a> SearchRunner<'a> {
    /// Prepares the run `run_id` (its configuration must already be in the store), with
    /// real networks on the CPU.
    pub fn new(store: &'a Store, run_id: &str, config: SearchConfig) -> Result<Self> {
        Self::new_with(store, run_id, config, LoadOptions::default())
    }

    /// The same, with the device, threads and batch size of real networks; the models
    /// directory is the run's own (`config.models_dir`) when it has one.
    pub fn new_with(
        store: &'a Store,
        run_id: &str,
        config: SearchConfig,
        mut options: LoadOptions,
    ) -> Result<Self> {
        config.validate()?;
        if let Some(dir) = &config.models_dir {
            options.models_dir = Some(PathBuf::from(dir));
        }
        let mut dataset = Dataset::load_with(&config.dataset, &options)?;
        dataset.noise = config.noise;
        let ns = config.noise.build();
        let space = SearchSpace::load(&config.space)?;
        check_unchanged(
            run_id,
            "dataset",
            &config.dataset,
            &config.dataset_identity,
            dataset.identity(),
        )?;
        check_unchanged(
            run_id,
            "space",
            &config.space,
            &config.space_hash,
            space.hash(),
        )?;
        Ok(Self {
            store,
            run_id: run_id.to_string(),
            config,
            dataset,
            ns,
            space,
            max_time: None,
            stop: None,
        })
    }

    /// The run's configuration.
    pub fn config(&self) -> &SearchConfig {
        &self.config
    }

    /// Stops (resumably) once this much wall time has passed.
    pub fn with_max_time(mut self, t: Option<Duration>) -> Self {
        self.max_time = t;
        self
    }

    fn dir(&self) -> PathBuf {
        run_dir(self.store.path(), &self.run_id)
    }

    /// An evaluator on `samples` samples of noise `seed`, sharing the store's teacher
    /// references.
    pub(super) fn evaluator(&self, samples: usize, seed: u64) -> Result<Evaluator<'_>> {
        Evaluator::new(&self.dataset, &self.ns, self.config.metric, samples, seed)?
            .with_reference_cache(ReferenceCache::in_store(self.store.path()))
            .with_reference_nfe(self.config.reference_nfe.unwrap_or(DEFAULT_REFERENCE_NFE))
    }

    fn key(&self, ev: &Evaluator, hash: &str) -> EvalKey {
        EvalKey {
            schedule_hash: hash.to_string(),
            model: self.dataset.identity(),
            metric: ev.metric_id(),
            samples: ev.samples(),
            noise_seed: ev.seed(),
        }
    }

    /// The metric of `s`, timed.
    fn compute(ev: &Evaluator, s: &SolverSchedule) -> Result<CachedEval> {
        let start = Instant::now();
        let e = ev.evaluate(s)?;
        Ok(CachedEval {
            value: e.value,
            nfe: e.nfe,
            seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// The metric of `s` from the store's cache, or computed (and then cached). The flag
    /// says whether it was computed.
    pub(super) fn value(&self, ev: &Evaluator, s: &SolverSchedule) -> Result<(f64, bool)> {
        let key = self.key(ev, &schedule_hash(s));
        if let Some(c) = self.store.cached_eval(&key)? {
            return Ok((c.value, false));
        }
        let c = Self::compute(ev, s)?;
        self.store.put_eval(&key, &c, &self.run_id)?;
        Ok((c.value, true))
    }

    /// The classic seeds of this run: the best-known part of the classic grid that fits
    /// [`SEED_SHARE`] of the budget.
    fn seeds(&self) -> Vec<Proposal> {
        classic_grid(&self.ns, self.config.nfe)
            .into_iter()
            .filter(|e| self.config.solver.is_none_or(|s| s == e.solver))
            .filter_map(|e| {
                let label = e.label();
                e.schedule.ok().map(|schedule| Proposal {
                    schedule,
                    source: format!("{SEED_SOURCE}{label}"),
                })
            })
            .take(seed_limit(self.config.budget))
            .collect()
    }

    fn write_best(&self, s: &SolverSchedule, value: f64, label: &str) -> Result<()> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| S3Error::io(&dir, e))?;
        let named = s.clone().with_name(format!(
            "{label} ({} {value:.6})",
            self.config.metric.as_str()
        ));
        let tmp = dir.join("best.json.tmp");
        named.save(&tmp, &self.ns)?;
        let dst = dir.join("best.json");
        std::fs::rename(&tmp, &dst).map_err(|e| S3Error::io(&dst, e))
    }

    /// Appends `e` to the run's event log and hands it to the caller.
    fn emit(&self, e: &Event, on_event: &mut dyn FnMut(&Event)) -> Result<()> {
        use std::io::Write;
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|err| S3Error::io(&dir, err))?;
        let path = dir.join(EVENT_LOG);
        let line = serde_json::to_string(e).expect("events serialise");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"))
            .map_err(|err| S3Error::io(&path, err))?;
        on_event(e);
        Ok(())
    }

    /// Rebuilds the run's progress from its trials in the store.
    fn load_progress(&self) -> Result<Progress> {
        let mut p = Progress {
            archive: Vec::new(),
            seed_labels: HashMap::new(),
            seen: HashSet::new(),
            evaluated: 0,
            best: None,
            best_classic: None,
            computed: 0,
            first_computed: None,
            final_reference_s: 0.0,
        };
        for t in self.store.trials(&self.run_id)? {
            let interrupted = t
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("interrupted"));
            if t.status == TrialStatus::Failed && interrupted {
                continue;
            }
            p.evaluated += 1;
            p.seen.insert(t.schedule_hash.clone());
            if let (TrialStatus::Finished, Some(v)) = (t.status, t.value) {
                let schedule: SolverSchedule =
                    serde_json::from_value(t.schedule.clone()).map_err(|e| S3Error::Store {
                        path: self.store.path().into(),
                        message: format!(
                            "run {} trial {}: bad schedule: {e}",
                            self.run_id, t.number
                        ),
                    })?;
                let e = Evaluated {
                    schedule,
                    hash: t.schedule_hash,
                    value: v,
                };
                p.record(e, &t.source);
            }
        }
        Ok(p)
    }

    /// Seconds the rest of the run should take at the measured rate: the remaining budget
    /// plus the final ranking (its sample count scales the cost).
    fn eta(&self, p: &Progress) -> Option<f64> {
        let each = p.seconds_each()?;
        let cfg = &self.config;
        let left = cfg.budget.saturating_sub(p.evaluated) as f64;
        let final_cost =
            self.final_evaluations() as f64 * (cfg.final_samples as f64 / cfg.samples as f64);
        Some(each * (left + final_cost) + p.final_reference_s)
    }

    /// How many evaluations the final ranking pays at most: the best `final_top` and the
    /// best classic solver.
    fn final_evaluations(&self) -> usize {
        self.config.final_top.min(self.config.budget) + 1
    }

    /// Evaluates one proposal as a trial (recorded before and after), unless this run has
    /// already seen it.
    fn trial(
        &self,
        ev: &Evaluator,
        p: Proposal,
        stage: u32,
        progress: &mut Progress,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<()> {
        let hash = schedule_hash(&p.schedule);
        if !progress.seen.insert(hash.clone()) {
            return Ok(());
        }
        let json = serde_json::to_value(&p.schedule).expect("schedules serialise");
        let trial = self
            .store
            .begin_trial(&self.run_id, &hash, json, stage, &p.source)?;
        let key = self.key(ev, &hash);
        let result = match self.store.cached_eval(&key)? {
            Some(c) => Ok((c, true)),
            None => Self::compute(ev, &p.schedule).map(|c| (c, false)),
        };
        let (value, cached, error, seconds) = match result {
            Ok((c, cached)) => {
                self.store
                    .finish_trial(&self.run_id, trial.number, &key, &c, cached)?;
                (
                    Some(c.value),
                    cached,
                    None,
                    if cached { 0.0 } else { c.seconds },
                )
            }
            Err(e) => {
                let msg = e.to_string();
                self.store.fail_trial(&self.run_id, trial.number, &msg)?;
                (None, false, Some(msg), 0.0)
            }
        };
        progress.evaluated += 1;
        let first_estimate = !cached && error.is_none() && progress.computed == 0;
        if !cached && error.is_none() {
            progress.computed += 1;
            if progress.first_computed.is_none() {
                let took = Duration::from_secs_f64(seconds);
                progress.first_computed = Instant::now().checked_sub(took);
            }
        }
        if let Some(v) = value {
            let e = Evaluated {
                schedule: p.schedule.clone(),
                hash: hash.clone(),
                value: v,
            };
            if progress.record(e, &p.source) {
                let label = format!("run {} trial {}", self.run_id, trial.number);
                self.write_best(&p.schedule, v, &label)?;
            }
        }
        let eta_s = self.eta(progress);
        if first_estimate && let Some(total_s) = eta_s {
            self.emit(
                &Event::Estimate {
                    seconds_each: seconds,
                    evaluations_left: self.config.budget.saturating_sub(progress.evaluated),
                    final_evaluations: self.final_evaluations(),
                    total_s,
                },
                on_event,
            )?;
        }
        self.emit(
            &Event::Trial {
                number: trial.number,
                stage,
                source: p.source,
                hash,
                value,
                cached,
                error,
                seconds,
                evaluated: progress.evaluated,
                best: progress.best.as_ref().map(|b| b.value),
                eta_s,
            },
            on_event,
        )
    }

    /// Stops (resumably) once `flag` is set, e.g. by a signal handler: between trials, with
    /// every finished trial recorded.
    pub fn with_stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Why the run must stop now, if it must: the stop flag or the time limit.
    fn stop_reason(&self, start: Instant) -> Option<String> {
        if self.stop.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
            return Some(format!("interrupted; resume with --resume {}", self.run_id));
        }
        let limit = self.max_time?;
        (start.elapsed() >= limit).then(|| {
            format!(
                "time limit {} s reached; resume with --resume {}",
                limit.as_secs(),
                self.run_id
            )
        })
    }

    /// Runs (or resumes) the search until the budget is spent or the time limit passes.
    pub fn run(&self, on_event: &mut dyn FnMut(&Event)) -> Result<RunOutcome> {
        let start = Instant::now();
        let cfg = &self.config;
        let ev = self.evaluator(cfg.samples, cfg.seed)?;
        let ops = Candidates::new(&self.space, &self.ns, cfg.nfe)?;
        let ops = match cfg.solver {
            Some(solver) => ops.with_solver(solver)?,
            None => ops,
        };
        let record = self
            .store
            .run(&self.run_id)?
            .ok_or_else(|| S3Error::field("search", "run", format!("no run `{}`", self.run_id)))?;
        let mut stage: u32 = record
            .state
            .get("stage")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        let mut progress = self.load_progress()?;
        let seeds = self.seeds();
        self.emit(
            &Event::Started {
                run_id: self.run_id.clone(),
                resumed: progress.evaluated > 0 || stage > 0,
                evaluated: progress.evaluated,
                budget: cfg.budget,
                recovered_trials: self.store.recovered_trials(),
                seeds: seeds.len(),
            },
            on_event,
        )?;
        if let Some(seconds) = self.prepare_reference(&ev, on_event)? {
            progress.final_reference_s = seconds * cfg.final_samples as f64 / cfg.samples as f64;
        }
        let mut strategy = make_strategy(
            cfg.strategy,
            StrategyContext {
                space: &self.space,
                ns: &self.ns,
                nfe: cfg.nfe,
                seed_count: seeds.len(),
                predictor: PredictorFiles {
                    save_stem: self.dir().join("predictor"),
                    meta: serde_json::json!({
                        "run": self.run_id,
                        "model": self.dataset.identity(),
                        "metric": cfg.metric.as_str(),
                        "samples": cfg.samples,
                        "nfe": cfg.nfe,
                    }),
                    warm_start: cfg.predictor.as_ref().map(PathBuf::from),
                },
            },
        )?;
        let mut baselines_told = false;
        let mut idle_stages = 0;
        // The latest predictor report, kept in the checkpoint for `s3 runs show`.
        let mut last_predictor = record
            .state
            .get("predictor")
            .cloned()
            .unwrap_or(serde_json::Value::Null);

        while progress.evaluated < cfg.budget {
            if !baselines_told
                && seeds
                    .iter()
                    .all(|p| progress.seen.contains(&schedule_hash(&p.schedule)))
            {
                baselines_told = self.tell_baselines(&progress, on_event)?;
            }
            if let Some(reason) = self.stop_reason(start) {
                self.emit(
                    &Event::Stopped {
                        reason,
                        evaluated: progress.evaluated,
                    },
                    on_event,
                )?;
                return Ok(self.outcome(false, &progress, vec![], ev.metric_label()));
            }
            let mut rng = StdRng::seed_from_u64(
                cfg.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(stage as u64 + 1)),
            );
            let n = cfg.stage_size.min(cfg.budget - progress.evaluated);
            let mut seen = progress.seen.clone();
            let mut proposals = unseen_seeds(&seeds, &mut seen, n);
            if proposals.len() < n {
                let rest = n - proposals.len();
                proposals.extend(strategy.propose(&ops, &progress.archive, rest, &mut rng)?);
            }
            let predictor = strategy.predictor_stats();
            if let Some(p) = &predictor {
                last_predictor = serde_json::to_value(p).expect("stats serialise");
            }
            let before = progress.evaluated;
            for p in proposals {
                if progress.evaluated >= cfg.budget || self.stop_reason(start).is_some() {
                    break;
                }
                self.trial(&ev, p, stage, &mut progress, on_event)?;
            }
            stage += 1;
            idle_stages = if progress.evaluated == before {
                idle_stages + 1
            } else {
                0
            };
            self.store.checkpoint(
                &self.run_id,
                serde_json::json!({
                    "stage": stage,
                    "evaluated": progress.evaluated,
                    "best": progress.best.as_ref().map(|b| b.value),
                    "best_hash": progress.best.as_ref().map(|b| b.hash.clone()),
                    "predictor": last_predictor,
                }),
            )?;
            let elapsed = start.elapsed().as_secs_f64();
            self.emit(
                &Event::Stage {
                    stage: stage - 1,
                    evaluated: progress.evaluated,
                    budget: cfg.budget,
                    best: progress.best.as_ref().map(|b| b.value),
                    best_classic: progress.best_classic.as_ref().map(|b| b.1),
                    elapsed_s: elapsed,
                    eta_s: self.eta(&progress),
                    predictor,
                },
                on_event,
            )?;
            if idle_stages >= IDLE_STAGE_LIMIT {
                self.emit(
                    &Event::Stopped {
                        reason: format!(
                            "{IDLE_STAGE_LIMIT} stages proposed nothing new: the space is \
                             exhausted at this NFE"
                        ),
                        evaluated: progress.evaluated,
                    },
                    on_event,
                )?;
                break;
            }
        }
        if !baselines_told {
            self.tell_baselines(&progress, on_event)?;
        }
        let ranking = self.final_ranking(&progress, on_event)?;
        Ok(self.outcome(true, &progress, ranking, ev.metric_label()))
    }

    /// Solves (or loads) the MSE reference before the first evaluation, so its cost is
    /// reported apart from the evaluations' and the cost estimate is not skewed by it.
    /// Returns the seconds the reference took to solve (None for other metrics).
    fn prepare_reference(
        &self,
        ev: &Evaluator,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Option<f64>> {
        if self.config.metric != MetricKind::Mse {
            return Ok(None);
        }
        let info = ev.reference_info()?.clone();
        let cached = ev.reference_was_cached().unwrap_or(false);
        self.emit(
            &Event::Reference {
                nfe: info.nfe,
                doubling_mse: info.doubling_mse,
                seconds: info.seconds,
                cached,
            },
            on_event,
        )?;
        Ok(Some(info.seconds))
    }

    /// Reports the best classic seed, once all seeds are evaluated; false when there is none.
    fn tell_baselines(&self, p: &Progress, on_event: &mut dyn FnMut(&Event)) -> Result<bool> {
        let Some((name, value, _)) = &p.best_classic else {
            return Ok(false);
        };
        self.emit(
            &Event::Baselines {
                best_classic: name.clone(),
                value: *value,
            },
            on_event,
        )?;
        Ok(true)
    }

    /// Re-evaluates the best few and the best classic solver on more samples and other noise
    /// (seed + 1), exports the winner as `best.json` and writes `final.json`.
    fn final_ranking(
        &self,
        progress: &Progress,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Vec<(String, f64)>> {
        let cfg = &self.config;
        let seed = cfg.seed + 1;
        let ev = self.evaluator(cfg.final_samples, seed)?;
        let start = Instant::now();
        let mut computed = 0;
        let mut rows: Vec<(String, f64, SolverSchedule)> = Vec::new();
        for e in crate::search::strategy::top(&progress.archive, cfg.final_top) {
            if let Ok((v, fresh)) = self.value(&ev, &e.schedule) {
                computed += usize::from(fresh);
                let label = match progress.seed_labels.get(&e.hash) {
                    Some(name) => format!("{CLASSIC_ROW}{name}"),
                    None => format!("{SEARCHED_ROW}{}", e.hash),
                };
                rows.push((label, v, e.schedule.clone()));
            }
        }
        // The best classic solver is ranked too (once), so the winner written to best.json
        // is the best schedule on the final noise whichever kind it is.
        let classic_row = progress
            .best_classic
            .as_ref()
            .map(|(name, _, _)| format!("{CLASSIC_ROW}{name}"));
        if let (Some(row), Some((_, _, s))) = (&classic_row, &progress.best_classic)
            && !rows.iter().any(|r| &r.0 == row)
        {
            let (v, fresh) = self.value(&ev, s)?;
            computed += usize::from(fresh);
            rows.push((row.clone(), v, s.clone()));
        }
        rows.sort_by(|a, b| a.1.total_cmp(&b.1));
        let classic = classic_row.and_then(|row| rows.iter().find(|r| r.0 == row).cloned());
        if let Some((label, v, s)) = rows.first() {
            self.write_best(
                s,
                *v,
                &format!("run {} winner, {label}, final", self.run_id),
            )?;
            if let Some((cname, cv, _)) = &classic {
                self.emit(
                    &Event::Final {
                        winner: label.clone(),
                        value: *v,
                        best_classic: cname.trim_start_matches(CLASSIC_ROW).to_string(),
                        best_classic_value: *cv,
                        samples: cfg.final_samples,
                        seed,
                        evaluations: computed,
                        seconds: start.elapsed().as_secs_f64(),
                    },
                    on_event,
                )?;
            }
        }
        let ranking: Vec<(String, f64)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
        let path = self.dir().join("final.json");
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "samples": cfg.final_samples,
            "noise_seed": seed,
            "metric": cfg.metric.as_str(),
            "ranking": ranking.iter().map(|(l, v)| serde_json::json!({"schedule": l, "value": v})).collect::<Vec<_>>(),
        }))
        .expect("json");
        std::fs::write(&path, text).map_err(|e| S3Error::io(&path, e))?;
        Ok(ranking)
    }

    fn outcome(
        &self,
        completed: bool,
        p: &Progress,
        final_ranking: Vec<(String, f64)>,
        metric: &str,
    ) -> RunOutcome {
        RunOutcome {
            run_id: self.run_id.clone(),
            completed,
            evaluated: p.evaluated,
            computed: p.computed,
            best: p.best.as_ref().map(|b| b.value),
            best_classic: p.best_classic.as_ref().map(|b| (b.0.clone(), b.1)),
            final_ranking,
            metric: metric.to_string(),
        }
    }
}

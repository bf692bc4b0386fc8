//! The search runner, in the shape of argmin's executor: the loop owns the budget, the stop
//! conditions, the observers (events) and the checkpoints; the strategy moves typed state in
//! (the archive) and out (a [`StageProposal`]). Every trial is recorded in the store before
//! and after its evaluation, `best.json` stays current, and a run resumes after Ctrl-C, a
//! kill or a time limit without losing or re-paying any finished evaluation.

use super::config::SearchConfig;
use super::evaluations::{Evaluations, Measured};
use super::events::{Event, Events};
use super::files::RunFiles;
use super::progress::Progress;
use super::ranking::{Ranked, Ranker, RankingRow};
use super::run::{Run, RunState};
use super::s3::PredictorFiles;
use super::setup::SearchSetup;
use super::stop::{StopClock, Termination};
use super::strategies::{StrategyContext, make_strategy};
use super::strategy::{Evaluated, PredictorStats, Proposal, Strategy};
use crate::dataset::LoadOptions;
use crate::error::{Result, S3Error};
use crate::eval::Evaluator;
use crate::metric::{DEFAULT_REFERENCE_NFE, MetricKind, ReferenceCache};
use crate::solver::SolverSchedule;
use crate::space::{Candidates, schedule_hash};
use crate::store::Store;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Stages in a row that propose nothing new before a run stops as exhausted.
pub const IDLE_STAGE_LIMIT: u32 = 20;
/// Mixes the stage number into a stage's random seed (the 64-bit golden ratio), so every
/// stage draws its own stream and a resumed stage draws what the uninterrupted one would.
const STAGE_SEED_MIX: u64 = 0x9e37_79b9_7f4a_7c15;

/// What a run ended with.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    /// Whether the run is finished (false: stopped by a signal or the time limit; it
    /// resumes).
    pub completed: bool,
    /// How the run ended or stopped.
    pub termination: Termination,
    /// Trials counted against the budget.
    pub evaluated: usize,
    /// Of the evaluations this process made in the search, how many it computed (the rest
    /// came from the cache).
    pub computed: usize,
    /// The best search value (on the search samples).
    pub best: Option<f64>,
    /// The best classic solver on the search samples.
    pub best_classic: Option<(String, f64)>,
    /// The final ranking, best first, on other noise and more samples (empty when stopped).
    pub final_ranking: Vec<RankingRow>,
    /// The metric's display name (`fd`, `fid` or `mse`).
    pub metric: String,
}

/// The loop's own state across stages.
struct Stages {
    /// The next stage's number.
    next: u32,
    /// Stages in a row that evaluated nothing.
    idle: u32,
    /// Whether the best classic seed has been reported.
    baselines_told: bool,
    /// The latest predictor report, kept in the checkpoint.
    predictor: Option<PredictorStats>,
}

/// One search run over one store.
pub struct SearchRunner<'a> {
    pub(super) store: &'a Store,
    pub(super) run: Run,
    pub(super) setup: SearchSetup,
    files: RunFiles,
    pub(super) evaluations: Evaluations<'a>,
    max_time: Option<Duration>,
    stop: Option<Arc<AtomicBool>>,
}

impl<'a> SearchRunner<'a> {
    /// A runner for `run` (already in the store) over `setup`.
    pub fn new(store: &'a Store, run: Run, setup: SearchSetup) -> Self {
        Self {
            files: RunFiles::new(store.path(), &run.id),
            evaluations: Evaluations::new(store, &run.id, setup.dataset.identity()),
            store,
            run,
            setup,
            max_time: None,
            stop: None,
        }
    }

    /// A runner for run `run_id` of the store, its setup loaded from its configuration
    /// with the device, threads and batch size of `options`.
    pub fn open(store: &'a Store, run_id: &str, options: LoadOptions) -> Result<Self> {
        let run = Run::load(store, run_id)?.ok_or_else(|| {
            S3Error::field("search", "run", format!("no run `{run_id}` in the store"))
        })?;
        let setup = SearchSetup::load(run_id, &run.config, options)?;
        Ok(Self::new(store, run, setup))
    }

    /// The run's configuration.
    pub fn config(&self) -> &SearchConfig {
        &self.run.config
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run.id
    }

    pub(super) fn evaluations(&self) -> &Evaluations<'a> {
        &self.evaluations
    }

    /// Stops (resumably) once this much wall time has passed, in any phase.
    pub fn with_max_time(mut self, t: Option<Duration>) -> Self {
        self.max_time = t;
        self
    }

    /// Stops (resumably) once `flag` is set, e.g. by a signal handler: between trials, with
    /// every finished trial recorded.
    pub fn with_stop_flag(mut self, flag: Arc<AtomicBool>) -> Self {
        self.stop = Some(flag);
        self
    }

    /// An evaluator of the run's metric on `samples` samples of noise `seed`, sharing the
    /// store's teacher references.
    pub(super) fn evaluator(&self, samples: usize, seed: u64) -> Result<Evaluator<'_>> {
        self.evaluator_of(self.config().metric, samples, seed)
    }

    /// [`Self::evaluator`] with another metric (the refinement's cheap tier).
    pub(super) fn evaluator_of(
        &self,
        metric: MetricKind,
        samples: usize,
        seed: u64,
    ) -> Result<Evaluator<'_>> {
        let cfg = self.config();
        Evaluator::new(&self.setup.dataset, &self.setup.ns, metric, samples, seed)?
            .with_reference_cache(ReferenceCache::in_store(self.store.path()))
            .with_reference_nfe(cfg.reference_nfe.unwrap_or(DEFAULT_REFERENCE_NFE))
    }

    fn write_best(&self, s: &SolverSchedule, value: f64, label: &str) -> Result<()> {
        self.files
            .write_best(s, &self.setup.ns, self.config().metric, value, label)
    }

    /// Runs (or resumes) the search until the budget is spent, the space is exhausted, or a
    /// stop condition holds; then ranks the best on the final noise.
    pub fn run(&self, observer: &mut dyn FnMut(&Event)) -> Result<RunOutcome> {
        let clock = StopClock::start(self.max_time, self.stop.clone());
        let mut events = Events::new(&self.files, observer);
        let cfg = self.config();
        let ev = self.evaluator(cfg.samples, cfg.seed)?;
        let ops = self.setup.candidates(cfg)?;
        let seeds = self.setup.seeds(cfg);
        let mut progress = Progress::load(self.store, &self.run.id)?;
        let mut stages = Stages {
            next: self.run.state.stage,
            idle: 0,
            baselines_told: false,
            predictor: self.run.state.predictor.clone(),
        };
        events.emit(Event::Started {
            run_id: self.run.id.clone(),
            resumed: progress.evaluated > 0 || stages.next > 0,
            evaluated: progress.evaluated,
            budget: cfg.budget,
            recovered_trials: self.store.recovered_trials(),
            seeds: seeds.len(),
        })?;
        if let Some(seconds) = self.prepare_reference(&ev, &mut events)? {
            progress.final_reference_s = seconds * cfg.final_samples as f64 / cfg.samples as f64;
        }
        let mut strategy = self.strategy(seeds.len())?;
        let loop_ = SearchLoop {
            ev: &ev,
            ops: &ops,
            seeds: &seeds,
            clock: &clock,
        };
        let ended = self.search(
            &loop_,
            &mut *strategy,
            &mut progress,
            &mut stages,
            &mut events,
        )?;
        if !ended.is_finished() {
            return Ok(self.outcome(ended, &progress, vec![], &ev));
        }
        if !stages.baselines_told {
            self.tell_baselines(&progress, &mut events)?;
        }
        if let Some(rc) = &cfg.refine {
            let stage = stages.next;
            if let Some((termination, reason)) =
                self.refine_best(&loop_, rc, stage, &mut progress, &mut events)?
            {
                self.stopped(termination, reason, &progress, &mut events)?;
                return Ok(self.outcome(termination, &progress, vec![], &ev));
            }
            stages.next += 1;
            self.checkpoint(&loop_, &progress, &stages)?;
        }
        let ranker = Ranker {
            run_id: &self.run.id,
            config: cfg,
            ns: &self.setup.ns,
            evaluations: &self.evaluations,
            files: &self.files,
        };
        let final_ev = self.evaluator(cfg.final_samples, cfg.seed + 1)?;
        match ranker.rank(&final_ev, &progress, &mut events, &clock)? {
            Ranked::Done(ranking) => Ok(self.outcome(ended, &progress, ranking, &ev)),
            Ranked::Stopped(termination, reason) => {
                self.stopped(termination, reason, &progress, &mut events)?;
                Ok(self.outcome(termination, &progress, vec![], &ev))
            }
        }
    }

    /// Builds the run's strategy.
    fn strategy(&self, seed_count: usize) -> Result<Box<dyn Strategy>> {
        let cfg = self.config();
        make_strategy(
            cfg.strategy,
            StrategyContext {
                space: &self.setup.space,
                ns: &self.setup.ns,
                nfe: cfg.nfe,
                seed_count,
                predictor: PredictorFiles {
                    save_stem: self.files.predictor_stem(),
                    meta: serde_json::json!({
                        "run": self.run.id,
                        "model": self.setup.dataset.identity(),
                        "metric": cfg.metric.as_str(),
                        "samples": cfg.samples,
                        "nfe": cfg.nfe,
                    }),
                    warm_start: cfg.predictor.as_ref().map(Into::into),
                },
            },
        )
    }

    /// The stages until the budget is spent (Completed), nothing new is proposed for
    /// [`IDLE_STAGE_LIMIT`] stages (Exhausted), or a stop condition holds.
    fn search(
        &self,
        l: &SearchLoop,
        strategy: &mut dyn Strategy,
        progress: &mut Progress,
        stages: &mut Stages,
        events: &mut Events,
    ) -> Result<Termination> {
        let cfg = self.config();
        while progress.evaluated < cfg.budget {
            let seeds_done = l
                .seeds
                .iter()
                .all(|p| progress.seen.contains(&schedule_hash(&p.schedule)));
            if !stages.baselines_told && seeds_done {
                stages.baselines_told = self.tell_baselines(progress, events)?;
            }
            if let Some((termination, reason)) = l.clock.reason(&self.run.id) {
                self.stopped(termination, reason, progress, events)?;
                return Ok(termination);
            }
            self.stage(l, strategy, progress, stages, events)?;
            if stages.idle >= IDLE_STAGE_LIMIT {
                let reason = format!(
                    "{IDLE_STAGE_LIMIT} stages proposed nothing new: the space is exhausted at this NFE"
                );
                self.stopped(Termination::Exhausted, reason, progress, events)?;
                return Ok(Termination::Exhausted);
            }
        }
        Ok(Termination::Completed)
    }

    /// One stage: the unseen classic seeds first, then the strategy's proposals, evaluated
    /// until the stage, the budget or a stop condition ends; then a checkpoint.
    fn stage(
        &self,
        l: &SearchLoop,
        strategy: &mut dyn Strategy,
        progress: &mut Progress,
        stages: &mut Stages,
        events: &mut Events,
    ) -> Result<()> {
        let cfg = self.config();
        let stage = stages.next;
        let mut rng =
            StdRng::seed_from_u64(cfg.seed ^ STAGE_SEED_MIX.wrapping_mul(stage as u64 + 1));
        let n = cfg.stage_size.min(cfg.budget - progress.evaluated);
        let mut proposals = unseen_seeds(l.seeds, &progress.seen, n);
        let mut report = None;
        if proposals.len() < n {
            let rest = n - proposals.len();
            let made = strategy.propose(l.ops, &progress.archive, rest, &mut rng)?;
            proposals.extend(made.proposals);
            report = made.report;
        }
        if report.is_some() {
            stages.predictor = report.clone();
        }
        let before = progress.evaluated;
        for p in proposals {
            if progress.evaluated >= cfg.budget || l.clock.reason(&self.run.id).is_some() {
                break;
            }
            self.trial(l, p, stage, progress, events)?;
        }
        stages.next += 1;
        stages.idle = if progress.evaluated == before {
            stages.idle + 1
        } else {
            0
        };
        self.checkpoint(l, progress, stages)?;
        events.emit(Event::Stage {
            stage,
            evaluated: progress.evaluated,
            budget: cfg.budget,
            best: progress.best_value(),
            best_classic: progress.best_classic.as_ref().map(|b| b.value),
            elapsed_s: l.clock.elapsed_s(),
            eta_s: self.eta(progress),
            predictor: report,
        })
    }

    /// Replaces the run's checkpoint.
    fn checkpoint(&self, l: &SearchLoop, progress: &Progress, stages: &Stages) -> Result<()> {
        let state = RunState {
            metric: Some(l.ev.metric_label().to_string()),
            stage: stages.next,
            evaluated: progress.evaluated,
            best: progress.best_value(),
            best_hash: progress.best.as_ref().map(|b| b.hash.clone()),
            predictor: stages.predictor.clone(),
        };
        self.run.checkpoint(self.store, &state)
    }

    /// Evaluates one proposal as a trial, unless this run has already seen it; returns its
    /// value when it was evaluated now and finished.
    pub(super) fn trial(
        &self,
        l: &SearchLoop,
        p: Proposal,
        stage: u32,
        progress: &mut Progress,
        events: &mut Events,
    ) -> Result<Option<f64>> {
        let hash = schedule_hash(&p.schedule);
        if !progress.seen.insert(hash.clone()) {
            return Ok(None);
        }
        let t = self.evaluations.trial(l.ev, &p, &hash, stage)?;
        let measured: Option<Measured> = t.outcome.as_ref().ok().copied();
        let first_computed = progress.count(measured.as_ref(), &p.source);
        if let Some(m) = &measured {
            let e = Evaluated {
                schedule: p.schedule.clone(),
                hash: hash.clone(),
                value: m.value,
            };
            if progress.record(e, &p.source) {
                let label = format!("run {} trial {}", self.run.id, t.number);
                self.write_best(&p.schedule, m.value, &label)?;
            }
        }
        let eta_s = self.eta(progress);
        if let (true, Some(m), Some(total_s)) = (first_computed, &measured, eta_s) {
            events.emit(Event::Estimate {
                seconds_each: m.seconds,
                evaluations_left: self.config().budget.saturating_sub(progress.evaluated),
                final_evaluations: self.final_evaluations(),
                total_s,
            })?;
        }
        events.emit(Event::Trial {
            number: t.number,
            stage,
            source: p.source.to_string(),
            hash,
            value: measured.map(|m| m.value),
            cached: measured.is_some_and(|m| !m.computed),
            error: t.outcome.err(),
            seconds: measured.map_or(0.0, |m| m.seconds),
            evaluated: progress.evaluated,
            best: progress.best_value(),
            eta_s,
        })?;
        Ok(measured.map(|m| m.value))
    }

    /// Seconds the rest of the run should take at the measured rate: the remaining budget
    /// plus the final ranking (its sample count scales the cost).
    fn eta(&self, p: &Progress) -> Option<f64> {
        let each = p.seconds_each()?;
        let cfg = self.config();
        let left = cfg.budget.saturating_sub(p.evaluated) as f64;
        let final_cost =
            self.final_evaluations() as f64 * (cfg.final_samples as f64 / cfg.samples as f64);
        Some(each * (left + final_cost) + p.final_reference_s)
    }

    /// How many evaluations the final ranking pays at most: the best `final_top` and the
    /// best classic solver.
    fn final_evaluations(&self) -> usize {
        self.config().final_top.min(self.config().budget) + 1
    }

    /// Solves (or loads) the MSE reference before the first evaluation, so its cost is
    /// reported apart from the evaluations' and the cost estimate is not skewed by it.
    /// Returns the seconds the reference took to solve (None for other metrics).
    fn prepare_reference(&self, ev: &Evaluator, events: &mut Events) -> Result<Option<f64>> {
        if self.config().metric != MetricKind::Mse {
            return Ok(None);
        }
        let info = ev.reference_info()?.clone();
        events.emit(Event::Reference {
            nfe: info.nfe,
            doubling_mse: info.doubling_mse,
            seconds: info.seconds,
            cached: ev.reference_was_cached().unwrap_or(false),
        })?;
        Ok(Some(info.seconds))
    }

    /// Reports the best classic seed, once all seeds are evaluated; false when there is none.
    fn tell_baselines(&self, p: &Progress, events: &mut Events) -> Result<bool> {
        let Some(best) = &p.best_classic else {
            return Ok(false);
        };
        events.emit(Event::Baselines {
            best_classic: best.label.clone(),
            value: best.value,
        })?;
        Ok(true)
    }

    /// Reports why the run stopped.
    fn stopped(
        &self,
        termination: Termination,
        reason: String,
        p: &Progress,
        events: &mut Events,
    ) -> Result<()> {
        events.emit(Event::Stopped {
            termination,
            reason,
            evaluated: p.evaluated,
        })
    }

    fn outcome(
        &self,
        termination: Termination,
        p: &Progress,
        final_ranking: Vec<RankingRow>,
        ev: &Evaluator,
    ) -> RunOutcome {
        RunOutcome {
            run_id: self.run.id.clone(),
            completed: termination.is_finished(),
            termination,
            evaluated: p.evaluated,
            computed: p.computed,
            best: p.best_value(),
            best_classic: p.best_classic.as_ref().map(|b| (b.label.clone(), b.value)),
            final_ranking,
            metric: ev.metric_label().to_string(),
        }
    }
}

/// What every stage of one `run` shares.
pub(super) struct SearchLoop<'l> {
    pub(super) ev: &'l Evaluator<'l>,
    ops: &'l Candidates<'l>,
    seeds: &'l [Proposal],
    pub(super) clock: &'l StopClock,
}

/// Up to `n` of `seeds` whose hashes are not in `seen`, in order.
fn unseen_seeds(seeds: &[Proposal], seen: &HashSet<String>, n: usize) -> Vec<Proposal> {
    let mut taken = HashSet::new();
    seeds
        .iter()
        .filter(|p| {
            let h = schedule_hash(&p.schedule);
            !seen.contains(&h) && taken.insert(h)
        })
        .take(n)
        .cloned()
        .collect()
}

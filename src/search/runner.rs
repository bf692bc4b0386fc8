//! The search runner: evaluates proposals with the true metric under the budget, records
//! every trial in the store before and after evaluating it, keeps `best.json` current in the
//! run directory, checkpoints after every stage, and resumes from the store after Ctrl-C, a
//! kill or a time limit without losing or re-paying any finished evaluation.

use super::config::SearchConfig;
use super::s3::{PredictorFiles, PredictorStats};
use super::strategy::{Evaluated, Proposal, StrategyContext, make_strategy};
use crate::dataset::{Dataset, LoadOptions};
use crate::error::{Result, S3Error};
use crate::metric::Evaluator;
use crate::noise::NoiseSchedule;
use crate::solver::{ClassicSolver, SolverSchedule, Spacing};
use crate::space::{Candidates, SearchSpace, schedule_hash};
use crate::store::{CachedEval, EvalKey, Store, TrialStatus};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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
        evaluated: usize,
        best: Option<f64>,
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
    },
}

/// What a run ended with.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub run_id: String,
    /// Whether the budget was spent (false: stopped by the time limit).
    pub completed: bool,
    pub evaluated: usize,
    /// The best search value (on the search samples).
    pub best: Option<f64>,
    /// The best classic solver on the search samples.
    pub best_classic: Option<(String, f64)>,
    /// Final re-evaluation: (label, value) best first, on other noise and more samples.
    pub final_ranking: Vec<(String, f64)>,
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
}

/// A stable identity of a model for the evaluation cache: dataset name, noise schedule and
/// a hash of the mixture's parameters (so an edited mixture file is a new model).
fn model_identity(ds: &Dataset) -> String {
    ds.identity()
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
        Ok(Self {
            store,
            run_id: run_id.to_string(),
            config,
            dataset,
            ns,
            space,
            max_time: None,
        })
    }

    /// Stops (resumably) once this much wall time has passed.
    pub fn with_max_time(mut self, t: Option<Duration>) -> Self {
        self.max_time = t;
        self
    }

    fn key(&self, ev: &Evaluator, hash: &str, samples: usize, seed: u64) -> EvalKey {
        let metric = ev.metric_id();
        EvalKey {
            schedule_hash: hash.to_string(),
            model: model_identity(&self.dataset),
            metric,
            samples,
            noise_seed: seed,
        }
    }

    /// The metric of `s` through the store's cache (computed and cached on a miss).
    fn cached_value(&self, ev: &Evaluator, s: &SolverSchedule, seed: u64) -> Result<f64> {
        let key = self.key(ev, &schedule_hash(s), ev.samples(), seed);
        if let Some(c) = self.store.cached_eval(&key)? {
            return Ok(c.value);
        }
        let start = Instant::now();
        let e = ev.evaluate(s)?;
        self.store.put_eval(
            &key,
            &CachedEval {
                value: e.value,
                nfe: e.nfe,
                seconds: start.elapsed().as_secs_f64(),
            },
            &self.run_id,
        )?;
        Ok(e.value)
    }

    /// The classic solvers at the target NFE (every solver × spacing that builds).
    fn classic_seeds(&self) -> Vec<Proposal> {
        let mut out = Vec::new();
        for solver in ClassicSolver::all() {
            for spacing in Spacing::all_for(&self.ns) {
                let t_end = if spacing.is_discrete() {
                    match solver {
                        ClassicSolver::DpmSolver { .. } => self.ns.t_min(),
                        _ => 0.0,
                    }
                } else {
                    self.ns.t_min()
                };
                let label = format!("{} {}", solver.label(), spacing.label());
                if let Ok(s) = spacing
                    .timesteps(&self.ns, self.config.nfe, self.ns.t_max(), t_end)
                    .and_then(|ts| solver.build_for(&self.ns, ts, true))
                {
                    out.push(Proposal {
                        schedule: s.with_name(label.clone()),
                        source: format!("seed:{label}"),
                    });
                }
            }
        }
        out
    }

    fn write_best(&self, s: &SolverSchedule, value: f64, label: &str) -> Result<()> {
        let dir = run_dir(self.store.path(), &self.run_id);
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

    /// Runs (or resumes) the search until the budget is spent or the time limit passes.
    pub fn run(&self, on_event: &mut dyn FnMut(&Event)) -> Result<RunOutcome> {
        let start = Instant::now();
        let cfg = &self.config;
        let ev = Evaluator::new(&self.dataset, &self.ns, cfg.metric, cfg.samples, cfg.seed)?;
        let ops = Candidates::new(&self.space, &self.ns, cfg.nfe)?;
        let record = self
            .store
            .run(&self.run_id)?
            .ok_or_else(|| S3Error::field("search", "run", format!("no run `{}`", self.run_id)))?;
        let mut stage: u32 = record
            .state
            .get("stage")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;

        // The archive: every trial this run finished (or that failed in evaluation).
        let mut archive: Vec<Evaluated> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut evaluated = 0usize;
        for t in self.store.trials(&self.run_id)? {
            let interrupted = t
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("interrupted"));
            if t.status == TrialStatus::Failed && interrupted {
                continue;
            }
            evaluated += 1;
            seen.insert(t.schedule_hash.clone());
            if let (TrialStatus::Finished, Some(v)) = (t.status, t.value) {
                let schedule: SolverSchedule =
                    serde_json::from_value(t.schedule.clone()).map_err(|e| S3Error::Store {
                        path: self.store.path().into(),
                        message: format!(
                            "run {} trial {}: bad schedule: {e}",
                            self.run_id, t.number
                        ),
                    })?;
                archive.push(Evaluated {
                    schedule,
                    hash: t.schedule_hash,
                    value: v,
                });
            }
        }
        let initial = evaluated;
        on_event(&Event::Started {
            run_id: self.run_id.clone(),
            resumed: evaluated > 0 || stage > 0,
            evaluated,
            budget: cfg.budget,
            recovered_trials: self.store.recovered_trials(),
        });

        // The classic solvers: the reference line, and seeds for the strategies that use them.
        let seeds = self.classic_seeds();
        let mut best_classic: Option<(String, f64, SolverSchedule)> = None;
        for p in &seeds {
            if let Ok(v) = self.cached_value(&ev, &p.schedule, cfg.seed)
                && best_classic.as_ref().is_none_or(|b| v < b.1)
            {
                best_classic = Some((
                    p.source.trim_start_matches("seed:").to_string(),
                    v,
                    p.schedule.clone(),
                ));
            }
        }
        if let Some((name, v, _)) = &best_classic {
            on_event(&Event::Baselines {
                best_classic: name.clone(),
                value: *v,
            });
        }
        let dir = run_dir(self.store.path(), &self.run_id);
        let mut strategy = make_strategy(
            cfg.strategy,
            StrategyContext {
                space: &self.space,
                ns: &self.ns,
                nfe: cfg.nfe,
                seeds,
                predictor: PredictorFiles {
                    save_stem: dir.join("predictor"),
                    meta: serde_json::json!({
                        "run": self.run_id,
                        "model": model_identity(&self.dataset),
                        "metric": cfg.metric.as_str(),
                        "samples": cfg.samples,
                        "nfe": cfg.nfe,
                    }),
                    warm_start: cfg.predictor.as_ref().map(PathBuf::from),
                },
            },
        )?;
        let mut best: Option<Evaluated> = crate::search::strategy::top(&archive, 1)
            .first()
            .map(|e| (*e).clone());
        let mut idle_stages = 0;
        // The latest predictor report, kept in the checkpoint for `s3 runs show`.
        let mut last_predictor = record
            .state
            .get("predictor")
            .cloned()
            .unwrap_or(serde_json::Value::Null);

        while evaluated < cfg.budget {
            if let Some(limit) = self.max_time
                && start.elapsed() >= limit
            {
                on_event(&Event::Stopped {
                    reason: format!(
                        "time limit {} s reached; resume with --resume {}",
                        limit.as_secs(),
                        self.run_id
                    ),
                    evaluated,
                });
                return Ok(self.outcome(false, evaluated, &best, &best_classic, vec![]));
            }
            let mut rng = StdRng::seed_from_u64(
                cfg.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(stage as u64 + 1)),
            );
            let n = cfg.stage_size.min(cfg.budget - evaluated);
            let proposals = strategy.propose(&ops, &archive, n, &mut rng)?;
            let predictor = strategy.predictor_stats();
            if let Some(p) = &predictor {
                last_predictor = serde_json::to_value(p).expect("stats serialise");
            }
            let before = evaluated;
            for p in proposals {
                if evaluated >= cfg.budget {
                    break;
                }
                if let Some(limit) = self.max_time
                    && start.elapsed() >= limit
                {
                    break;
                }
                let hash = schedule_hash(&p.schedule);
                if !seen.insert(hash.clone()) {
                    continue;
                }
                let json = serde_json::to_value(&p.schedule).expect("schedules serialise");
                let trial = self
                    .store
                    .begin_trial(&self.run_id, &hash, json, stage, &p.source)?;
                let key = self.key(&ev, &hash, cfg.samples, cfg.seed);
                let (value, cached, error) = match self.store.cached_eval(&key)? {
                    Some(c) => {
                        self.store
                            .finish_trial(&self.run_id, trial.number, &key, &c, true)?;
                        (Some(c.value), true, None)
                    }
                    None => {
                        let t0 = Instant::now();
                        match ev.evaluate(&p.schedule) {
                            Ok(e) => {
                                let c = CachedEval {
                                    value: e.value,
                                    nfe: e.nfe,
                                    seconds: t0.elapsed().as_secs_f64(),
                                };
                                self.store.finish_trial(
                                    &self.run_id,
                                    trial.number,
                                    &key,
                                    &c,
                                    false,
                                )?;
                                (Some(e.value), false, None)
                            }
                            Err(e) => {
                                let msg = e.to_string();
                                self.store.fail_trial(&self.run_id, trial.number, &msg)?;
                                (None, false, Some(msg))
                            }
                        }
                    }
                };
                evaluated += 1;
                if let Some(v) = value {
                    let e = Evaluated {
                        schedule: p.schedule.clone(),
                        hash: hash.clone(),
                        value: v,
                    };
                    if best.as_ref().is_none_or(|b| v < b.value) {
                        self.write_best(
                            &p.schedule,
                            v,
                            &format!("run {} trial {}", self.run_id, trial.number),
                        )?;
                        best = Some(e.clone());
                    }
                    archive.push(e);
                }
                on_event(&Event::Trial {
                    number: trial.number,
                    stage,
                    source: p.source,
                    hash,
                    value,
                    cached,
                    error,
                    evaluated,
                    best: best.as_ref().map(|b| b.value),
                });
            }
            stage += 1;
            idle_stages = if evaluated == before {
                idle_stages + 1
            } else {
                0
            };
            self.store.checkpoint(
                &self.run_id,
                serde_json::json!({
                    "stage": stage,
                    "evaluated": evaluated,
                    "best": best.as_ref().map(|b| b.value),
                    "best_hash": best.as_ref().map(|b| b.hash.clone()),
                    "predictor": last_predictor,
                }),
            )?;
            let elapsed = start.elapsed().as_secs_f64();
            on_event(&Event::Stage {
                stage: stage - 1,
                evaluated,
                budget: cfg.budget,
                best: best.as_ref().map(|b| b.value),
                best_classic: best_classic.as_ref().map(|b| b.1),
                elapsed_s: elapsed,
                eta_s: (evaluated < cfg.budget && evaluated > initial).then(|| {
                    (cfg.budget - evaluated) as f64 * elapsed / (evaluated - initial) as f64
                }),
                predictor,
            });
            if idle_stages >= 20 {
                on_event(&Event::Stopped {
                    reason: "20 stages proposed nothing new: the space is exhausted at this NFE"
                        .into(),
                    evaluated,
                });
                break;
            }
        }
        let ranking = self.final_ranking(&archive, &best_classic, on_event)?;
        Ok(self.outcome(true, evaluated, &best, &best_classic, ranking))
    }

    /// Re-evaluates the best few and the best classic solver on more samples and other noise
    /// (seed + 1), exports the winner as `best.json` and writes `final.json`.
    fn final_ranking(
        &self,
        archive: &[Evaluated],
        best_classic: &Option<(String, f64, SolverSchedule)>,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Vec<(String, f64)>> {
        let cfg = &self.config;
        let seed = cfg.seed + 1;
        let ev = Evaluator::new(&self.dataset, &self.ns, cfg.metric, cfg.final_samples, seed)?;
        let mut rows: Vec<(String, f64, SolverSchedule)> = Vec::new();
        for e in crate::search::strategy::top(archive, cfg.final_top) {
            if let Ok(v) = self.cached_value(&ev, &e.schedule, seed) {
                rows.push((format!("searched {}", e.hash), v, e.schedule.clone()));
            }
        }
        let classic = match best_classic {
            Some((name, _, s)) => Some((name.clone(), self.cached_value(&ev, s, seed)?)),
            None => None,
        };
        rows.sort_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((label, v, s)) = rows.first() {
            self.write_best(
                s,
                *v,
                &format!("run {} winner, {label}, final", self.run_id),
            )?;
            if let Some((cname, cv)) = &classic {
                on_event(&Event::Final {
                    winner: label.clone(),
                    value: *v,
                    best_classic: cname.clone(),
                    best_classic_value: *cv,
                    samples: cfg.final_samples,
                    seed,
                });
            }
        }
        let mut ranking: Vec<(String, f64)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
        if let Some(c) = classic {
            ranking.push((format!("classic {}", c.0), c.1));
            ranking.sort_by(|a, b| a.1.total_cmp(&b.1));
        }
        let dir = run_dir(self.store.path(), &self.run_id);
        let path = dir.join("final.json");
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
        evaluated: usize,
        best: &Option<Evaluated>,
        best_classic: &Option<(String, f64, SolverSchedule)>,
        final_ranking: Vec<(String, f64)>,
    ) -> RunOutcome {
        RunOutcome {
            run_id: self.run_id.clone(),
            completed,
            evaluated,
            best: best.as_ref().map(|b| b.value),
            best_classic: best_classic.as_ref().map(|b| (b.0.clone(), b.1)),
            final_ranking,
        }
    }
}

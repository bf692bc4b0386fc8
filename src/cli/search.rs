//! `s3 search`: run or resume a search and report it.

use super::ModelArgs;
use super::out::outln;
use super::store_arg::StoreArg;
use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use s3::metric::MetricKind;
use s3::search::{
    BEST_FILE, DEFAULT_FINAL_TOP, Event, RefineConfig, RowKind, Run, RunOutcome, SearchConfig,
    SearchRunner, SearchSetup, StrategyKind, Termination, check_run_id, run_dir,
};
use s3::solver::ClassicSolver;
use s3::store::Store;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Number of model calls of the schedules searched.
    #[arg(long)]
    nfe: Option<usize>,
    /// Strategy: s3 (predictor-guided, seeded with the classic solvers), evolution (USF's
    /// search seeded with the classic solvers) or random.
    #[arg(long, default_value = "s3")]
    strategy: String,
    /// Warm-start the s3 predictor from a saved one: the path without .json/.safetensors,
    /// e.g. s3-store/runs/RUN/predictor.
    #[arg(long, value_name = "STEM")]
    predictor: Option<PathBuf>,
    /// True-metric evaluations to spend, the classic seeds included (they take at most a
    /// quarter: the best-known few when the budget is small).
    #[arg(long, default_value_t = 200)]
    budget: usize,
    /// Seed of the search and of the evaluation noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Search space: usf, quick, or a space .json file.
    #[arg(long, default_value = "usf")]
    space: String,
    /// Samples per evaluation during the search [default: the dataset's].
    #[arg(long)]
    samples: Option<usize>,
    /// Samples of the final re-evaluation on other noise [default: twice --samples].
    #[arg(long)]
    final_samples: Option<usize>,
    /// Candidates per stage.
    #[arg(long, default_value_t = 20)]
    stage_size: usize,
    /// Metric: fd (FID for a network with FID files) or mse (to the exact solve for
    /// mixtures, to the teacher for networks) [default: the dataset's].
    #[arg(long)]
    metric: Option<String>,
    /// Model calls of a network's teacher for --metric mse [default: 200].
    #[arg(long, value_name = "NFE")]
    reference_nfe: Option<usize>,
    /// Search only the timesteps of one classic solver (e.g. dpm-solver++(2M) or
    /// dpm-solver++-2M, unipc-bh2-2, ddim; on flow, ddim is flow Euler), so the result runs
    /// exactly as a plain timestep or sigma list under that solver in diffusers, k-diffusion
    /// or ComfyUI [default: search every per-step decision].
    #[arg(long, value_name = "NAME")]
    solver: Option<String>,
    /// Refine the best N distinct schedules of the search after it: their timesteps
    /// (t_end included), relaxation coefficients and model-time offsets are tuned by
    /// Nelder–Mead on a cheap tier (MSE to the exact solution, or to the teacher, on
    /// --refine-samples samples); each refined schedule then pays one true-metric trial and
    /// is kept only if that beats its parent.
    #[arg(long, value_name = "N", default_value_t = s3::search::DEFAULT_REFINE_TOP)]
    refine: usize,
    /// Skip the refinement.
    #[arg(long, conflicts_with = "refine")]
    no_refine: bool,
    /// Samples of the refinement's cheap tier.
    #[arg(long, value_name = "N", default_value_t = s3::search::DEFAULT_REFINE_SAMPLES)]
    refine_samples: usize,
    /// Model calls each refinement may spend (one cheap measurement costs NFE × samples)
    /// [default: 300 measurements' worth].
    #[arg(long, value_name = "CALLS")]
    refine_calls: Option<u64>,
    /// Continue the run RUN with its stored configuration.
    #[arg(long, value_name = "RUN")]
    resume: Option<String>,
    /// Stop (resumably) after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    max_time: Option<u64>,
    /// Name the new run (default: dataset, NFE, strategy and time).
    #[arg(long)]
    run_id: Option<String>,
    #[command(flatten)]
    store: StoreArg,
    /// Print only the final summary.
    #[arg(long)]
    quiet: bool,
    /// Print machine-readable events, one JSON object per line.
    #[arg(long)]
    json: bool,
}

/// A new run: its configuration, its setup (the dataset and space loaded here, once) and
/// the dataset's name (for the run id).
fn new_config(a: &SearchArgs) -> Result<(SearchConfig, SearchSetup, String)> {
    let Some(nfe) = a.nfe else {
        bail!("--nfe is required for a new search (or give --resume RUN)");
    };
    super::check_nfe(nfe, "--nfe")?;
    let (ds, _) = a.model.load()?;
    let samples = a.samples.unwrap_or(ds.samples);
    // Oversized counts fail here, before the run is recorded (it could never resume).
    s3::metric::check_sample_size(samples, ds.dim(), "--samples")?;
    let final_samples = a.final_samples.unwrap_or(2 * samples);
    s3::metric::check_sample_size(final_samples, ds.dim(), "--final-samples")?;
    let metric = match &a.metric {
        Some(m) => MetricKind::parse(m).context("--metric")?,
        None => ds.metric,
    };
    let space = s3::space::SearchSpace::load(&a.space).context("--space")?;
    let space_hash = space.hash();
    let solver = match &a.solver {
        Some(name) => Some(ClassicSolver::parse(name).context("--solver")?),
        None => None,
    };
    let space_name = if std::path::Path::new(&a.space).exists() {
        std::fs::canonicalize(&a.space)?.display().to_string()
    } else {
        a.space.clone()
    };
    let dataset = if std::path::Path::new(&a.model.dataset).exists() {
        std::fs::canonicalize(&a.model.dataset)?
            .display()
            .to_string()
    } else {
        a.model.dataset.clone()
    };
    let cfg = SearchConfig {
        dataset,
        noise: ds.noise,
        nfe,
        strategy: StrategyKind::parse(&a.strategy).context("--strategy")?,
        space: space_name,
        budget: a.budget,
        seed: a.seed,
        metric,
        samples,
        stage_size: a.stage_size,
        final_top: DEFAULT_FINAL_TOP,
        final_samples,
        reference_nfe: a.reference_nfe,
        refine: refine_config(a, nfe),
        solver,
        dataset_identity: Some(ds.identity()),
        space_hash: Some(space_hash),
        models_dir: match ds.network() {
            Some(_) => {
                let dir = s3::onnx::models_dir(a.model.network.models_dir.as_deref());
                Some(std::path::absolute(&dir)?.display().to_string())
            }
            None => None,
        },
        predictor: match &a.predictor {
            Some(stem) => {
                s3::search::check_warm_start(stem, nfe).context("--predictor")?;
                let abs = std::path::absolute(stem)
                    .with_context(|| format!("--predictor {}", stem.display()))?;
                Some(abs.display().to_string())
            }
            None => None,
        },
    };
    if let Some(n) = cfg.reference_nfe
        && !(s3::metric::MIN_REFERENCE_NFE..=super::MAX_REFERENCE_NFE).contains(&n)
    {
        bail!(
            "--reference-nfe {n}: expected {} to {} model calls",
            s3::metric::MIN_REFERENCE_NFE,
            super::MAX_REFERENCE_NFE
        );
    }
    let name = ds.name.clone();
    let setup = SearchSetup::new(&cfg, ds, space)?;
    Ok((cfg, setup, name))
}

/// The refinement the flags ask for (None with --no-refine).
fn refine_config(a: &SearchArgs, nfe: usize) -> Option<RefineConfig> {
    if a.no_refine {
        return None;
    }
    let measurement = (nfe * a.refine_samples) as u64;
    Some(RefineConfig {
        top: a.refine,
        samples: a.refine_samples,
        calls: a
            .refine_calls
            .unwrap_or(s3::search::DEFAULT_REFINE_MEASUREMENTS * measurement),
        knobs: s3::refine::Knobs::ALL,
    })
}

/// Without a terminal, a trial line at most this often (seconds), so slow evaluations
/// still show progress in logs.
const TRIAL_LINE_INTERVAL_S: u64 = 10;

/// Renders search events: JSON lines, or text lines (with a progress bar on a terminal).
struct EventPrinter<'a> {
    bar: Option<&'a ProgressBar>,
    json: bool,
    text: bool,
    /// When the last text line was printed.
    last_line: Instant,
    final_samples: usize,
}

impl EventPrinter<'_> {
    fn say(&mut self, line: String) {
        self.last_line = Instant::now();
        match self.bar {
            Some(b) => b.println(line),
            None => outln!("{line}"),
        }
    }

    fn print(&mut self, e: &Event) {
        if self.json {
            outln!("{}", serde_json::to_string(e).expect("events serialise"));
            return;
        }
        if !self.text {
            return;
        }
        match e {
            Event::Started { run_id, resumed, evaluated, budget, recovered_trials, seeds } => {
                if let Some(b) = self.bar {
                    b.set_position(*evaluated as u64);
                }
                self.say(format!(
                    "{} run {run_id}: {evaluated}/{budget} evaluations done, the first {seeds} \
                     being classic solvers{}",
                    if *resumed { "resuming" } else { "starting" },
                    if *recovered_trials > 0 {
                        format!(" ({recovered_trials} interrupted trials marked failed)")
                    } else {
                        String::new()
                    }
                ))
            }
            Event::Estimate { seconds_each, evaluations_left, final_evaluations, total_s } => {
                self.say(format!(
                    "cost estimate: {evaluations_left} evaluations left × {seconds_each:.2} s, \
                     then the final ranking ({final_evaluations} evaluations on \
                     {} samples, and its own MSE reference if any) ≈ {} in all",
                    self.final_samples,
                    duration(*total_s)
                ))
            }
            Event::Reference { nfe, doubling_mse, seconds, cached } => self.say(format!(
                "MSE reference: {nfe} model calls a sample, {} (doubling check {doubling_mse:.3e})",
                if *cached {
                    "from the store".to_string()
                } else {
                    format!("solved in {}", duration(*seconds))
                }
            )),
            Event::Baselines { best_classic, value } => {
                self.say(format!("best classic solver: {best_classic} = {value:.6}"))
            }
            Event::Trial { number, evaluated, best, eta_s, .. } => {
                if let Some(b) = self.bar {
                    b.set_position(*evaluated as u64);
                    if let Some(v) = best {
                        b.set_message(format!("best {v:.6}"));
                    }
                } else if self.last_line.elapsed().as_secs() >= TRIAL_LINE_INTERVAL_S {
                    self.say(format!(
                        "trial {number}: {evaluated} evaluated, best {}{}",
                        best.map_or("-".into(), |b| format!("{b:.6}")),
                        eta_s.map_or(String::new(), |t| format!(", ~{} left", duration(t)))
                    ));
                }
            }
            Event::Stage { stage, evaluated, budget, best, best_classic, elapsed_s, eta_s, predictor } => {
                let ratio = match (best, best_classic) {
                    (Some(b), Some(c)) if *b > 0.0 => format!(" (best classic {c:.6}, ×{:.2})", c / b),
                    _ => String::new(),
                };
                let tau = predictor.as_ref().map_or(String::new(), |p| {
                    match p.holdout_tau {
                        Some(t) => format!(", predictor τ {t:.2} (held out, {} trials)", p.trials),
                        None if p.trials == 0 => ", warm-start predictor".into(),
                        None => format!(", predictor on {} trials", p.trials),
                    }
                });
                self.say(format!(
                    "stage {stage}: {evaluated}/{budget} evaluated, best {}{ratio}{tau}, {elapsed_s:.0} s{}",
                    best.map_or("-".into(), |b| format!("{b:.6}")),
                    eta_s.map_or(String::new(), |t| format!(", ~{} left", duration(t)))
                ))
            }
            Event::Refined { parent_value, value, accepted, tier_start, tier_value, parameters, measurements, calls, paid_calls, seconds, .. } => {
                self.say(format!(
                    "refined a schedule at {parent_value:.6}: {parameters} parameters, cheap tier {tier_start:.3e} → {tier_value:.3e} in {measurements} measurements ({calls} model calls, {paid_calls} paid now, {}); true metric {} — {}",
                    duration(*seconds),
                    value.map_or("not measured (no gain on the cheap tier)".into(), |v| format!("{v:.6}")),
                    if *accepted { "kept" } else { "not kept" }
                ))
            }
            Event::RefineSkipped { reason, .. } => {
                self.say(format!("refinement skipped a schedule: {reason}"))
            }
            Event::Stopped { reason, .. } => self.say(format!("stopped: {reason}")),
            Event::Final { evaluations, seconds, .. } => self.say(format!(
                "final ranking: {evaluations} evaluations on other noise in {} (outside the budget)",
                duration(*seconds)
            )),
        }
    }
}

/// Seconds as `42 s`, `3.5 min` or `1.2 h`.
fn duration(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7200.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// Signals that stop a search resumably: (signal, exit status 128 + signal).
const STOP_SIGNALS: [(i32, i32); 2] = [
    (signal_hook::consts::SIGINT, 130),
    (signal_hook::consts::SIGTERM, 143),
];

/// A flag set by one stop signal, and the exit status it asks for.
type SignalFlag = (Arc<AtomicBool>, i32);

/// Makes SIGINT and SIGTERM stop the search between trials (every finished trial is already
/// recorded) instead of killing it; a second signal exits at once. Returns the shared stop
/// flag and one flag per signal (to choose the exit status).
fn stop_on_signals() -> Result<(Arc<AtomicBool>, Vec<SignalFlag>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut which = Vec::new();
    for (signal, status) in STOP_SIGNALS {
        let got = Arc::new(AtomicBool::new(false));
        // Order matters: the shutdown check sees the flag set by an earlier signal.
        signal_hook::flag::register_conditional_shutdown(signal, status, Arc::clone(&stop))
            .context("installing the signal handlers")?;
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the signal handlers")?;
        signal_hook::flag::register(signal, Arc::clone(&got))
            .context("installing the signal handlers")?;
        which.push((got, status));
    }
    Ok((stop, which))
}

/// The id of a new run when `--run-id` is not given: dataset, NFE, strategy and time.
fn default_run_id(dataset_name: &str, cfg: &SearchConfig) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!(
        "{}-nfe{}-{}-{secs}",
        super::slug(dataset_name),
        cfg.nfe,
        cfg.strategy.as_str()
    )
}

/// Says whether the search beat the best classic solver on the final noise.
fn summary(outcome: &RunOutcome) {
    let metric = outcome.metric.to_uppercase();
    let first = |kind: RowKind| outcome.final_ranking.iter().find(|r| r.kind == kind);
    match (first(RowKind::Searched), first(RowKind::Classic)) {
        (Some(s), Some(c)) if s.value < c.value && s.value > 0.0 => outln!(
            "the search beat the best classic solver: ×{:.2} lower {metric} on the final noise",
            c.value / s.value
        ),
        (Some(s), Some(c)) => outln!(
            "the search did not beat the best classic solver on the final noise: {} {metric} {:.6} against the best searched {:.6}; best.json is that classic solver",
            c.schedule,
            c.value,
            s.value
        ),
        _ => {}
    }
}

/// Runs or resumes a search; returns the exit status (130/143 when stopped by a signal).
pub fn search(a: SearchArgs) -> Result<i32> {
    if let Some(id) = &a.run_id {
        check_run_id(id).context("--run-id")?;
    }
    if let Some(id) = &a.resume {
        check_run_id(id).context("--resume")?;
    }
    // A new run's model and flags are checked before the store is opened, so a model that
    // fails to load leaves nothing behind.
    let fresh = match &a.resume {
        Some(_) => None,
        None => Some(new_config(&a)?),
    };
    if let Some(id) = &a.resume
        && !a.store.path().exists()
    {
        bail!(
            "--resume {id}: there is no store at {} (give --store DIR or set S3_STORE)",
            a.store.path().display()
        );
    }
    let store = a.store.open()?;
    let runner = runner(&a, &store, fresh)?;
    let (run_id, config) = (runner.run_id().to_string(), runner.config().clone());
    let (stop, signals) = stop_on_signals()?;
    let runner = runner
        .with_max_time(a.max_time.map(Duration::from_secs))
        .with_stop_flag(stop);
    let text = !a.quiet && !a.json;
    let bar = progress_bar(text, config.budget);
    let mut printer = EventPrinter {
        bar: bar.as_ref(),
        json: a.json,
        text,
        last_line: Instant::now(),
        final_samples: config.final_samples,
    };
    let outcome = runner.run(&mut |e: &Event| printer.print(e))?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let status = signals
        .iter()
        .find(|(got, _)| got.load(Ordering::SeqCst))
        .map_or(0, |(_, status)| *status);
    if a.json {
        outln!(
            "{}",
            serde_json::to_string(&serde_json::json!({"event": "outcome", "outcome": outcome}))?
        );
    } else {
        report(&outcome, &config, &run_dir(store.path(), &run_id));
    }
    Ok(status)
}

/// The runner of the resumed run, or of the new run `fresh` (recorded in the store now).
fn runner<'s>(
    a: &SearchArgs,
    store: &'s Store,
    fresh: Option<(SearchConfig, SearchSetup, String)>,
) -> Result<SearchRunner<'s>> {
    if let Some(id) = &a.resume {
        if a.nfe.is_some() || a.run_id.is_some() {
            bail!("--resume continues run {id} with its stored configuration; drop --nfe/--run-id");
        }
        if store.run(id)?.is_none() {
            bail!("--resume: no run `{id}` in {}", store.path().display());
        }
        return Ok(SearchRunner::open(store, id, a.model.network.options()?)?);
    }
    let (cfg, setup, dataset_name) = fresh.expect("a new run has a configuration");
    let id = a
        .run_id
        .clone()
        .unwrap_or_else(|| default_run_id(&dataset_name, &cfg));
    Ok(SearchRunner::new(
        store,
        Run::create(store, &id, cfg)?,
        setup,
    ))
}

/// A progress bar on stderr when text is printed and stderr is a terminal.
fn progress_bar(text: bool, budget: usize) -> Option<ProgressBar> {
    if !text || !std::io::stderr().is_terminal() {
        return None;
    }
    let b = ProgressBar::new(budget as u64);
    b.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} evaluations  {msg}  [{elapsed} < {eta}]",
        )
        .expect("valid template"),
    );
    Some(b)
}

/// The end of a search in words: how to resume a stopped run, or the final ranking, whether
/// the search won, and where the best schedule is.
fn report(outcome: &RunOutcome, config: &SearchConfig, dir: &std::path::Path) {
    let run_id = &outcome.run_id;
    if !outcome.completed {
        let why = match outcome.termination {
            Termination::Interrupted => "stopped by a signal",
            _ => "paused at the time limit",
        };
        // stderr: an interrupted terminal pipeline may have closed stdout.
        eprintln!(
            "run {run_id} {why} after {} evaluations; continue with: s3 search --resume {run_id}",
            outcome.evaluated
        );
        return;
    }
    outln!(
        "\nrun {run_id}: final ranking on {} samples with other noise (seed {}):",
        config.final_samples,
        config.seed + 1
    );
    for row in &outcome.final_ranking {
        outln!("  {:>12.6}  {}", row.value, row.schedule);
    }
    summary(outcome);
    outln!("best schedule: {}", dir.join(BEST_FILE).display());
    outln!("export it with: s3 export {run_id} --format diffusers   (or s3, k-diffusion, comfyui)");
}

//! `s3 runs list|show|trials|plot|compare`: reading what a store holds about its search runs.

use super::out::outln;
use super::run_data::RunTrials;
use super::store_arg::StoreArg;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use s3::search::{BEST_FILE, check_run_id, run_dir};
use s3::store::{StoreView, Trial, TrialStatus};

/// How many of the best trials `runs show` lists.
const SHOWN_TRIALS: usize = 10;

#[derive(Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    command: RunsCommand,
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Every run in the store.
    List {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
    /// One run: configuration, progress, best schedule, top trials.
    Show {
        run: String,
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
    /// Every trial of a run as a table: number, stage, source, hash, status, value, cached,
    /// times and a schedule summary.
    Trials {
        run: String,
        /// csv or jsonl.
        #[arg(long, default_value = "csv")]
        format: String,
        #[command(flatten)]
        store: StoreArg,
    },
    /// The search curves: best-so-far metric value against evaluations of one or more runs
    /// on one picture (the equal-budget comparison), each run's best classic solver dashed.
    Plot {
        /// The runs to draw.
        #[arg(required = true)]
        runs: Vec<String>,
        /// The picture: a .png or .svg file (the format comes from the extension).
        #[arg(long)]
        out: std::path::PathBuf,
        #[command(flatten)]
        store: StoreArg,
    },
    /// A table of runs: best value against the best classic solver, evaluations needed to
    /// beat it, the final ranking's winner and the wall time.
    Compare {
        /// The runs to compare.
        #[arg(required = true)]
        runs: Vec<String>,
        #[command(flatten)]
        store: StoreArg,
        #[arg(long)]
        json: bool,
    },
}

/// `s3 runs list|show|trials|plot|compare`.
pub fn runs(a: RunsArgs) -> Result<()> {
    match a.command {
        RunsCommand::List { store, json } => list(&store.open_view()?, json)?,
        RunsCommand::Plot { runs, out, store } => super::plot::plot(&store, &runs, &out)?,
        RunsCommand::Compare { runs, store, json } => {
            super::compare::compare(&store.open_view()?, &runs, json)?;
        }
        RunsCommand::Trials { run, format, store } => {
            check_run_id(&run)?;
            super::trials::trials(&store.open_view()?, &run, &format)?;
        }
        RunsCommand::Show { run, store, json } => {
            check_run_id(&run)?;
            show(&store.open_view()?, &run, json)?;
        }
    }
    Ok(())
}

/// `s3 runs list`: a line per run (strategy, NFE, finished trials of the budget, best).
fn list(store: &StoreView, json: bool) -> Result<()> {
    let records = store.runs()?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(());
    }
    if records.is_empty() {
        outln!("no runs in {}", store.path().display());
    }
    for r in records {
        let run = RunTrials::load(store, &r.id)?;
        let done = run.finished().count();
        outln!(
            "{:<40} {:<10} nfe {:<3} {:>5}/{:<5} best {}",
            run.id,
            run.config.strategy.as_str(),
            run.config.nfe,
            done,
            run.config.budget,
            run.state.best.map_or("-".into(), |v| format!("{v:.6}")),
        );
    }
    Ok(())
}

/// `s3 runs show RUN`: configuration, checkpoint, predictor, trial counts, best trials.
fn show(store: &StoreView, id: &str, json: bool) -> Result<()> {
    let rec = store
        .run(id)?
        .with_context(|| format!("no run `{id}` in {}", store.path().display()))?;
    let run = RunTrials::load(store, id)?;
    let finished: Vec<&Trial> = run.finished().collect();
    let failed = run
        .trials
        .iter()
        .filter(|t| t.status == TrialStatus::Failed)
        .count();
    let cached = finished.iter().filter(|t| t.cached).count();
    let mut best: Vec<&Trial> = finished
        .iter()
        .copied()
        .filter(|t| t.value.is_some())
        .collect();
    best.sort_by(|a, b| a.value.unwrap().total_cmp(&b.value.unwrap()));
    best.truncate(SHOWN_TRIALS);
    let dir = run_dir(store.path(), id);
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run": rec,
                "trials": run.trials.len(),
                "finished": finished.len(),
                "failed": failed,
                "cached": cached,
                "top": best,
                "best_file": dir.join(BEST_FILE),
            }))?
        );
        return Ok(());
    }
    outln!("run {id}");
    outln!("  config: {}", serde_json::to_string(&rec.config)?);
    outln!("  state: {}", serde_json::to_string(&rec.state)?);
    if let Some(p) = &run.state.predictor {
        let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3}"));
        outln!(
            "  predictor: trained on {} trials, Kendall τ {} held out, {} on training trials ({})",
            p.trials,
            f(p.holdout_tau),
            f(p.train_tau),
            dir.join("predictor.json").display()
        );
    }
    outln!(
        "  trials: {} ({} finished, {} from the cache, {} failed)",
        run.trials.len(),
        finished.len(),
        cached,
        failed
    );
    outln!("  best trials:");
    for t in &best {
        outln!(
            "    #{:<5} {:.6}  stage {:<3} {}",
            t.number,
            t.value.unwrap_or(f64::NAN),
            t.stage,
            t.source
        );
    }
    let best_file = dir.join(BEST_FILE);
    if best_file.exists() {
        outln!("  best schedule: {}", best_file.display());
    } else {
        outln!("  best schedule: none yet (no trial has finished)");
    }
    Ok(())
}

//! `s3 runs list|show|trials`: reading what a store holds about its search runs.

use super::out::outln;
use super::store_arg::StoreArg;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use s3::search::{check_run_id, run_dir};
use s3::store::TrialStatus;

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
}

/// `s3 runs list|show`.
pub fn runs(a: RunsArgs) -> Result<()> {
    match a.command {
        RunsCommand::List { store, json } => {
            let store = store.open_read()?;
            let runs = store.runs()?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(());
            }
            if runs.is_empty() {
                outln!("no runs in {}", store.path().display());
            }
            for r in runs {
                let trials = store.trials(&r.id)?;
                let done = trials
                    .iter()
                    .filter(|t| t.status == TrialStatus::Finished)
                    .count();
                outln!(
                    "{:<40} {:<10} nfe {:<3} {:>5}/{:<5} best {}",
                    r.id,
                    r.config["strategy"].as_str().unwrap_or("?"),
                    r.config["nfe"],
                    done,
                    r.config["budget"],
                    r.state
                        .get("best")
                        .and_then(|v| v.as_f64())
                        .map_or("-".into(), |v| format!("{v:.6}")),
                );
            }
        }
        RunsCommand::Trials { run, format, store } => {
            check_run_id(&run)?;
            super::trials::trials(&store.open_read()?, &run, &format)?;
        }
        RunsCommand::Show { run, store, json } => {
            check_run_id(&run)?;
            let store = store.open_read()?;
            let rec = store
                .run(&run)?
                .with_context(|| format!("no run `{run}` in {}", store.path().display()))?;
            let trials = store.trials(&run)?;
            let finished: Vec<_> = trials
                .iter()
                .filter(|t| t.status == TrialStatus::Finished)
                .collect();
            let failed = trials
                .iter()
                .filter(|t| t.status == TrialStatus::Failed)
                .count();
            let cached = finished.iter().filter(|t| t.cached).count();
            let mut best: Vec<_> = finished.iter().filter(|t| t.value.is_some()).collect();
            best.sort_by(|a, b| a.value.unwrap().total_cmp(&b.value.unwrap()));
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "run": rec,
                        "trials": trials.len(),
                        "finished": finished.len(),
                        "failed": failed,
                        "cached": cached,
                        "top": best.iter().take(10).collect::<Vec<_>>(),
                        "best_file": run_dir(store.path(), &run).join("best.json"),
                    }))?
                );
                return Ok(());
            }
            outln!("run {run}");
            outln!("  config: {}", serde_json::to_string(&rec.config)?);
            outln!("  state: {}", serde_json::to_string(&rec.state)?);
            if let Some(p) = rec.state.get("predictor").filter(|p| !p.is_null()) {
                let f = |k: &str| {
                    p.get(k)
                        .and_then(|v| v.as_f64())
                        .map_or("-".into(), |v| format!("{v:.3}"))
                };
                outln!(
                    "  predictor: trained on {} trials, Kendall τ {} held out, {} on training trials ({})",
                    p.get("trials").unwrap_or(&serde_json::Value::Null),
                    f("holdout_tau"),
                    f("train_tau"),
                    run_dir(store.path(), &run).join("predictor.json").display()
                );
            }
            outln!(
                "  trials: {} ({} finished, {} from the cache, {} failed)",
                trials.len(),
                finished.len(),
                cached,
                failed
            );
            outln!("  best trials:");
            for t in best.iter().take(10) {
                outln!(
                    "    #{:<5} {:.6}  stage {:<3} {}",
                    t.number,
                    t.value.unwrap(),
                    t.stage,
                    t.source
                );
            }
            let best = run_dir(store.path(), &run).join("best.json");
            if best.exists() {
                outln!("  best schedule: {}", best.display());
            } else {
                outln!("  best schedule: none yet (no trial has finished)");
            }
        }
    }
    Ok(())
}

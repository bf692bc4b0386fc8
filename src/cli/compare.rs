//! `s3 runs compare RUN…`: one row per run — strategy, budget, the best value against the
//! best classic seed, how many evaluations the search needed to beat it, the final ranking's
//! winner and the wall time — as a table or JSON, with a warning when the runs were not
//! measured alike (an unequal comparison).

use super::out::outln;
use super::run_data::{Classic, RunTrials, load_runs, warn_unequal};
use anyhow::{Context, Result};
use s3::search::run_dir;
use s3::store::StoreView;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The final ranking's file beside `best.json`, written when a run finishes.
const FINAL_FILE: &str = "final.json";
/// Decimal places of metric values in the table.
const VALUE_DECIMALS: usize = 6;
/// Columns between two table cells.
const COLUMN_GAP: &str = "  ";

/// One row of `final.json`'s ranking.
#[derive(Deserialize)]
struct FinalRow {
    schedule: String,
    value: f64,
}

/// The part of `final.json` the comparison reads.
#[derive(Deserialize)]
struct FinalFile {
    samples: usize,
    ranking: Vec<FinalRow>,
}

/// The final ranking's winner of a finished run.
#[derive(Serialize)]
struct FinalWinner {
    /// `searched <hash>` or `classic <solver> <spacing>`, as the ranking wrote it.
    winner: String,
    value: f64,
    /// Samples of the final re-evaluation (on other noise).
    samples: usize,
}

/// One run compared.
#[derive(Serialize)]
struct Row {
    run: String,
    strategy: &'static str,
    dataset: String,
    metric: String,
    nfe: usize,
    budget: usize,
    samples: usize,
    /// Trials counted against the budget (finished or failed).
    evaluated: usize,
    /// The best finished value on the search samples (classic seeds included).
    best: Option<f64>,
    best_classic: Option<Classic>,
    /// Best classic value over the best value (above 1: the search beat the classic seeds).
    ratio: Option<f64>,
    /// Evaluations after which the best so far first beat the best classic seed.
    first_beat: Option<usize>,
    /// `None` while the run has no final ranking.
    final_ranking: Option<FinalWinner>,
    /// First trial created to last trial finished.
    wall_seconds: Option<f64>,
}

/// `--json`: the rows, and a line per setting the runs differ in (empty when they compare
/// equally).
#[derive(Serialize)]
struct Document<'a> {
    runs: &'a [Row],
    unequal: &'a [String],
}

/// Wall times under this many seconds are shown with a decimal.
const SHORT_WALL_S: f64 = 10.0;

/// A wall time for the table: `214 s`, `0.4 s`.
fn wall(seconds: Option<f64>) -> String {
    match seconds {
        None => "-".into(),
        Some(s) if s < SHORT_WALL_S => format!("{s:.1} s"),
        Some(s) => format!("{s:.0} s"),
    }
}

/// Reads a run's `final.json`; `None` when the run has not finished.
fn final_winner(store: &Path, run: &str) -> Result<Option<FinalWinner>> {
    let path = run_dir(store, run).join(FINAL_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let file: FinalFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected the final ranking ({{\"samples\", \"ranking\": [{{\"schedule\", \"value\"}}]}})",
            path.display()
        )
    })?;
    Ok(file.ranking.into_iter().next().map(|w| FinalWinner {
        winner: w.schedule,
        value: w.value,
        samples: file.samples,
    }))
}

fn row(store: &Path, r: &RunTrials) -> Result<Row> {
    let best = r.best();
    let best_classic = r.best_classic();
    let ratio = best_classic
        .as_ref()
        .zip(best)
        .filter(|(_, b)| *b > 0.0)
        .map(|(c, b)| c.value / b);
    Ok(Row {
        run: r.id.clone(),
        strategy: r.config.strategy.as_str(),
        dataset: r.config.dataset.clone(),
        metric: r.metric_label(),
        nfe: r.config.nfe,
        budget: r.config.budget,
        samples: r.config.samples,
        evaluated: r.evaluated(),
        best,
        ratio,
        first_beat: r.first_beat(),
        final_ranking: final_winner(store, &r.id)?,
        wall_seconds: r.wall_seconds(),
        best_classic,
    })
}

/// A metric value for the table, or `-`.
fn value(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.VALUE_DECIMALS$}"))
}

/// The table's cells of one row.
fn cells(r: &Row) -> Vec<String> {
    let (classic, classic_value) = match &r.best_classic {
        Some(c) => (c.label.clone(), value(Some(c.value))),
        None => ("-".into(), "-".into()),
    };
    let (winner, final_value) = match &r.final_ranking {
        Some(f) => (f.winner.clone(), value(Some(f.value))),
        None => ("not finished".into(), "-".into()),
    };
    vec![
        r.run.clone(),
        r.strategy.to_string(),
        r.nfe.to_string(),
        r.budget.to_string(),
        r.evaluated.to_string(),
        value(r.best),
        classic,
        classic_value,
        r.ratio.map_or("-".into(), |x| format!("×{x:.2}")),
        r.first_beat.map_or("never".into(), |n| n.to_string()),
        winner,
        final_value,
        wall(r.wall_seconds),
    ]
}

/// The table's header; the metric columns name the metric (`FD`, `MSE`).
fn header(metric: &str) -> Vec<String> {
    [
        "run",
        "strategy",
        "NFE",
        "budget",
        "evaluated",
        &format!("best {metric}"),
        "best classic",
        &format!("classic {metric}"),
        "ratio",
        "beat classic at",
        "final winner",
        &format!("final {metric}"),
        "wall time",
    ]
    .map(str::to_string)
    .to_vec()
}

/// Prints rows of cells as columns padded to their widest cell.
fn print_table(rows: &[Vec<String>]) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        outln!("{}", line.join(COLUMN_GAP).trim_end());
    }
}

/// Compares the runs named in `ids`, as a table or (`json`) one JSON document.
pub(crate) fn compare(store: &StoreView, ids: &[String], json: bool) -> Result<()> {
    let runs = load_runs(store, ids)?;
    let unequal = warn_unequal(&runs);
    let rows = runs
        .iter()
        .map(|r| row(store.path(), r))
        .collect::<Result<Vec<_>>>()?;
    if json {
        let doc = Document {
            runs: &rows,
            unequal: &unequal,
        };
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let metric = runs.first().map_or(String::new(), RunTrials::metric_label);
    let mut table = vec![header(&metric)];
    table.extend(rows.iter().map(cells));
    print_table(&table);
    Ok(())
}

//! `s3 runs trials RUN`: every trial of a run as a table (CSV or JSON lines), for analysis
//! outside s3 — number, stage, source, hash, value, cached, status, times and a one-line
//! summary of the schedule's decisions.

use super::out::out;
use anyhow::{Context, Result, bail};
use s3::solver::{Afs, Prediction, SolverSchedule};
use s3::store::{StoreView, Trial, TrialStatus};
use serde::Serialize;

/// One row of the trial table.
#[derive(Serialize)]
struct Row {
    number: u64,
    stage: u32,
    source: String,
    hash: String,
    status: TrialStatus,
    value: Option<f64>,
    cached: bool,
    /// When the trial began (seconds since the Unix epoch).
    started_unix: f64,
    /// How long it took, when it ended.
    seconds: Option<f64>,
    nfe: Option<usize>,
    afs: Option<Afs>,
    /// Per step: prediction (n/d), order, and `c` for a corrector, e.g. `d1c n2 d3 d1`.
    steps: Option<String>,
    /// First and last timestep.
    t_start: Option<f64>,
    t_end: Option<f64>,
    error: Option<String>,
}

/// `d1c n2 d3`: each step's prediction, order and corrector.
fn steps_summary(s: &SolverSchedule) -> String {
    s.steps
        .iter()
        .map(|st| {
            let p = match st.prediction {
                Prediction::Data => 'd',
                Prediction::Noise => 'n',
            };
            let c = if st.corrector.is_some() { "c" } else { "" };
            format!("{p}{}{c}", st.order)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn row(t: Trial) -> Row {
    let schedule: Option<SolverSchedule> = serde_json::from_value(t.schedule).ok();
    Row {
        number: t.number,
        stage: t.stage,
        source: t.source,
        hash: t.schedule_hash,
        status: t.status,
        value: t.value,
        cached: t.cached,
        started_unix: t.created_unix,
        seconds: t.finished_unix.map(|f| f - t.created_unix),
        nfe: schedule.as_ref().map(|s| s.nfe),
        afs: schedule.as_ref().map(|s| s.afs),
        steps: schedule.as_ref().map(steps_summary),
        t_start: schedule.as_ref().and_then(|s| s.timesteps.first().copied()),
        t_end: schedule.as_ref().and_then(|s| s.timesteps.last().copied()),
        error: t.error,
    }
}

/// Prints every trial of `run` in `format` (`csv` or `jsonl`), in trial order.
pub(crate) fn trials(store: &StoreView, run: &str, format: &str) -> Result<()> {
    if !matches!(format, "csv" | "jsonl") {
        bail!("--format {format}: expected csv or jsonl");
    }
    store
        .run(run)?
        .with_context(|| format!("no run `{run}` in {}", store.path().display()))?;
    let mut trials = store.trials(run)?;
    trials.sort_by_key(|t| t.number);
    let rows = trials.into_iter().map(row);
    if format == "jsonl" {
        for r in rows {
            out!("{}\n", serde_json::to_string(&r)?);
        }
        return Ok(());
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).context("writing the CSV")?;
    }
    let bytes = w.into_inner().context("writing the CSV")?;
    out!("{}", String::from_utf8(bytes).context("writing the CSV")?);
    Ok(())
}

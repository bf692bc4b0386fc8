//! A run's files beside the store: `runs/<id>/` holds `best.json` (the best schedule so far,
//! replaced atomically), `final.json` (the final ranking) and `events.jsonl` (every event).

use crate::error::{Result, S3Error};
use crate::metric::MetricKind;
use crate::noise::NoiseSchedule;
use crate::solver::SolverSchedule;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The longest run id accepted.
pub const MAX_RUN_ID_LEN: usize = 128;
/// The run's best schedule so far (after the final ranking: its winner).
pub const BEST_FILE: &str = "best.json";
/// The final ranking of a finished run.
pub const FINAL_FILE: &str = "final.json";
/// The run's event log beside `best.json`: every event as one JSON line, in every mode.
pub const EVENT_LOG: &str = "events.jsonl";

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

/// The files of one run.
pub(super) struct RunFiles {
    dir: PathBuf,
}

/// What `final.json` holds.
#[derive(Serialize)]
struct FinalFile<'a, Row> {
    samples: usize,
    noise_seed: u64,
    metric: &'a str,
    ranking: &'a [Row],
}

impl RunFiles {
    pub(super) fn new(store: &Path, run_id: &str) -> Self {
        Self {
            dir: run_dir(store, run_id),
        }
    }

    /// The run directory, created on first use.
    fn created(&self) -> Result<&Path> {
        std::fs::create_dir_all(&self.dir).map_err(|e| S3Error::io(&self.dir, e))?;
        Ok(&self.dir)
    }

    /// Where the `s3` strategy saves its predictor.
    pub(super) fn predictor_stem(&self) -> PathBuf {
        self.dir.join("predictor")
    }

    /// Replaces `best.json` atomically (write a temporary file, then rename) with `s`, named
    /// by `label` and its `metric` value.
    pub(super) fn write_best(
        &self,
        s: &SolverSchedule,
        ns: &NoiseSchedule,
        metric: MetricKind,
        value: f64,
        label: &str,
    ) -> Result<()> {
        let dir = self.created()?;
        let named = s
            .clone()
            .with_name(format!("{label} ({} {value:.6})", metric.as_str()));
        let tmp = dir.join(format!("{BEST_FILE}.tmp"));
        named.save(&tmp, ns)?;
        let dst = dir.join(BEST_FILE);
        std::fs::rename(&tmp, &dst).map_err(|e| S3Error::io(&dst, e))
    }

    /// Writes `final.json`: the ranking on `samples` samples of noise `noise_seed`.
    pub(super) fn write_final<Row: Serialize>(
        &self,
        samples: usize,
        noise_seed: u64,
        metric: MetricKind,
        ranking: &[Row],
    ) -> Result<()> {
        let path = self.created()?.join(FINAL_FILE);
        let file = FinalFile {
            samples,
            noise_seed,
            metric: metric.as_str(),
            ranking,
        };
        let text = serde_json::to_string_pretty(&file).expect("the final ranking serialises");
        std::fs::write(&path, text).map_err(|e| S3Error::io(&path, e))
    }

    /// Appends one line to the event log.
    pub(super) fn append_event(&self, line: &str) -> Result<()> {
        use std::io::Write;
        let path = self.created()?.join(EVENT_LOG);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"))
            .map_err(|err| S3Error::io(&path, err))
    }
}

//! When a run must stop early: a signal's stop flag, or `--max-time`. Checked between trials
//! and between the final ranking's evaluations, so every phase is bounded and every finished
//! evaluation is kept.

use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why a run ended or stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Termination {
    /// The budget was spent and the final ranking done.
    Completed,
    /// Stages in a row proposed nothing new: the space is exhausted at this NFE.
    Exhausted,
    /// A signal (Ctrl-C, SIGTERM) asked it to stop; it resumes.
    Interrupted,
    /// `--max-time` passed; it resumes.
    TimeLimit,
}

impl Termination {
    /// Whether the run is finished (it has a final ranking); otherwise it resumes.
    pub fn is_finished(self) -> bool {
        matches!(self, Termination::Completed | Termination::Exhausted)
    }
}

/// The stop conditions of one process's part of a run.
pub(super) struct StopClock {
    start: Instant,
    max_time: Option<Duration>,
    flag: Option<Arc<AtomicBool>>,
}

impl StopClock {
    pub(super) fn start(max_time: Option<Duration>, flag: Option<Arc<AtomicBool>>) -> Self {
        Self {
            start: Instant::now(),
            max_time,
            flag,
        }
    }

    /// Seconds since this process started the run.
    pub(super) fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Why run `run_id` must stop now, if it must, with the words that say how to go on.
    pub(super) fn reason(&self, run_id: &str) -> Option<(Termination, String)> {
        if self.flag.as_ref().is_some_and(|f| f.load(Ordering::SeqCst)) {
            return Some((
                Termination::Interrupted,
                format!("interrupted; resume with --resume {run_id}"),
            ));
        }
        let limit = self.max_time?;
        (self.start.elapsed() >= limit).then(|| {
            (
                Termination::TimeLimit,
                format!(
                    "time limit {} s reached; resume with --resume {run_id}",
                    limit.as_secs()
                ),
            )
        })
    }
}

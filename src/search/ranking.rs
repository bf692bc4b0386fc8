//! The final ranking: the best few schedules of the search and the best classic solver,
//! re-evaluated on other noise (seed + 1) with more samples. Its winner becomes `best.json`
//! and the ranking is written to `final.json`. Every evaluation goes through the cache, and
//! the stop conditions are checked between them, so a stopped ranking resumes where it was.

use super::config::SearchConfig;
use super::evaluations::Evaluations;
use super::events::{Event, Events};
use super::evolution::top;
use super::files::RunFiles;
use super::progress::Progress;
use super::stop::{StopClock, Termination};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::noise::NoiseSchedule;
use crate::solver::SolverSchedule;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// What kind of schedule a ranking row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    /// A classic solver on a classic spacing (a seed, whichever stage evaluated it).
    Classic,
    /// A schedule the search found.
    Searched,
}

/// One row of the final ranking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankingRow {
    /// `classic <solver> <spacing>` or `searched <hash>`.
    pub schedule: String,
    pub kind: RowKind,
    pub value: f64,
}

impl RankingRow {
    /// A classic solver's row; `label` names the solver and spacing.
    pub fn classic(label: &str, value: f64) -> Self {
        Self {
            schedule: format!("classic {label}"),
            kind: RowKind::Classic,
            value,
        }
    }

    /// A searched schedule's row.
    pub fn searched(hash: &str, value: f64) -> Self {
        Self {
            schedule: format!("searched {hash}"),
            kind: RowKind::Searched,
            value,
        }
    }
}

/// How the final ranking ended.
pub(super) enum Ranked {
    /// Done: the rows, best first.
    Done(Vec<RankingRow>),
    /// Stopped early (resumable): why, in words.
    Stopped(Termination, String),
}

/// What the final ranking of one run works with.
pub(super) struct Ranker<'r> {
    pub(super) run_id: &'r str,
    pub(super) config: &'r SearchConfig,
    pub(super) ns: &'r NoiseSchedule,
    pub(super) evaluations: &'r Evaluations<'r>,
    pub(super) files: &'r RunFiles,
}

impl Ranker<'_> {
    /// Ranks the best `final_top` and the best classic solver on the final noise `ev`
    /// (the run's seed + 1 and final sample count), exports the winner as `best.json` and
    /// writes `final.json`.
    pub(super) fn rank(
        &self,
        ev: &Evaluator,
        progress: &Progress,
        events: &mut Events,
        clock: &StopClock,
    ) -> Result<Ranked> {
        let cfg = self.config;
        let seed = ev.seed();
        let start = Instant::now();
        let mut computed = 0;
        let mut rows: Vec<(RankingRow, &SolverSchedule)> = Vec::new();
        for (row, s) in candidates(progress, cfg.final_top) {
            if let Some((why, reason)) = clock.reason(self.run_id) {
                return Ok(Ranked::Stopped(why, reason));
            }
            // A schedule that fails on the final noise is left out of the ranking.
            if let Ok(m) = self.evaluations.value(ev, s) {
                computed += usize::from(m.computed);
                rows.push((
                    RankingRow {
                        value: m.value,
                        ..row
                    },
                    s,
                ));
            }
        }
        rows.sort_by(|a, b| a.0.value.total_cmp(&b.0.value));
        let ranking: Vec<RankingRow> = rows.iter().map(|r| r.0.clone()).collect();
        if let Some((winner, s)) = rows.first() {
            let label = format!("run {} winner, {}, final", self.run_id, winner.schedule);
            self.files
                .write_best(s, self.ns, cfg.metric, winner.value, &label)?;
            let best_classic = progress.best_classic.as_ref().and_then(|best| {
                let row = RankingRow::classic(&best.label, f64::NAN).schedule;
                Some(best).zip(ranking.iter().find(|r| r.schedule == row))
            });
            if let Some((best, c)) = best_classic {
                events.emit(Event::Final {
                    winner: winner.schedule.clone(),
                    value: winner.value,
                    best_classic: best.label.clone(),
                    best_classic_value: c.value,
                    samples: cfg.final_samples,
                    seed,
                    evaluations: computed,
                    seconds: start.elapsed().as_secs_f64(),
                })?;
            }
        }
        self.files
            .write_final(cfg.final_samples, seed, cfg.metric, &ranking)?;
        Ok(Ranked::Done(ranking))
    }
}

/// What the final ranking evaluates: the archive's best `final_top` (a classic seed among
/// them is labelled classic) and the best classic seed, once; values are filled in later.
fn candidates(progress: &Progress, final_top: usize) -> Vec<(RankingRow, &SolverSchedule)> {
    let mut out: Vec<(RankingRow, &SolverSchedule)> = top(&progress.archive, final_top)
        .into_iter()
        .map(|e| {
            let row = match progress.seed_labels.get(&e.hash) {
                Some(label) => RankingRow::classic(label, f64::NAN),
                None => RankingRow::searched(&e.hash, f64::NAN),
            };
            (row, &e.schedule)
        })
        .collect();
    if let Some(best) = &progress.best_classic {
        let row = RankingRow::classic(&best.label, f64::NAN);
        if !out.iter().any(|(r, _)| r.schedule == row.schedule) {
            out.push((row, &best.schedule));
        }
    }
    out
}

//! The refinement phase, after the discrete search and before the final ranking: the best
//! few schedules the search found are refined on the cheap tier (`crate::refine`, argmin's
//! Nelder–Mead on the MSE to the exact ODE solution or the teacher), and each refined
//! schedule pays one true-metric trial. A refinement is kept only through that trial: it
//! enters the archive, and so the final ranking, with its true value, like any candidate.
//!
//! Every cheap measurement goes through the store's evaluation cache, so a refinement stopped
//! by a signal or the time limit replays on resume over cached values, along the same path,
//! paying only for what was not measured before.

use super::config::RefineConfig;
use super::evaluations::Evaluations;
use super::events::{Event, Events};
use super::progress::Progress;
use super::runner::{SearchLoop, SearchRunner};
use super::source::TrialSource;
use super::stop::Termination;
use super::strategy::{Evaluated, Proposal};
use crate::error::Result;
use crate::eval::Evaluator;
use crate::metric::MetricKind;
use crate::refine::{Measure, Refined, Settings, Tier, refine};
use crate::solver::SolverSchedule;
use crate::space::schedule_hash;

/// Mixes into the run's seed for the cheap tier's noise, so it differs from the search's
/// (seed) and the final ranking's (seed + 1).
const TIER_SEED_MIX: u64 = 0x7265_6669_6e65; // "refine"

/// The cheap tier over the store's evaluation cache.
struct CachedTier<'t> {
    evaluations: &'t Evaluations<'t>,
    ev: &'t Evaluator<'t>,
}

impl Tier for CachedTier<'_> {
    fn measure(&self, s: &SolverSchedule) -> Result<std::result::Result<Measure, String>> {
        Ok(self
            .evaluations
            .value_or_failure(self.ev, s)?
            .map(|m| Measure {
                value: m.value,
                paid: m.computed,
            })
            .map_err(|e| e.to_string()))
    }

    fn calls(&self, nfe: usize) -> u64 {
        (nfe * self.ev.samples()) as u64
    }
}

impl SearchRunner<'_> {
    /// Refines the best `rc.top` schedules of the search as trials of stage `stage`; Some
    /// when a stop condition ended the phase (it resumes where it stopped).
    pub(super) fn refine_best(
        &self,
        l: &SearchLoop,
        rc: &RefineConfig,
        stage: u32,
        progress: &mut Progress,
        events: &mut Events,
    ) -> Result<Option<(Termination, String)>> {
        let seed = self.config().seed ^ TIER_SEED_MIX;
        let tier_ev = self.evaluator_of(MetricKind::Mse, rc.samples, seed)?;
        let tier = CachedTier {
            evaluations: &self.evaluations,
            ev: &tier_ev,
        };
        let settings = Settings {
            knobs: rc.knobs,
            max_calls: rc.calls,
        };
        for parent in progress.best_unrefined(rc.top) {
            let stop = || l.clock.reason(&self.run.id).is_some();
            if let Some(stopped) = l.clock.reason(&self.run.id) {
                return Ok(Some(stopped));
            }
            let found = refine(&parent.schedule, &self.setup.ns, &tier, settings, &stop)?;
            if let Some(stopped) = l.clock.reason(&self.run.id) {
                return Ok(Some(stopped));
            }
            let refined = match found {
                Ok(r) => r,
                Err(reason) => {
                    events.emit(Event::RefineSkipped {
                        parent: parent.hash.clone(),
                        reason,
                    })?;
                    continue;
                }
            };
            self.measure_refined(l, &parent, refined, stage, progress, events)?;
        }
        Ok(None)
    }

    /// The refined schedule's true-metric trial (unless the cheap tier found nothing better,
    /// or this run measured the same schedule before), and its report.
    fn measure_refined(
        &self,
        l: &SearchLoop,
        parent: &Evaluated,
        refined: Refined,
        stage: u32,
        progress: &mut Progress,
        events: &mut Events,
    ) -> Result<()> {
        let changed = refined.schedule != parent.schedule;
        let hash = changed.then(|| schedule_hash(&refined.schedule));
        let value = match &hash {
            None => None,
            Some(h) => match progress.archive.iter().find(|e| &e.hash == h) {
                Some(known) => Some(known.value),
                None => {
                    let p = Proposal {
                        schedule: refined.schedule.clone(),
                        source: TrialSource::Refined,
                    };
                    self.trial(l, p, stage, progress, events)?
                }
            },
        };
        events.emit(Event::Refined {
            parent: parent.hash.clone(),
            parent_value: parent.value,
            hash,
            value,
            accepted: value.is_some_and(|v| v < parent.value),
            tier_start: refined.start_value,
            tier_value: refined.value,
            parameters: refined.parameters,
            measurements: refined.measurements,
            calls: refined.calls,
            paid_calls: refined.paid_calls,
            seconds: refined.seconds,
            termination: refined.termination,
        })
    }
}

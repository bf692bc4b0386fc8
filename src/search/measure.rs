//! Measuring schedules the way a run's final ranking did: on the run's final noise (seed + 1,
//! `final_samples`) with its metric, through the store's evaluation cache — so `s3 export`
//! can say what a plain-list export of the run's winner costs.

use super::runner::SearchRunner;
use crate::error::Result;
use crate::solver::SolverSchedule;

impl SearchRunner<'_> {
    /// The run's final-ranking metric of each schedule (cached ones are read, not recomputed).
    pub fn measure_final(&self, schedules: &[&SolverSchedule]) -> Result<Vec<f64>> {
        let cfg = self.config();
        let ev = self.evaluator(cfg.final_samples, cfg.seed + 1)?;
        schedules
            .iter()
            .map(|s| self.evaluations().value(&ev, s).map(|m| m.value))
            .collect()
    }
}

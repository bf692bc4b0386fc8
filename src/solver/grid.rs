//! The classic grid: every classic solver × time spacing that applies to a noise schedule at
//! one NFE, as ordinary schedules, best-known first. One rule shared by `s3 baselines` and
//! the search's seeds, so both always run the same schedules.

use super::baselines::ClassicSolver;
use super::schedule::{Prediction, SolverSchedule};
use super::spacing::Spacing;
use crate::error::Result;
use crate::noise::NoiseSchedule;

/// One grid point: a solver, a spacing and the schedule they build (or why they don't).
#[derive(Debug)]
pub struct ClassicEntry {
    pub solver: ClassicSolver,
    pub spacing: Spacing,
    /// The schedule, named `"<solver> <spacing>"`, or the reason it does not build.
    pub schedule: Result<SolverSchedule>,
}

impl ClassicEntry {
    /// `"<solver> <spacing>"`, e.g. `unipc-bh1(3) time-quadratic`.
    pub fn label(&self) -> String {
        format!("{} {}", self.solver.label(), self.spacing.label())
    }
}

/// The end time a classic solver uses with a spacing: continuous spacings stop at the
/// schedule's t_min; diffusers' spacings end at σ = 0 (data prediction, DDIM) or at the first
/// training timestep (noise-prediction DPM-Solver, as diffusers requires).
pub fn classic_end(solver: ClassicSolver, spacing: Spacing, ns: &NoiseSchedule) -> f64 {
    if !spacing.is_discrete() {
        return ns.t_min();
    }
    match (solver, solver.prediction()) {
        (ClassicSolver::DpmSolver { .. }, _) => ns.t_min(),
        (_, Prediction::Data | Prediction::Noise) => 0.0,
    }
}

/// How well a solver is known to do at few steps, best first (the order of the measured
/// rankings in README: UniPC and DPM-Solver++ of order 3 lead at NFE 4–6, DDIM trails).
const SOLVER_PREFERENCE: [&str; 9] = [
    "unipc-bh1(3)",
    "dpm-solver++(3M)",
    "unipc-bh2(2)",
    "dpm-solver++(2M)",
    "unipc-bh2(3)",
    "unipc-bh1(2)",
    "dpm-solver(3M)",
    "dpm-solver(2M)",
    "ddim",
];

/// Spacings best first: the continuous ones that lead at few steps, then diffusers' own
/// (its flow grids included).
const SPACING_PREFERENCE: [&str; 10] = [
    "time-quadratic",
    "logsnr",
    "flow-unipc",
    "trailing",
    "flow-dpm",
    "karras(rho=7)",
    "time-uniform",
    "flow-euler",
    "linspace",
    "leading(offset=0)",
];

fn rank(list: &[&str], label: &str) -> usize {
    list.iter().position(|l| *l == label).unwrap_or(list.len())
}

/// Every classic solver × spacing for `ns` at `nfe` model calls, best-known first: ordered
/// by the sum of the solver's and the spacing's preference rank (ties: the better spacing
/// first), so the first few entries already cover different solvers (what a small budget
/// seeds with).
pub fn classic_grid(ns: &NoiseSchedule, nfe: usize) -> Vec<ClassicEntry> {
    let mut grid: Vec<(usize, usize, ClassicEntry)> = Vec::new();
    for solver in ClassicSolver::all() {
        for spacing in Spacing::all_for(ns) {
            let t_end = classic_end(solver, spacing, ns);
            let schedule = spacing
                .timesteps(ns, nfe, ns.t_max(), t_end)
                .and_then(|ts| solver.build_for(ns, ts, true))
                .map(|s| s.with_name(format!("{} {}", solver.label(), spacing.label())));
            let (rs, rp) = (
                rank(&SOLVER_PREFERENCE, &solver.label()),
                rank(&SPACING_PREFERENCE, &spacing.label()),
            );
            grid.push((
                rs + rp,
                rp,
                ClassicEntry {
                    solver,
                    spacing,
                    schedule,
                },
            ));
        }
    }
    grid.sort_by_key(|(sum, rp, _)| (*sum, *rp));
    grid.into_iter().map(|(_, _, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::{BetaSchedule, DiscreteVp};

    #[test]
    fn every_solver_and_spacing_appears_once_best_known_first() {
        let ns = NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::Linear, 1000));
        let grid = classic_grid(&ns, 5);
        assert_eq!(
            grid.len(),
            ClassicSolver::all().len() * Spacing::all_for(&ns).len()
        );
        assert_eq!(grid[0].label(), "unipc-bh1(3) time-quadratic");
        let mut labels: Vec<String> = grid.iter().map(ClassicEntry::label).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), grid.len());
        // Every preference name is a real label (a renamed solver would silently sink).
        for s in ClassicSolver::all() {
            assert!(
                SOLVER_PREFERENCE.contains(&s.label().as_str()),
                "{}",
                s.label()
            );
        }
        for p in Spacing::all_for(&ns) {
            assert!(
                SPACING_PREFERENCE.contains(&p.label().as_str()),
                "{}",
                p.label()
            );
        }
    }

    #[test]
    fn flow_grids_are_ranked_too() {
        let ns = crate::noise::NoiseScheduleSpec::new(crate::noise::NoiseScheduleName::Flow)
            .with_shift(3.0)
            .unwrap()
            .build();
        for p in Spacing::all_for(&ns) {
            assert!(
                SPACING_PREFERENCE.contains(&p.label().as_str()),
                "{}",
                p.label()
            );
        }
        assert!(classic_grid(&ns, 5).iter().all(|e| e.schedule.is_ok()));
    }

    #[test]
    fn the_first_few_cover_different_solvers() {
        let grid = classic_grid(&NoiseSchedule::vp_linear(), 5);
        let first: Vec<String> = grid[..3].iter().map(|e| e.solver.label()).collect();
        assert_ne!(first[0], first[1], "{first:?}");
        assert!(grid.iter().all(|e| e.schedule.is_ok()));
    }
}

//! The strategies without a model: uniform random schedules, and USF's evolutionary search
//! (whose `evolve` also feeds the `s3` strategy's pool).

use super::source::{Origin, TrialSource};
use super::strategy::{Evaluated, Proposal, StageProposal, Strategy};
use crate::error::Result;
use crate::solver::SolverSchedule;
use crate::space::Candidates;
use rand::Rng;
use rand::rngs::StdRng;

/// How many second parents a crossover tries before it keeps the first parent alone (two
/// schedules cross over only where their step structures allow it).
const CROSSOVER_TRIES: usize = 5;

/// A schedule a strategy made, and how.
#[derive(Debug, Clone)]
pub(super) struct Made {
    pub(super) schedule: SolverSchedule,
    pub(super) origin: Origin,
}

impl Made {
    /// A uniform random schedule.
    pub(super) fn random(ops: &Candidates, rng: &mut StdRng) -> Self {
        Self {
            schedule: ops.random(rng),
            origin: Origin::Random,
        }
    }

    /// As a proposal of its own (not picked by a predictor).
    pub(super) fn proposal(self) -> Proposal {
        Proposal {
            schedule: self.schedule,
            source: TrialSource::Made(self.origin),
        }
    }
}

/// Uniform random schedules from the space.
pub(super) struct RandomSearch;

impl Strategy for RandomSearch {
    fn propose(
        &mut self,
        ops: &Candidates,
        _archive: &[Evaluated],
        n: usize,
        rng: &mut StdRng,
    ) -> Result<StageProposal> {
        Ok(StageProposal::plain(
            (0..n).map(|_| Made::random(ops, rng).proposal()).collect(),
        ))
    }
}

/// USF's evolutionary search: parents uniformly from the best `rank_bar`, crossover with
/// probability `crossover`, then mutation. The runner's classic seeds start the population.
pub(super) struct Evolution {
    pub(super) rank_bar: usize,
    pub(super) crossover: f64,
}

impl Strategy for Evolution {
    fn propose(
        &mut self,
        ops: &Candidates,
        archive: &[Evaluated],
        n: usize,
        rng: &mut StdRng,
    ) -> Result<StageProposal> {
        let made = evolve(ops, archive, n, self.rank_bar, self.crossover, rng);
        Ok(StageProposal::plain(
            made.into_iter().map(Made::proposal).collect(),
        ))
    }
}

/// The best `k` finite entries of the archive, best first.
pub(crate) fn top(archive: &[Evaluated], k: usize) -> Vec<&Evaluated> {
    let mut v: Vec<&Evaluated> = archive.iter().filter(|e| e.value.is_finite()).collect();
    v.sort_by(|a, b| a.value.total_cmp(&b.value));
    v.truncate(k);
    v
}

/// Evolves `n` children from the archive's best `rank_bar` (random schedules when the
/// archive is empty).
pub(crate) fn evolve(
    ops: &Candidates,
    archive: &[Evaluated],
    n: usize,
    rank_bar: usize,
    crossover: f64,
    rng: &mut StdRng,
) -> Vec<Made> {
    let parents = top(archive, rank_bar);
    (0..n)
        .map(|_| {
            if parents.is_empty() {
                return Made::random(ops, rng);
            }
            let p1 = parents[rng.random_range(0..parents.len())];
            let mut origin = Origin::Mutation;
            let mut child = p1.schedule.clone();
            if rng.random::<f64>() < crossover {
                for _ in 0..CROSSOVER_TRIES {
                    let p2 = parents[rng.random_range(0..parents.len())];
                    if let Some(c) = ops.crossover(&p1.schedule, &p2.schedule, rng) {
                        child = c;
                        origin = Origin::CrossoverMutation;
                        break;
                    }
                }
            }
            Made {
                schedule: ops.mutate(&child, rng),
                origin,
            }
        })
        .collect()
}

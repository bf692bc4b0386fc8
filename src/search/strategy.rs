//! Search strategies behind one interface: each proposes the next stage's candidates from
//! the archive of evaluated ones. The runner owns evaluation, budget, storage and the
//! classic seeds (proposed first, whatever the strategy), so strategies compare at an equal
//! budget of true evaluations.

use super::config::StrategyKind;
use super::s3::{PredictorFiles, PredictorStats, S3Search};
use crate::error::Result;
use crate::noise::NoiseSchedule;
use crate::solver::SolverSchedule;
use crate::space::{Candidates, SearchSpace, schedule_hash};
use rand::Rng;
use rand::rngs::StdRng;
use std::collections::HashSet;

/// A candidate and where it came from (recorded with the trial).
#[derive(Debug, Clone)]
pub struct Proposal {
    pub schedule: SolverSchedule,
    pub source: String,
}

/// An evaluated candidate.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub schedule: SolverSchedule,
    pub hash: String,
    pub value: f64,
}

/// Proposes candidates stage by stage.
pub trait Strategy {
    /// The strategy's name.
    fn name(&self) -> &'static str;

    /// Up to `n` new candidates given everything evaluated so far (in any order).
    fn propose(
        &mut self,
        ops: &Candidates,
        archive: &[Evaluated],
        n: usize,
        rng: &mut StdRng,
    ) -> Result<Vec<Proposal>>;

    /// What the predictor did in the last `propose` (None for strategies without one, or
    /// when no predictor was used).
    fn predictor_stats(&self) -> Option<PredictorStats> {
        None
    }
}

/// Everything a strategy may need besides the archive.
pub struct StrategyContext<'a> {
    pub space: &'a SearchSpace,
    pub ns: &'a NoiseSchedule,
    pub nfe: usize,
    /// How many classic seeds the runner proposes before any strategy's own candidates.
    pub seed_count: usize,
    /// Where the `s3` strategy keeps its predictor.
    pub predictor: PredictorFiles,
}

/// Builds the strategy of `kind`.
pub fn make_strategy(kind: StrategyKind, ctx: StrategyContext) -> Result<Box<dyn Strategy>> {
    Ok(match kind {
        StrategyKind::Random => Box::new(RandomSearch),
        StrategyKind::Evolution => Box::new(Evolution {
            rank_bar: ctx.space.evolution.rank_bar,
            crossover: ctx.space.crossover.probability,
        }),
        StrategyKind::S3 => Box::new(S3Search::new(
            ctx.seed_count,
            ctx.space.evolution.rank_bar,
            ctx.space.crossover.probability,
            ctx.space.s3.clone(),
            ctx.ns.clone(),
            ctx.nfe,
            ctx.predictor,
        )?),
    })
}

/// Uniform random schedules from the space.
struct RandomSearch;

impl Strategy for RandomSearch {
    fn name(&self) -> &'static str {
        "random"
    }

    fn propose(
        &mut self,
        ops: &Candidates,
        _archive: &[Evaluated],
        n: usize,
        rng: &mut StdRng,
    ) -> Result<Vec<Proposal>> {
        Ok((0..n)
            .map(|_| Proposal {
                schedule: ops.random(rng),
                source: "random".into(),
            })
            .collect())
    }
}

/// Up to `n` of `seeds` whose hashes are not in `seen` (which records them), in order.
pub(crate) fn unseen_seeds(
    seeds: &[Proposal],
    seen: &mut HashSet<String>,
    n: usize,
) -> Vec<Proposal> {
    seeds
        .iter()
        .filter(|p| seen.insert(schedule_hash(&p.schedule)))
        .take(n)
        .cloned()
        .collect()
}

/// USF's evolutionary search: parents uniformly from the best `rank_bar`, crossover with
/// probability `crossover`, then mutation. The runner's classic seeds start the population.
struct Evolution {
    rank_bar: usize,
    crossover: f64,
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
) -> Vec<Proposal> {
    let parents = top(archive, rank_bar);
    (0..n)
        .map(|_| {
            if parents.is_empty() {
                return Proposal {
                    schedule: ops.random(rng),
                    source: "random".into(),
                };
            }
            let p1 = parents[rng.random_range(0..parents.len())];
            let mut source = "mutation";
            let mut child = p1.schedule.clone();
            if rng.random::<f64>() < crossover {
                for _ in 0..5 {
                    let p2 = parents[rng.random_range(0..parents.len())];
                    if let Some(c) = ops.crossover(&p1.schedule, &p2.schedule, rng) {
                        child = c;
                        source = "crossover+mutation";
                        break;
                    }
                }
            }
            Proposal {
                schedule: ops.mutate(&child, rng),
                source: source.into(),
            }
        })
        .collect()
}

impl Strategy for Evolution {
    fn name(&self) -> &'static str {
        "evolution"
    }

    fn propose(
        &mut self,
        ops: &Candidates,
        archive: &[Evaluated],
        n: usize,
        rng: &mut StdRng,
    ) -> Result<Vec<Proposal>> {
        Ok(evolve(ops, archive, n, self.rank_bar, self.crossover, rng))
    }
}

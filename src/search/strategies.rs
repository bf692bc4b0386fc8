//! Building the strategy a run names, with what each needs besides the archive.

use super::config::StrategyKind;
use super::evolution::{Evolution, RandomSearch};
use super::s3::{PredictorFiles, S3Search};
use super::strategy::Strategy;
use crate::error::Result;
use crate::noise::NoiseSchedule;
use crate::space::SearchSpace;

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

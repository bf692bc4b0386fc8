//! What a run searches over, loaded once: the dataset (model and metric data), the noise
//! schedule and the search space, with the classic seeds and the candidate operators built
//! from them. A new run's setup is built from the dataset the command already loaded; a
//! resumed run's is loaded from its configuration and refused when a file changed.

use super::config::SearchConfig;
use super::source::TrialSource;
use super::strategy::Proposal;
use crate::dataset::{Dataset, LoadOptions};
use crate::error::{Result, S3Error};
use crate::noise::NoiseSchedule;
use crate::solver::classic_grid;
use crate::space::{Candidates, SearchSpace};
use std::path::PathBuf;

/// The share of the budget the classic seeds may take: a small budget seeds with the
/// best-known few solvers, a large one with the whole grid.
pub const SEED_SHARE: f64 = 0.25;

/// How many classic seeds a run of `budget` evaluations takes (at least one).
pub fn seed_limit(budget: usize) -> usize {
    ((budget as f64 * SEED_SHARE).ceil() as usize).max(1)
}

/// A run's dataset, noise schedule and space.
pub struct SearchSetup {
    pub dataset: Dataset,
    pub ns: NoiseSchedule,
    pub space: SearchSpace,
}

impl SearchSetup {
    /// The setup of a new run with `config`, from the dataset and space the caller loaded
    /// (the dataset's noise is the configuration's); checks the candidates can be built.
    pub fn new(config: &SearchConfig, mut dataset: Dataset, space: SearchSpace) -> Result<Self> {
        config.validate()?;
        dataset.noise = config.noise;
        let setup = Self {
            ns: config.noise.build(),
            dataset,
            space,
        };
        setup.candidates(config)?;
        Ok(setup)
    }

    /// Loads the setup of run `run_id` from its configuration (the models directory is the
    /// run's own when it has one), refusing a dataset or space that changed since the run
    /// was created.
    pub fn load(run_id: &str, config: &SearchConfig, mut options: LoadOptions) -> Result<Self> {
        if let Some(dir) = &config.models_dir {
            options.models_dir = Some(PathBuf::from(dir));
        }
        let mut dataset = Dataset::load_with(&config.dataset, &options)?;
        // The identity covers the noise schedule the run searched under.
        dataset.noise = config.noise;
        let space = SearchSpace::load(&config.space)?;
        check_unchanged(
            run_id,
            "dataset",
            &config.dataset,
            &config.dataset_identity,
            dataset.identity(),
        )?;
        check_unchanged(
            run_id,
            "space",
            &config.space,
            &config.space_hash,
            space.hash(),
        )?;
        Self::new(config, dataset, space)
    }

    /// The candidate operators: the space at the run's NFE, every candidate one classic
    /// solver when the run fixes one (`--solver`).
    pub fn candidates(&self, config: &SearchConfig) -> Result<Candidates<'_>> {
        let ops = Candidates::new(&self.space, &self.ns, config.nfe)?;
        match config.solver {
            Some(solver) => ops.with_solver(solver),
            None => Ok(ops),
        }
    }

    /// The classic seeds of a run: the best-known part of the classic grid (of the run's
    /// solver only, when it fixes one) that fits [`SEED_SHARE`] of the budget.
    pub fn seeds(&self, config: &SearchConfig) -> Vec<Proposal> {
        classic_grid(&self.ns, config.nfe)
            .into_iter()
            .filter(|e| config.solver.is_none_or(|s| s == e.solver))
            .filter_map(|e| {
                let label = e.label();
                e.schedule.ok().map(|schedule| Proposal {
                    schedule,
                    source: TrialSource::Classic(label),
                })
            })
            .take(seed_limit(config.budget))
            .collect()
    }
}

/// Refuses to continue run `run_id` when what `source` names (its `what`) no longer has the
/// identity recorded when the run was created (runs from before identities were recorded
/// carry none and are not checked).
fn check_unchanged(
    run_id: &str,
    what: &str,
    source: &str,
    recorded: &Option<String>,
    now: String,
) -> Result<()> {
    match recorded {
        Some(r) if *r != now => Err(S3Error::field(
            format!("run {run_id}"),
            what,
            format!(
                "`{source}` has changed since the run was created (identity {r}, now {now}); its trials were measured on the old one: restore it or start a new run"
            ),
        )),
        _ => Ok(()),
    }
}

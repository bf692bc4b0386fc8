//! The schedule search: strategies that propose candidates, and the runner that evaluates
//! them with the true metric under a budget, records every trial in the store, keeps the best
//! schedule exported in the run directory, and resumes after any interruption.

mod config;
mod measure;
mod runner;
mod s3;
mod strategy;

pub use config::{SearchConfig, StrategyKind};
pub use runner::{
    CLASSIC_ROW, Event, MAX_RUN_ID_LEN, RunOutcome, SEARCHED_ROW, SearchRunner, check_run_id,
    run_dir,
};
pub use s3::{MIN_ENCODER_STEPS, PredictorFiles, PredictorStats, S3Search, check_warm_start};
pub use strategy::{Evaluated, Proposal, Strategy, StrategyContext, make_strategy};

//! The schedule search: strategies that propose candidates, and the runner that evaluates
//! them with the true metric under a budget, records every trial in the store, keeps the best
//! schedule exported in the run directory, and resumes after any interruption.
//!
//! Layout, one job per file: `config` (the run's configuration), `run` (the run as typed
//! data: configuration and checkpoint), `setup` (dataset, space, seeds and candidates,
//! loaded once), `runner` (the loop: budget, stages, trials, checkpoints), `evaluations`
//! (cache-or-compute and trial records), `progress` (what the run has done), `events` (what
//! it reports), `stop` (signals and the time limit), `ranking` (the final ranking), `refinement` (the continuous refinement of the best, before
//! the ranking), `files`
//! (best.json, final.json, the event log), `measure` (an export's measurement); the
//! strategies behind `strategy`'s trait: `evolution` (random and evolutionary), `s3` (the
//! predictor-guided search), built by `strategies`; `source` says where a trial came from.

mod config;
mod evaluations;
mod events;
mod evolution;
mod files;
mod measure;
mod progress;
mod ranking;
mod refinement;
mod run;
mod runner;
mod s3;
mod setup;
mod source;
mod stop;
mod strategies;
mod strategy;

pub use config::{
    DEFAULT_FINAL_TOP, DEFAULT_REFINE_MEASUREMENTS, DEFAULT_REFINE_SAMPLES, DEFAULT_REFINE_TOP,
    RefineConfig, SearchConfig, StrategyKind,
};
pub use events::Event;
pub use files::{BEST_FILE, EVENT_LOG, FINAL_FILE, MAX_RUN_ID_LEN, check_run_id, run_dir};
pub use ranking::{RankingRow, RowKind};
pub use run::{Run, RunState};
pub use runner::{IDLE_STAGE_LIMIT, RunOutcome, SearchRunner};
pub use s3::{MIN_ENCODER_STEPS, PredictorFiles, check_warm_start};
pub use setup::{SEED_SHARE, SearchSetup, seed_limit};
pub use source::{Origin, Pick, TrialSource};
pub use stop::Termination;
pub use strategies::{StrategyContext, make_strategy};
pub use strategy::{Evaluated, PredictorStats, Proposal, StageProposal, Strategy};

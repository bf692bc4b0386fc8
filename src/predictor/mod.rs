//! The learned schedule-quality predictor of S³: a small candle MLP that scores solver
//! schedules so that a search can rank many candidates and pay for the true metric (FD/FID)
//! only on the most promising ones.
//!
//! - [`Encoder`] turns a [`SolverSchedule`](crate::solver::SolverSchedule) into a fixed-size
//!   feature vector (layout in [`encode`]).
//! - [`Predictor`] is an MLP (Linear/ReLU) over those features, trained on a run's evaluated
//!   trials with a pairwise hinge ranking loss (OMS-DPM style) or MSE on ln(metric)
//!   ([`Loss`]); lower score = better schedule.
//! - [`kendall_tau`] measures how well scores rank trials; training reports it on the training
//!   part and on a held-out part.
//! - Weights are saved as safetensors next to a JSON ([`PredictorFile`]) that records what
//!   they were trained on; a loaded predictor can keep training (warm start of a new search).
//!
//! One job per file: `network` (the MLP module and its initialisation), `scaling` (input and
//! target standardisation), `loss` (the two objectives), `train` (settings and the training
//! loop), `file` (the saved format) and `model` ([`Predictor`], which ties them together and
//! scores).

pub mod encode;
mod file;
mod kendall;
mod loss;
mod model;
mod network;
mod scaling;
mod settings;
mod train;

pub use encode::{ENCODING_VERSION, Encoder, GLOBAL_DIM, STEP_DIM};
pub use file::{PREDICTOR_FORMAT, PREDICTOR_VERSION, PredictorFile};
pub use kendall::kendall_tau;
pub use loss::{Loss, PAIR_MIN_LOG_GAP};
pub use model::Predictor;
pub use settings::{TrainConfig, TrainReport};
pub use train::WEIGHT_DECAY;

use crate::error::{Result, S3Error};

/// Wraps a candle error with what was being done.
fn ce(context: impl std::fmt::Display) -> impl FnOnce(candle_core::Error) -> S3Error {
    move |e| S3Error::Predictor(format!("{context}: {e}"))
}

/// A predictor error with `message`.
fn bad<T>(message: String) -> Result<T> {
    Err(S3Error::Predictor(message))
}

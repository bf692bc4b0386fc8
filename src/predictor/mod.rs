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
//! - Weights are saved as safetensors next to a JSON that records what they were trained on;
//!   a loaded predictor can keep training (warm start of a new search).

pub mod encode;
mod kendall;
mod model;

pub use encode::{ENCODING_VERSION, Encoder, GLOBAL_DIM, STEP_DIM};
pub use kendall::kendall_tau;
pub use model::{
    Loss, PAIR_MIN_LOG_GAP, PREDICTOR_FORMAT, PREDICTOR_VERSION, Predictor, TrainConfig,
    TrainReport, WEIGHT_DECAY,
};

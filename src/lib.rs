//! s3: searches per-step ODE solver schedules for diffusion models (S³ / USF, ICLR 2024).
//!
//! The sampler core runs any [`solver::SolverSchedule`] exactly on any [`model::Denoiser`]
//! under any [`noise::NoiseSchedule`]; the classic solvers are builders of such schedules.

pub mod dataset;
pub mod error;
pub mod eval;
pub mod export;
pub mod io;
pub mod limits;
pub mod metric;
pub mod model;
pub mod names;
pub mod noise;
pub mod onnx;
pub mod predictor;
pub mod refine;
pub mod search;
pub mod solver;
pub mod space;
pub mod store;

pub use error::{Result, S3Error};

//! The unified sampler core: schedule types and validation, φ-functions, finite-difference
//! derivatives, the update planner, the sampler, time spacings and the classic solvers.

pub mod baselines;
pub mod fd;
pub mod grid;
pub mod phi;
pub mod reference;
pub mod sampler;
pub mod schedule;
pub mod spacing;
pub mod update;

pub use baselines::{ClassicSolver, UniPcVariant};
pub use grid::{ClassicEntry, classic_end, classic_grid};
pub use sampler::{SampleOutput, Sampler};
pub use schedule::{Afs, Corrector, Derivative, Prediction, Relaxation, SolverSchedule, Step};
pub use spacing::Spacing;

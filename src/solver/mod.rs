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
pub mod v3;

pub use baselines::{ClassicSolver, UniPcVariant};
pub use grid::{ClassicEntry, classic_end, classic_grid};
pub use sampler::{SampleOutput, Sampler};
pub use schedule::{Afs, Corrector, Derivative, Prediction, Relaxation, SolverSchedule, Step};
pub use spacing::Spacing;

/// The most model calls a schedule is built or searched for: at 1,000 a classic solver
/// already visits every training timestep of a discrete model, and a larger number is a typo
/// that would run for hours (or, near `usize::MAX`, overflow the schedule lists).
pub const MAX_NFE: usize = 1000;

//! Search spaces (`search_spaces/*.json`) and the candidate operators of the schedule search:
//! random sampling under an NFE constraint, mutation, crossover, repair to a valid schedule,
//! and a canonical form with a stable hash, so identical schedules are one candidate.

mod config;
mod fixed;
mod ops;

pub use config::{S3Settings, SPACE_FORMAT, SPACE_VERSION, SearchSpace, TimeCoordinate};
pub use ops::{Candidates, canonical, schedule_hash};

//! A run as typed data: its configuration (fixed at creation) and its checkpoint (replaced
//! after every stage), read from and written to the store's run record.

use super::config::SearchConfig;
use super::strategy::PredictorStats;
use crate::error::{Result, S3Error};
use crate::store::Store;
use serde::{Deserialize, Serialize};

/// The checkpoint of a run: where the next stage starts, and what `s3 runs` reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// The next stage's number.
    #[serde(default)]
    pub stage: u32,
    /// Trials counted against the budget so far.
    #[serde(default)]
    pub evaluated: usize,
    /// The best value so far on the search noise.
    #[serde(default)]
    pub best: Option<f64>,
    /// The hash of the schedule that holds it.
    #[serde(default)]
    pub best_hash: Option<String>,
    /// The latest predictor report of the `s3` strategy.
    #[serde(default)]
    pub predictor: Option<PredictorStats>,
    /// The metric's display name (`fd`, `fid` or `mse`: FD through a network's FID
    /// features reads `fid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
}

impl RunState {
    /// The checkpoint in a run record's `state` (`null` before the first checkpoint).
    pub fn from_json(state: serde_json::Value) -> serde_json::Result<Self> {
        if state.is_null() {
            return Ok(RunState::default());
        }
        serde_json::from_value(state)
    }
}

/// One search run, typed.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    pub config: SearchConfig,
    pub state: RunState,
}

impl Run {
    /// Records a new run `id` with `config` in the store.
    pub fn create(store: &Store, id: &str, config: SearchConfig) -> Result<Self> {
        let json = serde_json::to_value(&config).expect("configurations serialise");
        store.create_run(id, json)?;
        Ok(Self {
            id: id.to_string(),
            config,
            state: RunState::default(),
        })
    }

    /// Reads run `id` from the store (None when there is none); a record this version cannot
    /// read is an error naming the run and the part.
    pub fn load(store: &Store, id: &str) -> Result<Option<Self>> {
        let Some(rec) = store.run(id)? else {
            return Ok(None);
        };
        Ok(Some(Self {
            id: id.to_string(),
            config: Self::decode(store, id, "configuration", rec.config)?,
            state: Self::state_of(store, id, rec.state)?,
        }))
    }

    /// The checkpoint in a run record's `state` (`null` before the first checkpoint).
    pub fn state_of(store: &Store, id: &str, state: serde_json::Value) -> Result<RunState> {
        RunState::from_json(state).map_err(|e| S3Error::Store {
            path: store.path().into(),
            message: format!("run {id}: stored checkpoint is not one this s3 reads: {e}"),
        })
    }

    fn decode<T: serde::de::DeserializeOwned>(
        store: &Store,
        id: &str,
        what: &str,
        json: serde_json::Value,
    ) -> Result<T> {
        serde_json::from_value(json).map_err(|e| S3Error::Store {
            path: store.path().into(),
            message: format!("run {id}: stored {what} is not one this s3 reads: {e}"),
        })
    }

    /// Replaces the run's checkpoint in the store with `state`.
    pub fn checkpoint(&self, store: &Store, state: &RunState) -> Result<()> {
        store.checkpoint(
            &self.id,
            serde_json::to_value(state).expect("checkpoints serialise"),
        )
    }
}

//! Runs: created once with their configuration, then checkpointed with the strategy's state.

use super::codec::{
    abort_on_error, decode, encode, now_unix, sled_error, store_error, transaction_result,
};
use super::keys::check_run_id;
use super::{RUNS, RunRecord, Store};
use crate::error::Result;

impl Store {
    /// Creates run `id` with its search configuration (immutable from now on) and a `null`
    /// state, durably. It is an error if the id is taken or not a valid run id (empty,
    /// longer than 200 bytes, or holding control characters).
    pub fn create_run(&self, id: &str, config: serde_json::Value) -> Result<RunRecord> {
        check_run_id(id).map_err(|m| store_error(&self.path, m))?;
        let now = now_unix();
        let record = RunRecord {
            id: id.to_string(),
            config,
            state: serde_json::Value::Null,
            created_unix: now,
            updated_unix: now,
        };
        let bytes = encode(&self.path, RUNS, id.as_bytes(), &record)?;
        self.runs
            .compare_and_swap(id.as_bytes(), None::<&[u8]>, Some(bytes))
            .map_err(|e| sled_error(&self.path, &format!("cannot create run `{id}`"), e))?
            .map_err(|_| store_error(&self.path, format!("run `{id}` already exists")))?;
        self.flush()?;
        Ok(record)
    }

    /// The run `id`, or `None` if there is none.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let found = self
            .runs
            .get(id.as_bytes())
            .map_err(|e| sled_error(&self.path, &format!("cannot read run `{id}`"), e))?;
        found
            .map(|bytes| decode(&self.path, RUNS, id.as_bytes(), &bytes))
            .transpose()
    }

    /// Every run, oldest first (by creation time, then id).
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        let mut runs = Vec::new();
        for entry in self.runs.iter() {
            let (key, bytes) =
                entry.map_err(|e| sled_error(&self.path, "cannot scan the runs", e))?;
            runs.push(decode::<RunRecord>(&self.path, RUNS, &key, &bytes)?);
        }
        runs.sort_by(|a, b| {
            a.created_unix
                .total_cmp(&b.created_unix)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(runs)
    }

    /// Replaces run `id`'s state with `state` (the strategy's latest checkpoint); durable
    /// (flushed) before returning. The configuration is left as created. Error if there is
    /// no such run.
    pub fn checkpoint(&self, id: &str, state: serde_json::Value) -> Result<()> {
        let path = &self.path;
        let key = id.as_bytes();
        let result = self.runs.transaction(|tx| {
            let Some(bytes) = tx.get(key)? else {
                return abort_on_error(Err(store_error(
                    path,
                    format!("cannot checkpoint: no run `{id}`"),
                )));
            };
            let mut record: RunRecord = abort_on_error(decode(path, RUNS, key, &bytes))?;
            record.state = state.clone();
            record.updated_unix = now_unix();
            tx.insert(key, abort_on_error(encode(path, RUNS, key, &record))?)?;
            Ok(())
        });
        transaction_result(path, &format!("cannot checkpoint run `{id}`"), result)?;
        self.flush()
    }
}

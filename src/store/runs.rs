//! Runs: created once with their configuration, then checkpointed with the strategy's state;
//! both journaled before the index is written.

use super::codec::{decode, encode, now_unix, sled_error, store_error};
use super::journal::{Entry, run_journal_path};
use super::keys::check_run_id;
use super::{RUNS, RunRecord, Store};
use crate::error::Result;

impl Store {
    /// Creates run `id` with its search configuration (immutable from now on) and a `null`
    /// state, durably: the run's journal is created with its first line, then the index
    /// record. It is an error if the id is taken (in the index or by an existing journal)
    /// or not a valid run id (empty, longer than 200 bytes, or holding control characters).
    pub fn create_run(&self, id: &str, config: serde_json::Value) -> Result<RunRecord> {
        check_run_id(id).map_err(|m| store_error(&self.path, m))?;
        let _write = self.write_lock();
        let now = now_unix();
        let record = RunRecord {
            id: id.to_string(),
            config,
            state: serde_json::Value::Null,
            created_unix: now,
            updated_unix: now,
        };
        let taken = || store_error(&self.path, format!("run `{id}` already exists"));
        let exists = self
            .runs
            .contains_key(id.as_bytes())
            .map_err(|e| sled_error(&self.path, &format!("cannot read run `{id}`"), e))?;
        let journal = run_journal_path(&self.path, id);
        if exists || journal.exists() {
            return Err(taken());
        }
        let bytes = encode(&self.path, RUNS, id.as_bytes(), &record)?;
        let entry = Entry::Run {
            run: record.clone(),
        };
        self.journal_at(&journal, &entry, true)?;
        self.runs
            .compare_and_swap(id.as_bytes(), None::<&[u8]>, Some(bytes))
            .map_err(|e| sled_error(&self.path, &format!("cannot create run `{id}`"), e))?
            .map_err(|_| taken())?;
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

    /// Replaces run `id`'s state with `state` (the strategy's latest checkpoint); journaled,
    /// then written to the index and flushed before returning. The configuration is left as
    /// created. Error if there is no such run.
    pub fn checkpoint(&self, id: &str, state: serde_json::Value) -> Result<()> {
        let path = &self.path;
        let key = id.as_bytes();
        let _write = self.write_lock();
        let bytes = self
            .runs
            .get(key)
            .map_err(|e| sled_error(path, &format!("cannot read run `{id}`"), e))?
            .ok_or_else(|| store_error(path, format!("cannot checkpoint: no run `{id}`")))?;
        let mut record: RunRecord = decode(path, RUNS, key, &bytes)?;
        record.state = state;
        record.updated_unix = now_unix();
        let new = encode(path, RUNS, key, &record)?;
        self.journal_run(
            id,
            &Entry::Checkpoint {
                run_id: id.to_string(),
                state: record.state,
                updated_unix: record.updated_unix,
            },
        )?;
        self.runs
            .compare_and_swap(key, Some(bytes), Some(new))
            .map_err(|e| sled_error(path, &format!("cannot checkpoint run `{id}`"), e))?
            .map_err(|_| store_error(path, format!("run `{id}` changed while checkpointing")))?;
        self.flush()
    }
}

//! The evaluation cache, shared by every run of the store: filled by
//! [`Store::finish_trial`], read before paying for an evaluation.

use super::codec::{decode, encode, now_unix, sled_error, store_error};
use super::journal::{EVALS_JOURNAL, Entry};
use super::keys::describe_key;
use super::records::EvalRecord;
use super::{CachedEval, EVALS, EvalKey, Store};
use crate::error::Result;

impl Store {
    /// The cached evaluation for `key`, if any run of this store has paid for it. The
    /// stored record carries its full key, and a record under `key`'s digest that holds a
    /// different key is an error rather than a wrong answer.
    pub fn cached_eval(&self, key: &EvalKey) -> Result<Option<CachedEval>> {
        let digest = key.digest();
        let found = self
            .evals
            .get(digest.as_bytes())
            .map_err(|e| sled_error(&self.path, "cannot read the evaluation cache", e))?;
        let Some(bytes) = found else {
            return Ok(None);
        };
        let record: EvalRecord = decode(&self.path, EVALS, digest.as_bytes(), &bytes)?;
        if record.key != *key {
            return Err(store_error(
                &self.path,
                format!(
                    "evaluation {} is stored for a different key ({:?}) than {:?}",
                    describe_key(EVALS, digest.as_bytes()),
                    record.key,
                    key
                ),
            ));
        }
        Ok(Some(record.eval))
    }

    /// Caches an evaluation made outside any trial (e.g. a classic solver measured as the
    /// reference line, or a final re-evaluation), attributed to `origin` (a run id). An entry
    /// already cached is kept (the first evaluation stays); a digest collision with a different
    /// key is an error. Journaled in `evals.jsonl`, then written to the index and flushed
    /// before returning.
    pub fn put_eval(&self, key: &EvalKey, eval: &CachedEval, origin: &str) -> Result<()> {
        let _write = self.write_lock();
        if self.cached_eval(key)?.is_some() {
            return Ok(());
        }
        if !eval.value.is_finite() || !eval.seconds.is_finite() {
            return Err(store_error(
                &self.path,
                format!("refusing to cache a non-finite evaluation {eval:?} for {key:?}"),
            ));
        }
        let digest = key.digest();
        let record = EvalRecord {
            key: key.clone(),
            eval: eval.clone(),
            run_id: origin.to_string(),
            trial: u64::MAX,
            created_unix: now_unix(),
        };
        let bytes = encode(&self.path, EVALS, digest.as_bytes(), &record)?;
        let journal = self.path.join(EVALS_JOURNAL);
        self.journal_at(&journal, &Entry::Eval { record }, false)?;
        self.evals
            .insert(digest.as_bytes(), bytes)
            .map_err(|e| sled_error(&self.path, "cannot write the evaluation cache", e))?;
        self.flush()
    }

    /// Number of evaluations in the cache (all runs together). Counts by scanning, so it
    /// costs time proportional to the cache size.
    pub fn eval_count(&self) -> Result<usize> {
        Ok(self.evals.len())
    }
}

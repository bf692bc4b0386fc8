//! Trials: begun as Running, then finished (with the value, cached atomically) or failed —
//! and immutable from then on. Every change is a journal line first, then a sled
//! transaction (see the crash contract in the module above).

use sled::Transactional;

use super::codec::{
    abort_on_error, decode, encode, now_unix, sled_error, store_error, transaction_result,
};
use super::journal::Entry;
use super::keys::{check_run_id, describe_key, trial_key, trial_prefix};
use super::records::EvalRecord;
use super::{COUNTERS, CachedEval, EVALS, EvalKey, Store, TRIALS, Trial, TrialStatus};
use crate::error::Result;

impl Store {
    /// Records a trial as Running (durable) and returns it with its number: the next one of
    /// run `run_id` (0, 1, 2 …). Writes are serialised, so numbers are unique even with
    /// several threads. Error if the run does not exist.
    pub fn begin_trial(
        &self,
        run_id: &str,
        schedule_hash: &str,
        schedule: serde_json::Value,
        stage: u32,
        source: &str,
    ) -> Result<Trial> {
        let path = &self.path;
        check_run_id(run_id).map_err(|m| store_error(path, m))?;
        if schedule_hash.is_empty() {
            return Err(store_error(
                path,
                format!("cannot begin a trial of run `{run_id}`: the schedule hash is empty"),
            ));
        }
        let _write = self.write_lock();
        let number = self.next_trial_number(run_id)?;
        let trial = Trial {
            run_id: run_id.to_string(),
            number,
            schedule_hash: schedule_hash.to_string(),
            schedule,
            stage,
            source: source.to_string(),
            status: TrialStatus::Running,
            value: None,
            cached: false,
            error: None,
            created_unix: now_unix(),
            finished_unix: None,
        };
        let key = trial_key(run_id, number);
        let bytes = encode(path, TRIALS, &key, &trial)?;
        let next = encode(path, COUNTERS, run_id.as_bytes(), &(number + 1))?;
        self.journal_run(
            run_id,
            &Entry::Begin {
                trial: trial.clone(),
            },
        )?;
        let result = (&self.trials, &self.counters).transaction(|(trials, counters)| {
            trials.insert(key.as_slice(), bytes.as_slice())?;
            counters.insert(run_id.as_bytes(), next.as_slice())?;
            Ok(())
        });
        let what = format!("cannot begin a trial of run `{run_id}`");
        transaction_result::<()>(path, &what, result)?;
        self.flush()?;
        Ok(trial)
    }

    /// The number the next trial of run `run_id` gets; error if there is no such run or the
    /// counter points at an existing trial. Called under the write lock.
    fn next_trial_number(&self, run_id: &str) -> Result<u64> {
        let path = &self.path;
        let read = |e| sled_error(path, &format!("cannot begin a trial of run `{run_id}`"), e);
        if !self.runs.contains_key(run_id.as_bytes()).map_err(read)? {
            return Err(store_error(
                path,
                format!("cannot begin a trial: no run `{run_id}`"),
            ));
        }
        let number: u64 = match self.counters.get(run_id.as_bytes()).map_err(read)? {
            Some(bytes) => decode(path, COUNTERS, run_id.as_bytes(), &bytes)?,
            None => 0,
        };
        let key = trial_key(run_id, number);
        if self.trials.contains_key(&key).map_err(read)? {
            return Err(store_error(
                path,
                format!(
                    "trial counter of run `{run_id}` points at the existing trial {}",
                    describe_key(TRIALS, &key)
                ),
            ));
        }
        Ok(number)
    }

    /// Marks it Finished with `value`, and stores `value` in the eval cache under `key`:
    /// one journal line, then one sled transaction over both trees, then a flush.
    ///
    /// Refused, with nothing written: a trial that is not Running (finished and failed
    /// trials are immutable), a non-finite value or time, a `key` whose schedule hash is not
    /// the trial's, and `cached == true` when the cache does not hold this value under `key`.
    /// An entry already in the cache is never replaced (the first evaluation stays).
    pub fn finish_trial(
        &self,
        run_id: &str,
        number: u64,
        key: &EvalKey,
        eval: &CachedEval,
        cached: bool,
    ) -> Result<Trial> {
        let path = &self.path;
        let tkey = trial_key(run_id, number);
        let name = describe_key(TRIALS, &tkey);
        if !eval.value.is_finite() || !eval.seconds.is_finite() || eval.seconds < 0.0 {
            return Err(store_error(
                path,
                format!(
                    "cannot finish trial {name}: value {} and seconds {} must be finite \
                     (seconds ≥ 0); fail the trial instead",
                    eval.value, eval.seconds
                ),
            ));
        }
        let _write = self.write_lock();
        let (before, mut trial) = self.read_running(&tkey, "finish")?;
        if trial.schedule_hash != key.schedule_hash {
            return Err(store_error(
                path,
                format!(
                    "cannot finish trial {name}: its schedule hash is {} but the evaluation \
                     key's is {}",
                    trial.schedule_hash, key.schedule_hash
                ),
            ));
        }
        let finished_unix = now_unix();
        let new_eval =
            self.new_cache_entry(&name, run_id, number, key, eval, cached, finished_unix)?;
        trial.status = TrialStatus::Finished;
        trial.value = Some(eval.value);
        trial.cached = cached;
        trial.finished_unix = Some(finished_unix);
        let digest = key.digest();
        let eval_bytes = new_eval
            .as_ref()
            .map(|r| encode(path, EVALS, digest.as_bytes(), r))
            .transpose()?;
        let entry = Entry::Finish {
            trial: trial.clone(),
            key: key.clone(),
            eval: eval.clone(),
            cache: new_eval,
        };
        self.commit_trial(&tkey, &before, &trial, &entry, |evals| {
            if let Some(bytes) = &eval_bytes {
                evals.insert(digest.as_bytes(), bytes.as_slice())?;
            }
            Ok(())
        })?;
        Ok(trial)
    }

    /// The cache entry finishing trial `name` creates (`None` when the cache holds `key`
    /// already), or the error why it cannot finish: the cache holds another key under the
    /// digest, or `cached` is claimed for a value the cache does not hold.
    #[allow(clippy::too_many_arguments)]
    fn new_cache_entry(
        &self,
        name: &str,
        run_id: &str,
        number: u64,
        key: &EvalKey,
        eval: &CachedEval,
        cached: bool,
        created_unix: f64,
    ) -> Result<Option<EvalRecord>> {
        let path = &self.path;
        match self.cached_eval(key)? {
            Some(found) if cached && found.value != eval.value => Err(store_error(
                path,
                format!(
                    "cannot finish trial {name} as cached: the cache holds {} for its key, \
                     not {}",
                    found.value, eval.value
                ),
            )),
            Some(_) => Ok(None),
            None if cached => Err(store_error(
                path,
                format!(
                    "cannot finish trial {name} as cached: the cache holds nothing for its key"
                ),
            )),
            None => Ok(Some(EvalRecord {
                key: key.clone(),
                eval: eval.clone(),
                run_id: run_id.to_string(),
                trial: number,
                created_unix,
            })),
        }
    }

    /// Marks it Failed with a message (journaled, then durable in the index). Error if the
    /// trial is not Running.
    pub fn fail_trial(&self, run_id: &str, number: u64, error: &str) -> Result<Trial> {
        let tkey = trial_key(run_id, number);
        let _write = self.write_lock();
        let (before, mut trial) = self.read_running(&tkey, "fail")?;
        trial.status = TrialStatus::Failed;
        trial.error = Some(error.to_string());
        trial.finished_unix = Some(now_unix());
        let entry = Entry::Fail {
            trial: trial.clone(),
        };
        self.commit_trial(&tkey, &before, &trial, &entry, |_| Ok(()))?;
        Ok(trial)
    }

    /// Reads the Running trial under `key` (under the write lock): its record bytes and the
    /// trial, or the error saying why it cannot `action` ("finish" or "fail").
    fn read_running(&self, key: &[u8], action: &str) -> Result<(sled::IVec, Trial)> {
        let bytes = self.trials.get(key).map_err(|e| {
            sled_error(
                &self.path,
                &format!("cannot {action} trial {}", describe_key(TRIALS, key)),
                e,
            )
        })?;
        let trial = self.running_trial(key, bytes.as_deref(), action)?;
        Ok((bytes.expect("running_trial refuses a missing trial"), trial))
    }

    /// Writes a trial's end: `entry` to the run's journal, then one transaction that
    /// replaces the record `before` with `trial` and does `more` on the evals tree, then a
    /// flush. Called under the write lock.
    fn commit_trial(
        &self,
        tkey: &[u8],
        before: &sled::IVec,
        trial: &Trial,
        entry: &Entry,
        more: impl Fn(
            &sled::transaction::TransactionalTree,
        ) -> sled::transaction::ConflictableTransactionResult<(), crate::S3Error>,
    ) -> Result<()> {
        let path = &self.path;
        let name = describe_key(TRIALS, tkey);
        let bytes = encode(path, TRIALS, tkey, trial)?;
        self.journal_run(&trial.run_id, entry)?;
        let result = (&self.trials, &self.evals).transaction(|(trials, evals)| {
            if trials.get(tkey)?.as_ref() != Some(before) {
                return abort_on_error(Err(store_error(
                    path,
                    format!("trial {name} changed while it was being written"),
                )));
            }
            more(evals)?;
            trials.insert(tkey, bytes.as_slice())?;
            Ok(())
        });
        transaction_result(path, &format!("cannot write trial {name}"), result)?;
        self.flush()
    }

    /// Trial `number` of run `run_id`, or `None` if there is none.
    pub fn trial(&self, run_id: &str, number: u64) -> Result<Option<Trial>> {
        let key = trial_key(run_id, number);
        let found = self.trials.get(&key).map_err(|e| {
            sled_error(
                &self.path,
                &format!("cannot read trial {}", describe_key(TRIALS, &key)),
                e,
            )
        })?;
        found
            .map(|bytes| self.checked_trial(&key, &bytes))
            .transpose()
    }

    /// The trials of run `run_id`, in number order (empty if the run has none or does not
    /// exist). Finished trials are immutable: finishing or failing one again is an error.
    pub fn trials(&self, run_id: &str) -> Result<Vec<Trial>> {
        if check_run_id(run_id).is_err() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for entry in self.trials.scan_prefix(trial_prefix(run_id)) {
            let (key, bytes) = entry.map_err(|e| {
                sled_error(
                    &self.path,
                    &format!("cannot scan the trials of run `{run_id}`"),
                    e,
                )
            })?;
            out.push(self.checked_trial(&key, &bytes)?);
        }
        Ok(out)
    }

    /// Parses a trial record and checks it is the one its key names.
    fn checked_trial(&self, key: &[u8], bytes: &[u8]) -> Result<Trial> {
        let trial: Trial = decode(&self.path, TRIALS, key, bytes)?;
        if trial_key(&trial.run_id, trial.number) != key {
            return Err(store_error(
                &self.path,
                format!(
                    "corrupt record {}: it holds trial {}#{}",
                    describe_key(TRIALS, key),
                    trial.run_id,
                    trial.number
                ),
            ));
        }
        Ok(trial)
    }

    /// The Running trial whose record `bytes` was read under `key` (inside a transaction),
    /// or the error saying why it cannot be changed (`action` is "finish" or "fail").
    fn running_trial(&self, key: &[u8], bytes: Option<&[u8]>, action: &str) -> Result<Trial> {
        let name = describe_key(TRIALS, key);
        let Some(bytes) = bytes else {
            return Err(store_error(
                &self.path,
                format!("cannot {action} trial {name}: there is no such trial"),
            ));
        };
        let trial = self.checked_trial(key, bytes)?;
        if trial.status != TrialStatus::Running {
            let status = match trial.status {
                TrialStatus::Finished => "finished",
                _ => "failed",
            };
            return Err(store_error(
                &self.path,
                format!(
                    "cannot {action} trial {name}: it is already {status}, and finished or \
                     failed trials are immutable"
                ),
            ));
        }
        Ok(trial)
    }
}

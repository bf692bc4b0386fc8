//! Trials: begun as Running, then finished (with the value, cached atomically) or failed —
//! and immutable from then on.

use sled::Transactional;

use super::codec::{
    abort_on_error, decode, encode, now_unix, sled_error, store_error, transaction_result,
};
use super::keys::{check_run_id, describe_key, trial_key, trial_prefix};
use super::records::EvalRecord;
use super::{COUNTERS, CachedEval, EVALS, EvalKey, Store, TRIALS, Trial, TrialStatus};
use crate::error::Result;

impl Store {
    /// Records a trial as Running (durable) and returns it with its number: the next one of
    /// run `run_id` (0, 1, 2 …), allocated in the same transaction as the insert, so numbers
    /// are unique even with several threads. Error if the run does not exist.
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
        let created_unix = now_unix();
        let result =
            (&self.runs, &self.trials, &self.counters).transaction(|(runs, trials, counters)| {
                if runs.get(run_id.as_bytes())?.is_none() {
                    return abort_on_error(Err(store_error(
                        path,
                        format!("cannot begin a trial: no run `{run_id}`"),
                    )));
                }
                let number: u64 = match counters.get(run_id.as_bytes())? {
                    Some(bytes) => {
                        abort_on_error(decode(path, COUNTERS, run_id.as_bytes(), &bytes))?
                    }
                    None => 0,
                };
                let key = trial_key(run_id, number);
                if trials.get(&key)?.is_some() {
                    return abort_on_error(Err(store_error(
                        path,
                        format!(
                            "trial counter of run `{run_id}` points at the existing trial {}",
                            describe_key(TRIALS, &key)
                        ),
                    )));
                }
                let trial = Trial {
                    run_id: run_id.to_string(),
                    number,
                    schedule_hash: schedule_hash.to_string(),
                    schedule: schedule.clone(),
                    stage,
                    source: source.to_string(),
                    status: TrialStatus::Running,
                    value: None,
                    cached: false,
                    error: None,
                    created_unix,
                    finished_unix: None,
                };
                trials.insert(
                    key.as_slice(),
                    abort_on_error(encode(path, TRIALS, &key, &trial))?,
                )?;
                let next =
                    abort_on_error(encode(path, COUNTERS, run_id.as_bytes(), &(number + 1)))?;
                counters.insert(run_id.as_bytes(), next)?;
                Ok(trial)
            });
        let trial = transaction_result(
            path,
            &format!("cannot begin a trial of run `{run_id}`"),
            result,
        )?;
        self.flush()?;
        Ok(trial)
    }

    /// Marks it Finished with `value`, and stores `value` in the eval cache under `key`,
    /// atomically (one sled transaction over both trees), then flushes.
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
        let digest = key.digest();
        let finished_unix = now_unix();
        let result = (&self.trials, &self.evals).transaction(|(trials, evals)| {
            let bytes = trials.get(&tkey)?;
            let mut trial = abort_on_error(self.running_trial(&tkey, bytes.as_deref(), "finish"))?;
            if trial.schedule_hash != key.schedule_hash {
                return abort_on_error(Err(store_error(
                    path,
                    format!(
                        "cannot finish trial {name}: its schedule hash is {} but the \
                         evaluation key's is {}",
                        trial.schedule_hash, key.schedule_hash
                    ),
                )));
            }
            let existing: Option<EvalRecord> = match evals.get(digest.as_bytes())? {
                Some(bytes) => Some(abort_on_error(decode(
                    path,
                    EVALS,
                    digest.as_bytes(),
                    &bytes,
                ))?),
                None => None,
            };
            match &existing {
                Some(record) if record.key != *key => {
                    return abort_on_error(Err(store_error(
                        path,
                        format!(
                            "evaluation {} is stored for a different key ({:?}) than {:?}",
                            describe_key(EVALS, digest.as_bytes()),
                            record.key,
                            key
                        ),
                    )));
                }
                Some(record) if cached && record.eval.value != eval.value => {
                    return abort_on_error(Err(store_error(
                        path,
                        format!(
                            "cannot finish trial {name} as cached: the cache holds {} for its \
                             key, not {}",
                            record.eval.value, eval.value
                        ),
                    )));
                }
                None if cached => {
                    return abort_on_error(Err(store_error(
                        path,
                        format!(
                            "cannot finish trial {name} as cached: the cache holds nothing \
                             for its key"
                        ),
                    )));
                }
                Some(_) => {}
                None => {
                    let record = EvalRecord {
                        key: key.clone(),
                        eval: eval.clone(),
                        run_id: run_id.to_string(),
                        trial: number,
                        created_unix: finished_unix,
                    };
                    let bytes = abort_on_error(encode(path, EVALS, digest.as_bytes(), &record))?;
                    evals.insert(digest.as_bytes(), bytes)?;
                }
            }
            trial.status = TrialStatus::Finished;
            trial.value = Some(eval.value);
            trial.cached = cached;
            trial.finished_unix = Some(finished_unix);
            trials.insert(
                tkey.as_slice(),
                abort_on_error(encode(path, TRIALS, &tkey, &trial))?,
            )?;
            Ok(trial)
        });
        let trial = transaction_result(path, &format!("cannot finish trial {name}"), result)?;
        self.flush()?;
        Ok(trial)
    }

    /// Marks it Failed with a message (durable). Error if the trial is not Running.
    pub fn fail_trial(&self, run_id: &str, number: u64, error: &str) -> Result<Trial> {
        let path = &self.path;
        let tkey = trial_key(run_id, number);
        let finished_unix = now_unix();
        let result = self.trials.transaction(|trials| {
            let bytes = trials.get(&tkey)?;
            let mut trial = abort_on_error(self.running_trial(&tkey, bytes.as_deref(), "fail"))?;
            trial.status = TrialStatus::Failed;
            trial.error = Some(error.to_string());
            trial.finished_unix = Some(finished_unix);
            trials.insert(
                tkey.as_slice(),
                abort_on_error(encode(path, TRIALS, &tkey, &trial))?,
            )?;
            Ok(trial)
        });
        let trial = transaction_result(
            path,
            &format!("cannot fail trial {}", describe_key(TRIALS, &tkey)),
            result,
        )?;
        self.flush()?;
        Ok(trial)
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

//! The store's content as plain maps (an "image"), built either by replaying the journals or
//! by reading the sled index, and the comparison of the two that `open`, `check` and
//! `repair` share.

use std::collections::BTreeMap;
use std::path::Path;

use super::journal::{Entry, JournalFile};
use super::keys::trial_key;
use super::records::{EvalRecord, RunRecord, Trial, TrialStatus};
use super::{COUNTERS, EVALS, RUNS, TRIALS};

/// Everything a store holds apart from its meta tree.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Image {
    pub runs: BTreeMap<String, RunRecord>,
    pub trials: BTreeMap<(String, u64), Trial>,
    /// Next trial number per run (absent before the run's first trial).
    pub counters: BTreeMap<String, u64>,
    /// Cache entries by key digest.
    pub evals: BTreeMap<String, EvalRecord>,
}

/// For the items the last line of a journal changed: their value before that line (`None`:
/// absent). A crash between a journal line and its sled transaction leaves exactly these
/// items behind in the index, which the next writing open rolls forward.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    runs: BTreeMap<String, Option<RunRecord>>,
    trials: BTreeMap<(String, u64), Option<Trial>>,
    counters: BTreeMap<String, Option<u64>>,
    evals: BTreeMap<String, Option<EvalRecord>>,
}

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Data is missing, changed or unreadable somewhere.
    Damage,
    /// The last journal line is not yet in the index (a crash between the two writes, or a
    /// write in flight); the next writing open applies it.
    Pending,
}

/// One thing `check` has to say: where (a file and line, or an index record) and what.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Damage, or a change not yet applied.
    pub severity: Severity,
    /// A journal file and line (`runs/RUN/trials.jsonl:17`), or the record concerned.
    pub place: String,
    /// What is wrong there.
    pub message: String,
}

impl Finding {
    pub(crate) fn damage(place: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            severity: Severity::Damage,
            place: place.into(),
            message: message.into(),
        }
    }
}

/// The name of a trial in messages.
pub(crate) fn trial_name(run: &str, number: u64) -> String {
    format!("trial {run}#{number}")
}

/// Replays journal entries into an image, keeping track of what the last line of each
/// journal changed, and reporting entries that do not fit what came before.
#[derive(Default)]
pub(crate) struct Replay {
    pub image: Image,
    pub tail: Tail,
    pub findings: Vec<Finding>,
    /// Runs whose journal holds a line that could not be read or applied.
    pub damaged_runs: Vec<String>,
}

impl Replay {
    /// Applies every intact entry of `file` in order; damaged lines become findings.
    pub(crate) fn file(&mut self, file: &JournalFile, store: &Path) {
        let shown = file
            .path
            .strip_prefix(store)
            .unwrap_or(&file.path)
            .display()
            .to_string();
        for (line, why) in &file.damaged {
            self.findings
                .push(Finding::damage(format!("{shown}:{line}"), why.clone()));
        }
        if !file.damaged.is_empty() {
            self.damaged_runs.push(shown.clone());
        }
        let last = file.entries.len().saturating_sub(1);
        for (i, (line, entry)) in file.entries.iter().enumerate() {
            let before = (i == last).then(|| self.snapshot(entry));
            if let Err(message) = self.apply(entry) {
                self.findings
                    .push(Finding::damage(format!("{shown}:{line}"), message));
            }
            if let Some(before) = before {
                self.remember(before);
            }
        }
    }

    /// The values of the items `entry` changes, before it.
    fn snapshot(&self, entry: &Entry) -> Tail {
        let image = &self.image;
        let mut tail = Tail::default();
        let mut trial = |run: &str, number: u64| {
            let k = (run.to_string(), number);
            tail.trials.insert(k.clone(), image.trials.get(&k).cloned());
        };
        match entry {
            Entry::Store { .. } => {}
            Entry::Run { run } => {
                tail.runs
                    .insert(run.id.clone(), image.runs.get(&run.id).cloned());
            }
            Entry::Checkpoint { run_id, .. } => {
                tail.runs
                    .insert(run_id.clone(), image.runs.get(run_id).cloned());
            }
            Entry::Begin { trial: t } => {
                trial(&t.run_id, t.number);
                tail.counters
                    .insert(t.run_id.clone(), image.counters.get(&t.run_id).copied());
            }
            Entry::Fail { trial: t } => trial(&t.run_id, t.number),
            Entry::Finish {
                trial: t, cache, ..
            } => {
                trial(&t.run_id, t.number);
                if let Some(c) = cache {
                    let d = c.key.digest();
                    tail.evals.insert(d.clone(), image.evals.get(&d).cloned());
                }
            }
            Entry::Eval { record } => {
                let d = record.key.digest();
                tail.evals.insert(d.clone(), image.evals.get(&d).cloned());
            }
            Entry::Restored { trial: t, cache } => {
                trial(&t.run_id, t.number);
                tail.counters
                    .insert(t.run_id.clone(), image.counters.get(&t.run_id).copied());
                if let Some(c) = cache {
                    let d = c.key.digest();
                    tail.evals.insert(d.clone(), image.evals.get(&d).cloned());
                }
            }
        }
        tail
    }

    /// Adds a last line's snapshot to the tail.
    fn remember(&mut self, before: Tail) {
        self.tail.runs.extend(before.runs);
        self.tail.trials.extend(before.trials);
        self.tail.counters.extend(before.counters);
        self.tail.evals.extend(before.evals);
    }

    /// Applies one entry, or says why it does not fit (then nothing is applied).
    fn apply(&mut self, entry: &Entry) -> Result<(), String> {
        let image = &mut self.image;
        match entry {
            Entry::Store { .. } => Ok(()),
            Entry::Run { run } => {
                if image.runs.contains_key(&run.id) {
                    return Err(format!("creates run `{}` a second time", run.id));
                }
                image.runs.insert(run.id.clone(), run.clone());
                Ok(())
            }
            Entry::Checkpoint {
                run_id,
                state,
                updated_unix,
            } => {
                let run = image
                    .runs
                    .get_mut(run_id)
                    .ok_or_else(|| format!("checkpoints run `{run_id}` before its creation"))?;
                run.state = state.clone();
                run.updated_unix = *updated_unix;
                Ok(())
            }
            Entry::Begin { trial } => apply_begin(image, trial),
            Entry::Finish { trial, cache, .. } => {
                apply_end(image, trial, TrialStatus::Finished)?;
                if let Some(c) = cache {
                    apply_eval(image, c)?;
                }
                Ok(())
            }
            Entry::Fail { trial } => apply_end(image, trial, TrialStatus::Failed),
            Entry::Eval { record } => apply_eval(image, record),
            Entry::Restored { trial, cache } => {
                apply_restored(image, trial)?;
                if let Some(c) = cache {
                    apply_eval(image, c)?;
                }
                Ok(())
            }
        }
    }
}

/// A trial restored by `repair`: its run must exist and the number be free.
fn apply_restored(image: &mut Image, trial: &Trial) -> Result<(), String> {
    let run = &trial.run_id;
    let name = trial_name(run, trial.number);
    if !image.runs.contains_key(run) {
        return Err(format!("restores {name} before its run was created"));
    }
    let k = (run.clone(), trial.number);
    if image.trials.contains_key(&k) {
        return Err(format!("restores {name}, which exists already"));
    }
    image.trials.insert(k, trial.clone());
    let next = image.counters.get(run).copied().unwrap_or(0);
    image
        .counters
        .insert(run.clone(), next.max(trial.number + 1));
    Ok(())
}

/// A begun trial: its run must exist and its number be the run's next.
fn apply_begin(image: &mut Image, trial: &Trial) -> Result<(), String> {
    let run = &trial.run_id;
    if !image.runs.contains_key(run) {
        return Err(format!(
            "begins {} before its run was created",
            trial_name(run, trial.number)
        ));
    }
    let next = image.counters.get(run).copied().unwrap_or(0);
    if trial.number < next || trial.status != TrialStatus::Running {
        return Err(format!(
            "begins {} ({:?}) where trial #{next} or later (running) was expected",
            trial_name(run, trial.number),
            trial.status
        ));
    }
    image
        .trials
        .insert((run.clone(), trial.number), trial.clone());
    image.counters.insert(run.clone(), trial.number + 1);
    Ok(())
}

/// A finished or failed trial: it must be running.
fn apply_end(image: &mut Image, trial: &Trial, status: TrialStatus) -> Result<(), String> {
    let k = (trial.run_id.clone(), trial.number);
    let name = trial_name(&trial.run_id, trial.number);
    match image.trials.get(&k) {
        Some(t) if t.status == TrialStatus::Running && trial.status == status => {
            image.trials.insert(k, trial.clone());
            Ok(())
        }
        Some(t) => Err(format!(
            "ends {name} as {:?}, but it is {:?} already",
            trial.status, t.status
        )),
        None => Err(format!("ends {name}, which was never begun")),
    }
}

/// A new cache entry: the key must not be cached yet (the first evaluation stays).
fn apply_eval(image: &mut Image, record: &EvalRecord) -> Result<(), String> {
    let digest = record.key.digest();
    if image.evals.contains_key(&digest) {
        return Err(format!("caches evaluation {digest} a second time"));
    }
    image.evals.insert(digest, record.clone());
    Ok(())
}

/// Reads every record of the sled index into an image; records that do not parse (or sit
/// under the wrong key) become findings and are left out.
pub(crate) fn read_index(db: &sled::Db) -> Result<(Image, Vec<Finding>), sled::Error> {
    let mut image = Image::default();
    let mut findings = Vec::new();
    let mut bad = |tree: &str, key: &[u8], why: String| {
        findings.push(Finding::damage(
            format!("index {}", super::keys::describe_key(tree, key)),
            why,
        ));
    };
    for entry in db.open_tree(RUNS)?.iter() {
        let (key, bytes) = entry?;
        match serde_json::from_slice::<RunRecord>(&bytes) {
            Ok(r) if r.id.as_bytes() == &key[..] => drop(image.runs.insert(r.id.clone(), r)),
            Ok(r) => bad(RUNS, &key, format!("holds run `{}`", r.id)),
            Err(e) => bad(RUNS, &key, format!("does not parse: {e}")),
        }
    }
    for entry in db.open_tree(TRIALS)?.iter() {
        let (key, bytes) = entry?;
        match serde_json::from_slice::<Trial>(&bytes) {
            Ok(t) if trial_key(&t.run_id, t.number) == key.to_vec() => {
                image.trials.insert((t.run_id.clone(), t.number), t);
            }
            Ok(t) => bad(TRIALS, &key, trial_name(&t.run_id, t.number)),
            Err(e) => bad(TRIALS, &key, format!("does not parse: {e}")),
        }
    }
    for entry in db.open_tree(COUNTERS)?.iter() {
        let (key, bytes) = entry?;
        match (
            std::str::from_utf8(&key),
            serde_json::from_slice::<u64>(&bytes),
        ) {
            (Ok(run), Ok(n)) => drop(image.counters.insert(run.to_string(), n)),
            _ => bad(COUNTERS, &key, "does not parse".into()),
        }
    }
    for entry in db.open_tree(EVALS)?.iter() {
        let (key, bytes) = entry?;
        match serde_json::from_slice::<EvalRecord>(&bytes) {
            Ok(r) if r.key.digest().as_bytes() == &key[..] => {
                image.evals.insert(r.key.digest(), r);
            }
            Ok(_) => bad(EVALS, &key, "holds the entry of another key".into()),
            Err(e) => bad(EVALS, &key, format!("does not parse: {e}")),
        }
    }
    Ok((image, findings))
}

/// What differs between the journals' image and the index's: findings (pending or damage)
/// and the items a writing open may roll forward (all pending ones).
#[derive(Debug, Default)]
pub(crate) struct Comparison {
    pub findings: Vec<Finding>,
    /// The journals' values of the pending items, to write into the index.
    pub roll_forward: Image,
}

/// Compares the index `index` with the journals' `expected` image. An item that differs
/// is pending if the last line of its journal changed it and the index holds its value
/// from before that line; any other difference is damage.
pub(crate) fn compare(expected: &Image, tail: &Tail, index: &Image) -> Comparison {
    let mut c = Comparison::default();
    diff(
        &expected.runs,
        &tail.runs,
        &index.runs,
        &mut c.findings,
        &mut c.roll_forward.runs,
        |k| format!("run `{k}`"),
    );
    diff(
        &expected.trials,
        &tail.trials,
        &index.trials,
        &mut c.findings,
        &mut c.roll_forward.trials,
        |(r, n)| trial_name(r, *n),
    );
    diff(
        &expected.counters,
        &tail.counters,
        &index.counters,
        &mut c.findings,
        &mut c.roll_forward.counters,
        |k| format!("trial counter of run `{k}`"),
    );
    diff(
        &expected.evals,
        &tail.evals,
        &index.evals,
        &mut c.findings,
        &mut c.roll_forward.evals,
        |k| format!("evaluation {k}"),
    );
    c
}

/// [`compare`] for one kind of item.
fn diff<K: Ord + Clone, V: PartialEq + Clone + std::fmt::Debug>(
    expected: &BTreeMap<K, V>,
    tail: &BTreeMap<K, Option<V>>,
    index: &BTreeMap<K, V>,
    findings: &mut Vec<Finding>,
    roll: &mut BTreeMap<K, V>,
    name: impl Fn(&K) -> String,
) {
    for (k, want) in expected {
        let have = index.get(k);
        if have == Some(want) {
            continue;
        }
        if let Some(before) = tail.get(k)
            && before.as_ref() == have
        {
            findings.push(Finding {
                severity: Severity::Pending,
                place: name(k),
                message: "its last journal line is not in the index yet".into(),
            });
            roll.insert(k.clone(), want.clone());
            continue;
        }
        let message = match have {
            None => "journaled, but missing from the index".to_string(),
            Some(v) => format!("differs: the journal has {want:?}, the index {v:?}"),
        };
        findings.push(Finding::damage(name(k), message));
    }
    for k in index.keys().filter(|k| !expected.contains_key(*k)) {
        findings.push(Finding::damage(name(k), "in the index, but in no journal"));
    }
}

/// One write into the index: (tree, key, value bytes).
pub(crate) type IndexWrite = (&'static str, Vec<u8>, Vec<u8>);

/// The sled writes that put `image`'s items into the index.
pub(crate) fn index_writes(image: &Image) -> serde_json::Result<Vec<IndexWrite>> {
    let mut out = Vec::new();
    for (id, r) in &image.runs {
        out.push((RUNS, id.as_bytes().to_vec(), serde_json::to_vec(r)?));
    }
    for ((run, n), t) in &image.trials {
        out.push((TRIALS, trial_key(run, *n), serde_json::to_vec(t)?));
    }
    for (run, n) in &image.counters {
        out.push((COUNTERS, run.as_bytes().to_vec(), serde_json::to_vec(n)?));
    }
    for (d, e) in &image.evals {
        out.push((EVALS, d.as_bytes().to_vec(), serde_json::to_vec(e)?));
    }
    Ok(out)
}

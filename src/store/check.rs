//! `s3 store check` and `s3 store repair`: comparing the journals with the sled index, and
//! rebuilding the index (and damaged journals) from whatever copy of each record survived.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::codec::{now_unix, sled_error, store_error};
use super::image::{Finding, Image, Severity, compare, index_writes, trial_name};
use super::journal::{
    EVALS_JOURNAL, Entry, JOURNAL_VERSION, encode_line, run_journal_path, write_whole,
};
use super::records::{EvalRecord, TrialStatus};
use super::verify::{
    Journals, has_index, is_locked, read_index_copy, read_journals, sled_paths, take_lock,
};
use super::{CREATED_KEY, META, SCHEMA_VERSION_KEY, STORE_SCHEMA_VERSION};
use crate::error::{Result, S3Error};

/// What `check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// The store directory.
    pub path: PathBuf,
    /// Whether the store has journals (`false`: written before journals existed).
    pub journaled: bool,
    /// Runs, trials and cached evaluations the journals hold (the index's, when there are
    /// no journals).
    pub runs: usize,
    pub trials: usize,
    pub evals: usize,
    /// Every difference and damaged record, in file order.
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// Whether anything is damaged (pending last lines are not damage).
    pub fn is_damaged(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Damage)
    }
}

/// Compares the journals of the store in `dir` with its index (read through a copy), and
/// writes nothing. Refused while another process holds the store (its writes in flight
/// would read as differences).
pub fn check(dir: &Path) -> Result<CheckReport> {
    if !has_index(dir) && !dir.join(EVALS_JOURNAL).is_file() {
        return Err(store_error(
            dir,
            "there is no store here (no sled `db`, no journals)",
        ));
    }
    if is_locked(dir) {
        return Err(store_error(
            dir,
            "is open in another process (a search?); check compares the index with the \
             journals and needs them still: run it when that process ends",
        ));
    }
    let journals = read_journals(dir)?;
    let (index, mut findings) = read_index_or_finding(dir);
    let mut report = CheckReport {
        path: dir.to_path_buf(),
        journaled: journals.is_some(),
        runs: index.runs.len(),
        trials: index.trials.len(),
        evals: index.evals.len(),
        findings: Vec::new(),
    };
    if let Some(j) = journals {
        let replay = &j.replay;
        report.runs = replay.image.runs.len();
        report.trials = replay.image.trials.len();
        report.evals = replay.image.evals.len();
        let mut all = replay.findings.clone();
        all.append(&mut findings);
        all.extend(compare(&replay.image, &replay.tail, &index).findings);
        all.extend(torn_findings(&j, dir));
        findings = all;
    }
    report.findings = findings;
    Ok(report)
}

/// The index read through a copy; an index that cannot be read is an empty image and a
/// finding.
fn read_index_or_finding(dir: &Path) -> (Image, Vec<Finding>) {
    if !has_index(dir) {
        return (
            Image::default(),
            vec![Finding::damage("db", "the sled index is missing")],
        );
    }
    read_index_copy(dir).unwrap_or_else(|e| (Image::default(), vec![Finding::damage("db", e)]))
}

/// Unfinished last lines, as pending findings.
fn torn_findings(j: &Journals, dir: &Path) -> Vec<Finding> {
    j.files
        .iter()
        .filter(|f| f.torn_bytes > 0)
        .map(|f| Finding {
            severity: Severity::Pending,
            place: f
                .path
                .strip_prefix(dir)
                .unwrap_or(&f.path)
                .display()
                .to_string(),
            message: format!(
                "an unfinished last line ({} bytes, a write a crash interrupted); the next \
                 writing open cuts it",
                f.torn_bytes
            ),
        })
        .collect()
}

/// What `repair` did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Nothing was damaged, so nothing was changed.
    pub nothing_to_do: bool,
    /// Runs, trials and cached evaluations in the rebuilt store.
    pub runs: usize,
    pub trials: usize,
    pub evals: usize,
    /// Trials whose record came from the journals, and those only the index still had.
    pub trials_from_journals: usize,
    pub trials_from_index: usize,
    /// The damage found (damaged journal lines, unreadable index records, conflicts).
    pub problems: Vec<Finding>,
    /// What could not be recovered from any copy.
    pub unrecoverable: Vec<String>,
    /// Where the damaged index was moved (`db.damaged-UNIX`), if it was rebuilt.
    pub index_backup: Option<PathBuf>,
    /// Journals rewritten, with where each old one was kept (if there was one).
    pub journals_rewritten: Vec<(PathBuf, Option<PathBuf>)>,
}

/// Rebuilds the store in `dir` from every surviving copy of each record: the journals'
/// intact lines and the index's readable records (read through a copy). The damaged index
/// is moved to `db.damaged-UNIX/` and a new one written; journals that do not hold the
/// merged content are rewritten, the old ones kept as `trials.jsonl.damaged-UNIX`.
///
/// `from_index`: for a store written before journals existed, write its journals from its
/// index (which is left as it is).
pub fn repair(dir: &Path, from_index: bool) -> Result<RepairReport> {
    if !has_index(dir) && !dir.join(EVALS_JOURNAL).is_file() {
        return Err(store_error(
            dir,
            "there is no store here (no sled `db`, no journals)",
        ));
    }
    let _lock = take_lock(dir)?;
    let journals = read_journals(dir)?;
    let (index, index_findings) = read_index_or_finding(dir);
    let stamp = now_unix() as u64;
    let Some(journals) = journals else {
        if !from_index {
            return Err(store_error(
                dir,
                format!(
                    "has no journals (written by an s3 before journals existed); run \
                     `s3 store repair --from-index --store {}` to write them from the index",
                    dir.display()
                ),
            ));
        }
        return journal_old_store(dir, index, index_findings, stamp);
    };
    let replay = &journals.replay;
    let cmp = compare(&replay.image, &replay.tail, &index);
    let mut problems: Vec<Finding> = replay.findings.clone();
    problems.extend(index_findings);
    problems.extend(
        cmp.findings
            .into_iter()
            .filter(|f| f.severity == Severity::Damage),
    );
    let torn = journals.files.iter().any(|f| f.torn_bytes > 0);
    if problems.is_empty() && !torn {
        return Ok(RepairReport {
            nothing_to_do: true,
            ..RepairReport::default()
        });
    }
    let mut report = RepairReport {
        problems,
        ..RepairReport::default()
    };
    let merged = merge(&replay.image, &index, &mut report);
    report.index_backup = Some(rebuild_index(dir, &merged, stamp)?);
    rewrite_journals(dir, &journals, &merged, stamp, &mut report)?;
    count(&merged, &mut report);
    Ok(report)
}

/// `repair --from-index`: journals for a store that has none, from its index.
fn journal_old_store(
    dir: &Path,
    index: Image,
    problems: Vec<Finding>,
    stamp: u64,
) -> Result<RepairReport> {
    let mut report = RepairReport {
        problems,
        trials_from_index: index.trials.len(),
        ..RepairReport::default()
    };
    let mut merged = index;
    drop_orphans(&mut merged, &mut report);
    write_all_journals(dir, &merged, None, stamp, &mut report)?;
    count(&merged, &mut report);
    Ok(report)
}

/// Totals of the rebuilt store.
fn count(merged: &Image, report: &mut RepairReport) {
    report.runs = merged.runs.len();
    report.trials = merged.trials.len();
    report.evals = merged.evals.len();
}

/// How far along a trial is: an ended trial is worth more than a running one.
fn progress(status: TrialStatus) -> u8 {
    match status {
        TrialStatus::Running => 0,
        TrialStatus::Finished | TrialStatus::Failed => 1,
    }
}

/// Every record from either copy: the more advanced trial, the later-checkpointed run, and
/// the journal's version where both are equally advanced but differ (reported).
fn merge(journal: &Image, index: &Image, report: &mut RepairReport) -> Image {
    let mut merged = journal.clone();
    for (id, run) in &index.runs {
        match merged.runs.get(id) {
            Some(j) if j.updated_unix >= run.updated_unix => {}
            _ => drop(merged.runs.insert(id.clone(), run.clone())),
        }
    }
    for (k, trial) in &index.trials {
        let name = trial_name(&k.0, k.1);
        match merged.trials.get(k) {
            None => {
                merged.trials.insert(k.clone(), trial.clone());
            }
            Some(j) if progress(trial.status) > progress(j.status) => {
                merged.trials.insert(k.clone(), trial.clone());
            }
            Some(j) if j != trial && progress(trial.status) == progress(j.status) => {
                report.problems.push(Finding::damage(
                    name,
                    "the journal and the index hold different ended records; the journal's is kept",
                ));
            }
            Some(_) => {}
        }
    }
    for (k, t) in &merged.trials {
        let from_journal = journal.trials.get(k) == Some(t);
        *if from_journal {
            &mut report.trials_from_journals
        } else {
            &mut report.trials_from_index
        } += 1;
    }
    for (d, e) in &index.evals {
        merged.evals.entry(d.clone()).or_insert_with(|| e.clone());
    }
    drop_orphans(&mut merged, report);
    merged
}

/// Drops trials whose run record was lost everywhere (reported), and sets every counter
/// to one past the run's last trial, reporting numbers no copy holds.
fn drop_orphans(merged: &mut Image, report: &mut RepairReport) {
    let runs = &merged.runs;
    let orphans: Vec<(String, u64)> = merged
        .trials
        .keys()
        .filter(|(r, _)| !runs.contains_key(r))
        .cloned()
        .collect();
    for k in orphans {
        report.unrecoverable.push(format!(
            "{}: its run's record (configuration) is in no copy; the trial was left out",
            trial_name(&k.0, k.1)
        ));
        merged.trials.remove(&k);
    }
    let mut counters = BTreeMap::new();
    for (run, n) in merged.trials.keys() {
        let expected = counters.get(run).copied().unwrap_or(0);
        if *n > expected {
            report.unrecoverable.push(format!(
                "trials {run}#{expected}..#{} are in no copy",
                n - 1
            ));
        }
        counters.insert(run.clone(), n + 1);
    }
    merged.counters = counters;
}

/// Moves the sled files of `dir` into `dir/db.damaged-STAMP/` and writes a new index
/// holding `merged`; returns the backup folder.
fn rebuild_index(dir: &Path, merged: &Image, stamp: u64) -> Result<PathBuf> {
    let backup = dir.join(format!("db.damaged-{stamp}"));
    std::fs::create_dir_all(&backup).map_err(|e| S3Error::io(&backup, e))?;
    for path in sled_paths(dir).map_err(|e| S3Error::io(dir, e))? {
        let to = backup.join(path.file_name().expect("sled files have names"));
        std::fs::rename(&path, &to).map_err(|e| S3Error::io(&path, e))?;
    }
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(super::CACHE_CAPACITY_BYTES)
        .open()
        .map_err(|e| sled_error(dir, "cannot create the new index", e))?;
    let fail = |e| sled_error(dir, "cannot write the new index", e);
    let meta = db.open_tree(META).map_err(fail)?;
    let version = serde_json::to_vec(&STORE_SCHEMA_VERSION).expect("a number serialises");
    let created = serde_json::to_vec(&now_unix()).expect("a number serialises");
    meta.insert(SCHEMA_VERSION_KEY, version).map_err(fail)?;
    meta.insert(CREATED_KEY, created).map_err(fail)?;
    let writes = index_writes(merged)
        .map_err(|e| store_error(dir, format!("cannot encode a record: {e}")))?;
    for (tree, key, value) in writes {
        db.open_tree(tree)
            .and_then(|t| t.insert(key, value))
            .map_err(fail)?;
    }
    db.flush().map_err(fail)?;
    Ok(backup)
}

/// Rewrites the journals whose content is not the merged content (or that hold damaged or
/// unfinished lines).
fn rewrite_journals(
    dir: &Path,
    journals: &Journals,
    merged: &Image,
    stamp: u64,
    report: &mut RepairReport,
) -> Result<()> {
    let clean = |path: &Path| {
        journals
            .files
            .iter()
            .any(|f| f.path == path && f.damaged.is_empty() && f.torn_bytes == 0)
    };
    let same = |run: Option<&str>| project(&journals.replay.image, run) == project(merged, run);
    let keep = |path: &Path, run: Option<&str>| clean(path) && same(run);
    write_all_journals(dir, merged, Some(&keep), stamp, report)
}

/// The part of an image one journal holds: a run's records and the cache entries its
/// finishes created (`run`), or the cache entries of no trial (`None`: `evals.jsonl`).
fn project(image: &Image, run: Option<&str>) -> String {
    let Some(run) = run else {
        let evals: Vec<&EvalRecord> = image
            .evals
            .values()
            .filter(|e| !attached(image, e))
            .collect();
        return format!("{evals:?}");
    };
    let trials: Vec<_> = image.trials.iter().filter(|((r, _), _)| r == run).collect();
    let evals: Vec<&EvalRecord> = image
        .evals
        .values()
        .filter(|e| e.run_id == run && attached(image, e))
        .collect();
    format!(
        "{:?}{trials:?}{:?}{evals:?}",
        image.runs.get(run),
        image.counters.get(run)
    )
}

/// Whether a cache entry was created by a finished trial of the image (so the trial's
/// journal line carries it).
fn attached(image: &Image, e: &EvalRecord) -> bool {
    e.trial != u64::MAX
        && image
            .trials
            .get(&(e.run_id.clone(), e.trial))
            .is_some_and(|t| {
                t.status == TrialStatus::Finished && t.schedule_hash == e.key.schedule_hash
            })
}

/// Whether a journal (its path, its run or `None` for `evals.jsonl`) may stay as it is.
type Keep<'a> = dyn Fn(&Path, Option<&str>) -> bool + 'a;

/// Writes every journal of `merged` that `keep` does not accept (all of them without
/// `keep`), each old one moved to `NAME.damaged-STAMP` first.
fn write_all_journals(
    dir: &Path,
    merged: &Image,
    keep: Option<&Keep>,
    stamp: u64,
    report: &mut RepairReport,
) -> Result<()> {
    let mut jobs: Vec<(PathBuf, Option<&str>)> = merged
        .runs
        .keys()
        .map(|id| (run_journal_path(dir, id), Some(id.as_str())))
        .collect();
    jobs.push((dir.join(EVALS_JOURNAL), None));
    for (path, run) in jobs {
        if keep.is_some_and(|k| k(&path, run)) {
            continue;
        }
        let lines = journal_lines(merged, run)
            .map_err(|e| store_error(dir, format!("cannot encode a journal line: {e}")))?;
        let backup = if path.exists() {
            let to = PathBuf::from(format!("{}.damaged-{stamp}", path.display()));
            std::fs::rename(&path, &to).map_err(|e| S3Error::io(&path, e))?;
            Some(to)
        } else {
            None
        };
        write_whole(&path, &lines).map_err(|e| S3Error::io(&path, e))?;
        report.journals_rewritten.push((path, backup));
    }
    Ok(())
}

/// The lines of one journal holding `merged`'s part (see [`project`]).
fn journal_lines(merged: &Image, run: Option<&str>) -> serde_json::Result<Vec<Vec<u8>>> {
    let Some(run) = run else {
        let mut lines = vec![encode_line(&Entry::Store {
            version: JOURNAL_VERSION,
            created_unix: now_unix(),
        })?];
        for e in merged.evals.values().filter(|e| !attached(merged, e)) {
            lines.push(encode_line(&Entry::Eval { record: e.clone() })?);
        }
        return Ok(lines);
    };
    let mut lines = vec![encode_line(&Entry::Run {
        run: merged.runs[run].clone(),
    })?];
    let caches: BTreeMap<u64, &EvalRecord> = merged
        .evals
        .values()
        .filter(|e| e.run_id == run && attached(merged, e))
        .map(|e| (e.trial, e))
        .collect();
    let trials = merged
        .trials
        .range((run.to_string(), 0)..=(run.to_string(), u64::MAX));
    for (_, t) in trials {
        let cache = caches.get(&t.number).map(|e| (*e).clone());
        lines.push(encode_line(&Entry::Restored {
            trial: t.clone(),
            cache,
        })?);
    }
    Ok(lines)
}

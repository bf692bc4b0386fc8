//! What `open`, `check`, `repair` and the read-only view share: reading every journal, reading
//! a copy of the sled index (so sled's own recovery, which cuts its log at the first bad
//! checksum, never runs on the original before the result is known), and the store lock.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::codec::store_error;
use super::image::{Finding, Image, Replay, read_index};
use super::journal::{
    EVALS_JOURNAL, Entry, JOURNAL_VERSION, JournalFile, read_journal, run_journal_paths,
};
use crate::error::{Result, S3Error};

/// The lock file every writer (a writing open, `repair`) holds for as long as it writes.
pub(crate) const LOCK_FILE: &str = "lock";
/// sled's files in a store directory: the log, its configuration, large values, snapshots.
const SLED_FILES: [&str; 3] = ["db", "conf", "blobs"];
/// Prefix of sled's snapshot files.
const SLED_SNAPSHOT_PREFIX: &str = "snap.";
/// How long a writer waits for the lock before saying another process holds it.
const LOCK_WAIT: Duration = Duration::from_secs(1);
/// Pause between tries to take the lock.
const LOCK_RETRY: Duration = Duration::from_millis(20);

/// Every journal of a store, read and replayed.
pub(crate) struct Journals {
    pub replay: Replay,
    pub files: Vec<JournalFile>,
}

/// Reads and replays every journal of the store in `dir`: `None` if the store has no
/// journal header file (a new store, or one written before journals existed).
pub(crate) fn read_journals(dir: &Path) -> Result<Option<Journals>> {
    let header = dir.join(EVALS_JOURNAL);
    if !header.is_file() {
        return Ok(None);
    }
    let mut replay = Replay::default();
    let mut files = Vec::new();
    let evals = read_journal(&header).map_err(|e| S3Error::io(&header, e))?;
    check_header(&evals, &mut replay);
    let mut paths = run_journal_paths(dir).map_err(|e| S3Error::io(dir.join("runs"), e))?;
    paths.sort();
    for path in paths {
        let file = read_journal(&path).map_err(|e| S3Error::io(&path, e))?;
        replay.file(&file, dir);
        files.push(file);
    }
    // Cache entries outside trials last: a finish line's entry never depends on them.
    replay.file(&evals, dir);
    files.push(evals);
    Ok(Some(Journals { replay, files }))
}

/// The first line of the store-wide journal must be its header, of this version.
fn check_header(file: &JournalFile, replay: &mut Replay) {
    let place = format!("{EVALS_JOURNAL}:1");
    match file.entries.first() {
        Some((1, Entry::Store { version, .. })) if *version == JOURNAL_VERSION => {}
        Some((1, Entry::Store { version, .. })) => replay.findings.push(Finding::damage(
            place,
            format!("journal version {version}; this s3 reads version {JOURNAL_VERSION}"),
        )),
        _ if file.damaged.iter().any(|(n, _)| *n == 1) => {}
        _ => replay.findings.push(Finding::damage(
            place,
            "the journal header (`store` line) is missing",
        )),
    }
}

/// Whether the store in `dir` has a sled index.
pub(crate) fn has_index(dir: &Path) -> bool {
    dir.join("db").is_file()
}

/// Reads the sled index of `dir` through a copy in the system's temporary folder, so
/// nothing in `dir` is written (sled's recovery writes, and cuts a damaged log). An index
/// sled cannot open (or panics on) is an `Err` with sled's message.
pub(crate) fn read_index_copy(dir: &Path) -> std::result::Result<(Image, Vec<Finding>), String> {
    // Removed when dropped, at the end of this function.
    let scratch = tempfile::Builder::new()
        .prefix("s3-index-copy-")
        .tempdir()
        .map_err(|e| format!("cannot make a scratch folder: {e}"))?;
    copy_sled_files(dir, scratch.path()).map_err(|e| format!("cannot copy the index: {e}"))?;
    let path = scratch.path().to_path_buf();
    let read = std::panic::catch_unwind(move || -> std::result::Result<_, String> {
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(super::CACHE_CAPACITY_BYTES)
            .open()
            .map_err(|e| format!("sled cannot open it: {e}"))?;
        read_index(&db).map_err(|e| format!("sled cannot read it: {e}"))
    });
    match read {
        Ok(result) => result,
        Err(panic) => {
            let text = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(format!("sled failed reading it: {text}"))
        }
    }
}

/// The sled files of the store in `dir` (those that exist).
pub(crate) fn sled_paths(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = SLED_FILES
        .iter()
        .map(|name| dir.join(name))
        .filter(|p| p.exists())
        .collect();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(SLED_SNAPSHOT_PREFIX)
        {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// Copies the sled files of `dir` into `dest`.
fn copy_sled_files(dir: &Path, dest: &Path) -> std::io::Result<()> {
    for path in sled_paths(dir)? {
        let target = dest.join(path.file_name().expect("sled files have names"));
        copy_recursive(&path, &target)?;
    }
    Ok(())
}

/// Copies a file, or a folder and everything in it.
fn copy_recursive(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            copy_recursive(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to).map(|_| ())
    }
}

/// Takes the store's write lock (`dir/lock`), waiting up to [`LOCK_WAIT`] for a holder
/// that lets go at once (a child process inheriting the descriptor until it execs). The
/// lock is held until the returned file is dropped.
pub(crate) fn take_lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| S3Error::io(&path, e))?;
    let start = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(LOCK_RETRY);
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(store_error(
                    dir,
                    "cannot open: it is locked (is another s3 process using this store?)",
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(S3Error::io(&path, e)),
        }
    }
}

/// Whether another process holds the store's write lock now (without taking it for long).
pub(crate) fn is_locked(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

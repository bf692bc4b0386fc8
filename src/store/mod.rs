//! The result store of the schedule search, on sled: runs (configuration and state
//! checkpoints), trials (immutable once finished or failed), an evaluation cache shared by
//! every run, and a schema version.
//!
//! Layout: one sled database in a directory, with these trees (values are JSON bytes):
//!
//! | tree       | key                                   | value                    |
//! |------------|---------------------------------------|--------------------------|
//! | `meta`     | `schema_version`, `created_unix`      | number                   |
//! | `runs`     | run id                                | [`RunRecord`]            |
//! | `trials`   | run id, 0u8, number as big-endian u64 | [`Trial`]                |
//! | `counters` | run id                                | next trial number        |
//! | `evals`    | [`EvalKey::digest`] (hex)             | key, [`CachedEval`], origin |
//!
//! Every state-changing call is one sled transaction followed by a flush, so once it
//! returns, a crash (even SIGKILL) loses nothing, and a crash before it returns leaves either
//! all of its writes or none. Trials a crash left `Running` become `Failed` on the next open.

mod codec;
mod evals;
mod keys;
mod records;
mod runs;
mod trials;

use std::path::{Path, PathBuf};

pub use keys::EvalKey;
pub use records::{CachedEval, RunRecord, Trial, TrialStatus};

use codec::{decode, encode, now_unix, sled_error, store_error};

/// The version of the store's layout; a store written with another version is refused.
pub const STORE_SCHEMA_VERSION: u32 = 1;

/// sled's page-cache size. Its default (about 1 GB, a soft limit) is far more than a store
/// of trials needs, so it is bounded here.
const CACHE_CAPACITY_BYTES: u64 = 64 << 20;

/// The error message of trials that `open` found still running.
const INTERRUPTED: &str = "interrupted: still running when the store was reopened";

/// Names of the trees, and of the meta keys.
const META: &str = "meta";
const RUNS: &str = "runs";
const TRIALS: &str = "trials";
const COUNTERS: &str = "counters";
const EVALS: &str = "evals";
const SCHEMA_VERSION_KEY: &[u8] = b"schema_version";
const CREATED_KEY: &[u8] = b"created_unix";

/// An open result store. Many runs share one store (and its evaluation cache); sled locks
/// the directory, so one process at a time has it open. `Store` is `Send + Sync`: threads
/// may share it, and trial numbers stay unique because they are allocated in transactions.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    runs: sled::Tree,
    trials: sled::Tree,
    counters: sled::Tree,
    evals: sled::Tree,
    recovered: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("recovered", &self.recovered)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens or creates the store in `dir` (sled with cache_capacity 64 MiB). Writes the
    /// schema version on creation and refuses (clear error naming the directory, the found
    /// and the expected version) a store of another version. Marks every Running trial
    /// Failed (error "interrupted: still running when the store was reopened").
    ///
    /// A non-empty directory that is not a sled database is refused rather than written
    /// into, and so is a sled database holding trees this store does not know.
    pub fn open(dir: &Path) -> crate::Result<Store> {
        check_directory(dir)?;
        let db = open_sled(dir)?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| sled_error(dir, &format!("cannot open tree `{name}`"), e))
        };
        let mut store = Store {
            path: dir.to_path_buf(),
            meta: tree(META)?,
            runs: tree(RUNS)?,
            trials: tree(TRIALS)?,
            counters: tree(COUNTERS)?,
            evals: tree(EVALS)?,
            db,
            recovered: 0,
        };
        store.check_tree_names()?;
        store.check_schema()?;
        store.recovered = store.recover_running_trials()?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of trials that `open` turned from Running into Failed.
    pub fn recovered_trials(&self) -> usize {
        self.recovered
    }

    /// Makes everything written so far durable (fsync); called after every state change.
    fn flush(&self) -> crate::Result<()> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| sled_error(&self.path, "cannot flush", e))
    }

    /// Refuses a sled database with trees other than the store's (someone else's data).
    fn check_tree_names(&self) -> crate::Result<()> {
        let known = [META, RUNS, TRIALS, COUNTERS, EVALS, "__sled__default"];
        for name in self.db.tree_names() {
            if !known.iter().any(|k| k.as_bytes() == &name[..]) {
                return Err(store_error(
                    &self.path,
                    format!(
                        "not an s3 store: it holds the unknown tree {:?}",
                        String::from_utf8_lossy(&name)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Reads the schema version, writing it into a new (empty) store, and refuses another
    /// version or a store that has records but no version.
    fn check_schema(&self) -> crate::Result<()> {
        let found = self
            .meta
            .get(SCHEMA_VERSION_KEY)
            .map_err(|e| sled_error(&self.path, "cannot read the schema version", e))?;
        match found {
            Some(bytes) => {
                let version: u32 = decode(&self.path, META, SCHEMA_VERSION_KEY, &bytes)?;
                if version != STORE_SCHEMA_VERSION {
                    return Err(store_error(
                        &self.path,
                        format!(
                            "schema version {version} found, but this s3 reads version \
                             {STORE_SCHEMA_VERSION}; use the s3 that wrote it or a new store \
                             directory"
                        ),
                    ));
                }
                Ok(())
            }
            None => {
                let empty = [&self.runs, &self.trials, &self.counters, &self.evals]
                    .iter()
                    .all(|t| t.is_empty());
                if !empty || !self.meta.is_empty() {
                    return Err(store_error(
                        &self.path,
                        "has records but no schema version; not a store this s3 wrote",
                    ));
                }
                let version = encode(&self.path, META, SCHEMA_VERSION_KEY, &STORE_SCHEMA_VERSION)?;
                let created = encode(&self.path, META, CREATED_KEY, &now_unix())?;
                let mut batch = sled::Batch::default();
                batch.insert(CREATED_KEY, created);
                batch.insert(SCHEMA_VERSION_KEY, version);
                self.meta
                    .apply_batch(batch)
                    .map_err(|e| sled_error(&self.path, "cannot write the schema version", e))?;
                self.flush()
            }
        }
    }

    /// Marks every Running trial Failed (a crash or kill interrupted it) and returns how
    /// many there were. Each change is a compare-and-swap, so a record is never half
    /// rewritten; the whole scan also checks that every trial record parses.
    fn recover_running_trials(&self) -> crate::Result<usize> {
        let mut recovered = 0;
        for entry in self.trials.iter() {
            let (key, bytes) =
                entry.map_err(|e| sled_error(&self.path, "cannot scan the trials", e))?;
            let mut trial: Trial = decode(&self.path, TRIALS, &key, &bytes)?;
            if trial.status != TrialStatus::Running {
                continue;
            }
            trial.status = TrialStatus::Failed;
            trial.error = Some(INTERRUPTED.to_string());
            trial.finished_unix = Some(now_unix());
            let new = encode(&self.path, TRIALS, &key, &trial)?;
            self.trials
                .compare_and_swap(&key, Some(&bytes), Some(new))
                .map_err(|e| sled_error(&self.path, "cannot mark an interrupted trial", e))?
                .map_err(|_| {
                    store_error(
                        &self.path,
                        format!(
                            "trial {} changed while it was being recovered",
                            keys::describe_key(TRIALS, &key)
                        ),
                    )
                })?;
            recovered += 1;
        }
        if recovered > 0 {
            self.flush()?;
        }
        Ok(recovered)
    }
}

/// How long `open` keeps trying to take sled's lock on the directory.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens the sled database in `dir` with the bounded cache. sled locks the `db` file
/// (flock); a lock held only for a moment — e.g. a child process this process is spawning
/// inherits the descriptor until it execs — is waited out for up to [`LOCK_WAIT`], a lock
/// held longer is an error suggesting another s3 process.
fn open_sled(dir: &Path) -> crate::Result<sled::Db> {
    let config = sled::Config::new()
        .path(dir)
        .cache_capacity(CACHE_CAPACITY_BYTES);
    let start = std::time::Instant::now();
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) => {
                let locked = e.to_string().contains("could not acquire lock");
                if locked && start.elapsed() < LOCK_WAIT {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                }
                let hint = if locked {
                    " (is another s3 process using this store?)"
                } else {
                    ""
                };
                return Err(store_error(dir, format!("cannot open: {e}{hint}")));
            }
        }
    }
}

/// Refuses to turn a non-empty directory that is not a sled database (no `db` file) into a
/// store, or a path that is a file. A directory that holds only s3's own folders (the
/// teacher references `eval` and `baselines` keep there) is a store not yet opened.
fn check_directory(dir: &Path) -> crate::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(store_error(dir, "exists and is not a directory"));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| crate::S3Error::io(dir, e))?;
    let foreign = entries
        .filter_map(|e| e.ok())
        .any(|e| e.file_name() != crate::metric::REFERENCES_DIR);
    if foreign && !dir.join("db").is_file() {
        return Err(store_error(
            dir,
            "not an s3 store: the directory is not empty and holds no sled `db` file",
        ));
    }
    Ok(())
}

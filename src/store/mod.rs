//! The result store of the schedule search: runs (configuration and state checkpoints),
//! trials (immutable once finished or failed), an evaluation cache shared by every run, and
//! a schema version — kept twice: in append-only journals, and in a sled index.
//!
//! Layout of a store directory `DIR`:
//!
//! | path                        | what                                                    |
//! |-----------------------------|---------------------------------------------------------|
//! | `runs/RUN/trials.jsonl`     | run RUN's journal: creation, trials begun / finished / failed, checkpoints |
//! | `evals.jsonl`               | journal header, then evaluations cached outside trials ([`Store::put_eval`]) |
//! | `db`, `conf`, `blobs/`      | the sled index (trees below)                            |
//! | `lock`                      | held by the one writing process ([`Store::open`], `repair`) |
//!
//! | tree       | key                                   | value                    |
//! |------------|---------------------------------------|--------------------------|
//! | `meta`     | `schema_version`, `created_unix`      | number                   |
//! | `runs`     | run id                                | [`RunRecord`]            |
//! | `trials`   | run id, 0u8, number as big-endian u64 | [`Trial`]                |
//! | `counters` | run id                                | next trial number        |
//! | `evals`    | [`EvalKey::digest`] (hex)             | key, [`CachedEval`], origin |
//!
//! Journal lines are `{"rec":ENTRY,"b3":"SUM"}` with a blake3 checksum of the entry's bytes,
//! so a changed byte anywhere is detected; a last line without its end of line is a write a
//! crash interrupted (ignored, and cut by the next writing open).
//!
//! **Crash contract.** Every state change, under one write lock, (1) appends its journal
//! line and fsyncs it, then (2) runs one sled transaction and flushes. Once a call returns,
//! the change is in both and survives any crash (SIGKILL included). A crash during (1)
//! leaves at most an unfinished line (the change never happened); a crash between (1) and
//! (2) leaves the journal one line ahead, and the next writing open applies that line to
//! the index ("rolls forward"), so a finished trial is never re-evaluated. Trials a crash
//! left `Running` become `Failed` on the next writing open, journaled like any failure.
//!
//! **Damage contract.** Opening never destroys data. A writing open first reads a *copy*
//! of the index (sled's own recovery cuts its log at the first bad checksum, silently
//! dropping every later record) and compares it with the journals: if they disagree beyond
//! the last line of a journal, or a journal line is damaged, the open is refused, nothing
//! is written, and the error points to `s3 store check` and `s3 store repair`. Read-only
//! commands use [`StoreView`], which reads the journals only: no sled, no lock, no write,
//! so they work while a search holds the store. [`check`] lists every difference;
//! [`repair`] rebuilds the index from every intact copy of each record (journal lines and
//! readable index records), keeping the damaged index as `db.damaged-UNIX/` and damaged
//! journals as `*.damaged-UNIX`. A store written before journals existed is refused by a
//! writing open until `repair --from-index` writes its journals.

mod check;
mod codec;
mod evals;
mod image;
mod journal;
mod keys;
mod records;
mod runs;
mod trials;
mod verify;
mod view;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

pub use check::{CheckReport, RepairReport, check, repair};
pub use image::{Finding, Severity};
pub use keys::EvalKey;
pub use records::{CachedEval, RunRecord, Trial, TrialStatus};
pub use view::StoreView;

use codec::{decode, encode, now_unix, sled_error, store_error};
use journal::Entry;

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

/// An open result store. Many runs share one store (and its evaluation cache); the lock
/// file `DIR/lock` admits one writing process at a time (read-only commands use
/// [`StoreView`], which needs no lock). `Store` is `Send + Sync`: threads may share it; its
/// writes are serialised (journal line, then sled transaction), so trial numbers stay
/// unique.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    runs: sled::Tree,
    trials: sled::Tree,
    counters: sled::Tree,
    evals: sled::Tree,
    recovered: usize,
    rolled_forward: usize,
    /// Held by every state change, from its journal line to its flushed transaction.
    write: Mutex<()>,
    /// The store's lock file, locked for as long as this `Store` lives.
    _lock: std::fs::File,
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
    /// Opens or creates the store in `dir` to write in it. Writes the schema version and
    /// the journal header on creation and refuses (clear error naming the directory, the
    /// found and the expected version) a store of another version.
    ///
    /// Before sled touches the original, the index is read through a copy and compared
    /// with the journals: a store where they disagree (damage: sled's recovery would drop
    /// records, or a journal line is damaged) is refused with an error pointing to
    /// `s3 store check` / `s3 store repair`, and nothing is written. What a crash left
    /// between a journal line and its transaction is then applied to the index, and every
    /// Running trial is marked Failed ("interrupted: still running when the store was
    /// reopened"), journaled like any other change.
    ///
    /// A non-empty directory that is not a store is refused rather than written into, and
    /// so is a sled database holding trees this store does not know, and a store written
    /// before journals existed (`s3 store repair --from-index` journals it).
    pub fn open(dir: &Path) -> crate::Result<Store> {
        check_directory(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| crate::S3Error::io(dir, e))?;
        let lock = verify::take_lock(dir)?;
        let journals = verify::read_journals(dir)?;
        verify_before_open(dir, journals.as_ref())?;
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
            rolled_forward: 0,
            write: Mutex::new(()),
            _lock: lock,
        };
        store.check_tree_names()?;
        store.check_schema()?;
        match journals {
            Some(j) => store.rolled_forward = store.roll_forward(&j)?,
            None => store.write_journal_header()?,
        }
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

    /// Marks every Running trial Failed (a crash or kill interrupted it), journaled like
    /// any failure, and returns how many there were. The scan also checks that every trial
    /// record parses.
    fn recover_running_trials(&self) -> crate::Result<usize> {
        let mut running = Vec::new();
        for entry in self.trials.iter() {
            let (key, bytes) =
                entry.map_err(|e| sled_error(&self.path, "cannot scan the trials", e))?;
            let trial: Trial = decode(&self.path, TRIALS, &key, &bytes)?;
            if trial.status == TrialStatus::Running {
                running.push((trial.run_id, trial.number));
            }
        }
        for (run, number) in &running {
            self.fail_trial(run, *number, INTERRUPTED)?;
        }
        Ok(running.len())
    }

    /// Number of changes `open` found journaled but not yet in the index (a crash between
    /// the two writes) and applied to the index.
    pub fn rolled_forward(&self) -> usize {
        self.rolled_forward
    }

    /// Takes the write lock that orders journal lines and transactions (a panic in another
    /// writer leaves nothing half done that the lock protects, so poisoning is ignored).
    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `entry` to the journal at `path` (durable before returning): the first half
    /// of every state change. `create`: the journal must be new (a run's creation).
    fn journal_at(&self, path: &Path, entry: &Entry, create: bool) -> crate::Result<()> {
        let line = journal::encode_line(entry)
            .map_err(|e| store_error(&self.path, format!("cannot encode a journal line: {e}")))?;
        journal::append(path, &line, create).map_err(|e| {
            store_error(
                &self.path,
                format!("cannot append to the journal {}: {e}", path.display()),
            )
        })
    }

    /// Appends `entry` to run `run_id`'s journal.
    fn journal_run(&self, run_id: &str, entry: &Entry) -> crate::Result<()> {
        self.journal_at(&journal::run_journal_path(&self.path, run_id), entry, false)
    }

    /// Writes the header of the store-wide journal into a store that has none (a new one:
    /// `verify_before_open` refused an old store holding records).
    fn write_journal_header(&self) -> crate::Result<()> {
        let entry = Entry::Store {
            version: journal::JOURNAL_VERSION,
            created_unix: now_unix(),
        };
        self.journal_at(&self.path.join(journal::EVALS_JOURNAL), &entry, true)
    }

    /// Cuts unfinished last lines off the journals and applies to the index what the
    /// journals hold beyond it (the last line of a journal, when a crash came between it
    /// and its transaction). Returns how many items were applied.
    fn roll_forward(&self, journals: &verify::Journals) -> crate::Result<usize> {
        for file in journals.files.iter().filter(|f| f.torn_bytes > 0) {
            journal::cut_torn_tail(&file.path, file.complete_len)
                .map_err(|e| crate::S3Error::io(&file.path, e))?;
        }
        let (index, findings) =
            image::read_index(&self.db).map_err(|e| sled_error(&self.path, "cannot read", e))?;
        let replay = &journals.replay;
        let cmp = image::compare(&replay.image, &replay.tail, &index);
        let damage: Vec<Finding> = findings
            .into_iter()
            .chain(cmp.findings)
            .filter(|f| f.severity == Severity::Damage)
            .collect();
        if !damage.is_empty() {
            return Err(refusal(&self.path, &damage));
        }
        let writes = image::index_writes(&cmp.roll_forward)
            .map_err(|e| store_error(&self.path, format!("cannot encode a record: {e}")))?;
        for (tree, key, value) in &writes {
            self.db
                .open_tree(tree)
                .and_then(|t| t.insert(key.as_slice(), value.as_slice()))
                .map_err(|e| sled_error(&self.path, "cannot apply a journaled change", e))?;
        }
        if !writes.is_empty() {
            self.flush()?;
        }
        Ok(writes.len())
    }
}

/// Decides, before sled opens the original index, whether opening is safe: a journaled
/// store's index (read through a copy) must agree with its journals, up to the last line
/// of each; a store without journals must be new (no records).
fn verify_before_open(dir: &Path, journals: Option<&verify::Journals>) -> crate::Result<()> {
    let has_index = verify::has_index(dir);
    match journals {
        Some(_) if !has_index => Err(refusal(
            dir,
            &[Finding::damage(
                "db",
                "the journals exist but the sled index is missing",
            )],
        )),
        Some(j) => {
            let (index, index_findings) = verify::read_index_copy(dir)
                .map_err(|e| refusal(dir, &[Finding::damage("db", e)]))?;
            let cmp = image::compare(&j.replay.image, &j.replay.tail, &index);
            let damage: Vec<Finding> = j
                .replay
                .findings
                .iter()
                .cloned()
                .chain(index_findings)
                .chain(cmp.findings)
                .filter(|f| f.severity == Severity::Damage)
                .collect();
            if damage.is_empty() {
                Ok(())
            } else {
                Err(refusal(dir, &damage))
            }
        }
        None if !has_index => Ok(()),
        None => {
            let (index, _) = verify::read_index_copy(dir)
                .map_err(|e| refusal(dir, &[Finding::damage("db", e)]))?;
            if index == image::Image::default() {
                return Ok(());
            }
            Err(store_error(
                dir,
                format!(
                    "has no journals (it was written by an s3 before journals existed), so \
                     damage to it could not be detected; run `s3 store check --store {0}`, \
                     then `s3 store repair --from-index --store {0}` once to write them",
                    dir.display()
                ),
            ))
        }
    }
}

/// Most findings a refusal lists.
const REFUSAL_SHOWN: usize = 3;

/// The error of an open refused because the journals and the index disagree.
fn refusal(dir: &Path, damage: &[Finding]) -> crate::S3Error {
    let shown: Vec<String> = damage
        .iter()
        .take(REFUSAL_SHOWN)
        .map(|f| format!("{}: {}", f.place, f.message))
        .collect();
    let more = damage.len().saturating_sub(REFUSAL_SHOWN);
    let more = if more > 0 {
        format!(" (and {more} more)")
    } else {
        String::new()
    };
    store_error(
        dir,
        format!(
            "refusing to open: the journals and the index disagree, so opening could lose \
             records; nothing was changed. {}{more}. Run `s3 store check --store {1}` to see \
             every problem and `s3 store repair --store {1}` to rebuild the index from the \
             journals (the damaged index is kept as a backup)",
            shown.join("; "),
            dir.display()
        ),
    )
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

/// Refuses to turn a non-empty directory that is not a store (no sled `db` file, no journal
/// header) into a store, or a path that is a file. A directory that holds only s3's own
/// entries (the teacher references `eval` and `baselines` keep there, the lock file) is a
/// store not yet opened.
fn check_directory(dir: &Path) -> crate::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        return Err(store_error(dir, "exists and is not a directory"));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| crate::S3Error::io(dir, e))?;
    let known = [crate::metric::REFERENCES_DIR, verify::LOCK_FILE];
    let foreign = entries
        .filter_map(|e| e.ok())
        .any(|e| !known.iter().any(|k| e.file_name() == *k));
    let journaled = dir.join(journal::EVALS_JOURNAL).is_file();
    if foreign && !journaled && !verify::has_index(dir) {
        return Err(store_error(
            dir,
            "not an s3 store: the directory is not empty and holds no sled `db` file",
        ));
    }
    Ok(())
}

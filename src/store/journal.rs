//! The journals: append-only, fsync'd JSON-lines files from which the sled index can be
//! rebuilt, and which read-only commands read without opening sled.
//!
//! * `DIR/runs/RUN/trials.jsonl` — one per run: the run's creation (with its configuration),
//!   every trial begun, finished (with its [`EvalKey`], [`CachedEval`] and the cache entry
//!   it created) or failed, and every checkpoint.
//! * `DIR/evals.jsonl` — a header naming the journal version (its presence marks a journaled
//!   store), then every evaluation cached outside a trial ([`super::Store::put_eval`]).
//!
//! Each line is `{"rec":ENTRY,"b3":"SUM"}` where `SUM` is the first [`SUM_HEX_LEN`] hex
//! digits of the blake3 hash of the `ENTRY` bytes exactly as written, so every line is
//! valid JSON and a changed byte anywhere in it is detected. A last line without its end of
//! line is an unfinished write (a crash while appending) and is ignored, unless its bytes
//! verify, in which case only the end of line was damaged.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::keys::EvalKey;
use super::records::{CachedEval, EvalRecord, RunRecord, Trial};

/// The folder under the store directory that holds one folder per run.
pub(crate) const RUNS_DIR: &str = "runs";
/// The journal file inside a run's folder.
pub(crate) const RUN_JOURNAL: &str = "trials.jsonl";
/// The store-wide journal (header and evaluations cached outside trials).
pub(crate) const EVALS_JOURNAL: &str = "evals.jsonl";
/// The version of the journal format, written in the header of [`EVALS_JOURNAL`].
pub(crate) const JOURNAL_VERSION: u32 = 1;
/// Hex digits of the per-line checksum (64 bits: enough to catch damage, not a signature).
const SUM_HEX_LEN: usize = 16;
/// What every line starts with, before the entry's bytes.
const LINE_HEAD: &[u8] = br#"{"rec":"#;
/// What follows the entry's bytes, before the checksum.
const SUM_HEAD: &[u8] = br#","b3":""#;
/// What ends a line after the checksum (before the end of line).
const LINE_TAIL: &[u8] = br#""}"#;

/// One journal line's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Entry {
    /// The header of [`EVALS_JOURNAL`]: the store is journaled, in this format version.
    Store { version: u32, created_unix: f64 },
    /// A run was created (or, in a journal rewritten from an index, its record then).
    Run { run: RunRecord },
    /// A trial was begun (status Running); its number is the run's next one.
    Begin { trial: Trial },
    /// A trial was finished: the finished record, the evaluation's key and value, and the
    /// cache entry this finish created (`None` when the cache already held the key).
    Finish {
        trial: Trial,
        key: EvalKey,
        eval: CachedEval,
        cache: Option<EvalRecord>,
    },
    /// A trial failed (or a crash interrupted it): the failed record.
    Fail { trial: Trial },
    /// A run's state was replaced by a checkpoint.
    Checkpoint {
        run_id: String,
        state: serde_json::Value,
        updated_unix: f64,
    },
    /// An evaluation cached outside any trial.
    Eval { record: EvalRecord },
    /// A trial as it was found when `s3 store repair` rewrote the journal (its begin and
    /// end lines were damaged, or the journal was written from an index), with the cache
    /// entry its finish created, if known.
    Restored {
        trial: Trial,
        cache: Option<EvalRecord>,
    },
}

/// The bytes of one journal line for `entry`, end of line included.
pub(crate) fn encode_line(entry: &Entry) -> serde_json::Result<Vec<u8>> {
    let body = serde_json::to_vec(entry)?;
    let mut line = Vec::with_capacity(body.len() + LINE_HEAD.len() + SUM_HEX_LEN + 16);
    line.extend_from_slice(LINE_HEAD);
    line.extend_from_slice(&body);
    line.extend_from_slice(SUM_HEAD);
    line.extend_from_slice(checksum(&body).as_bytes());
    line.extend_from_slice(LINE_TAIL);
    line.push(b'\n');
    Ok(line)
}

/// The checksum of an entry's bytes.
fn checksum(body: &[u8]) -> String {
    let hex = blake3::hash(body).to_hex();
    hex[..SUM_HEX_LEN].to_string()
}

/// Parses one line (without its end of line): the entry, or why it is damaged.
pub(crate) fn decode_line(line: &[u8]) -> Result<Entry, String> {
    let tail_len = SUM_HEAD.len() + SUM_HEX_LEN + LINE_TAIL.len();
    if line.len() < LINE_HEAD.len() + tail_len || !line.starts_with(LINE_HEAD) {
        return Err("not a journal line (expected `{\"rec\":…,\"b3\":\"…\"}`)".into());
    }
    let (rest, tail) = line.split_at(line.len() - tail_len);
    let body = &rest[LINE_HEAD.len()..];
    let sum = &tail[SUM_HEAD.len()..SUM_HEAD.len() + SUM_HEX_LEN];
    if !tail.starts_with(SUM_HEAD) || !tail.ends_with(LINE_TAIL) {
        return Err("the checksum field is damaged".into());
    }
    if sum != checksum(body).as_bytes() {
        return Err(format!(
            "checksum mismatch (the line says {}, its bytes hash to {})",
            String::from_utf8_lossy(sum),
            checksum(body)
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| format!("the checksum holds but the entry does not parse: {e}"))
}

/// A journal file as read: its intact entries with their line numbers (1-based), its
/// damaged lines, and what was found at its end.
#[derive(Debug, Default)]
pub(crate) struct JournalFile {
    pub path: PathBuf,
    pub entries: Vec<(usize, Entry)>,
    /// (line number, why) for every line that is not an intact entry.
    pub damaged: Vec<(usize, String)>,
    /// Bytes of an unfinished last line (a write a crash interrupted), ignored; 0 if none.
    pub torn_bytes: usize,
    /// Length of the file up to the end of its last complete line.
    pub complete_len: u64,
}

/// Reads the journal at `path`. A missing file is an error of the caller's choosing, so
/// this returns the I/O error as is.
pub(crate) fn read_journal(path: &Path) -> std::io::Result<JournalFile> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut file = JournalFile {
        path: path.to_path_buf(),
        ..JournalFile::default()
    };
    let mut start = 0;
    let mut number = 0;
    while start < bytes.len() {
        number += 1;
        let Some(len) = bytes[start..].iter().position(|&b| b == b'\n') else {
            read_unterminated(&mut file, number, &bytes[start..]);
            break;
        };
        match decode_line(&bytes[start..start + len]) {
            Ok(entry) => file.entries.push((number, entry)),
            Err(why) => file.damaged.push((number, why)),
        }
        start += len + 1;
        file.complete_len = start as u64;
    }
    Ok(file)
}

/// The last line of a file that has no end of line: an unfinished write, unless its bytes
/// (less one: a damaged end of line) or all of them form an intact entry.
fn read_unterminated(file: &mut JournalFile, number: usize, rest: &[u8]) {
    let whole = decode_line(rest);
    let less_one = decode_line(&rest[..rest.len() - 1]);
    match whole.or(less_one) {
        Ok(entry) => {
            file.entries.push((number, entry));
            file.damaged.push((
                number,
                "the line's end of line is missing or damaged".into(),
            ));
        }
        Err(_) => file.torn_bytes = rest.len(),
    }
}

/// The folder name of run `id` under `runs/`: the id itself when it is a plain folder name
/// (`[A-Za-z0-9._-]`, not `.` or `..`, as the search's run ids are), else the id with
/// every other byte (and every `.` of an all-dots id) written as `%XX`.
pub(crate) fn run_folder_name(id: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    let all_dots = id.bytes().all(|b| b == b'.');
    id.bytes()
        .map(|b| {
            if plain(b) && !(all_dots && b == b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The journal of run `id` in the store `dir`.
pub(crate) fn run_journal_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(RUNS_DIR)
        .join(run_folder_name(id))
        .join(RUN_JOURNAL)
}

/// Every run journal under `dir/runs/` (folders without one — a run's other files before
/// its creation, or a store written before journals — are skipped), sorted by path.
pub(crate) fn run_journal_paths(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let runs = dir.join(RUNS_DIR);
    if !runs.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&runs)? {
        let path = entry?.path().join(RUN_JOURNAL);
        if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Appends `line` to the journal at `path` and makes it durable (fsync of the file, and of
/// its folder when the file is new). `create` says the file must not exist yet (a run's
/// first line), otherwise it must.
pub(crate) fn append(path: &Path, line: &[u8], create: bool) -> std::io::Result<()> {
    let parent = path.parent().expect("journal paths have a folder");
    if create {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(create)
        .open(path)?;
    file.write_all(line)?;
    file.sync_data()?;
    if create {
        sync_dir(parent)?;
        if let Some(grand) = parent.parent() {
            sync_dir(grand)?;
        }
    }
    Ok(())
}

/// Writes `lines` as the whole content of a new journal at `path` (through a temporary file
/// renamed over it, so a crash leaves the old file or the new one), durably.
pub(crate) fn write_whole(path: &Path, lines: &[Vec<u8>]) -> std::io::Result<()> {
    let parent = path.parent().expect("journal paths have a folder");
    std::fs::create_dir_all(parent)?;
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut file = File::create(&tmp)?;
        for line in lines {
            file.write_all(line)?;
        }
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(parent)
}

/// Cuts an unfinished last line off the journal at `path` (it was never acknowledged: a
/// write is acknowledged only after its line is whole and synced), durably.
pub(crate) fn cut_torn_tail(path: &Path, complete_len: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(complete_len)?;
    file.sync_all()
}

/// fsync of a folder, so a new or renamed file in it survives a crash.
///
/// A relative path's top folder has the empty path as its parent: that is the working
/// directory.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry::Checkpoint {
            run_id: "r".into(),
            state: serde_json::json!({"best": 0.1, "n": [1, 2]}),
            updated_unix: 1.5,
        }
    }

    #[test]
    fn lines_round_trip_and_are_json() {
        let line = encode_line(&entry()).unwrap();
        assert_eq!(line.last(), Some(&b'\n'));
        let body = &line[..line.len() - 1];
        let _: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(decode_line(body).unwrap(), entry());
    }

    #[test]
    fn every_changed_byte_is_detected() {
        let line = encode_line(&entry()).unwrap();
        let body = &line[..line.len() - 1];
        for i in 0..body.len() {
            let mut bad = body.to_vec();
            bad[i] ^= 0x04;
            assert!(decode_line(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn torn_and_unterminated_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let line = encode_line(&entry()).unwrap();
        let mut bytes = line.clone();
        bytes.extend_from_slice(&line[..10]);
        std::fs::write(&path, &bytes).unwrap();
        let file = read_journal(&path).unwrap();
        assert_eq!((file.entries.len(), file.torn_bytes), (1, 10));
        assert!(file.damaged.is_empty());
        assert_eq!(file.complete_len, line.len() as u64);
        // A last line whose end of line was changed is read, and reported.
        let mut bytes = line.clone();
        *bytes.last_mut().unwrap() = b'x';
        std::fs::write(&path, &bytes).unwrap();
        let file = read_journal(&path).unwrap();
        assert_eq!((file.entries.len(), file.damaged.len()), (1, 1));
    }

    #[test]
    fn run_folder_names_are_safe() {
        assert_eq!(run_folder_name("run-1.a_b"), "run-1.a_b");
        assert_eq!(run_folder_name("a/b"), "a%2Fb");
        assert_eq!(run_folder_name(".."), "%2E%2E");
        assert_eq!(run_folder_name("ü"), "%C3%BC");
    }
}

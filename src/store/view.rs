//! A read-only view of a store for `runs list|show|trials` and the like: it reads the
//! journals (no sled, no lock), so it never writes to the store and works while a search
//! holds it. An unfinished last line (a write in flight) is ignored; a damaged line is an
//! error pointing to `s3 store check`, never a silently shorter answer.

use std::path::{Path, PathBuf};

use super::codec::store_error;
use super::image::{Image, Severity};
use super::{RunRecord, Trial, verify};
use crate::error::Result;

/// What a store holds, read once when the view is made.
#[derive(Debug)]
pub struct StoreView {
    path: PathBuf,
    image: Image,
    notes: Vec<String>,
}

impl StoreView {
    /// Reads the store in `dir` without writing anything there. A missing directory is an
    /// empty store (with a note saying so). A store written before journals existed is read
    /// through a copy of its sled index, with a note. A damaged journal is an error naming
    /// the file and line and pointing to `s3 store check` / `s3 store repair`.
    pub fn open(dir: &Path) -> Result<StoreView> {
        let mut view = StoreView {
            path: dir.to_path_buf(),
            image: Image::default(),
            notes: Vec::new(),
        };
        if !dir.exists() {
            view.notes
                .push(format!("there is no store at {}", dir.display()));
            return Ok(view);
        }
        match verify::read_journals(dir)? {
            Some(journals) => {
                let replay = journals.replay;
                if let Some(f) = replay
                    .findings
                    .iter()
                    .find(|f| f.severity == Severity::Damage)
                {
                    return Err(store_error(
                        dir,
                        format!(
                            "cannot be read whole: {}: {}; run `s3 store check --store {2}` \
                             to see every problem and `s3 store repair --store {2}` to \
                             rebuild it",
                            f.place,
                            f.message,
                            dir.display()
                        ),
                    ));
                }
                view.image = replay.image;
            }
            None if verify::has_index(dir) => view.read_old_index(dir)?,
            None => {}
        }
        Ok(view)
    }

    /// Reads a store without journals through a copy of its index.
    fn read_old_index(&mut self, dir: &Path) -> Result<()> {
        let (image, findings) = verify::read_index_copy(dir)
            .map_err(|e| store_error(dir, format!("cannot read its index: {e}")))?;
        if let Some(f) = findings.first() {
            return Err(store_error(dir, format!("{}: {}", f.place, f.message)));
        }
        self.image = image;
        self.notes.push(format!(
            "{} has no journals (written by an s3 before journals existed): run \
             `s3 store repair --from-index --store {0}` once so damage can be detected",
            dir.display()
        ));
        Ok(())
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Things the reader should know (no store there, no journals), one line each.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The run `id`, or `None` if there is none.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        Ok(self.image.runs.get(id).cloned())
    }

    /// Every run, oldest first (by creation time, then id), as [`super::Store::runs`].
    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        let mut runs: Vec<RunRecord> = self.image.runs.values().cloned().collect();
        runs.sort_by(|a, b| {
            a.created_unix
                .total_cmp(&b.created_unix)
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(runs)
    }

    /// The trials of run `run_id`, in number order (empty if it has none or does not exist).
    pub fn trials(&self, run_id: &str) -> Result<Vec<Trial>> {
        Ok(self
            .image
            .trials
            .range((run_id.to_string(), 0)..=(run_id.to_string(), u64::MAX))
            .map(|(_, t)| t.clone())
            .collect())
    }

    /// Trial `number` of run `run_id`, or `None` if there is none.
    pub fn trial(&self, run_id: &str, number: u64) -> Result<Option<Trial>> {
        Ok(self
            .image
            .trials
            .get(&(run_id.to_string(), number))
            .cloned())
    }

    /// Number of evaluations in the cache (all runs together).
    pub fn eval_count(&self) -> Result<usize> {
        Ok(self.image.evals.len())
    }
}

//! The `--store` flag: where the result store is, and opening it to write or only to read.

use anyhow::{Context, Result};
use clap::Args;
use s3::store::{Store, StoreView};
use std::path::PathBuf;

/// The default store directory when neither `--store` nor `S3_STORE` is given.
pub const DEFAULT_STORE: &str = "s3-store";

#[derive(Args)]
pub struct StoreArg {
    /// The result store directory [default: $S3_STORE, else ./s3-store].
    #[arg(long)]
    store: Option<PathBuf>,
}

/// The store directory: the flag, else `S3_STORE`, else `./s3-store`.
pub(crate) fn store_path(flag: Option<&std::path::Path>) -> PathBuf {
    flag.map(std::path::Path::to_path_buf)
        .or_else(|| std::env::var_os("S3_STORE").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE))
}

impl StoreArg {
    pub(crate) fn path(&self) -> PathBuf {
        store_path(self.store.as_deref())
    }

    /// Opens the store to write in it (a search, an export that measures).
    pub(crate) fn open(&self) -> Result<Store> {
        let p = self.path();
        Store::open(&p).with_context(|| format!("opening the store {}", p.display()))
    }

    /// Opens the store only to read it (`runs list|show|trials`): reads its journals and
    /// never writes there, so it works while a search holds the store. Notes (no store
    /// there, a store without journals) go to stderr.
    pub(crate) fn open_view(&self) -> Result<StoreView> {
        let p = self.path();
        let view =
            StoreView::open(&p).with_context(|| format!("reading the store {}", p.display()))?;
        for note in view.notes() {
            eprintln!("note: {note}");
        }
        Ok(view)
    }
}

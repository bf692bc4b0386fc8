//! Teacher references kept in the store directory (`<store>/references/`), so a reference
//! solve is paid once per (model, noise seed, sample count, reference settings) and reused
//! by every schedule, run and command. Plain files, not the sled database: a command that
//! only reads references never takes the store's lock, so `s3 eval` works while a search
//! runs.
//!
//! Each entry is `<key hash>.npy` (the reference outputs, f32 `[n, ...shape]`) and
//! `<key hash>.json` (the full key, how the reference was solved, and the blake3 hash of the
//! `.npy` bytes). The JSON is written last, after an atomic rename of the array, so it marks
//! a complete entry; an entry whose array does not match its hash is ignored and rewritten.

use crate::error::{Result, S3Error};
use crate::io::npy::{read_samples, write_samples};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The folder under a store directory that holds references.
pub const REFERENCES_DIR: &str = "references";

/// How a reference was solved, stored with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceInfo {
    /// Model calls per sample of the accepted solve.
    pub nfe: usize,
    /// Mean squared difference between the accepted solve and the one at half the model
    /// calls (on the final outputs): the doubling check. 0 for exact references.
    pub doubling_mse: f64,
    /// Seconds the reference took to compute.
    pub seconds: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: String,
    info: ReferenceInfo,
    blake3: String,
}

/// A folder of cached references.
#[derive(Debug, Clone)]
pub struct ReferenceCache {
    dir: PathBuf,
}

impl ReferenceCache {
    /// The references of the store at `store` (the folder is created on the first write).
    pub fn in_store(store: &Path) -> Self {
        Self {
            dir: store.join(REFERENCES_DIR),
        }
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let h = blake3::hash(key.as_bytes()).to_hex();
        let stem = &h[..32];
        (
            self.dir.join(format!("{stem}.npy")),
            self.dir.join(format!("{stem}.json")),
        )
    }

    /// The reference stored under `key`, if a complete, intact one is there.
    pub fn get(&self, key: &str, shape: &[usize]) -> Result<Option<(Vec<f32>, ReferenceInfo)>> {
        let (npy, json) = self.paths(key);
        let Ok(text) = std::fs::read_to_string(&json) else {
            return Ok(None);
        };
        let entry: Entry = serde_json::from_str(&text).map_err(|e| S3Error::Json {
            path: json.clone(),
            message: e.to_string(),
        })?;
        if entry.key != key {
            return Ok(None);
        }
        let Ok(bytes) = std::fs::read(&npy) else {
            return Ok(None);
        };
        if blake3::hash(&bytes).to_hex().as_str() != entry.blake3 {
            return Ok(None);
        }
        let a = read_samples(&npy, shape)?;
        Ok(Some((a.data, entry.info)))
    }

    /// Stores `data` (`n × prod(shape)` values) under `key`.
    pub fn put(
        &self,
        key: &str,
        data: &[f32],
        shape: &[usize],
        info: &ReferenceInfo,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| S3Error::io(&self.dir, e))?;
        let (npy, json) = self.paths(key);
        let tmp = npy.with_extension("npy.tmp");
        write_samples(&tmp, data, shape)?;
        let bytes = std::fs::read(&tmp).map_err(|e| S3Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &npy).map_err(|e| S3Error::io(&npy, e))?;
        let entry = Entry {
            key: key.to_string(),
            info: info.clone(),
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        };
        let tmp = json.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&entry).expect("entries serialise");
        std::fs::write(&tmp, text).map_err(|e| S3Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &json).map_err(|e| S3Error::io(&json, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_reference_comes_back_and_a_damaged_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReferenceCache::in_store(dir.path());
        let info = ReferenceInfo {
            nfe: 40,
            doubling_mse: 1e-6,
            seconds: 0.5,
        };
        let data: Vec<f32> = (0..12).map(|i| i as f32 / 7.0).collect();
        assert!(cache.get("k", &[2, 3]).unwrap().is_none());
        cache.put("k", &data, &[2, 3], &info).unwrap();
        let (back, got) = cache.get("k", &[2, 3]).unwrap().unwrap();
        assert_eq!((back, got), (data.clone(), info.clone()));
        assert!(cache.get("other", &[2, 3]).unwrap().is_none());
        // A flipped byte in the array: the entry is ignored, not trusted.
        let (npy, _) = cache.paths("k");
        let mut bytes = std::fs::read(&npy).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&npy, bytes).unwrap();
        assert!(cache.get("k", &[2, 3]).unwrap().is_none());
    }
}

//! A folder of computed EMS, so each model's statistics are paid for once.
//!
//! Each entry is `<key hash>.npy` — f32 `[3, N + 1, dim]`, the arrays l, s, b in that order,
//! as the official `l.npz` / `sb.npz` hold them — and `<key hash>.json`: the format name and
//! version, the full key, the grid, the sample shape, the settings, the compute time and the
//! blake3 hash of the `.npy` bytes. The JSON is written last, after an atomic rename of the
//! array, so it marks a complete entry; an entry that does not match is recomputed.

use super::ems::{Ems, LambdaGrid};
use super::mixture_ems::{EmsSettings, mixture_ems};
use crate::error::{Result, S3Error};
use crate::io::npy::{read_samples, write_samples};
use crate::model::GaussianMixture;
use crate::noise::NoiseSchedule;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The format name in every entry's JSON.
pub const EMS_FORMAT: &str = "s3-dpm-solver-v3-ems";
/// Bumped whenever the statistics a key maps to change (formula, draws, rounding).
pub const EMS_FORMAT_VERSION: u32 = 1;
/// The folder under a store directory that holds EMS.
pub const EMS_DIR: &str = "ems";

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    format: String,
    version: u32,
    key: String,
    grid: LambdaGrid,
    shape: Vec<usize>,
    settings: EmsSettings,
    seconds: f64,
    blake3: String,
}

/// Where an EMS came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmsOrigin {
    /// Read from the cache (else computed now).
    pub cached: bool,
    /// Seconds the computation took (when it was done, possibly earlier).
    pub seconds: f64,
}

/// A folder of cached EMS.
#[derive(Debug, Clone)]
pub struct EmsCache {
    dir: PathBuf,
}

impl EmsCache {
    /// A cache in `dir` (created on the first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The EMS folder of the store at `store` (`<store>/ems`).
    pub fn in_store(store: &Path) -> Self {
        Self::new(store.join(EMS_DIR))
    }

    /// The key of a model's EMS: format version, the model's identity (e.g.
    /// `Dataset::identity()`, which names the noise schedule too), the schedule's family and
    /// λ at the grid's ends (they tell apart schedules of one family, e.g. beta schedules),
    /// and the settings.
    pub fn key(identity: &str, ns: &NoiseSchedule, settings: &EmsSettings) -> String {
        format!(
            "v{EMS_FORMAT_VERSION}|{identity}|{}|λ={:e}..{:e}|t={:e}..{:e}|N={}|K={}|seed={}",
            ns.name(),
            ns.lambda(settings.t_start),
            ns.lambda(settings.t_end),
            settings.t_start,
            settings.t_end,
            settings.intervals,
            settings.draws,
            settings.seed
        )
    }

    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let h = blake3::hash(key.as_bytes()).to_hex();
        let stem = &h[..32];
        (
            self.dir.join(format!("{stem}.npy")),
            self.dir.join(format!("{stem}.json")),
        )
    }

    /// The entry for `key`, if a complete and matching one exists.
    pub fn get(&self, key: &str) -> Result<Option<(Ems, EmsOrigin)>> {
        let (npy, json) = self.paths(key);
        let Ok(text) = std::fs::read_to_string(&json) else {
            return Ok(None);
        };
        let Ok(entry) = serde_json::from_str::<Entry>(&text) else {
            return Ok(None);
        };
        if entry.format != EMS_FORMAT || entry.version != EMS_FORMAT_VERSION || entry.key != key {
            return Ok(None);
        }
        let Ok(bytes) = std::fs::read(&npy) else {
            return Ok(None);
        };
        if blake3::hash(&bytes).to_hex().as_str() != entry.blake3 {
            return Ok(None);
        }
        let dim: usize = entry.shape.iter().product();
        let arr = read_samples(&npy, &[entry.grid.len(), dim])?;
        if arr.count != 3 {
            return Err(S3Error::Array {
                path: npy,
                message: format!("{} arrays; expected 3 (l, s, b)", arr.count),
            });
        }
        let n = entry.grid.len() * dim;
        let part = |i: usize| {
            arr.data[i * n..(i + 1) * n]
                .iter()
                .map(|&v| v as f64)
                .collect()
        };
        let ems = Ems::new(entry.grid, entry.shape, part(0), part(1), part(2))?;
        let origin = EmsOrigin {
            cached: true,
            seconds: entry.seconds,
        };
        Ok(Some((ems, origin)))
    }

    /// Stores `ems` under `key` (array first, then the JSON that marks it complete).
    pub fn put(&self, key: &str, ems: &Ems, settings: &EmsSettings, seconds: f64) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| S3Error::io(&self.dir, e))?;
        let (npy, json) = self.paths(key);
        let tmp = npy.with_extension("npy.tmp");
        let (l, s, b) = ems.arrays();
        let data: Vec<f32> = l.iter().chain(s).chain(b).map(|&v| v as f32).collect();
        write_samples(&tmp, &data, &[ems.grid.len(), ems.dim()])?;
        let bytes = std::fs::read(&tmp).map_err(|e| S3Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &npy).map_err(|e| S3Error::io(&npy, e))?;
        let entry = Entry {
            format: EMS_FORMAT.into(),
            version: EMS_FORMAT_VERSION,
            key: key.into(),
            grid: ems.grid,
            shape: ems.shape.clone(),
            settings: *settings,
            seconds,
            blake3: blake3::hash(&bytes).to_hex().to_string(),
        };
        let text = serde_json::to_string_pretty(&entry).map_err(|e| S3Error::Json {
            path: json.clone(),
            message: e.to_string(),
        })?;
        std::fs::write(&json, text).map_err(|e| S3Error::io(&json, e))
    }

    /// The EMS of `mixture` (identified by `identity`) under `ns` with `settings`: from the
    /// cache, or computed ([`mixture_ems`]) and stored.
    pub fn mixture(
        &self,
        identity: &str,
        mixture: &GaussianMixture,
        ns: &NoiseSchedule,
        settings: &EmsSettings,
    ) -> Result<(Ems, EmsOrigin)> {
        let key = Self::key(identity, ns, settings);
        if let Some(found) = self.get(&key)? {
            return Ok(found);
        }
        let start = std::time::Instant::now();
        let ems = mixture_ems(mixture, ns, settings)?;
        let seconds = start.elapsed().as_secs_f64();
        self.put(&key, &ems, settings, seconds)?;
        Ok((
            ems,
            EmsOrigin {
                cached: false,
                seconds,
            },
        ))
    }
}

//! The models directory: where the files of real-network presets live. Its location comes
//! from `--models-dir`, else `S3_MODELS_DIR`, else `./models`. The `cifar10` preset reads
//! `MODELS/cifar10/`:
//!
//! | file | what | made by |
//! |---|---|---|
//! | `model.json` + `model.onnx` | the diffusion network and its model config | `tools/onnx_export/export.py ddpm-cifar10` |
//! | `inception.json` + `inception.onnx` | the pytorch-fid Inception-v3 feature extractor | `tools/onnx_export/export.py inception` |
//! | `train_stats.npz` | CIFAR-10 train statistics (`mu`, `sigma`) | `tools/onnx_export/export.py cifar10-stats`, or `s3 fid-stats` |

use crate::error::{Result, S3Error};
use std::path::{Path, PathBuf};

/// The environment variable naming the models directory.
pub const MODELS_DIR_ENV: &str = "S3_MODELS_DIR";
/// The models directory when neither the flag nor the variable is given.
pub const DEFAULT_MODELS_DIR: &str = "models";

/// Resolves the models directory: the flag, else `S3_MODELS_DIR`, else `./models`.
pub fn models_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(MODELS_DIR_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MODELS_DIR))
}

/// The files of the `cifar10` preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cifar10Files {
    pub dir: PathBuf,
    pub model: PathBuf,
    pub extractor: PathBuf,
    pub stats: PathBuf,
}

impl Cifar10Files {
    /// The preset's paths under `models`.
    pub fn new(models: &Path) -> Self {
        let dir = models.join("cifar10");
        Self {
            model: dir.join("model.json"),
            extractor: dir.join("inception.json"),
            stats: dir.join("train_stats.npz"),
            dir,
        }
    }

    /// Errors unless every file is present (the configs' `.onnx` files are checked when
    /// loaded); the message names each missing file and the command that creates it.
    pub fn check(&self) -> Result<()> {
        let d = self.dir.display();
        let wanted = [
            (
                &self.model,
                format!(
                    "python tools/onnx_export/export.py ddpm-cifar10 --out {d}   \
                     (the diffusion network; add --random-weights for an offline test graph)"
                ),
            ),
            (
                &self.extractor,
                format!(
                    "python tools/onnx_export/export.py inception --weights \
                     pt_inception-2015-12-05-6726825d.pth --out {d}   (the FID Inception)"
                ),
            ),
            (
                &self.stats,
                format!(
                    "python tools/onnx_export/export.py cifar10-stats --extractor \
                     {d}/inception.json --cifar10-dir cifar-10-batches-py --out \
                     {d}/train_stats.npz   (or: s3 fid-stats IMAGES --extractor \
                     {d}/inception.json --out {d}/train_stats.npz)"
                ),
            ),
        ];
        let missing: Vec<String> = wanted
            .iter()
            .filter(|(p, _)| !p.is_file())
            .map(|(p, how)| format!("  {}\n    create it with: {how}", p.display()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(S3Error::MissingFiles(format!(
            "the cifar10 preset needs files that are missing from the models directory {} \
             (set it with --models-dir or {MODELS_DIR_ENV}; see README \"Real networks\"):\n{}",
            self.dir.parent().unwrap_or(&self.dir).display(),
            missing.join("\n")
        )))
    }
}

//! The `digits-net` preset: a small ε-prediction network trained on the UCI digits by
//! `tools/train_digits_net/train.py` and shipped in `data/digits-net/` (embedded in the
//! binary, so it runs anywhere ONNX Runtime does). It is measured like `digits` — FD on raw
//! pixels against the exact moments of the digits data — and by MSE to its teacher, so the
//! model's own error and the solver's can be told apart.

use super::network::{LoadOptions, Network, dataset_of};
use super::{DataSource, Dataset, presets};
use crate::error::{Result, S3Error};
use crate::onnx::{MODEL_CONFIG_FILE, ModelConfigPath};
use std::path::{Path, PathBuf};

static ONNX: &[u8] = include_bytes!("../../data/digits-net/model.onnx");
static CONFIG: &[u8] = include_bytes!("../../data/digits-net/model.json");

/// Writes `bytes` to `path` through a per-process temporary file and a rename, so readers
/// never see a partial file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| S3Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| S3Error::io(path, e))
}

/// The embedded files, written once into a folder of the temporary directory named by their
/// hash (ONNX Runtime loads graphs from files).
fn files() -> Result<PathBuf> {
    let mut h = blake3::Hasher::new();
    h.update(ONNX);
    h.update(CONFIG);
    let dir = std::env::temp_dir().join(format!("s3-digits-net-{}", &h.finalize().to_hex()[..16]));
    if !dir.join(MODEL_CONFIG_FILE).is_file() {
        std::fs::create_dir_all(&dir).map_err(|e| S3Error::io(&dir, e))?;
        write_atomic(&dir.join("model.onnx"), ONNX)?;
        write_atomic(&dir.join(MODEL_CONFIG_FILE), CONFIG)?;
    }
    Ok(dir)
}

/// The preset: the shipped network, with the digits mixture as its exact data (FD on 5,000
/// samples by default, as `digits`).
pub fn digits_net(options: &LoadOptions) -> Result<Dataset> {
    let path = ModelConfigPath::new(&files()?);
    let mut network = Network::load(&path, options, None)?;
    let digits = presets::digits();
    let DataSource::Mixture(mixture) = digits.source else {
        unreachable!("digits is a mixture")
    };
    network.data = Some(mixture);
    let mut ds = dataset_of(network, Some("digits-net"), &path)?;
    ds.samples = digits.samples;
    Ok(ds)
}

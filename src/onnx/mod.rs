//! Real networks through ONNX Runtime (`ort` with `load-dynamic`): finding the runtime
//! library, sessions, diffusion models described by a config JSON beside the `.onnx` file
//! (with optional decoder and conditioning), and feature extractors for FID.

mod conditioning;
mod config;
mod decoder;
mod features;
mod model;
mod models_dir;
pub mod runtime;
mod session;

use crate::error::{Result, S3Error};
use std::path::Path;

/// Reads a versioned JSON config (`what` names the kind in errors) and checks its `format`
/// and `version` fields, given by `header`.
fn read_config<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
    header: impl Fn(&T) -> (&str, u32),
    (format, version): (&str, u32),
) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| S3Error::io(path, e))?;
    let c: T = serde_json::from_str(&text).map_err(|e| S3Error::Json {
        path: path.into(),
        message: format!("not a valid {what}: {e}"),
    })?;
    let ctx = path.display().to_string();
    let (f, v) = header(&c);
    if f != format {
        return Err(S3Error::field(
            &ctx,
            "format",
            format!("{f:?}; expected {format:?}"),
        ));
    }
    if v != version {
        return Err(S3Error::field(
            &ctx,
            "version",
            format!("{v}; this build reads {version}"),
        ));
    }
    Ok(c)
}

pub use conditioning::Conditions;
pub use config::{
    ClassLabels, ConditioningConfig, DecoderConfig, FidFiles, MODEL_CONFIG_FILE, MODEL_FORMAT,
    MODEL_VERSION, ModelConfig, ModelConfigPath, ModelInputs, TimeInput,
};
pub use decoder::Decoder;
pub use features::{
    EXTRACTOR_FORMAT, EXTRACTOR_VERSION, ExtractorConfig, FeatureExtractor, Images, quantize,
};
pub use model::{OnnxModel, RunOptions};
pub use models_dir::{Cifar10Files, DEFAULT_MODELS_DIR, MODELS_DIR_ENV, models_dir};
pub use runtime::{INSTALL_HINT, ORT_VERSION, RuntimeLibrary, environment, find_library};
pub use session::{Device, Input, OnnxSession, SessionOptions};

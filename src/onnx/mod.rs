//! Real networks through ONNX Runtime (`ort` with `load-dynamic`): finding the runtime
//! library, sessions, diffusion models described by a config JSON beside the `.onnx` file,
//! and feature extractors for FID.

mod features;
mod model;
mod models_dir;
pub mod runtime;
mod session;

pub use features::{
    EXTRACTOR_FORMAT, EXTRACTOR_VERSION, ExtractorConfig, FeatureExtractor, Images, quantize,
};
pub use model::{
    ClassLabels, MODEL_FORMAT, MODEL_VERSION, ModelConfig, ModelInputs, OnnxModel, RunOptions,
    TimeInput,
};
pub use models_dir::{Cifar10Files, DEFAULT_MODELS_DIR, MODELS_DIR_ENV, models_dir};
pub use runtime::{INSTALL_HINT, ORT_VERSION, RuntimeLibrary, environment, find_library};
pub use session::{Device, Input, OnnxSession, SessionOptions};

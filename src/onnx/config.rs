//! The model config (`format: "s3-onnx-model"`, version 1): a JSON file beside the `.onnx`
//! graph that says what the graph's inputs and output are called, the sample shape, what the
//! output means (ε, x0, v), the noise schedule it was trained with, and how s3's continuous
//! time t becomes the network's time input (e.g. 999·t for ScoreSDE, 1000·t − 1 for a
//! discrete DDPM, σ for EDM). Optional parts name further files, all relative to the config's
//! folder: `fid` (an extractor config and reference statistics), `data` (an s3 mixture file:
//! the exact data the network models, for FD against its exact moments), `decoder` (a graph
//! applied to final samples, e.g. a VAE decoder) and `conditioning` (per-sample conditioning
//! inputs with a null entry, and the guidance scale of classifier-free guidance).
//!
//! ```json
//! {"format": "s3-onnx-model", "version": 1, "name": "ddpm-cifar10", "onnx": "model.onnx",
//!  "inputs": {"sample": "sample", "time": "timestep"}, "output": "out",
//!  "sample_shape": [3, 32, 32], "parameterization": "eps",
//!  "noise_schedule": {"name": "vp-discrete", "betas": "linear"},
//!  "time_input": {"kind": "affine", "scale": 1000.0, "offset": -1.0},
//!  "fid": {"extractor": "inception.json", "stats": "train_stats.npz"}}
//! ```

use crate::error::{Result, S3Error};
use crate::model::{Parameterization, TimePoint};
use crate::noise::NoiseScheduleSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The value of the `format` field of a model config.
pub const MODEL_FORMAT: &str = "s3-onnx-model";
/// The model-config version this build reads.
pub const MODEL_VERSION: u32 = 1;
/// The config file a model directory holds (`--dataset DIR`).
pub const MODEL_CONFIG_FILE: &str = "model.json";

/// The names of the graph's inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInputs {
    /// The noisy sample, f32 `[batch, ...sample_shape]`.
    pub sample: String,
    /// The time input, f32 `[batch]`.
    pub time: String,
}

/// How continuous t maps to the network's time input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum TimeInput {
    /// `scale · t + offset` (ScoreSDE: 999·t; discrete DDPM: 1000·t − 1).
    Affine {
        scale: f64,
        offset: f64,
        /// Only `float32` is supported (kept explicit for readers of the file).
        #[serde(default = "float32")]
        dtype: String,
    },
    /// The EDM noise level σ(t)/α(t).
    Sigma {
        #[serde(default = "float32")]
        dtype: String,
    },
}

fn float32() -> String {
    "float32".into()
}

/// A class-label input and classifier-free guidance (the older form of `conditioning`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassLabels {
    /// The label input's name (f32 `[batch]` holding integer class ids).
    pub input: String,
    pub num_classes: usize,
    /// The id of the "no class" label used for the unconditional pass.
    pub null_class: usize,
    /// Guidance scale w: output = uncond + w · (cond − uncond); 1 runs the conditional pass
    /// only.
    #[serde(default = "one")]
    pub guidance_scale: f64,
}

fn one() -> f64 {
    1.0
}

/// FID: a feature-extractor config and the reference statistics (`mu`, `sigma`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FidFiles {
    pub extractor: String,
    pub stats: String,
}

/// A graph applied to final samples `[batch, ...sample_shape]` before metrics and pictures,
/// giving `[batch, ...output_shape]` values in [−1, 1] (e.g. a VAE decoder with its latent
/// scaling baked in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoderConfig {
    pub onnx: String,
    pub input: String,
    pub output: String,
    pub output_shape: Vec<usize>,
}

/// Per-sample conditioning: `values` is an f32 `.npy` of shape `[R, ...cond_shape]` whose
/// row `null_index` is the unconditional ("null") entry; sample i of a batch uses the
/// (i mod (R − 1))-th of the other rows, in order. With guidance scale w ≠ 1 the output is
/// uncond + w·(cond − uncond) (two graph calls); w = 1 runs the conditional call only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditioningConfig {
    /// The graph input, f32 `[batch, ...cond_shape]`.
    pub input: String,
    pub values: String,
    pub null_index: usize,
    #[serde(default = "one")]
    pub guidance_scale: f64,
}

/// A model config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub format: String,
    pub version: u32,
    pub name: String,
    /// The `.onnx` file, relative to the config's folder.
    pub onnx: String,
    pub inputs: ModelInputs,
    pub output: String,
    pub sample_shape: Vec<usize>,
    pub parameterization: Parameterization,
    pub noise_schedule: NoiseScheduleSpec,
    pub time_input: TimeInput,
    #[serde(default)]
    pub class_labels: Option<ClassLabels>,
    /// The data mean E[x0] on the model's scale, per channel (`sample_shape[0]` values) or
    /// per value; the AFS `average_x0` first step uses it. Without it, schedules with
    /// `average_x0` are refused for this model.
    #[serde(default)]
    pub data_mean: Option<Vec<f64>>,
    #[serde(default)]
    pub fid: Option<FidFiles>,
    /// An s3 mixture file of the data the network models: FD compares samples (after the
    /// decoder) with its exact moments, and the FD floor draws from it.
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub decoder: Option<DecoderConfig>,
    #[serde(default)]
    pub conditioning: Option<ConditioningConfig>,
    /// The default metric, `fd` or `mse` (else FD when `fid` or `data` is given, MSE to the
    /// teacher otherwise); checked where datasets are built.
    #[serde(default)]
    pub metric: Option<String>,
    /// The default number of samples a metric is computed on.
    #[serde(default)]
    pub samples: Option<usize>,
    /// Free text: where the weights came from.
    #[serde(default)]
    pub source: String,
}

impl ModelConfig {
    /// Reads and checks a config file; errors name the file and field.
    pub fn load(path: &Path) -> Result<Self> {
        let c: ModelConfig = super::read_config(
            path,
            "s3 ONNX model config",
            |c: &ModelConfig| (c.format.as_str(), c.version),
            (MODEL_FORMAT, MODEL_VERSION),
        )?;
        c.check(path)?;
        Ok(c)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let ctx = path.display().to_string();
        let bad = |f: &str, m: String| Err(S3Error::field(&ctx, f, m));
        if self.sample_shape.is_empty() || self.sample_shape.contains(&0) {
            return bad(
                "sample_shape",
                format!("{:?}; expected positive sizes", self.sample_shape),
            );
        }
        let dtype = match &self.time_input {
            TimeInput::Affine {
                scale,
                offset,
                dtype,
            } => {
                if !(scale.is_finite() && offset.is_finite() && *scale != 0.0) {
                    return bad(
                        "time_input",
                        format!("scale {scale}, offset {offset}; expected finite, scale ≠ 0"),
                    );
                }
                dtype
            }
            TimeInput::Sigma { dtype } => dtype,
        };
        if dtype != "float32" {
            return bad(
                "time_input.dtype",
                format!("{dtype:?}; only \"float32\" time inputs are supported"),
            );
        }
        if let Some(m) = &self.data_mean {
            let (c, dim) = (
                self.sample_shape[0],
                self.sample_shape.iter().product::<usize>(),
            );
            if !(m.len() == c || m.len() == dim) || m.iter().any(|v| !v.is_finite()) {
                return bad(
                    "data_mean",
                    format!(
                        "{} values; expected {c} (one per channel) or {dim} finite numbers",
                        m.len()
                    ),
                );
            }
        }
        if let Some(c) = &self.class_labels {
            if c.num_classes == 0 {
                return bad("class_labels.num_classes", "expected at least 1".into());
            }
            if !c.guidance_scale.is_finite() {
                return bad("class_labels.guidance_scale", "expected a number".into());
            }
            if self.conditioning.is_some() {
                return bad(
                    "class_labels",
                    "give either class_labels or conditioning, not both".into(),
                );
            }
        }
        if let Some(c) = &self.conditioning
            && !c.guidance_scale.is_finite()
        {
            return bad("conditioning.guidance_scale", "expected a number".into());
        }
        if let Some(d) = &self.decoder
            && (d.output_shape.is_empty() || d.output_shape.contains(&0))
        {
            return bad(
                "decoder.output_shape",
                format!("{:?}; expected positive sizes", d.output_shape),
            );
        }
        if self.samples.is_some_and(|n| n < 2) {
            return bad("samples", "expected at least 2".into());
        }
        Ok(())
    }

    /// The data mean expanded to one value per sample element, if the config gives one.
    pub fn data_mean_full(&self) -> Option<Vec<f64>> {
        let m = self.data_mean.as_ref()?;
        let dim: usize = self.sample_shape.iter().product();
        if m.len() == dim {
            return Some(m.clone());
        }
        let per = dim / self.sample_shape[0];
        Some(
            m.iter()
                .flat_map(|&v| std::iter::repeat_n(v, per))
                .collect(),
        )
    }

    /// The shape of one final output: the decoder's `output_shape`, else the sample shape.
    pub fn output_shape(&self) -> &[usize] {
        match &self.decoder {
            Some(d) => &d.output_shape,
            None => &self.sample_shape,
        }
    }

    /// The network's time input at `time`.
    pub fn network_time(&self, time: TimePoint) -> f32 {
        match &self.time_input {
            TimeInput::Affine { scale, offset, .. } => (scale * time.t + offset) as f32,
            TimeInput::Sigma { .. } => (time.sigma / time.alpha) as f32,
        }
    }
}

/// A model config's location: `--dataset PATH` where PATH is the config file or a
/// directory holding [`MODEL_CONFIG_FILE`]. Other files it names resolve against its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfigPath(PathBuf);

impl ModelConfigPath {
    /// The config `path` names: a directory's `model.json`, else `path` itself.
    pub fn new(path: &Path) -> Self {
        if path.is_dir() {
            Self(path.join(MODEL_CONFIG_FILE))
        } else {
            Self(path.to_path_buf())
        }
    }

    /// The config at `path` (a file, or a directory's `model.json`); None when `path` is
    /// neither a directory with a `model.json` nor a JSON file whose `format` is
    /// `s3-onnx-model` (e.g. a mixture file).
    pub fn detect(path: &Path) -> Option<Self> {
        if path.is_dir() {
            let file = path.join(MODEL_CONFIG_FILE);
            return file.is_file().then_some(Self(file));
        }
        let text = std::fs::read_to_string(path).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        (v.get("format").and_then(|f| f.as_str()) == Some(MODEL_FORMAT))
            .then(|| Self(path.to_path_buf()))
    }

    /// The config file itself.
    pub fn file(&self) -> &Path {
        &self.0
    }

    /// A file the config names, resolved against the config's folder.
    pub fn resolve(&self, name: &str) -> PathBuf {
        self.0.parent().unwrap_or(Path::new(".")).join(name)
    }
}

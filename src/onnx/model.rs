//! A diffusion network in ONNX, described by a model config JSON beside the `.onnx` file,
//! as a [`Denoiser`]. The config says what the graph's inputs and output are called, the
//! sample shape, what the output means (ε, x0, v), the noise schedule it was trained with,
//! and how s3's continuous time t becomes the network's time input (e.g. 999·t for ScoreSDE,
//! 1000·t − 1 for a discrete DDPM, σ for EDM); optionally a class-label input with
//! classifier-free guidance.
//!
//! ```json
//! {"format": "s3-onnx-model", "version": 1, "name": "ddpm-cifar10", "onnx": "model.onnx",
//!  "inputs": {"sample": "sample", "time": "timestep"}, "output": "out",
//!  "sample_shape": [3, 32, 32], "parameterization": "eps",
//!  "noise_schedule": {"name": "vp-discrete", "betas": "linear"},
//!  "time_input": {"kind": "affine", "scale": 1000.0, "offset": -1.0},
//!  "class_labels": null}
//! ```

use super::session::{Input, OnnxSession, SessionOptions};
use crate::error::{Result, S3Error};
use crate::model::{Denoiser, Parameterization, TimePoint};
use crate::noise::NoiseScheduleSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The value of the `format` field of a model config.
pub const MODEL_FORMAT: &str = "s3-onnx-model";
/// The model-config version this build reads.
pub const MODEL_VERSION: u32 = 1;

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

/// A class-label input and classifier-free guidance.
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

    /// The network's time input at `time`.
    pub fn network_time(&self, time: TimePoint) -> f32 {
        match &self.time_input {
            TimeInput::Affine { scale, offset, .. } => (scale * time.t + offset) as f32,
            TimeInput::Sigma { .. } => (time.sigma / time.alpha) as f32,
        }
    }
}

/// How model calls are batched and run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunOptions {
    pub session: SessionOptions,
    /// Samples per ONNX Runtime call (a larger batch is split).
    pub batch_size: usize,
    /// Overrides the config's guidance scale.
    pub guidance_scale: Option<f64>,
}

impl Default for RunOptions {
    /// CPU with all cores, batches of 64, the config's guidance.
    fn default() -> Self {
        Self {
            session: SessionOptions::default(),
            batch_size: 64,
            guidance_scale: None,
        }
    }
}

/// A diffusion network loaded from a model config.
#[derive(Debug)]
pub struct OnnxModel {
    config: ModelConfig,
    config_path: PathBuf,
    session: OnnxSession,
    batch_size: usize,
    guidance_scale: f64,
    dim: usize,
}

impl OnnxModel {
    /// Loads the config at `config_path` and its `.onnx` file (resolved against the config's
    /// folder), and checks that the graph has the inputs and output the config names.
    pub fn load(config_path: &Path, options: RunOptions) -> Result<Self> {
        let config = ModelConfig::load(config_path)?;
        if options.batch_size == 0 {
            return Err(S3Error::field(
                "model",
                "--batch-size",
                "expected at least 1",
            ));
        }
        let onnx = config_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&config.onnx);
        let session = OnnxSession::load(&onnx, options.session)?;
        let ctx = format!("{} field", config_path.display());
        session.require(&config.inputs.sample, true, &format!("{ctx} inputs.sample"))?;
        session.require(&config.inputs.time, true, &format!("{ctx} inputs.time"))?;
        session.require(&config.output, false, &format!("{ctx} output"))?;
        if let Some(c) = &config.class_labels {
            session.require(&c.input, true, &format!("{ctx} class_labels.input"))?;
        }
        let guidance_scale = options
            .guidance_scale
            .or(config.class_labels.as_ref().map(|c| c.guidance_scale))
            .unwrap_or(1.0);
        let dim = config.sample_shape.iter().product();
        Ok(Self {
            config,
            config_path: config_path.to_path_buf(),
            session,
            batch_size: options.batch_size,
            guidance_scale,
            dim,
        })
    }

    /// The config.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The config file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The `.onnx` file.
    pub fn onnx_path(&self) -> &Path {
        self.session.path()
    }

    /// One graph call on `rows` samples with the given labels (None: unconditional graph).
    fn call(&self, x: &[f32], t: f32, labels: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
        let rows = x.len() / self.dim;
        let mut shape = vec![rows];
        shape.extend(&self.config.sample_shape);
        let times = vec![t; rows];
        let mut inputs = vec![
            Input {
                name: &self.config.inputs.sample,
                shape,
                data: x,
            },
            Input {
                name: &self.config.inputs.time,
                shape: vec![rows],
                data: &times,
            },
        ];
        if let (Some(c), Some(l)) = (&self.config.class_labels, labels) {
            inputs.push(Input {
                name: &c.input,
                shape: vec![rows],
                data: l,
            });
        }
        self.session.run(&inputs, &self.config.output, out)
    }
}

impl Denoiser for OnnxModel {
    fn sample_shape(&self) -> &[usize] {
        &self.config.sample_shape
    }

    fn parameterization(&self) -> Parameterization {
        self.config.parameterization
    }

    /// Runs the batch in chunks of `batch_size`. With class labels, sample i gets class
    /// i mod num_classes (balanced and reproducible); with a guidance scale w ≠ 1 the
    /// unconditional pass (the null class) runs too and the output is uncond + w(cond − uncond).
    fn forward(&self, x: &[f32], time: TimePoint, out: &mut [f32]) -> Result<()> {
        if x.len() != out.len() || !x.len().is_multiple_of(self.dim) {
            return Err(S3Error::Shape(format!(
                "{}: a batch of {} values for samples of {} values",
                self.config.name,
                x.len(),
                self.dim
            )));
        }
        let t = self.config.network_time(time);
        let chunk = self.batch_size * self.dim;
        let mut uncond = Vec::new();
        for (c, (xc, oc)) in x.chunks(chunk).zip(out.chunks_mut(chunk)).enumerate() {
            let rows = xc.len() / self.dim;
            let first = c * self.batch_size;
            match &self.config.class_labels {
                None => self.call(xc, t, None, oc)?,
                Some(cl) => {
                    let labels: Vec<f32> = (first..first + rows)
                        .map(|i| (i % cl.num_classes) as f32)
                        .collect();
                    self.call(xc, t, Some(&labels), oc)?;
                    let w = self.guidance_scale;
                    if w != 1.0 {
                        let null = vec![cl.null_class as f32; rows];
                        uncond.resize(xc.len(), 0.0);
                        self.call(xc, t, Some(&null), &mut uncond)?;
                        for (o, &u) in oc.iter_mut().zip(&uncond) {
                            *o = (u as f64 + w * (*o as f64 - u as f64)) as f32;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

//! A diffusion network in ONNX as a [`Denoiser`], described by a model config (see
//! [`super::config`]): the graph call at one time for a batch, with per-sample conditioning
//! and classifier-free guidance when the config has them.

use super::conditioning::Conditions;
use super::config::{ModelConfig, ModelConfigPath};
use super::session::{Input, OnnxSession, SessionOptions};
use crate::error::{Result, S3Error};
use crate::model::{Denoiser, Parameterization, TimePoint};
use std::path::Path;

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
    config_path: ModelConfigPath,
    session: OnnxSession,
    batch_size: usize,
    conditions: Option<Conditions>,
    guidance_scale: f64,
    dim: usize,
}

impl OnnxModel {
    /// Loads the config at `config_path` (a file, or a directory's `model.json`) and its `.onnx` file (resolved against the config's
    /// folder), and checks that the graph has the inputs and output the config names, with
    /// the shapes it implies.
    pub fn load(config_path: &Path, options: RunOptions) -> Result<Self> {
        let path = ModelConfigPath::new(config_path);
        Self::load_config(&path, ModelConfig::load(path.file())?, options)
    }

    /// Loads the graph of an already-read `config`.
    pub fn load_config(
        config_path: &ModelConfigPath,
        config: ModelConfig,
        options: RunOptions,
    ) -> Result<Self> {
        if options.batch_size == 0 {
            return Err(S3Error::field(
                "model",
                "--batch-size",
                "expected at least 1",
            ));
        }
        let session = OnnxSession::load(&config_path.resolve(&config.onnx), options.session)?;
        let ctx = format!("{} field", config_path.file().display());
        session.require_shape(
            &config.inputs.sample,
            true,
            &config.sample_shape,
            &format!("{ctx} inputs.sample (with sample_shape)"),
        )?;
        session.require_shape(
            &config.inputs.time,
            true,
            &[],
            &format!("{ctx} inputs.time"),
        )?;
        session.require_shape(
            &config.output,
            false,
            &config.sample_shape,
            &format!("{ctx} output (with sample_shape)"),
        )?;
        let conditions = match (&config.class_labels, &config.conditioning) {
            (Some(c), _) => Some(Conditions::from_class_labels(c)),
            (None, Some(c)) => Some(Conditions::load(c, config_path)?),
            (None, None) => None,
        };
        if let Some(c) = &conditions {
            let field = if config.class_labels.is_some() {
                "class_labels.input"
            } else {
                "conditioning.input (with the values' shape)"
            };
            session.require_shape(&c.input, true, &c.cond_shape, &format!("{ctx} {field}"))?;
        }
        let guidance_scale = options
            .guidance_scale
            .or(conditions.as_ref().map(|c| c.guidance_scale))
            .unwrap_or(1.0);
        if !guidance_scale.is_finite() {
            return Err(S3Error::field(
                "model",
                "--guidance-scale",
                format!("{guidance_scale}; expected a number"),
            ));
        }
        let dim = config.sample_shape.iter().product();
        Ok(Self {
            config,
            config_path: config_path.clone(),
            session,
            batch_size: options.batch_size,
            conditions,
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
        self.config_path.file()
    }

    /// The `.onnx` file.
    pub fn onnx_path(&self) -> &Path {
        self.session.path()
    }

    /// The guidance scale in use (1 without conditioning).
    pub fn guidance_scale(&self) -> f64 {
        self.guidance_scale
    }

    /// One graph call on `rows` samples with the given conditioning batch (None: an
    /// unconditional graph).
    fn call(&self, x: &[f32], t: f32, cond: Option<&[f32]>, out: &mut [f32]) -> Result<()> {
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
        if let (Some(c), Some(data)) = (&self.conditions, cond) {
            let mut shape = vec![rows];
            shape.extend(&c.cond_shape);
            inputs.push(Input {
                name: &c.input,
                shape,
                data,
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

    /// Runs the batch in chunks of `batch_size`. With conditioning, sample i gets condition
    /// i mod K (balanced and reproducible); with a guidance scale w ≠ 1 the unconditional
    /// pass (the null entry) runs too and the output is uncond + w(cond − uncond).
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
            let Some(cond) = &self.conditions else {
                self.call(xc, t, None, oc)?;
                continue;
            };
            self.call(xc, t, Some(&cond.batch(c * self.batch_size, rows)), oc)?;
            let w = self.guidance_scale;
            if w != 1.0 {
                uncond.resize(xc.len(), 0.0);
                self.call(xc, t, Some(&cond.null_batch(rows)), &mut uncond)?;
                for (o, &u) in oc.iter_mut().zip(&uncond) {
                    *o = (u as f64 + w * (*o as f64 - u as f64)) as f32;
                }
            }
        }
        Ok(())
    }
}

//! Datasets: a name or a file resolved to a diffusion model, its noise schedule and the
//! metric defaults. Presets: `digits` (default), `toy2d`, `gmm32` (exact analytic mixtures),
//! `digits-net` (a shipped network trained on digits) and `cifar10` (a real network through
//! ONNX Runtime, measured by FID; its files come from the models directory). Files: a mixture JSON, or a network's model config (`model.json`,
//! or a directory holding one).

mod digits_net;
mod network;
mod presets;

pub use network::{
    DEFAULT_FID_SAMPLES, DEFAULT_TEACHER_SAMPLES, Fid, LoadOptions, Network, dataset_of,
    from_model_config,
};
pub use presets::ANALYTIC_DEFAULT_METRIC;

use crate::error::{Result, S3Error};
use crate::metric::MetricKind;
use crate::model::{Denoiser, GaussianMixture};
use crate::noise::{BetaSchedule, NoiseSchedule, NoiseScheduleName, NoiseScheduleSpec};
use crate::onnx::{MODEL_CONFIG_FILE, ModelConfigPath};
use crate::solver::Sampler;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// The preset names accepted by `--dataset`.
pub const PRESET_NAMES: &str = "digits, toy2d, gmm32, digits-net, cifar10";
/// Every kind of value `--dataset` accepts, for help texts and errors.
pub const DATASET_KINDS: &str = "a preset (digits, toy2d, gmm32: exact mixtures; digits-net: \
    a shipped network trained on digits; cifar10: the network in MODELS/cifar10/), a mixture \
    .json file, or a network's model config (an s3-onnx-model .json file, or a directory \
    holding model.json)";

/// Where a dataset's model comes from.
#[derive(Debug, Clone)]
pub enum DataSource {
    /// An exact Gaussian mixture: exact ε, exact data moments, exact data draws.
    Mixture(Box<GaussianMixture>),
    /// A real network with its FID feature extractor and reference statistics.
    Network(Arc<Network>),
}

/// A diffusion model with its defaults.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The preset name or the file path.
    pub name: String,
    pub source: DataSource,
    /// The noise schedule used unless `--noise-schedule` overrides it.
    pub noise: NoiseScheduleSpec,
    /// The metric used unless `--metric` overrides it.
    pub metric: MetricKind,
    /// The default number of samples a metric is computed on.
    pub samples: usize,
}

/// Dataset defaults a mixture file may carry.
#[derive(Debug, Deserialize, Default)]
struct FileDefaults {
    name: Option<String>,
    /// A family name or a spec object (`{"name": "flow", "shift": 3.0}`).
    noise_schedule: Option<serde_json::Value>,
    betas: Option<String>,
    metric: Option<String>,
    samples: Option<usize>,
}

impl Dataset {
    /// Resolves `--dataset` with default options (models directory from `S3_MODELS_DIR` or
    /// `./models`, CPU): a preset name, or a path to a mixture JSON file.
    pub fn load(name_or_path: &str) -> Result<Self> {
        Self::load_with(name_or_path, &LoadOptions::default())
    }

    /// Resolves `--dataset`; `options` say where real-network presets find their files and
    /// how their models run.
    pub fn load_with(name_or_path: &str, options: &LoadOptions) -> Result<Self> {
        match name_or_path {
            "digits" => Ok(presets::digits()),
            "toy2d" => Ok(presets::toy2d()),
            "gmm32" => Ok(presets::gmm32()),
            "digits-net" => digits_net::digits_net(options),
            "cifar10" => network::cifar10(options),
            other => {
                let path = Path::new(other);
                if let Some(config) = ModelConfigPath::detect(path) {
                    from_model_config(&config, None, options, None)
                } else if path.is_dir() {
                    Err(S3Error::field(
                        other,
                        "--dataset",
                        format!(
                            "a directory without a {MODEL_CONFIG_FILE}; expected {DATASET_KINDS}"
                        ),
                    ))
                } else if path.exists() || other.ends_with(".json") {
                    Self::from_file(path)
                } else {
                    Err(S3Error::UnknownName {
                        kind: "dataset",
                        name: other.to_string(),
                        expected: DATASET_KINDS.to_string(),
                    })
                }
            }
        }
    }

    /// Reads a mixture file with optional defaults:
    /// `{"shape", "weights", "means", "stds", "name"?, "noise_schedule"?, "betas"?, "metric"?,
    /// "samples"?}`; `noise_schedule` is a name or `{"name", "betas"?, "shift"?}`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let ctx = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| S3Error::io(path, e))?;
        let mixture = GaussianMixture::from_json_str(&text, &ctx)?;
        let d: FileDefaults = serde_json::from_str(&text).map_err(|e| S3Error::Json {
            path: path.into(),
            message: e.to_string(),
        })?;
        let mut noise = NoiseScheduleSpec::new(NoiseScheduleName::VpLinear);
        if let Some(n) = &d.noise_schedule {
            noise = NoiseScheduleSpec::from_json_value(n)
                .map_err(|e| S3Error::field(&ctx, "noise_schedule", e.to_string()))?;
        }
        if let Some(b) = &d.betas {
            noise.betas =
                BetaSchedule::parse(b).map_err(|e| S3Error::field(&ctx, "betas", e.to_string()))?;
        }
        let metric = match &d.metric {
            Some(m) => {
                MetricKind::parse(m).map_err(|e| S3Error::field(&ctx, "metric", e.to_string()))?
            }
            None => presets::ANALYTIC_DEFAULT_METRIC,
        };
        let samples = d.samples.unwrap_or(1000);
        if samples < 2 {
            return Err(S3Error::field(&ctx, "samples", "expected at least 2"));
        }
        Ok(Dataset {
            name: d.name.unwrap_or(ctx),
            source: DataSource::Mixture(Box::new(mixture)),
            noise,
            metric,
            samples,
        })
    }
}

impl Dataset {
    /// The model the solvers call.
    pub fn model(&self) -> &dyn Denoiser {
        match &self.source {
            DataSource::Mixture(m) => m.as_ref(),
            DataSource::Network(n) => &n.model,
        }
    }

    /// The shape of one sample.
    pub fn sample_shape(&self) -> &[usize] {
        self.model().sample_shape()
    }

    /// The number of values of one sample.
    pub fn dim(&self) -> usize {
        self.model().dim()
    }

    /// The shape of one final output: after the network's decoder, else the sample shape.
    pub fn output_shape(&self) -> &[usize] {
        match &self.source {
            DataSource::Network(n) => n.output_shape(),
            DataSource::Mixture(m) => m.sample_shape(),
        }
    }

    /// Final samples as outputs: through the network's decoder when it has one, else as
    /// they are.
    pub fn decode(&self, x: Vec<f32>) -> Result<Vec<f32>> {
        match &self.source {
            DataSource::Network(n) => match &n.decoder {
                Some(d) => d.decode(&x),
                None => Ok(x),
            },
            DataSource::Mixture(_) => Ok(x),
        }
    }

    /// The exact data distribution, when it is known: the mixture itself, or the mixture a
    /// network config names as its `data`.
    pub fn exact_data(&self) -> Option<&GaussianMixture> {
        match &self.source {
            DataSource::Mixture(m) => Some(m),
            DataSource::Network(n) => n.data.as_deref(),
        }
    }

    /// The exact mixture, for analytic datasets.
    pub fn mixture(&self) -> Option<&GaussianMixture> {
        match &self.source {
            DataSource::Mixture(m) => Some(m),
            DataSource::Network(_) => None,
        }
    }

    /// The network, extractor and statistics, for real-network datasets.
    pub fn network(&self) -> Option<&Network> {
        match &self.source {
            DataSource::Mixture(_) => None,
            DataSource::Network(n) => Some(n),
        }
    }

    /// The data mean E[x0], used by AFS `average_x0`: exact for mixtures, from the model
    /// config's `data_mean` for networks (None when it has none).
    pub fn data_mean(&self) -> Option<Vec<f64>> {
        match &self.source {
            DataSource::Mixture(m) => Some(m.data_mean()),
            DataSource::Network(n) => n.model.config().data_mean_full(),
        }
    }

    /// A stable identity of the model for the evaluation cache: name, noise schedule and a
    /// hash of the mixture's parameters or of the network's config and every file it names
    /// (so an edited file is a new model); a guidance scale other than 1 is part of it.
    pub fn identity(&self) -> String {
        let h = match &self.source {
            DataSource::Mixture(m) => m.identity(),
            DataSource::Network(n) => match n.model.guidance_scale() {
                w if w != 1.0 => format!("{}/w={w}", n.identity),
                _ => n.identity.clone(),
            },
        };
        format!("{}@{}#{h}", self.name, self.noise.label())
    }

    /// A sampler for this model under `ns` (with the data mean for AFS when it is known).
    pub fn sampler<'a>(&'a self, ns: &'a NoiseSchedule) -> Sampler<'a> {
        let s = Sampler::new(self.model(), ns);
        match self.data_mean() {
            Some(mean) => s.with_data_mean(mean),
            None => s,
        }
    }
}

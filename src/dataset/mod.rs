//! Datasets: a name (or a mixture file) resolved to an exact model, its noise schedule and the
//! metric defaults. Presets: `digits` (default), `toy2d`, `gmm32`.

mod presets;

use crate::error::{Result, S3Error};
use crate::metric::MetricKind;
use crate::model::GaussianMixture;
use crate::noise::{BetaSchedule, NoiseScheduleName, NoiseScheduleSpec};
use serde::Deserialize;
use std::path::Path;

/// The preset names accepted by `--dataset`.
pub const PRESET_NAMES: &str = "digits, toy2d, gmm32";

/// An exact analytic diffusion model with its defaults.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The preset name or the file path.
    pub name: String,
    pub mixture: GaussianMixture,
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
    noise_schedule: Option<String>,
    betas: Option<String>,
    metric: Option<String>,
    samples: Option<usize>,
}

impl Dataset {
    /// Resolves `--dataset`: a preset name, or a path to a mixture JSON file.
    pub fn load(name_or_path: &str) -> Result<Self> {
        match name_or_path {
            "digits" => Ok(presets::digits()),
            "toy2d" => Ok(presets::toy2d()),
            "gmm32" => Ok(presets::gmm32()),
            other => {
                let path = Path::new(other);
                if path.exists() || other.ends_with(".json") {
                    Self::from_file(path)
                } else {
                    Err(S3Error::UnknownName {
                        kind: "dataset",
                        name: other.to_string(),
                        expected: format!("{PRESET_NAMES}, or a path to a mixture .json file"),
                    })
                }
            }
        }
    }

    /// Reads a mixture file with optional defaults:
    /// `{"shape", "weights", "means", "stds", "name"?, "noise_schedule"?, "betas"?, "metric"?,
    /// "samples"?}`.
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
            noise.name = NoiseScheduleName::parse(n)
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
            None => MetricKind::Fd,
        };
        let samples = d.samples.unwrap_or(1000);
        if samples < 2 {
            return Err(S3Error::field(&ctx, "samples", "expected at least 2"));
        }
        Ok(Dataset {
            name: d.name.unwrap_or(ctx),
            mixture,
            noise,
            metric,
            samples,
        })
    }
}

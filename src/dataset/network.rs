//! Real-network datasets: a diffusion network in ONNX, the FID feature extractor and the
//! reference statistics, found in the models directory (see [`crate::onnx::Cifar10Files`]).

use super::{DataSource, Dataset};
use crate::error::{Result, S3Error};
use crate::io::npz_stats::read_fid_stats;
use crate::metric::{MetricKind, Moments};
use crate::onnx::{Cifar10Files, FeatureExtractor, OnnxModel, RunOptions, models_dir};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How real-network presets are found and run.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--models-dir` (else `S3_MODELS_DIR`, else `./models`).
    pub models_dir: Option<PathBuf>,
    /// Device, threads, batch size and guidance of the model calls.
    pub run: RunOptions,
    /// Images per feature-extractor call (0: the model's batch size).
    pub feature_batch: usize,
}

/// A network with what FID needs.
#[derive(Debug)]
pub struct Network {
    pub model: OnnxModel,
    pub extractor: FeatureExtractor,
    /// The reference statistics (e.g. CIFAR-10 train).
    pub stats: Moments,
    /// Hash of the model config and `.onnx` file.
    pub identity: String,
    /// A label of the FID configuration for cache keys: extractor identity and a hash of the
    /// statistics file.
    pub metric_id: String,
    /// The statistics file.
    pub stats_path: PathBuf,
}

fn file_hash(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| S3Error::io(path, e))?;
    Ok(blake3::hash(&bytes).to_hex()[..16].to_string())
}

impl Network {
    /// Loads the model config, the extractor config and the statistics; checks that the
    /// statistics have the extractor's dimension.
    pub fn load(
        model: &Path,
        extractor: &Path,
        stats: &Path,
        options: &LoadOptions,
    ) -> Result<Self> {
        let net = OnnxModel::load(model, options.run)?;
        let batch = if options.feature_batch > 0 {
            options.feature_batch
        } else {
            options.run.batch_size
        };
        let ex = FeatureExtractor::load(extractor, options.run.session, batch)?;
        let moments = read_fid_stats(stats)?;
        if moments.dim() != ex.dims() {
            return Err(S3Error::Array {
                path: stats.into(),
                message: format!(
                    "{}-d statistics, but the extractor {} gives {}-d features",
                    moments.dim(),
                    extractor.display(),
                    ex.dims()
                ),
            });
        }
        let identity = format!("{}+{}", file_hash(model)?, file_hash(net.onnx_path())?);
        let metric_id = format!("{}/stats#{}", ex.identity()?, file_hash(stats)?);
        Ok(Self {
            model: net,
            extractor: ex,
            stats: moments,
            identity,
            metric_id,
            stats_path: stats.to_path_buf(),
        })
    }
}

/// The `cifar10` preset: the files under `MODELS/cifar10/`, FID on 1,000 samples by default
/// (S³ ranks candidates by FID on 1k samples; report finals on more).
pub fn cifar10(options: &LoadOptions) -> Result<Dataset> {
    let files = Cifar10Files::new(&models_dir(options.models_dir.as_deref()));
    files.check()?;
    let network = Network::load(&files.model, &files.extractor, &files.stats, options)?;
    let noise = network.model.config().noise_schedule;
    Ok(Dataset {
        name: "cifar10".into(),
        source: DataSource::Network(Arc::new(network)),
        noise,
        metric: MetricKind::Fd,
        samples: 1000,
    })
}

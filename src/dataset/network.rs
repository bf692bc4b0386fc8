//! Network datasets: a diffusion network in ONNX described by a model config (`--dataset
//! model.json` or a directory holding one), with what its metrics need — FID files, the exact
//! data it models, a decoder — and the `cifar10` preset, which is such a directory in the
//! models directory (see [`crate::onnx::Cifar10Files`]).

use super::{DataSource, Dataset};
use crate::error::{Result, S3Error};
use crate::metric::stats_file::read_fid_stats;
use crate::metric::{MetricKind, Moments};
use crate::model::{Denoiser, GaussianMixture};
use crate::onnx::{
    Cifar10Files, Decoder, FeatureExtractor, FidFiles, ModelConfig, ModelConfigPath, OnnxModel,
    RunOptions, models_dir,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Samples per FID evaluation unless the config says otherwise (S³ ranks candidates by FID
/// on 1k samples; report finals on more).
pub const DEFAULT_FID_SAMPLES: usize = 1000;
/// Samples per teacher-MSE evaluation unless the config says otherwise: the per-sample
/// errors average quickly, and every sample costs a reference solve.
pub const DEFAULT_TEACHER_SAMPLES: usize = 128;

/// How network datasets are found and run.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--models-dir` (else `S3_MODELS_DIR`, else `./models`).
    pub models_dir: Option<PathBuf>,
    /// Device, threads, batch size and guidance of the model calls.
    pub run: RunOptions,
    /// Images per feature-extractor call (0: the model's batch size).
    pub feature_batch: usize,
}

/// FID: the feature extractor and the reference statistics.
#[derive(Debug)]
pub struct Fid {
    pub extractor: FeatureExtractor,
    /// The reference statistics (e.g. CIFAR-10 train).
    pub stats: Moments,
    /// A label of the FID configuration for cache keys: extractor identity and a hash of
    /// the statistics file.
    pub metric_id: String,
    /// The statistics file.
    pub stats_path: PathBuf,
}

/// A network with what its metrics need.
#[derive(Debug)]
pub struct Network {
    pub model: OnnxModel,
    /// Applied to final samples before metrics and pictures.
    pub decoder: Option<Decoder>,
    pub fid: Option<Fid>,
    /// The exact data the network models (its config's `data`): FD against its moments.
    pub data: Option<Box<GaussianMixture>>,
    /// A hash of the config and every file it names, so an edited file is a new model.
    pub identity: String,
}

/// Hashes files into one short identity; errors name the missing file.
fn files_hash(paths: &[PathBuf]) -> Result<String> {
    let mut h = blake3::Hasher::new();
    for p in paths {
        let bytes = std::fs::read(p).map_err(|e| S3Error::io(p, e))?;
        h.update(p.file_name().map_or(&[][..], |n| n.as_encoded_bytes()));
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().to_hex()[..16].to_string())
}

impl Fid {
    /// Loads the extractor config and the statistics; checks that the statistics have the
    /// extractor's dimension.
    fn load(extractor: &Path, stats: &Path, options: &LoadOptions) -> Result<Self> {
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
        let metric_id = format!("{}/stats#{}", ex.identity()?, files_hash(&[stats.into()])?);
        Ok(Self {
            extractor: ex,
            stats: moments,
            metric_id,
            stats_path: stats.to_path_buf(),
        })
    }
}

impl Network {
    /// Loads the model config at `path`, its graph and every part it names; `fid` stands in
    /// when the config has no `fid` of its own (a preset's conventional files). A file that
    /// does not fit is an error naming the config field.
    pub fn load(
        path: &ModelConfigPath,
        options: &LoadOptions,
        fid: Option<FidFiles>,
    ) -> Result<Self> {
        let model = OnnxModel::load_config(path, ModelConfig::load(path.file())?, options.run)?;
        let config = model.config();
        let mut files = vec![path.file().to_path_buf(), path.resolve(&config.onnx)];
        let fid_files = config.fid.clone().or(fid);
        let decoder = match &config.decoder {
            Some(d) => {
                files.push(path.resolve(&d.onnx));
                Some(Decoder::load(
                    d,
                    path,
                    &config.sample_shape,
                    options.run.session,
                    options.run.batch_size,
                )?)
            }
            None => None,
        };
        if let Some(c) = &config.conditioning {
            files.push(path.resolve(&c.values));
        }
        let data = match &config.data {
            Some(d) => {
                let file = path.resolve(d);
                files.push(file.clone());
                Some(Box::new(data_mixture(path, &file, config.output_shape())?))
            }
            None => None,
        };
        let fid = match &fid_files {
            Some(f) => {
                let (ex, stats) = (path.resolve(&f.extractor), path.resolve(&f.stats));
                files.extend([ex.clone(), stats.clone()]);
                Some(Fid::load(&ex, &stats, options)?)
            }
            None => None,
        };
        let identity = files_hash(&files)?;
        Ok(Self {
            model,
            decoder,
            fid,
            data,
            identity,
        })
    }

    /// The shape of one final output (after the decoder).
    pub fn output_shape(&self) -> &[usize] {
        self.model.config().output_shape()
    }
}

/// The config's `data` mixture; its shape must be the model's output shape.
fn data_mixture(
    config: &ModelConfigPath,
    file: &Path,
    output_shape: &[usize],
) -> Result<GaussianMixture> {
    let ds = Dataset::from_file(file)?;
    let DataSource::Mixture(m) = ds.source else {
        unreachable!("a mixture file gives a mixture")
    };
    if m.sample_shape() != output_shape {
        return Err(S3Error::field(
            config.file().display().to_string(),
            "data",
            format!(
                "{}: the mixture has shape {:?}; the model's outputs have shape {output_shape:?}",
                file.display(),
                m.sample_shape()
            ),
        ));
    }
    Ok(*m)
}

/// A dataset from the model config at `path`, named `name` (the config's own name when None).
pub fn from_model_config(
    path: &ModelConfigPath,
    name: Option<&str>,
    options: &LoadOptions,
    fid: Option<FidFiles>,
) -> Result<Dataset> {
    let network = Network::load(path, options, fid)?;
    dataset_of(network, name, path)
}

/// The dataset of a loaded network: its metric and sample count from the config, else FD
/// when it has FID files or exact data and MSE to the teacher otherwise.
pub fn dataset_of(network: Network, name: Option<&str>, path: &ModelConfigPath) -> Result<Dataset> {
    let config = network.model.config();
    let ctx = path.file().display().to_string();
    let has_fd = network.fid.is_some() || network.data.is_some();
    let metric = match &config.metric {
        Some(m) => {
            let kind =
                MetricKind::parse(m).map_err(|e| S3Error::field(&ctx, "metric", e.to_string()))?;
            if kind.is_distribution() && !has_fd {
                return Err(S3Error::field(
                    &ctx,
                    "metric",
                    format!("\"{m}\" needs `fid` or `data` in the config"),
                ));
            }
            if kind == MetricKind::Kid && network.fid.is_some() {
                return Err(S3Error::field(
                    &ctx,
                    "metric",
                    "\"kid\" needs reference feature rows, but the network is measured \
                     through FID statistics (mean and covariance only); use \"fd-inf\" or \"fd\"",
                ));
            }
            kind
        }
        None if has_fd => MetricKind::Fd,
        None => MetricKind::Mse,
    };
    let samples = config.samples.unwrap_or(if metric.is_distribution() {
        DEFAULT_FID_SAMPLES
    } else {
        DEFAULT_TEACHER_SAMPLES
    });
    Ok(Dataset {
        name: name.map_or_else(|| config.name.clone(), str::to_string),
        noise: config.noise_schedule,
        metric,
        samples,
        source: DataSource::Network(Arc::new(network)),
    })
}

/// The `cifar10` preset: the directory `MODELS/cifar10/`, FID against its
/// `train_stats.npz` through its `inception.json` unless its config names other files.
pub fn cifar10(options: &LoadOptions) -> Result<Dataset> {
    let files = Cifar10Files::new(&models_dir(options.models_dir.as_deref()));
    files.check()?;
    let conventional = FidFiles {
        extractor: file_name(&files.extractor),
        stats: file_name(&files.stats),
    };
    from_model_config(
        &ModelConfigPath::new(&files.dir),
        Some("cifar10"),
        options,
        Some(conventional),
    )
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

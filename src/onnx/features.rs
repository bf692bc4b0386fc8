//! A feature extractor for FID in ONNX (the pytorch-fid Inception-v3 exported by
//! `tools/onnx_export`, or any graph with the same conventions), described by a config JSON
//! beside the `.onnx` file:
//!
//! ```json
//! {"format": "s3-feature-extractor", "version": 1, "name": "pytorch-fid-inception-v3",
//!  "onnx": "inception.onnx", "input": "images", "output": "features",
//!  "input_range": [0.0, 1.0], "input_size": [32, 32], "dims": 2048}
//! ```
//!
//! The graph takes f32 `[batch, 3, H, W]` images with values in `input_range` (the exported
//! Inception takes [0, 1] and resizes to 299×299 bilinearly and rescales to [−1, 1] inside the
//! graph, as pytorch-fid does) and returns `[batch, dims]` features. Images are 8-bit, as
//! pytorch-fid reads them from PNG files: model samples in [−1, 1] are first quantised to
//! round((x + 1) · 127.5) clamped to 0…255, so a sample set and the PNGs written from it give
//! the same features.

use super::session::{Input, OnnxSession, SessionOptions};
use crate::error::{Result, S3Error};
pub use crate::io::images::{Images, quantize};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The value of the `format` field of a feature-extractor config.
pub const EXTRACTOR_FORMAT: &str = "s3-feature-extractor";
/// The config version this build reads.
pub const EXTRACTOR_VERSION: u32 = 1;

/// A feature-extractor config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractorConfig {
    pub format: String,
    pub version: u32,
    pub name: String,
    /// The `.onnx` file, relative to the config's folder.
    pub onnx: String,
    pub input: String,
    pub output: String,
    /// What 8-bit 0 and 255 map to.
    pub input_range: [f64; 2],
    /// The image height and width the graph takes.
    pub input_size: [usize; 2],
    pub dims: usize,
    #[serde(default)]
    pub source: String,
}

/// A loaded feature extractor.
#[derive(Debug)]
pub struct FeatureExtractor {
    config: ExtractorConfig,
    config_path: PathBuf,
    session: OnnxSession,
    batch_size: usize,
}

impl ExtractorConfig {
    /// Reads and checks a config file; errors name the file and field.
    pub fn load(path: &Path) -> Result<Self> {
        let c: ExtractorConfig = super::read_config(
            path,
            "s3 feature-extractor config",
            |c: &ExtractorConfig| (c.format.as_str(), c.version),
            (EXTRACTOR_FORMAT, EXTRACTOR_VERSION),
        )?;
        let ctx = path.display().to_string();
        let bad = |f: &str, m: String| Err(S3Error::field(&ctx, f, m));
        if c.dims == 0 || c.input_size.contains(&0) {
            return bad("dims", "dims and input_size must be positive".into());
        }
        let [lo, hi] = c.input_range;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return bad("input_range", format!("[{lo}, {hi}]; expected lo < hi"));
        }
        Ok(c)
    }
}

impl FeatureExtractor {
    /// Loads the config at `config_path` and its `.onnx` file; `batch_size` images per call.
    pub fn load(config_path: &Path, options: SessionOptions, batch_size: usize) -> Result<Self> {
        let config = ExtractorConfig::load(config_path)?;
        if batch_size == 0 {
            return Err(S3Error::field(
                "features",
                "--batch-size",
                "expected at least 1",
            ));
        }
        let onnx = config_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&config.onnx);
        let session = OnnxSession::load(&onnx, options)?;
        let ctx = format!("{} field", config_path.display());
        session.require(&config.input, true, &format!("{ctx} input"))?;
        session.require(&config.output, false, &format!("{ctx} output"))?;
        Ok(Self {
            config,
            config_path: config_path.to_path_buf(),
            session,
            batch_size,
        })
    }

    /// The config.
    pub fn config(&self) -> &ExtractorConfig {
        &self.config
    }

    /// The feature dimension.
    pub fn dims(&self) -> usize {
        self.config.dims
    }

    /// A short identity for cache keys: name, dims and a hash of the `.onnx` file.
    pub fn identity(&self) -> Result<String> {
        let bytes =
            std::fs::read(self.session.path()).map_err(|e| S3Error::io(self.session.path(), e))?;
        let h = blake3::hash(&bytes).to_hex();
        Ok(format!(
            "{}({})#{}",
            self.config.name,
            self.config.dims,
            &h[..16]
        ))
    }

    /// `count × dims` features of the images (row-major, f64).
    pub fn features(&self, images: &Images) -> Result<Vec<f64>> {
        let [h, w] = self.config.input_size;
        if (images.height, images.width) != (h, w) {
            return Err(S3Error::Shape(format!(
                "{}: the extractor takes {h}×{w} images, got {}×{}",
                self.config_path.display(),
                images.height,
                images.width
            )));
        }
        let [lo, hi] = self.config.input_range;
        let scale = (hi - lo) / 255.0;
        let per = 3 * h * w;
        let d = self.config.dims;
        let mut out = Vec::with_capacity(images.count * d);
        let mut x = Vec::with_capacity(self.batch_size * per);
        let mut f = vec![0f32; self.batch_size * d];
        for chunk in images.data.chunks(self.batch_size * per) {
            let rows = chunk.len() / per;
            x.clear();
            x.extend(chunk.iter().map(|&u| (lo + scale * u as f64) as f32));
            let fc = &mut f[..rows * d];
            self.session.run(
                &[Input {
                    name: &self.config.input,
                    shape: vec![rows, 3, h, w],
                    data: &x,
                }],
                &self.config.output,
                fc,
            )?;
            out.extend(fc.iter().map(|&v| v as f64));
        }
        Ok(out)
    }
}

//! `s3 fid` and `s3 fid-stats`, in the spirit of pytorch-fid: statistics from a stats `.npz`,
//! a folder of PNGs or an `.npy` of images, features from an ONNX extractor.

use super::out::outln;
use anyhow::{Context, Result};
use clap::Args;
use s3::io::images::read_images;
use s3::metric::stats_file as npz_stats;
use s3::metric::{Moments, frechet_distance};
use s3::onnx::{Device, FeatureExtractor, SessionOptions, models_dir};
use std::path::{Path, PathBuf};

/// Which feature extractor and how to run it.
#[derive(Args)]
pub struct ExtractorArgs {
    /// Feature-extractor config (.json beside its .onnx) [default: MODELS/cifar10/inception.json].
    #[arg(long)]
    extractor: Option<PathBuf>,
    /// Models directory [default: $S3_MODELS_DIR, else ./models].
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Where ONNX Runtime runs: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Images per extractor call.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// ONNX Runtime threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

impl ExtractorArgs {
    fn load(&self) -> Result<FeatureExtractor> {
        let path = self.extractor.clone().unwrap_or_else(|| {
            models_dir(self.models_dir.as_deref())
                .join("cifar10")
                .join("inception.json")
        });
        let options = SessionOptions {
            device: Device::parse(&self.device).context("--device")?,
            threads: self.threads,
        };
        FeatureExtractor::load(&path, options, self.batch_size)
            .with_context(|| format!("--extractor {}", path.display()))
    }
}

#[derive(Args)]
pub struct FidArgs {
    /// A stats .npz (mu, sigma), a folder of PNGs, or an .npy of images.
    path1: PathBuf,
    /// The same for the other side.
    path2: PathBuf,
    #[command(flatten)]
    extractor: ExtractorArgs,
    /// Print a JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct FidStatsArgs {
    /// A folder of PNGs or an .npy of images.
    path: PathBuf,
    /// Where to write the statistics (.npz with mu and sigma, as pytorch-fid writes them).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    extractor: ExtractorArgs,
}

fn is_stats(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "npz")
}

/// Statistics of `path`, loading the extractor on first need.
fn stats_of(
    path: &Path,
    args: &ExtractorArgs,
    extractor: &mut Option<FeatureExtractor>,
) -> Result<(Moments, usize)> {
    if is_stats(path) {
        let m = npz_stats::read_fid_stats(path)?;
        return Ok((m, 0));
    }
    let images = read_images(path)?;
    if extractor.is_none() {
        *extractor = Some(args.load()?);
    }
    let ex = extractor.as_ref().expect("just loaded");
    let f = ex
        .features(&images)
        .with_context(|| format!("features of {}", path.display()))?;
    let m = Moments::from_rows(&f, ex.dims())
        .with_context(|| format!("statistics of {}", path.display()))?;
    Ok((m, images.count))
}

/// `s3 fid PATH1 PATH2`.
pub fn fid(a: FidArgs) -> Result<()> {
    let mut extractor = None;
    let (m1, n1) = stats_of(&a.path1, &a.extractor, &mut extractor)?;
    let (m2, n2) = stats_of(&a.path2, &a.extractor, &mut extractor)?;
    if m1.dim() != m2.dim() {
        anyhow::bail!(
            "{} has {}-d statistics but {} has {}-d; both sides need the same features",
            a.path1.display(),
            m1.dim(),
            a.path2.display(),
            m2.dim()
        );
    }
    let value = frechet_distance(&m1, &m2)?;
    if a.json {
        outln!(
            "{}",
            serde_json::json!({"fid": value, "dims": m1.dim(), "images1": n1, "images2": n2})
        );
    } else {
        outln!("FID: {value}");
    }
    Ok(())
}

/// `s3 fid-stats PATH --out stats.npz`.
pub fn fid_stats(a: FidStatsArgs) -> Result<()> {
    super::check_output(&a.out, "--out")?;
    let mut extractor = None;
    if is_stats(&a.path) {
        anyhow::bail!(
            "{} is already a statistics file; give a folder of PNGs or an .npy of images",
            a.path.display()
        );
    }
    let (m, n) = stats_of(&a.path, &a.extractor, &mut extractor)?;
    npz_stats::write_fid_stats(&a.out, &m).with_context(|| format!("--out {}", a.out.display()))?;
    outln!(
        "wrote {} ({}-d statistics of {n} images)",
        a.out.display(),
        m.dim()
    );
    Ok(())
}

//! Command-line parsing and the commands: `sample`, `eval`, `baselines` here; `search`,
//! `runs` and `export` in [`search`].

mod fid;
mod search;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use s3::dataset::{Dataset, LoadOptions};
use s3::io::{grid, npy};
use s3::metric::{Evaluator, Floor, MetricKind, prior_std, standard_noise};
use s3::noise::{BetaSchedule, NoiseSchedule, NoiseScheduleName};
use s3::onnx::{Device, RunOptions, SessionOptions};
use s3::solver::{ClassicSolver, Prediction, SolverSchedule, Spacing};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "s3",
    version,
    about = "Search per-step ODE solver schedules for diffusion models (S³ / USF)",
    long_about = "s3 runs any per-step solver schedule exactly on a diffusion model, measures it, \
                  and compares it with the classic solvers. Datasets are exact analytic models \
                  (Gaussian mixtures): the built-in presets digits (default), toy2d, gmm32, or \
                  a mixture JSON file."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a schedule and write the samples as .npy (and optionally a PNG grid).
    Sample(SampleArgs),
    /// Measure one schedule with the dataset's metric, next to the metric's floor.
    Eval(EvalArgs),
    /// Run every classic solver × time spacing at one NFE on the same noise and metric.
    Baselines(BaselinesArgs),
    /// Search a per-step schedule that beats the classic solvers at one NFE (resumable).
    Search(search::SearchArgs),
    /// List or inspect search runs in a store.
    Runs(search::RunsArgs),
    /// Write a run's best schedule for s3, diffusers, k-diffusion or ComfyUI.
    Export(search::ExportArgs),
    /// FID between two image sets or statistics files (pytorch-fid conventions).
    Fid(fid::FidArgs),
    /// Write the FID statistics (mu, sigma) of an image set as an .npz.
    FidStats(fid::FidStatsArgs),
}

/// The model and noise schedule a command runs.
#[derive(Args)]
pub(crate) struct ModelArgs {
    /// Dataset preset (digits, toy2d, gmm32) or a mixture JSON file.
    #[arg(long, default_value = "digits")]
    pub(crate) dataset: String,
    /// Noise schedule: vp-linear, vp-discrete, vp-cosine, edm, flow [default: the dataset's].
    #[arg(long)]
    pub(crate) noise_schedule: Option<String>,
    /// Training betas for vp-discrete: linear, scaled_linear [default: the dataset's].
    #[arg(long)]
    pub(crate) betas: Option<String>,
    /// Time shift of the flow schedule, as diffusers' `shift`/`flow_shift` (e.g. 3.0 for SD3)
    /// [default: the dataset's, else 1].
    #[arg(long)]
    pub(crate) shift: Option<f64>,
    #[command(flatten)]
    pub(crate) network: NetworkArgs,
}

/// Where real-network presets (cifar10) find their files and how their models run.
#[derive(Args, Clone)]
pub(crate) struct NetworkArgs {
    /// Models directory of real-network presets [default: $S3_MODELS_DIR, else ./models].
    #[arg(long)]
    pub(crate) models_dir: Option<PathBuf>,
    /// Where ONNX Runtime runs the network: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub(crate) device: String,
    /// Samples per network call (larger batches are split).
    #[arg(long, default_value_t = 64)]
    pub(crate) batch_size: usize,
    /// ONNX Runtime threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub(crate) threads: usize,
    /// Classifier-free guidance scale for class-conditional networks [default: the model
    /// config's].
    #[arg(long)]
    pub(crate) guidance_scale: Option<f64>,
}

impl NetworkArgs {
    pub(crate) fn options(&self) -> Result<LoadOptions> {
        let device = Device::parse(&self.device).context("--device")?;
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        Ok(LoadOptions {
            models_dir: self.models_dir.clone(),
            run: RunOptions {
                session: SessionOptions {
                    device,
                    threads: self.threads,
                },
                batch_size: self.batch_size,
                guidance_scale: self.guidance_scale,
            },
            feature_batch: 0,
        })
    }
}

impl ModelArgs {
    pub(crate) fn load(&self) -> Result<(Dataset, NoiseSchedule)> {
        let options = self.network.options()?;
        let mut ds = Dataset::load_with(&self.dataset, &options).context("--dataset")?;
        if let Some(n) = &self.noise_schedule {
            ds.noise = ds
                .noise
                .with_name(NoiseScheduleName::parse(n).context("--noise-schedule")?);
        }
        if let Some(shift) = self.shift {
            if ds.noise.name != NoiseScheduleName::Flow {
                bail!("--shift applies only to --noise-schedule flow");
            }
            ds.noise = ds.noise.with_shift(shift).context("--shift")?;
        }
        if let Some(b) = &self.betas {
            if ds.noise.name != NoiseScheduleName::VpDiscrete {
                bail!("--betas applies only to --noise-schedule vp-discrete");
            }
            ds.noise.betas = BetaSchedule::parse(b).context("--betas")?;
        }
        let ns = ds.noise.build();
        Ok((ds, ns))
    }
}

/// How a metric is computed.
#[derive(Args)]
struct MetricArgs {
    /// Number of samples [default: the dataset's].
    #[arg(long)]
    samples: Option<usize>,
    /// Seed of the initial noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Metric: fd (Fréchet distance to the exact data moments) or mse (to a reference solve)
    /// [default: the dataset's].
    #[arg(long)]
    metric: Option<String>,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl MetricArgs {
    fn evaluator<'a>(&self, ds: &'a Dataset, ns: &'a NoiseSchedule) -> Result<Evaluator<'a>> {
        let kind = match &self.metric {
            Some(m) => MetricKind::parse(m).context("--metric")?,
            None => ds.metric,
        };
        let n = self.samples.unwrap_or(ds.samples);
        if n < 2 {
            bail!("--samples must be at least 2, got {n}");
        }
        Ok(Evaluator::new(ds, ns, kind, n, self.seed)?)
    }
}

#[derive(Args)]
struct SampleArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The schedule JSON to run.
    #[arg(long)]
    schedule: PathBuf,
    /// Initial noise z ~ N(0, I) as .npy [n, *shape] (scaled by σ(t_0) for EDM).
    #[arg(long, conflicts_with_all = ["seed", "samples"])]
    noise: Option<PathBuf>,
    /// Seed for the initial noise when --noise is not given.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of samples when --noise is not given.
    #[arg(long, default_value_t = 64)]
    samples: usize,
    /// Where to write the samples (.npy, float32, [n, *shape]).
    #[arg(long)]
    out: PathBuf,
    /// Also write a PNG picture of the samples.
    #[arg(long)]
    grid: Option<PathBuf>,
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The schedule JSON to measure.
    #[arg(long)]
    schedule: PathBuf,
    #[command(flatten)]
    metric: MetricArgs,
}

#[derive(Args)]
struct BaselinesArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Number of model calls.
    #[arg(long)]
    nfe: usize,
    #[command(flatten)]
    metric: MetricArgs,
    /// Also write each baseline as a schedule JSON into this directory.
    #[arg(long)]
    emit: Option<PathBuf>,
}

/// Parses the command line and runs the command.
pub fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Sample(a) => sample(a),
        Command::Eval(a) => eval(a),
        Command::Baselines(a) => baselines(a),
        Command::Search(a) => search::search(a),
        Command::Runs(a) => search::runs(a),
        Command::Export(a) => search::export(a),
        Command::Fid(a) => fid::fid(a),
        Command::FidStats(a) => fid::fid_stats(a),
    }
}

/// The floor in words: what exact samples read, or why there is none.
fn floor_text(floor: &Option<Floor>) -> String {
    match floor {
        Some(f) => format!("exact samples read {f}"),
        None => "no floor: a real network has no exact data to draw from".into(),
    }
}

fn load_schedule(path: &Path) -> Result<SolverSchedule> {
    SolverSchedule::load(path).with_context(|| "--schedule".to_string())
}

fn sample(a: SampleArgs) -> Result<()> {
    let (ds, ns) = a.model.load()?;
    let schedule = load_schedule(&a.schedule)?;
    let shape = ds.sample_shape().to_vec();
    let dim = ds.dim();
    let z = match &a.noise {
        Some(p) => npy::read_samples(p, &shape).context("--noise")?.data,
        None => {
            if a.samples == 0 {
                bail!("--samples must be at least 1");
            }
            standard_noise(a.samples, dim, a.seed)
        }
    };
    let scale = prior_std(&ns, schedule.timesteps[0]) as f32;
    let x_t: Vec<f32> = z.iter().map(|v| v * scale).collect();
    let sampler = ds.sampler(&ns);
    let start = Instant::now();
    let out = sampler
        .sample(&schedule, &x_t)
        .with_context(|| format!("running {}", a.schedule.display()))?;
    npy::write_samples(&a.out, &out.samples, &shape).context("--out")?;
    if let Some(g) = &a.grid {
        grid::write_png(g, &out.samples, &shape).context("--grid")?;
    }
    eprintln!(
        "wrote {} samples of shape {:?} to {} ({} model calls each, {:.2} s)",
        out.samples.len() / dim,
        shape,
        a.out.display(),
        out.nfe,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Serialize)]
struct EvalReport<'a> {
    dataset: &'a str,
    noise_schedule: String,
    schedule: String,
    metric: &'static str,
    value: f64,
    floor: Option<Floor>,
    nfe: usize,
    samples: usize,
    seed: u64,
    features: String,
}

fn eval(a: EvalArgs) -> Result<()> {
    let (ds, ns) = a.model.load()?;
    let schedule = load_schedule(&a.schedule)?;
    let ev = a.metric.evaluator(&ds, &ns)?;
    let e = ev
        .evaluate(&schedule)
        .with_context(|| format!("evaluating {}", a.schedule.display()))?;
    let floor = ev.floor()?;
    let report = EvalReport {
        dataset: &ds.name,
        noise_schedule: ds.noise.label(),
        schedule: a.schedule.display().to_string(),
        metric: ev.metric_label(),
        value: e.value,
        floor,
        nfe: e.nfe,
        samples: e.samples,
        seed: a.metric.seed,
        features: ev.metric_id(),
    };
    if a.metric.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{}: {} = {:.6} at NFE {} ({} samples, seed {}; {})",
            report.schedule,
            report.metric,
            report.value,
            report.nfe,
            report.samples,
            report.seed,
            floor_text(&report.floor)
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct BaselineRow {
    solver: String,
    spacing: String,
    value: Option<f64>,
    error: Option<String>,
    file: Option<String>,
}

#[derive(Serialize)]
struct BaselinesReport<'a> {
    dataset: &'a str,
    noise_schedule: String,
    nfe: usize,
    metric: &'static str,
    samples: usize,
    seed: u64,
    floor: Option<Floor>,
    results: Vec<BaselineRow>,
}

/// The end time a classic solver uses with a spacing: continuous spacings stop at the
/// schedule's t_min; diffusers' spacings end at σ = 0 (data prediction, DDIM) or at the first
/// training timestep (noise-prediction DPM-Solver, as diffusers requires).
fn baseline_end(solver: ClassicSolver, spacing: Spacing, ns: &NoiseSchedule) -> f64 {
    if !spacing.is_discrete() {
        return ns.t_min();
    }
    match (solver, solver.prediction()) {
        (ClassicSolver::DpmSolver { .. }, _) => ns.t_min(),
        (_, Prediction::Data | Prediction::Noise) => 0.0,
    }
}

fn baselines(a: BaselinesArgs) -> Result<()> {
    if a.nfe == 0 {
        bail!("--nfe must be at least 1");
    }
    let (ds, ns) = a.model.load()?;
    let ev = a.metric.evaluator(&ds, &ns)?;
    if let Some(dir) = &a.emit {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--emit: creating {}", dir.display()))?;
    }
    let start = Instant::now();
    let mut rows = Vec::new();
    for solver in ClassicSolver::all() {
        for spacing in Spacing::all_for(&ns) {
            let t_end = baseline_end(solver, spacing, &ns);
            let built = spacing
                .timesteps(&ns, a.nfe, ns.t_max(), t_end)
                .map_err(anyhow::Error::from)
                .and_then(|ts| Ok(solver.build_for(&ns, ts, true)?));
            let (value, error, file) = match built {
                Err(e) => (None, Some(format!("{e:#}")), None),
                Ok(s) => {
                    let file = match &a.emit {
                        Some(dir) => {
                            let name = format!(
                                "{}_{}.json",
                                slug(&solver.label()),
                                slug(&spacing.label())
                            );
                            let path = dir.join(&name);
                            let s = s.clone().with_name(format!(
                                "{} {}",
                                solver.label(),
                                spacing.label()
                            ));
                            s.save(&path, &ns)
                                .with_context(|| format!("--emit: {}", path.display()))?;
                            Some(path.display().to_string())
                        }
                        None => None,
                    };
                    match ev.evaluate(&s) {
                        Ok(e) => (Some(e.value), None, file),
                        Err(e) => (None, Some(e.to_string()), file),
                    }
                }
            };
            rows.push(BaselineRow {
                solver: solver.label(),
                spacing: spacing.label(),
                value,
                error,
                file,
            });
        }
    }
    rows.sort_by(|x, y| {
        x.value
            .unwrap_or(f64::INFINITY)
            .total_cmp(&y.value.unwrap_or(f64::INFINITY))
    });
    let floor = ev.floor()?;
    let report = BaselinesReport {
        dataset: &ds.name,
        noise_schedule: ds.noise.label(),
        nfe: a.nfe,
        metric: ev.metric_label(),
        samples: ev.samples(),
        seed: a.metric.seed,
        floor,
        results: rows,
    };
    if a.metric.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "Classic solvers at NFE {} on {} ({}), {} on {} samples, seed {}",
        report.nfe,
        report.dataset,
        report.noise_schedule,
        report.metric,
        report.samples,
        report.seed
    );
    match &report.floor {
        Some(f) => println!(
            "Floor ({} of exact data samples, same count): {f}\n",
            report.metric
        ),
        None => println!("No floor: a real network has no exact data to draw from\n"),
    }
    println!(
        "{:>4}  {:<20} {:<22} {:>12}",
        "rank", "solver", "spacing", report.metric
    );
    for (i, r) in report.results.iter().enumerate() {
        match (r.value, &r.error) {
            (Some(v), _) => println!(
                "{:>4}  {:<20} {:<22} {:>12.6}",
                i + 1,
                r.solver,
                r.spacing,
                v
            ),
            (None, e) => println!(
                "{:>4}  {:<20} {:<22} {:>12}  ({})",
                "-",
                r.solver,
                r.spacing,
                "failed",
                e.as_deref().unwrap_or("")
            ),
        }
    }
    eprintln!(
        "\n{} schedules in {:.1} s",
        report.results.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

pub(crate) fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '+' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

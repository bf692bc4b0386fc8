//! Command-line parsing and the commands: `sample`, `eval`, `baselines` here; `search`,
//! `runs` and `export` in [`search`].

mod compare;
mod export;
mod fid;
pub(crate) mod out;
mod plot;
mod plot_text;
mod run_data;
mod runs;
mod search;
mod store_arg;
mod store_cmd;
mod trials;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use out::outln;
use s3::dataset::{Dataset, LoadOptions};
use s3::eval::{Evaluator, Floor};
use s3::io::{grid, npy};
use s3::metric::{
    DEFAULT_REFERENCE_NFE, MetricKind, ReferenceCache, ReferenceInfo, check_sample_size, prior_std,
    psnr_db, standard_noise,
};
use s3::noise::{BetaSchedule, NoiseSchedule, NoiseScheduleName, NoiseScheduleSpec};
use s3::onnx::{Device, RunOptions, SessionOptions};
use s3::solver::{SolverSchedule, classic_grid};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

use s3::solver::MAX_NFE;

/// The most model calls of a teacher reference (`--reference-nfe`): 50 × the default.
pub(crate) const MAX_REFERENCE_NFE: usize = 50 * DEFAULT_REFERENCE_NFE;

/// Checks a model-call count typed as `flag`: at least 1 and at most [`MAX_NFE`].
pub(crate) fn check_nfe(nfe: usize, flag: &str) -> Result<()> {
    if !(1..=MAX_NFE).contains(&nfe) {
        bail!("{flag} {nfe}: expected 1 to {MAX_NFE} model calls");
    }
    Ok(())
}

/// Checks, before any work, that `path` (given as `flag`) can be written: not an existing
/// directory, and its parent folder exists. Nothing is created.
pub(crate) fn check_output(path: &Path, flag: &str) -> Result<()> {
    if path.is_dir() {
        bail!(
            "{flag} {}: is a directory; expected a file path",
            path.display()
        );
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => bail!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            dir.display()
        ),
        _ => Ok(()),
    }
}

#[derive(Parser)]
#[command(
    name = "s3",
    version,
    about = "Search per-step ODE solver schedules for diffusion models (S³ / USF)",
    long_about = "s3 runs any per-step solver schedule exactly on a diffusion model, measures it, \
                  and compares it with the classic solvers, and searches schedules that beat \
                  them. --dataset takes a preset (digits, the default; toy2d; gmm32: exact \
                  analytic Gaussian mixtures; digits-net: a shipped network trained on the \
                  digits; cifar10: the network in MODELS/cifar10/), a \
                  mixture JSON file, or a network's model config (an s3-onnx-model .json file \
                  or a directory holding model.json, run through ONNX Runtime)."
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
    Search(Box<search::SearchArgs>),
    /// List or inspect search runs in a store.
    Runs(runs::RunsArgs),
    /// Check a store's journals against its index, or repair it after damage.
    Store(store_cmd::StoreArgs),
    /// Write a run's best schedule, or a schedule file, for s3, diffusers, k-diffusion or ComfyUI.
    Export(export::ExportArgs),
    /// FID between two image sets or statistics files (pytorch-fid conventions).
    Fid(fid::FidArgs),
    /// Write the FID statistics (mu, sigma) of an image set as an .npz.
    FidStats(fid::FidStatsArgs),
}

/// The model and noise schedule a command runs.
#[derive(Args)]
pub(crate) struct ModelArgs {
    /// Dataset: a preset (digits, toy2d, gmm32: exact mixtures; digits-net: a shipped network
    /// trained on digits; cifar10: the network in MODELS/cifar10/), a mixture .json file, or a
    /// network's model config (an s3-onnx-model .json file, or a directory holding
    /// model.json).
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

/// Where network presets (cifar10) find their files and how networks run.
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
    /// Classifier-free guidance scale of conditional networks [default: the model config's].
    #[arg(long)]
    pub(crate) guidance_scale: Option<f64>,
}

impl NetworkArgs {
    pub(crate) fn options(&self) -> Result<LoadOptions> {
        let device = Device::parse(&self.device).context("--device")?;
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        if let Some(w) = self.guidance_scale
            && !w.is_finite()
        {
            bail!("--guidance-scale {w}: expected a finite number");
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
        ds.noise = with_noise_flags(ds.noise, self.shift, self.betas.as_deref())?;
        let ns = ds.noise.build();
        Ok((ds, ns))
    }
}

/// `spec` with the `--shift` and `--betas` flags applied, each refused on a family that has
/// no such parameter (shared by every command that takes them).
pub(crate) fn with_noise_flags(
    mut spec: NoiseScheduleSpec,
    shift: Option<f64>,
    betas: Option<&str>,
) -> Result<NoiseScheduleSpec> {
    if let Some(shift) = shift {
        if spec.name != NoiseScheduleName::Flow {
            bail!("--shift applies only to --noise-schedule flow");
        }
        spec = spec.with_shift(shift).context("--shift")?;
    }
    if let Some(b) = betas {
        if spec.name != NoiseScheduleName::VpDiscrete {
            bail!("--betas applies only to --noise-schedule vp-discrete");
        }
        spec.betas = BetaSchedule::parse(b).context("--betas")?;
    }
    Ok(spec)
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
    /// Metric: fd (Fréchet distance to the exact data moments on all samples, or FID for a
    /// network with FID files; biased upward by ~k/N), fd-inf (FD∞: the FD extrapolated to
    /// infinitely many samples, unbiased), kid (kernel distance to exact data draws, unbiased;
    /// not with FID statistics) or mse (to a reference solve from the same noise: exact for
    /// mixtures, the teacher for networks) [default: the dataset's].
    #[arg(long)]
    metric: Option<String>,
    #[command(flatten)]
    reference: ReferenceArgs,
    /// Print machine-readable JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// How MSE references are solved and where they are kept.
#[derive(Args, Clone)]
pub(crate) struct ReferenceArgs {
    /// Model calls of a network's teacher (the MSE reference: RK4, checked against the
    /// solve with half the calls) [default: 200].
    #[arg(long, value_name = "NFE")]
    pub(crate) reference_nfe: Option<usize>,
    /// The store whose references/ folder keeps MSE references, so each is solved once
    /// [default: $S3_STORE, else ./s3-store].
    #[arg(long, value_name = "DIR")]
    pub(crate) store: Option<PathBuf>,
}

impl ReferenceArgs {
    /// Applies the teacher settings and the store's reference cache to `ev`.
    pub(crate) fn apply<'a>(&self, ev: Evaluator<'a>) -> Result<Evaluator<'a>> {
        if let Some(n) = self.reference_nfe
            && n > MAX_REFERENCE_NFE
        {
            bail!("--reference-nfe {n}: expected at most {MAX_REFERENCE_NFE} model calls");
        }
        let store = store_arg::store_path(self.store.as_deref());
        Ok(ev
            .with_reference_cache(ReferenceCache::in_store(&store))
            .with_reference_nfe(self.reference_nfe.unwrap_or(DEFAULT_REFERENCE_NFE))?)
    }
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
        check_sample_size(n, ds.dim(), "--samples")?;
        self.reference
            .apply(Evaluator::new(ds, ns, kind, n, self.seed)?)
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

/// Parses the command line and runs the command; returns the process exit status (0, or
/// 128 + the signal number for a search stopped by SIGINT or SIGTERM).
pub fn run() -> Result<i32> {
    let done = match Cli::parse().command {
        Command::Sample(a) => sample(a),
        Command::Eval(a) => eval(a),
        Command::Baselines(a) => baselines(a),
        Command::Search(a) => return search::search(*a),
        Command::Runs(a) => runs::runs(a),
        Command::Store(a) => return store_cmd::store(a),
        Command::Export(a) => export::export(a),
        Command::Fid(a) => fid::fid(a),
        Command::FidStats(a) => fid::fid_stats(a),
    };
    done.map(|()| 0)
}

/// For FD and FD∞, an evaluator of the other one on the same noise, so reports show FD at N
/// next to FD∞ (their difference is FD's finite-sample bias); None for other metrics, or
/// when FD∞ is unavailable (too few samples for the feature dimension).
fn fd_companion<'a>(ev: &Evaluator<'a>) -> Option<Evaluator<'a>> {
    match ev.kind() {
        MetricKind::Fd => ev.with_kind(MetricKind::FdInf).ok(),
        MetricKind::FdInf => ev.with_kind(MetricKind::Fd).ok(),
        MetricKind::Kid | MetricKind::Mse => None,
    }
}

/// A metric value as text: KID (values ~1e-4) in scientific notation, others fixed.
fn value_text(kind: MetricKind, v: f64) -> String {
    match kind {
        MetricKind::Kid => format!("{v:.4e}"),
        _ => format!("{v:.6}"),
    }
}

/// The companion of FD or FD∞ in words, for the line under the metric.
fn companion_text(c: &Companion) -> String {
    let what = match c.kind {
        MetricKind::Fd => "on all samples; biased upward by ~k/N",
        _ => "extrapolated to infinitely many samples; unbiased",
    };
    let floor = match c.floor {
        Some(_) => format!("; {}", floor_text(&c.floor)),
        None => String::new(),
    };
    format!("  {} = {:.6} ({what}){floor}", c.label, c.value)
}

/// The floor in words: what exact samples read, or why there is none.
fn floor_text(floor: &Option<Floor>) -> String {
    match floor {
        Some(f) if f.teacher_nfe.is_some() => format!("floor {f}"),
        Some(f) => format!("exact samples read {f}"),
        None => "no floor: FID against real-data statistics has no exact data to draw from".into(),
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
    // Everything that could refuse the outputs is checked before sampling, so a failed
    // command leaves no half of its files behind.
    check_output(&a.out, "--out")?;
    if let Some(g) = &a.grid {
        check_output(g, "--grid")?;
        grid::check_drawable(ds.output_shape()).context("--grid")?;
    }
    let z = match &a.noise {
        Some(p) => npy::read_samples(p, &shape).context("--noise")?.data,
        None => {
            if a.samples == 0 {
                bail!("--samples must be at least 1");
            }
            check_sample_size(a.samples, dim, "--samples")?;
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
    // With a decoder (a latent model), what is written and drawn is the decoded output.
    let decoded = ds.output_shape() != shape.as_slice();
    let out_shape = ds.output_shape().to_vec();
    let values = ds.decode(out.samples).context("decoding the samples")?;
    npy::write_samples(&a.out, &values, &out_shape).context("--out")?;
    if let Some(g) = &a.grid {
        grid::write_png(g, &values, &out_shape).context("--grid")?;
    }
    eprintln!(
        "wrote {} {} of shape {:?} to {} ({} model calls each, {:.2} s)",
        z.len() / dim,
        if decoded {
            "decoded samples"
        } else {
            "samples"
        },
        out_shape,
        a.out.display(),
        out.nfe,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

#[derive(Serialize)]
struct ReferenceReport {
    #[serde(flatten)]
    info: ReferenceInfo,
    cached: bool,
}

/// The other of FD / FD∞ on the same samples, with its floor.
#[derive(Serialize)]
struct Companion {
    #[serde(skip)]
    kind: MetricKind,
    /// Its display name (`fd`, `fd-inf`, `fid`, `fid-inf`).
    #[serde(skip)]
    label: &'static str,
    value: f64,
    floor: Option<Floor>,
}

/// Where the work of `s3 eval` went, in seconds.
#[derive(Serialize)]
struct EvalSeconds {
    /// Building what the metric compares with (exact moments, KID's reference draws).
    reference: f64,
    /// Running the schedule.
    sampling: f64,
    /// The metric of the samples.
    metric: f64,
    /// The floor (the metric of several sets of exact data draws).
    floor: f64,
}

#[derive(Serialize)]
struct EvalReport<'a> {
    dataset: &'a str,
    noise_schedule: String,
    schedule: String,
    metric: &'static str,
    value: f64,
    floor: Option<Floor>,
    /// For MSE: the same as PSNR (dB, values in [−1, 1]).
    #[serde(skip_serializing_if = "Option::is_none")]
    psnr_db: Option<f64>,
    /// For MSE: how the reference was solved, and whether it came from the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<ReferenceReport>,
    nfe: usize,
    samples: usize,
    seed: u64,
    features: String,
    /// For --metric fd-inf: FD on all the samples, with its floor.
    #[serde(skip_serializing_if = "Option::is_none")]
    fd_at_n: Option<Companion>,
    /// For --metric fd: FD∞ of the same samples, with its floor.
    #[serde(skip_serializing_if = "Option::is_none")]
    fd_inf: Option<Companion>,
    seconds: EvalSeconds,
}

/// The companion of `ev` (see [`fd_companion`]) measured on `x`, with its floor.
fn companion_of(ev: &Evaluator, x: &[f32]) -> Result<Option<Companion>> {
    let Some(c) = fd_companion(ev) else {
        return Ok(None);
    };
    Ok(Some(Companion {
        kind: c.kind(),
        label: c.metric_label(),
        value: c.value_of(x)?,
        floor: c.floor()?,
    }))
}

fn eval(a: EvalArgs) -> Result<()> {
    let (ds, ns) = a.model.load()?;
    let schedule = load_schedule(&a.schedule)?;
    let ev = a.metric.evaluator(&ds, &ns)?;
    let start = Instant::now();
    ev.prepare_reference()?;
    let reference_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let (e, x) = ev
        .evaluate_with_samples(&schedule)
        .with_context(|| format!("evaluating {}", a.schedule.display()))?;
    let sampling_s = start.elapsed().as_secs_f64() - e.metric_seconds;
    let start = Instant::now();
    let floor = ev.floor()?;
    let floor_s = start.elapsed().as_secs_f64();
    let companion = companion_of(&ev, &x)?;
    drop(x);
    let (fd_at_n, fd_inf) = match ev.kind() {
        MetricKind::FdInf => (companion, None),
        _ => (None, companion),
    };
    let report = EvalReport {
        dataset: &ds.name,
        noise_schedule: ds.noise.label(),
        schedule: a.schedule.display().to_string(),
        metric: ev.metric_label(),
        value: e.value,
        floor,
        psnr_db: (ev.kind() == MetricKind::Mse).then(|| psnr_db(e.value)),
        reference: match (ev.kind(), ev.reference_was_cached()) {
            (MetricKind::Mse, Some(cached)) => Some(ReferenceReport {
                info: ev.reference_info()?.clone(),
                cached,
            }),
            _ => None,
        },
        nfe: e.nfe,
        samples: e.samples,
        seed: a.metric.seed,
        features: ev.metric_id(),
        fd_at_n,
        fd_inf,
        seconds: EvalSeconds {
            reference: reference_s,
            sampling: sampling_s,
            metric: e.metric_seconds,
            floor: floor_s,
        },
    };
    if a.metric.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!(
            "{}: {} = {}{} at NFE {} ({} samples, seed {}; {})",
            report.schedule,
            report.metric,
            value_text(ev.kind(), report.value),
            report
                .psnr_db
                .map_or(String::new(), |p| format!(" (PSNR {p:.2} dB)")),
            report.nfe,
            report.samples,
            report.seed,
            floor_text(&report.floor)
        );
        if let Some(c) = report.fd_at_n.as_ref().or(report.fd_inf.as_ref()) {
            outln!("{}", companion_text(c));
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct BaselineRow {
    solver: String,
    spacing: String,
    value: Option<f64>,
    /// The companion metric of the same samples (FD at N for fd-inf, FD∞ for fd).
    #[serde(skip_serializing_if = "Option::is_none")]
    fd_at_n: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fd_inf: Option<f64>,
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
    /// The companion's floor, for --metric fd-inf (FD at N) …
    #[serde(skip_serializing_if = "Option::is_none")]
    fd_at_n_floor: Option<Floor>,
    /// … and for --metric fd (FD∞).
    #[serde(skip_serializing_if = "Option::is_none")]
    fd_inf_floor: Option<Floor>,
    /// The companion's display name (`fd`, `fd-inf`, `fid`, `fid-inf`), when there is one.
    #[serde(skip)]
    companion: Option<&'static str>,
    #[serde(skip)]
    kind: MetricKind,
    results: Vec<BaselineRow>,
}

fn baselines(a: BaselinesArgs) -> Result<()> {
    check_nfe(a.nfe, "--nfe")?;
    let (ds, ns) = a.model.load()?;
    let ev = a.metric.evaluator(&ds, &ns)?;
    let companion = fd_companion(&ev);
    if let Some(dir) = &a.emit {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--emit: creating {}", dir.display()))?;
    }
    let start = Instant::now();
    let mut rows = classic_grid(&ns, a.nfe)
        .into_iter()
        .map(|entry| baseline_row(entry, &ev, companion.as_ref(), a.emit.as_deref(), &ns))
        .collect::<Result<Vec<_>>>()?;
    rows.sort_by(|x, y| {
        x.value
            .unwrap_or(f64::INFINITY)
            .total_cmp(&y.value.unwrap_or(f64::INFINITY))
    });
    let floor = ev.floor()?;
    let companion_floor = companion.as_ref().map(|c| c.floor()).transpose()?.flatten();
    let (fd_at_n_floor, fd_inf_floor) = match ev.kind() {
        MetricKind::FdInf => (companion_floor, None),
        _ => (None, companion_floor),
    };
    let report = BaselinesReport {
        dataset: &ds.name,
        noise_schedule: ds.noise.label(),
        nfe: a.nfe,
        metric: ev.metric_label(),
        samples: ev.samples(),
        seed: a.metric.seed,
        floor,
        fd_at_n_floor,
        fd_inf_floor,
        companion: companion.as_ref().map(|c| c.metric_label()),
        kind: ev.kind(),
        results: rows,
    };
    if a.metric.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    print_baselines(&report);
    eprintln!(
        "\n{} schedules in {:.1} s",
        report.results.len(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One classic schedule measured (and written to `emit`, if given): its metric and, for FD
/// and FD∞, the other one of the same samples.
fn baseline_row(
    entry: s3::solver::ClassicEntry,
    ev: &Evaluator,
    companion: Option<&Evaluator>,
    emit: Option<&Path>,
    ns: &NoiseSchedule,
) -> Result<BaselineRow> {
    let (solver, spacing) = (entry.solver.label(), entry.spacing.label());
    let mut row = BaselineRow {
        solver,
        spacing,
        value: None,
        fd_at_n: None,
        fd_inf: None,
        error: None,
        file: None,
    };
    let s = match entry.schedule {
        Err(e) => {
            row.error = Some(e.to_string());
            return Ok(row);
        }
        Ok(s) => s,
    };
    if let Some(dir) = emit {
        let path = dir.join(format!("{}_{}.json", slug(&row.solver), slug(&row.spacing)));
        s.save(&path, ns)
            .with_context(|| format!("--emit: {}", path.display()))?;
        row.file = Some(path.display().to_string());
    }
    let measured = ev.evaluate_with_samples(&s).and_then(|(e, x)| {
        let other = companion.map(|c| c.value_of(&x)).transpose()?;
        Ok((e.value, other))
    });
    match measured {
        Ok((value, other)) => {
            row.value = Some(value);
            match ev.kind() {
                MetricKind::FdInf => row.fd_at_n = other,
                _ => row.fd_inf = other,
            }
        }
        Err(e) => row.error = Some(e.to_string()),
    }
    Ok(row)
}

/// The baselines as a text table, best first, under a line on the setting and the floor; for
/// FD and FD∞ a second value column holds the other one of the same samples.
fn print_baselines(report: &BaselinesReport) {
    outln!(
        "Classic solvers at NFE {} on {} ({}), {} on {} samples, seed {}",
        report.nfe,
        report.dataset,
        report.noise_schedule,
        report.metric,
        report.samples,
        report.seed
    );
    match &report.floor {
        Some(f) if f.teacher_nfe.is_some() => outln!("Floor: {f}"),
        Some(f) => outln!(
            "Floor ({} of exact data samples, same count): {f}",
            report.metric
        ),
        None => {
            outln!("No floor: FID against real-data statistics has no exact data to draw from")
        }
    }
    let other_floor = report
        .fd_at_n_floor
        .as_ref()
        .or(report.fd_inf_floor.as_ref());
    if let (Some(label), Some(f)) = (report.companion, other_floor) {
        outln!("Floor ({label} of exact data samples, same count): {f}");
    }
    outln!();
    outln!(
        "{:>4}  {:<20} {:<22} {:>12}{}",
        "rank",
        "solver",
        "spacing",
        report.metric,
        report
            .companion
            .map_or(String::new(), |l| format!(" {l:>12}"))
    );
    for (i, r) in report.results.iter().enumerate() {
        let other = r
            .fd_at_n
            .or(r.fd_inf)
            .map_or(String::new(), |v| format!(" {v:>12.6}"));
        match (r.value, &r.error) {
            (Some(v), _) => outln!(
                "{:>4}  {:<20} {:<22} {:>12}{other}",
                i + 1,
                r.solver,
                r.spacing,
                value_text(report.kind, v)
            ),
            (None, e) => outln!(
                "{:>4}  {:<20} {:<22} {:>12}  ({})",
                "-",
                r.solver,
                r.spacing,
                "failed",
                e.as_deref().unwrap_or("")
            ),
        }
    }
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

//! `s3 export`: a run's best schedule, or any schedule file, for s3, diffusers, k-diffusion
//! or ComfyUI.

use super::out::out;
use super::store_arg::StoreArg;
use super::with_noise_flags;
use anyhow::{Context, Result, bail};
use clap::Args;
use s3::dataset::LoadOptions;
use s3::export::{ExportContext, ExportFormat, PlainSampler, export_with, fmt_num, plain_samplers};
use s3::noise::{NoiseSchedule, NoiseScheduleName, NoiseScheduleSpec};
use s3::search::{Run, SearchConfig, SearchRunner, check_run_id, run_dir};
use s3::solver::{ClassicSolver, SolverSchedule};
use s3::space::canonical;
use s3::store::Store;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct ExportArgs {
    /// What to export: a run in the store (its best schedule), or an s3 schedule file
    /// (e.g. from `s3 baselines --emit` or a run's best.json).
    source: String,
    /// Target: s3, diffusers, k-diffusion, comfyui.
    #[arg(long, default_value = "s3")]
    format: String,
    /// Output file [default: standard output].
    #[arg(long)]
    out: Option<PathBuf>,
    /// For a schedule file: the noise schedule its timesteps are on (vp-linear, vp-discrete,
    /// vp-cosine, edm, flow) [default: the file's `noise_schedule`]. A run uses its own.
    #[arg(long)]
    noise_schedule: Option<String>,
    /// For a schedule file on vp-discrete: the training betas, linear or scaled_linear
    /// [default: linear].
    #[arg(long)]
    betas: Option<String>,
    /// For a schedule file on flow: diffusers' time shift [default: 1].
    #[arg(long)]
    shift: Option<f64>,
    /// For a run and a plain-list format: skip measuring what the list loses against the
    /// full schedule (it costs one final-ranking evaluation per plain sampler).
    #[arg(long)]
    no_measure: bool,
    #[command(flatten)]
    store: StoreArg,
}

/// `s3 export`.
pub fn export(a: ExportArgs) -> Result<()> {
    let format = ExportFormat::parse(&a.format).context("--format")?;
    if let Some(p) = &a.out {
        super::check_output(p, "--out")?;
    }
    let (schedule, noise, run) = if Path::new(&a.source).is_file() {
        let (s, n) = from_file(&a)?;
        (s, n, None)
    } else {
        let (s, cfg, store) = from_run(&a)?;
        (s, cfg.noise, Some((cfg, store)))
    };
    let ns = noise.build();
    let mut context = ExportContext {
        searched_for: run.as_ref().and_then(|(c, _)| c.solver),
        prefer: None,
    };
    // A run's full schedule as a plain list: measure what the list loses first, so the hint
    // can name the best plain sampler over its times.
    let loss = match &run {
        Some((cfg, store)) if cfg.solver.is_none() && !a.no_measure => {
            measure_loss(store, &a.source, cfg, format, &ns, &schedule)?
        }
        _ => None,
    };
    context.prefer = loss.as_ref().map(|l| l.best);
    let out = export_with(&schedule, &ns, format, context)?;
    match &a.out {
        Some(p) => {
            std::fs::write(p, &out.text).with_context(|| format!("--out {}", p.display()))?
        }
        None => out!("{}", out.text),
    }
    for n in out.notes.iter().chain(loss.iter().flat_map(|l| &l.notes)) {
        eprintln!("note: {n}");
    }
    Ok(())
}

/// What a plain list of a run's full schedule loses, measured.
struct Loss {
    /// The best plain sampler over the exported times.
    best: ClassicSolver,
    /// The measured numbers, for the user.
    notes: Vec<String>,
}

/// For a run exported as a plain list that its tool cannot run exactly: the run's metric of
/// the full schedule and of every plain sampler the tool runs over the exported times, on
/// the run's final noise (None when the list is exact or there is nothing to compare).
fn measure_loss(
    store: &Store,
    run_id: &str,
    cfg: &SearchConfig,
    format: ExportFormat,
    ns: &NoiseSchedule,
    schedule: &SolverSchedule,
) -> Result<Option<Loss>> {
    let plain = plain_samplers(format, ns, schedule);
    // All-zero time offsets are no offsets; non-zero ones make the schedule differ from every
    // plain sampler (the tools tell the model t itself).
    let key = |s: &SolverSchedule| {
        let mut c = canonical(s);
        if !c.has_time_offsets() {
            c.time_offsets = None;
        }
        c
    };
    let same = |p: &PlainSampler| key(&p.schedule) == key(schedule);
    if plain.is_empty() || plain.iter().any(same) {
        return Ok(None);
    }
    eprintln!(
        "measuring what the plain list loses: the full schedule and {} plain sampler(s) over its times, on the run's final noise ({} samples, seed {}; --no-measure skips this)",
        plain.len(),
        cfg.final_samples,
        cfg.seed + 1
    );
    let runner = SearchRunner::open(store, run_id, LoadOptions::default())?;
    let mut all: Vec<&SolverSchedule> = vec![schedule];
    all.extend(plain.iter().map(|p| &p.schedule));
    let values = runner.measure_final(&all)?;
    let metric = cfg.metric.as_str();
    let (full, rest) = values.split_first().expect("the full schedule is measured");
    let mut ranked: Vec<(&PlainSampler, f64)> = plain.iter().zip(rest.iter().copied()).collect();
    ranked.sort_by(|x, y| x.1.total_cmp(&y.1));
    let (best, best_value) = ranked[0];
    let mut notes = vec![format!(
        "The plain list loses the per-step decisions: the full schedule reads {metric} {} on the run's final noise, the best plain sampler over the exported times, {}, reads {} (×{:.2}; the hint uses it); run the full schedule exactly with the s3schedule package (python/).",
        fmt_num(*full),
        best.solver.label(),
        fmt_num(best_value),
        best_value / full
    )];
    if ranked.len() > 1 {
        let others: Vec<String> = ranked[1..]
            .iter()
            .map(|(p, v)| format!("{} {}", p.solver.label(), fmt_num(*v)))
            .collect();
        notes.push(format!(
            "Other plain samplers over these times: {}.",
            others.join(", ")
        ));
    }
    Ok(Some(Loss {
        best: best.solver,
        notes,
    }))
}

/// A schedule file and the noise schedule named by the flags or the file.
fn from_file(a: &ExportArgs) -> Result<(SolverSchedule, NoiseScheduleSpec)> {
    let path = Path::new(&a.source);
    let schedule = SolverSchedule::load(path)?;
    let name = match (&a.noise_schedule, &schedule.noise_schedule) {
        (Some(flag), _) => NoiseScheduleName::parse(flag).context("--noise-schedule")?,
        (None, Some(field)) => NoiseScheduleName::parse(field)
            .with_context(|| format!("{}: field noise_schedule", path.display()))?,
        (None, None) => bail!(
            "{}: the schedule names no noise_schedule; give --noise-schedule (vp-linear, vp-discrete, vp-cosine, edm, flow)",
            path.display()
        ),
    };
    let spec = with_noise_flags(NoiseScheduleSpec::new(name), a.shift, a.betas.as_deref())?;
    Ok((schedule, spec))
}

/// A run's best schedule, the run's configuration and the open store.
fn from_run(a: &ExportArgs) -> Result<(SolverSchedule, SearchConfig, Store)> {
    if a.noise_schedule.is_some() || a.betas.is_some() || a.shift.is_some() {
        bail!(
            "--noise-schedule, --betas and --shift apply to a schedule file; run `{}` uses its own noise schedule",
            a.source
        );
    }
    check_run_id(&a.source)
        .with_context(|| format!("`{}` is neither a schedule file nor a run id", a.source))?;
    // Opening would create a store; a missing one cannot hold the run.
    let store_dir = a.store.path();
    if !store_dir.is_dir() {
        bail!(
            "`{}` is neither a schedule file nor a run: there is no store at {}",
            a.source,
            store_dir.display()
        );
    }
    let store = a.store.open()?;
    let run = Run::load(&store, &a.source)?.with_context(|| {
        format!(
            "`{}` is neither a schedule file nor a run in {}",
            a.source,
            store.path().display()
        )
    })?;
    let cfg = run.config;
    let best = run_dir(store.path(), &a.source).join("best.json");
    if !best.exists() {
        bail!(
            "run {} has no best schedule yet ({} is missing)",
            a.source,
            best.display()
        );
    }
    Ok((SolverSchedule::load(&best)?, cfg, store))
}

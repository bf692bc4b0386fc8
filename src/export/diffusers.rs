//! The diffusers target: a JSON object with `timesteps` (vp-discrete) or `sigmas` (otherwise),
//! a scheduler hint, usage lines and the notes.
//!
//! diffusers takes custom lists through `pipe(..., timesteps=...)` or `pipe(..., sigmas=...)`
//! (`retrieve_timesteps`). `timesteps` are N integer training timesteps, descending, without a
//! trailing 0; DPMSolverMultistepScheduler takes them (and no `sigmas`) and ends at σ = 0
//! (`final_sigmas_type="zero"`, data prediction only) or at the smallest training σ
//! (`"sigma_min"`). `sigmas` are N + 1 values ending in 0, taken by EulerDiscreteScheduler;
//! UniPCMultistepScheduler takes sigmas only with `use_flow_sigmas=True` (flow-matching
//! models), so for VP and EDM models a sigma list runs with Euler.
//!
//! EulerDiscreteScheduler starts the latents at `init_noise_sigma`, which is √(σ_0² + 1) (s3's
//! x_T = z in the model's frame x = α·x0 + σ·ε, seen as x/α) only with `timestep_spacing`
//! `"leading"` (σ_0 otherwise); with custom sigmas the spacing changes nothing else, so the
//! hint sets it. EDMEulerScheduler (diffusers 0.42.1) reads `set_timesteps(sigmas=…)` not as
//! sigmas but as N positions r in [0, 1] of its Karras schedule, σ = (σ_max^(1/ρ) +
//! r·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, wants them as a torch tensor and appends the final 0
//! itself; the export therefore adds `sigma_ramp` (r for ρ = 1, σ_max = σ_0, σ_min =
//! σ_{N−1}, set in the hint) and its usage passes that.
//!
//! `usage` runs in pipelines whose `__call__` takes `timesteps=`/`sigmas=` (Stable Diffusion
//! and most text-to-image pipelines). `DDPMPipeline` takes neither, calls
//! `scheduler.set_timesteps(num_inference_steps)` itself and applies neither
//! `init_noise_sigma` nor `scale_model_input`; `usage_ddpm_pipeline` runs there through
//! `s3schedule.diffusers.scheduler_from_export` (python/), which pins the list and, for
//! EulerDiscreteScheduler, carries the latents in the model's frame. EDMEulerScheduler's
//! preconditioning lives in `scale_model_input`, so EDM exports get no `usage_ddpm_pipeline`.
//!
//! Flow models take `sigmas` through `FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=…)`
//! (diffusers 0.42.1): N flow sigmas, one per model call, **without** a trailing 0 — it
//! appends the terminal 0 itself, calls the model at timesteps 1000·σ and steps
//! x + (σ_next − σ)·v (flow Euler, = DDIM). It applies the scheduler's `shift` (or, with
//! `use_dynamic_shifting`, the `mu` shift) to custom sigmas again, so the hint sets
//! `shift=1.0` and `use_dynamic_shifting=False`: the exported sigmas are the exact times.
//! `UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=1.0)` takes the same list and is
//! hinted when it reproduces the schedule (s3's UniPC-bh2 builder over these sigmas).

use super::sigmas::dropped_note;
use super::{Exported, Plan, fmt_num, join, searched_for_note};
use crate::error::{Result, S3Error};
use crate::noise::{BetaSchedule, DiscreteVp, FLOW_TRAIN_TIMESTEPS, FlowMatch, NoiseSchedule};
use crate::solver::spacing::UNIPC_FLOW_EPS;
use crate::solver::{ClassicSolver, Prediction, SolverSchedule, UniPcVariant};
use serde::Serialize;
use serde_json::{Map, Value};

const CONTEXT: &str = "export --format diffusers";

/// The file written for diffusers.
#[derive(Serialize)]
struct DiffusersFile {
    /// `s3-diffusers-export`.
    format: &'static str,
    version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    noise_schedule: NoiseInfo,
    /// N integer training timesteps (vp-discrete).
    #[serde(skip_serializing_if = "Option::is_none")]
    timesteps: Option<Vec<usize>>,
    /// N + 1 sigmas ending in 0 (continuous schedules), or N flow sigmas without the 0
    /// (flow: diffusers appends it).
    #[serde(skip_serializing_if = "Option::is_none")]
    sigmas: Option<Vec<f64>>,
    /// EDM: what `EDMEulerScheduler.set_timesteps(sigmas=…)` takes to produce `sigmas` (see
    /// the module docs).
    #[serde(skip_serializing_if = "Option::is_none")]
    sigma_ramp: Option<Vec<f64>>,
    scheduler_hint: Hint,
    /// The classic solver the times were searched for (`s3 search --solver`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    searched_for: Option<String>,
    /// Python lines for pipelines whose `__call__` takes `timesteps=`/`sigmas=`.
    usage: Vec<String>,
    /// Python lines for `DDPMPipeline` (needs the s3schedule package); absent where it cannot
    /// run the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_ddpm_pipeline: Option<Vec<String>>,
    notes: Vec<String>,
}

/// The noise schedule the list was written for (informational).
#[derive(Serialize)]
struct NoiseInfo {
    name: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_train_timesteps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    beta_schedule: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    beta_start: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    beta_end: Option<f64>,
    /// The flow time shift the times were laid out with (already applied to them).
    #[serde(skip_serializing_if = "Option::is_none")]
    shift: Option<f64>,
}

impl NoiseInfo {
    /// Just the name (continuous schedules).
    fn named(name: &'static str) -> Self {
        Self {
            name,
            num_train_timesteps: None,
            beta_schedule: None,
            beta_start: None,
            beta_end: None,
            shift: None,
        }
    }
}

/// The scheduler to load and the `from_config` overrides it needs.
#[derive(Serialize)]
struct Hint {
    class: &'static str,
    config: Map<String, Value>,
}

pub(super) fn export(plan: &Plan) -> Result<Exported> {
    match plan.ns {
        NoiseSchedule::VpDiscrete(d) => discrete(plan, d),
        NoiseSchedule::Flow(f) => flow(plan, f),
        _ => continuous(plan),
    }
}

/// How DPMSolverMultistepScheduler ends a discrete list whose last model call is at training
/// timestep `last_k`: at training timestep 0 (`final_sigmas_type="sigma_min"`) when the
/// schedule itself stops there without denoising, else at σ = 0 (`"zero"`). Returns the
/// setting and the final time.
pub(super) fn discrete_end(
    s: &SolverSchedule,
    d: &DiscreteVp,
    last_k: usize,
) -> (&'static str, f64) {
    let t_end = *s.timesteps.last().expect("a schedule has timesteps");
    let at_first_training_time = (t_end * d.len() as f64 - 1.0).abs() < 1e-9;
    if !s.denoises() && at_first_training_time && last_k > 0 {
        ("sigma_min", d.t_of_timestep(0))
    } else {
        ("zero", 0.0)
    }
}

/// `timesteps` for DPMSolverMultistepScheduler.
fn discrete(plan: &Plan, d: &DiscreteVp) -> Result<Exported> {
    let train = d.len();
    let mut notes = Vec::new();
    let mut details = Vec::new();

    // Model-call times → integer training timesteps k = round(t·N_train − 1).
    let mut ks = Vec::with_capacity(plan.n);
    let mut worst: Option<(usize, f64, usize, f64)> = None; // (i, t, k, |shift| in steps)
    let mut clamped = Vec::new();
    for (i, &t) in plan.call_times().iter().enumerate() {
        let x = t * train as f64 - 1.0;
        let (k, was_clamped) = d.nearest_timestep(t);
        if was_clamped {
            clamped.push(i);
        }
        let shift = (k as f64 - x).abs();
        if shift > 1e-9 && worst.is_none_or(|w| shift > w.3) {
            worst = Some((i, t, k, shift));
        }
        ks.push(k);
    }
    for (i, w) in ks.windows(2).enumerate() {
        if w[1] >= w[0] {
            return Err(S3Error::field(
                CONTEXT,
                "timesteps",
                format!(
                    "timesteps[{i}] = {} and timesteps[{}] = {} both map to training timestep {} (k = round(t·{train} − 1), kept in 0..={}); diffusers needs {} distinct descending integer timesteps. Export sigmas instead (--format k-diffusion or comfyui)",
                    plan.call_times()[i],
                    i + 1,
                    plan.call_times()[i + 1],
                    w[0],
                    train - 1,
                    plan.n
                ),
            ));
        }
    }
    if let Some((i, t, k, shift)) = worst {
        details.push(format!(
            "Timesteps off the integer training grid t = (k + 1)/{train} were rounded to the nearest k: largest change {} training steps (Δt = {}) at timesteps[{i}] = {} → {k}.",
            fmt_num(shift),
            fmt_num(shift / train as f64),
            fmt_num(t)
        ));
    }
    if !clamped.is_empty() {
        details.push(format!(
            "timesteps[{}] lie outside the training range and were clamped to 0..={}.",
            join(clamped.iter()),
            train - 1
        ));
    }

    // How diffusers ends, and which algorithm may end there.
    let t_min = d.t_of_timestep(0);
    let (final_type, t_final) = discrete_end(plan.schedule, d, ks[plan.n - 1]);
    let ends_at_sigma_min = final_type == "sigma_min";
    if !plan.schedule.denoises() && !ends_at_sigma_min {
        details.push(format!(
            "The schedule stops at t_N = {} without denoising; diffusers ends either at σ = 0 (final_sigmas_type=\"zero\") or at training timestep 0 (\"sigma_min\", t = {}), so with \"zero\" it will denoise to σ = 0 from the last timestep {} instead.",
            fmt_num(plan.t_end()),
            fmt_num(t_min),
            ks[plan.n - 1]
        ));
    }
    let mut tool_times: Vec<f64> = ks.iter().map(|&k| d.t_of_timestep(k)).collect();
    tool_times.push(t_final);

    // The solver: one that reproduces the schedule if any, else the most common decisions.
    let allowed = |p: Prediction| p == Prediction::Data || final_type == "sigma_min";
    let build = |p: Prediction, order: usize| {
        let solver = match p {
            Prediction::Data => ClassicSolver::DpmSolverPp { order },
            Prediction::Noise => ClassicSolver::DpmSolver { order },
        };
        plan.classic(solver, tool_times.clone(), true)
            .map(|c| (p, order, solver, c))
    };
    let exact = [Prediction::Data, Prediction::Noise]
        .into_iter()
        .filter(|&p| allowed(p))
        .flat_map(|p| (1..=3).map(move |o| (p, o)))
        .filter_map(|(p, o)| build(p, o))
        .find(|(.., c)| plan.same_as(c));
    let is_exact = exact.is_some();
    // The measured best plain sampler over these times, when the caller has one.
    let preferred = match plan.context.prefer {
        Some(ClassicSolver::Ddim) => Some((Prediction::Data, 1)),
        Some(ClassicSolver::DpmSolverPp { order }) => Some((Prediction::Data, order)),
        _ => None,
    };
    let chosen = match (exact, preferred) {
        (Some(e), _) => Some(e),
        (None, Some((p, o))) => build(p, o),
        (None, None) => {
            let mut p = plan.prediction;
            if !allowed(p) {
                details.push(
                    "The schedule mostly expands the noise prediction, but diffusers' noise-prediction algorithm (\"dpmsolver\") cannot end at σ = 0 (final_sigmas_type=\"zero\" needs \"dpmsolver++\"), so the hint uses \"dpmsolver++\".".into(),
                );
                p = Prediction::Data;
            }
            if plan.order > 3 {
                details.push(format!(
                    "The schedule's most common order is {}; diffusers' solver_order is at most 3.",
                    plan.order
                ));
            }
            build(p, plan.order.min(3))
        }
    };
    let (prediction, order, label, orders) = match &chosen {
        Some((p, o, solver, c)) => {
            let label = if *o == 1 {
                "first-order DPM-Solver (= DDIM)".to_string()
            } else {
                solver.label()
            };
            (*p, *o, label, Plan::orders_of(c))
        }
        // Unreachable for valid schedules; keep a sensible hint anyway.
        None => (
            Prediction::Data,
            plan.order.min(3),
            format!("dpm-solver++({}M)", plan.order.min(3)),
            "its own".into(),
        ),
    };
    notes.extend(dropped_note(
        plan,
        "diffusers",
        chosen.as_ref().map(|(_, _, solver, _)| (*solver, true)),
    ));
    let algorithm = match prediction {
        Prediction::Data => "dpmsolver++",
        Prediction::Noise => "dpmsolver",
    };
    let settings = format!(
        "DPMSolverMultistepScheduler(algorithm_type=\"{algorithm}\", solver_order={order}, lower_order_final=True, final_sigmas_type=\"{final_type}\")"
    );
    if is_exact {
        notes.push(format!(
            "Nothing is lost for this schedule: diffusers runs this schedule exactly with {settings}: {label}, orders {orders} (s3's builder of it matches diffusers 0.42.1 to ~1e-5)."
        ));
    } else {
        let mut s = format!(
            "diffusers will run instead: {settings}, i.e. {label} with orders {orders} over these {} timesteps, the same solver at every step",
            plan.n
        );
        if !plan.corrector_steps.is_empty() {
            s.push_str(
                ", no corrector (UniPCMultistepScheduler, which has one, takes no custom timesteps, and custom sigmas only with use_flow_sigmas=True)",
            );
        }
        s.push('.');
        notes.push(s);
    }
    notes.extend(plan.afs_note("diffusers"));
    notes.append(&mut details);
    notes.push(format!(
        "The timesteps index a {train}-step `{}` beta schedule; use them only with a model trained on it.",
        d.beta_schedule().as_str()
    ));

    let mut config = Map::new();
    config.insert("algorithm_type".into(), algorithm.into());
    config.insert("solver_order".into(), order.into());
    config.insert("solver_type".into(), "midpoint".into());
    config.insert("lower_order_final".into(), true.into());
    config.insert("euler_at_final".into(), false.into());
    config.insert("final_sigmas_type".into(), final_type.into());
    // diffusers rejects custom timesteps when any of these is set.
    for k in [
        "use_karras_sigmas",
        "use_lu_lambdas",
        "use_exponential_sigmas",
        "use_beta_sigmas",
    ] {
        config.insert(k.into(), false.into());
    }
    let class = "DPMSolverMultistepScheduler";
    let usage = usage_lines(class, "timesteps");
    notes.push(use_note(class, "timesteps", plan.n));
    notes.push(ddpm_note(plan.n, "DPMSolverMultistepScheduler's init_noise_sigma is 1 and its scale_model_input the identity, so nothing else is missing there"));
    let (beta_start, beta_end) = match d.beta_schedule() {
        BetaSchedule::Linear => (0.0001, 0.02),
        BetaSchedule::ScaledLinear => (0.00085, 0.012),
    };
    let noise_schedule = NoiseInfo {
        name: plan.ns.name(),
        num_train_timesteps: Some(train),
        beta_schedule: Some(d.beta_schedule().as_str()),
        beta_start: Some(beta_start),
        beta_end: Some(beta_end),
        shift: None,
    };
    let file = DiffusersFile {
        timesteps: Some(ks),
        ..DiffusersFile::new(plan, noise_schedule, Hint { class, config }, usage, notes)
    };
    Ok(file.exported())
}

/// `sigmas` for EulerDiscreteScheduler (VP) or EDMEulerScheduler (EDM, plus `sigma_ramp`).
fn continuous(plan: &Plan) -> Result<Exported> {
    let sigmas = plan.sigmas(CONTEXT)?;
    let edm = matches!(plan.ns, NoiseSchedule::Edm);
    let class = if edm {
        "EDMEulerScheduler"
    } else {
        "EulerDiscreteScheduler"
    };
    let mut notes: Vec<String> =
        dropped_note(plan, "diffusers", Some((ClassicSolver::Ddim, false)))
            .into_iter()
            .collect();
    let mut times = plan.call_times().to_vec();
    times.push(0.0);
    let exact = plan
        .classic(ClassicSolver::Ddim, times, false)
        .is_some_and(|c| plan.same_as(&c));
    if exact {
        notes.push(format!(
            "Nothing is lost for this schedule: diffusers runs this schedule exactly with {class}: Euler in σ (= DDIM) over these sigmas."
        ));
    } else {
        notes.push(format!(
            "diffusers will run instead: {class}, i.e. Euler in σ (= DDIM, order 1) at all {} steps with no corrector. For VP and EDM models no diffusers multistep scheduler takes custom sigmas: DPMSolverMultistepScheduler has no `sigmas` argument and UniPCMultistepScheduler takes them only with use_flow_sigmas=True (flow-matching models).",
            plan.n
        ));
    }
    notes.extend(plan.afs_note("diffusers"));
    notes.extend(plan.end_note("diffusers"));
    let mut config = Map::new();
    let (sigma_ramp, usage, ddpm) = if edm {
        let (first, last) = (sigmas[0], sigmas[plan.n - 1]);
        let ramp: Vec<f64> = sigmas[..plan.n]
            .iter()
            .map(|&s| {
                if plan.n == 1 {
                    0.0
                } else {
                    (first - s) / (first - last)
                }
            })
            .collect();
        config.insert("sigma_schedule".into(), "karras".into());
        config.insert("rho".into(), 1.0.into());
        config.insert("sigma_max".into(), first.into());
        config.insert("sigma_min".into(), last.into());
        config.insert("final_sigmas_type".into(), "zero".into());
        notes.push(format!(
            "The sigmas are the EDM σ = t of the {} model-call times, then 0. EDMEulerScheduler.set_timesteps(sigmas=…) takes not sigmas but positions r in [0, 1] of its Karras schedule σ = (σ_max^(1/ρ) + r·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, as a torch tensor, and appends the final 0 itself: the hint sets ρ = 1, σ_max = {} and σ_min = {}, and `usage` passes `sigma_ramp` (float64), which gives back these sigmas. It calls the model at timesteps 0.25·ln σ with the input scaled by c_in = 1/√(σ² + σ_data²) (scale_model_input).",
            plan.n,
            fmt_num(first),
            fmt_num(last)
        ));
        notes.push(format!(
            "diffusers starts the latents at z·√(σ_0² + 1) (init_noise_sigma, from sigma_max = σ_0), s3 at z·σ_0: a factor {} larger.",
            fmt_num((1.0 + 1.0 / (first * first)).sqrt())
        ));
        notes.push(format!(
            "Use: in pipelines whose __call__ takes sigmas= (e.g. StableDiffusionXLPipeline), the `usage` lines: pipe.scheduler = {class}.from_config(pipe.scheduler.config, **scheduler_hint[\"config\"]); pipe(prompt, sigmas=torch.tensor(sigma_ramp, dtype=torch.float64))."
        ));
        notes.push(
            "DDPMPipeline cannot run these sigmas: it never calls scale_model_input, where EDMEulerScheduler applies the EDM input scaling c_in, nor applies init_noise_sigma, so the file has no `usage_ddpm_pipeline`.".into(),
        );
        let mut usage = usage_lines(class, "sigmas");
        usage.insert(1, "import torch".into());
        let last_line = usage.len() - 1;
        usage[last_line] = "image = pipe(prompt, sigmas=torch.tensor(export[\"sigma_ramp\"], dtype=torch.float64)).images[0]".into();
        (Some(ramp), usage, None)
    } else {
        config.insert("timestep_spacing".into(), "leading".into());
        notes.push(format!(
            "The sigmas are σ/α of the {} model-call times (the noise level of the equivalent VE process), then 0; {class} maps them to the pipeline model's own timesteps. It starts the latents at init_noise_sigma = √(σ_0² + 1) (s3's x_T = z in the model's frame) only with timestep_spacing=\"leading\" (σ_0 otherwise), which the hint sets; with custom sigmas the spacing changes nothing else.",
            plan.ns.name()
        ));
        notes.push(use_note(class, "sigmas", plan.n));
        notes.push(ddpm_note(plan.n, "there EulerDiscreteScheduler would miss init_noise_sigma and scale_model_input, which DDPMPipeline never applies, so scheduler_from_export carries the latents in the model's frame instead (init_noise_sigma 1, scale_model_input the identity, Euler's x/α = x·√(σ² + 1) inside step()): the same Euler steps"));
        (
            None,
            usage_lines(class, "sigmas"),
            Some(ddpm_usage_lines(plan.n)),
        )
    };
    let noise_schedule = NoiseInfo::named(plan.ns.name());
    let file = DiffusersFile {
        sigmas: Some(sigmas),
        sigma_ramp,
        usage_ddpm_pipeline: ddpm,
        ..DiffusersFile::new(plan, noise_schedule, Hint { class, config }, usage, notes)
    };
    Ok(file.exported())
}

/// `sigmas` for FlowMatchEulerDiscreteScheduler (or UniPCMultistepScheduler with flow sigmas
/// when that reproduces the schedule): the N flow sigmas of the model calls, no trailing 0.
fn flow(plan: &Plan, f: &FlowMatch) -> Result<Exported> {
    let mut sigmas = plan.sigmas(CONTEXT)?;
    sigmas.pop(); // the terminal 0, which set_timesteps appends itself
    let mut times = plan.call_times().to_vec();
    times.push(0.0);
    let euler_exact = plan
        .classic(ClassicSolver::Ddim, times.clone(), false)
        .is_some_and(|c| plan.same_as(&c));
    // UniPC with flow sigmas runs s3's UniPC builder over the same times; bh1 is left out
    // because diffusers 0.42.1 computes 0·∞ = NaN on bh1's final step into σ = 0, and so is a
    // first sigma within 1e-6 of 1, which diffusers moves (and from which it would run UniC).
    let unipc_times = (1.0 - times[0]).abs() >= UNIPC_FLOW_EPS;
    let unipc = (!euler_exact && unipc_times)
        .then(|| {
            (1..=3).find_map(|order| {
                let solver = ClassicSolver::UniPc {
                    variant: UniPcVariant::Bh2,
                    order,
                };
                plan.classic(solver, times.clone(), true)
                    .filter(|c| plan.same_as(c))
                    .map(|c| (order, solver, c))
            })
        })
        .flatten();
    let runs = match &unipc {
        Some((_, solver, _)) => (*solver, true),
        None => (ClassicSolver::Ddim, false),
    };
    let mut notes: Vec<String> = dropped_note(plan, "diffusers", Some(runs))
        .into_iter()
        .collect();
    let mut config = Map::new();
    let class = match &unipc {
        Some((order, solver, c)) => {
            notes.push(format!(
                "Nothing is lost for this schedule: diffusers runs this schedule exactly with UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type=\"flow_prediction\", flow_shift=1.0, solver_type=\"bh2\", solver_order={order}, lower_order_final=True, final_sigmas_type=\"zero\"): {}, orders {} (s3's builder of it matches diffusers 0.42.1, see tests/golden_flow.rs). It passes the model integer timesteps int(1000·σ) (truncated) while its solver uses the exact sigmas, as s3 does; the sigmas must be a numpy array (a list raises a TypeError in its set_timesteps).",
                solver.label(),
                Plan::orders_of(c)
            ));
            config.insert("use_flow_sigmas".into(), true.into());
            config.insert("prediction_type".into(), "flow_prediction".into());
            config.insert("flow_shift".into(), 1.0.into());
            config.insert("solver_type".into(), "bh2".into());
            config.insert("solver_order".into(), (*order).into());
            config.insert("predict_x0".into(), true.into());
            config.insert("lower_order_final".into(), true.into());
            config.insert("final_sigmas_type".into(), "zero".into());
            config.insert("disable_corrector".into(), Value::Array(Vec::new()));
            "UniPCMultistepScheduler"
        }
        None => {
            if euler_exact {
                notes.push(
                    "Nothing is lost for this schedule: diffusers runs this schedule exactly with FlowMatchEulerDiscreteScheduler: the flow Euler step x + (σ_next − σ)·v (= DDIM) over these sigmas.".into(),
                );
            } else {
                notes.push(format!(
                    "diffusers will run instead: FlowMatchEulerDiscreteScheduler, i.e. the flow Euler step x + (σ_next − σ)·v (= DDIM, order 1) at all {} steps with no corrector. DPMSolverMultistepScheduler takes no custom sigmas; UniPCMultistepScheduler(use_flow_sigmas=True) does and reproduces s3's UniPC-bh2 schedules over them.",
                    plan.n
                ));
            }
            config.insert("shift".into(), 1.0.into());
            config.insert("shift_terminal".into(), Value::Null);
            config.insert("invert_sigmas".into(), false.into());
            config.insert("stochastic_sampling".into(), false.into());
            "FlowMatchEulerDiscreteScheduler"
        }
    };
    config.insert("use_dynamic_shifting".into(), false.into());
    for k in [
        "use_karras_sigmas",
        "use_exponential_sigmas",
        "use_beta_sigmas",
    ] {
        config.insert(k.into(), false.into());
    }
    notes.extend(plan.afs_note("diffusers"));
    notes.extend(plan.end_note("diffusers"));
    notes.push(format!(
        "The sigmas are the flow σ = t of the {} model-call times (x = (1 − σ)·x0 + σ·ε), already shifted (shift {}); set_timesteps(sigmas=…) applies the scheduler's shift (or the dynamic `mu` shift) to custom sigmas again, so the hint sets {}=1.0 and use_dynamic_shifting=False. It appends the terminal 0 itself (hence N values, no trailing 0) and calls the model at timesteps {}·σ.",
        plan.n,
        fmt_num(f.shift()),
        if unipc.is_some() { "flow_shift" } else { "shift" },
        FLOW_TRAIN_TIMESTEPS
    ));
    notes.push(use_note(class, "sigmas", plan.n));
    notes.push(ddpm_note(
        plan.n,
        &format!("{class} has no init_noise_sigma or scale_model_input to miss there"),
    ));
    let noise_schedule = NoiseInfo {
        num_train_timesteps: Some(FLOW_TRAIN_TIMESTEPS),
        shift: Some(f.shift()),
        ..NoiseInfo::named(plan.ns.name())
    };
    let usage = flow_usage_lines(class);
    let file = DiffusersFile {
        sigmas: Some(sigmas),
        ..DiffusersFile::new(plan, noise_schedule, Hint { class, config }, usage, notes)
    };
    Ok(file.exported())
}

/// [`usage_lines`] for flow: the sigmas as a numpy array (UniPC's set_timesteps needs one).
impl DiffusersFile {
    /// The file of `plan` with its noise schedule, scheduler hint, usage lines and notes (led
    /// by the searched-for note when the caller gave one), the DDPMPipeline usage lines, and
    /// no times yet: each exporter sets its `timesteps` or `sigmas`.
    fn new(
        plan: &Plan,
        noise_schedule: NoiseInfo,
        scheduler_hint: Hint,
        usage: Vec<String>,
        notes: Vec<String>,
    ) -> Self {
        Self {
            format: "s3-diffusers-export",
            version: 1,
            name: plan.schedule.name.clone(),
            noise_schedule,
            timesteps: None,
            sigmas: None,
            sigma_ramp: None,
            scheduler_hint,
            searched_for: plan.context.searched_for.map(|s| s.label()),
            usage,
            usage_ddpm_pipeline: Some(ddpm_usage_lines(plan.n)),
            notes: with_searched_for(plan, notes),
        }
    }

    /// The file as exported text, with its notes.
    fn exported(self) -> Exported {
        Exported {
            text: serde_json::to_string_pretty(&self).expect("serialises") + "\n",
            notes: self.notes,
        }
    }
}

/// The notes, led by the searched-for note when the caller gave one.
fn with_searched_for(plan: &Plan, mut notes: Vec<String>) -> Vec<String> {
    if let Some(solver) = plan.context.searched_for {
        notes.insert(0, searched_for_note(solver));
    }
    notes
}

fn flow_usage_lines(class: &str) -> Vec<String> {
    let mut lines = usage_lines(class, "sigmas");
    lines.insert(1, "import numpy as np".into());
    let last = lines.len() - 1;
    lines[last] = "image = pipe(prompt, sigmas=np.array(export[\"sigmas\"])).images[0]".into();
    lines
}

/// The note on `usage`: what it does, for pipelines whose `__call__` takes `key=`.
fn use_note(class: &str, key: &str, n: usize) -> String {
    format!(
        "Use: in pipelines whose __call__ takes {key}= (StableDiffusionPipeline and most text-to-image pipelines), the `usage` lines: pipe.scheduler = {class}.from_config(pipe.scheduler.config, **scheduler_hint[\"config\"]); pipe(prompt, {key}={key}) ({n} model calls)."
    )
}

/// The note on `usage_ddpm_pipeline`; `why` says what else the scheduler needs there.
fn ddpm_note(n: usize, why: &str) -> String {
    format!(
        "In DDPMPipeline, whose __call__ takes no timesteps=/sigmas= and calls scheduler.set_timesteps(num_inference_steps) itself, the `usage_ddpm_pipeline` lines: s3schedule.diffusers.scheduler_from_export (pip install ./python from s3's repository) builds the hinted scheduler pinned to this list, whatever set_timesteps the pipeline calls, and refuses any num_inference_steps but {n}; {why}."
    )
}

/// Python lines that run this file in `DDPMPipeline` `pipe` (N steps): the hinted scheduler,
/// pinned to the file's list by s3schedule.
fn ddpm_usage_lines(n: usize) -> Vec<String> {
    vec![
        "from s3schedule.diffusers import scheduler_from_export  # pip install ./python (s3's repository)".into(),
        "pipe.scheduler = scheduler_from_export(path_to_this_file, pipe.scheduler.config)".into(),
        format!("image = pipe(num_inference_steps={n}).images[0]"),
    ]
}

/// Python lines that load this file into a pipeline `pipe`.
fn usage_lines(class: &str, key: &str) -> Vec<String> {
    vec![
        "import json".into(),
        format!("from diffusers import {class}"),
        "export = json.load(open(path_to_this_file))".into(),
        format!(
            "pipe.scheduler = {class}.from_config(pipe.scheduler.config, **export[\"scheduler_hint\"][\"config\"])"
        ),
        format!("image = pipe(prompt, {key}=export[\"{key}\"]).images[0]"),
    ]
}

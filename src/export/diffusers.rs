//! The diffusers target: a JSON object with `timesteps` (vp-discrete) or `sigmas` (otherwise),
//! a scheduler hint, usage lines and the notes.
//!
//! diffusers takes custom lists through `pipe(..., timesteps=...)` or `pipe(..., sigmas=...)`
//! (`retrieve_timesteps`). `timesteps` are N integer training timesteps, descending, without a
//! trailing 0; DPMSolverMultistepScheduler takes them (and no `sigmas`) and ends at σ = 0
//! (`final_sigmas_type="zero"`, data prediction only) or at the smallest training σ
//! (`"sigma_min"`). `sigmas` are N + 1 values ending in 0, taken by EulerDiscreteScheduler and
//! EDMEulerScheduler; UniPCMultistepScheduler takes them only with `use_flow_sigmas=True`
//! (flow-matching models), so for VP and EDM models a sigma list runs with Euler.
//!
//! Flow models take `sigmas` through `FlowMatchEulerDiscreteScheduler.set_timesteps(sigmas=…)`
//! (diffusers 0.42.1): N flow sigmas, one per model call, **without** a trailing 0 — it
//! appends the terminal 0 itself, calls the model at timesteps 1000·σ and steps
//! x + (σ_next − σ)·v (flow Euler, = DDIM). It applies the scheduler's `shift` (or, with
//! `use_dynamic_shifting`, the `mu` shift) to custom sigmas again, so the hint sets
//! `shift=1.0` and `use_dynamic_shifting=False`: the exported sigmas are the exact times.
//! `UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=1.0)` takes the same list and is
//! hinted when it reproduces the schedule (s3's UniPC-bh2 builder over these sigmas).

use super::{Exported, Plan, fmt_num, join};
use crate::error::{Result, S3Error};
use crate::noise::{BetaSchedule, DiscreteVp, FLOW_TRAIN_TIMESTEPS, FlowMatch, NoiseSchedule};
use crate::solver::spacing::UNIPC_FLOW_EPS;
use crate::solver::{ClassicSolver, Prediction, UniPcVariant};
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
    scheduler_hint: Hint,
    usage: Vec<String>,
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

/// `timesteps` for DPMSolverMultistepScheduler.
fn discrete(plan: &Plan, d: &DiscreteVp) -> Result<Exported> {
    let train = d.len();
    let mut notes = vec![plan.dropped_note("diffusers")];
    let mut details = Vec::new();

    // Model-call times → integer training timesteps k = round(t·N_train − 1).
    let mut ks = Vec::with_capacity(plan.n);
    let mut worst: Option<(usize, f64, usize, f64)> = None; // (i, t, k, |shift| in steps)
    let mut clamped = Vec::new();
    for (i, &t) in plan.call_times().iter().enumerate() {
        let x = t * train as f64 - 1.0;
        let r = x.round();
        let k = r.clamp(0.0, (train - 1) as f64) as usize;
        if r != k as f64 {
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
    let ends_at_sigma_min = !plan.schedule.denoises()
        && (plan.t_end() * train as f64 - 1.0).abs() < 1e-9
        && ks[plan.n - 1] > 0;
    let (final_type, t_final) = if ends_at_sigma_min {
        ("sigma_min", t_min)
    } else {
        ("zero", 0.0)
    };
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
    let chosen = match exact {
        Some(e) => Some(e),
        None => {
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
    notes.push(format!(
        "Use: pipe.scheduler = {class}.from_config(pipe.scheduler.config, **scheduler_hint[\"config\"]); pipe(prompt, timesteps=timesteps) (see `usage` in the file)."
    ));
    let (beta_start, beta_end) = match d.beta_schedule() {
        BetaSchedule::Linear => (0.0001, 0.02),
        BetaSchedule::ScaledLinear => (0.00085, 0.012),
    };
    let file = DiffusersFile {
        format: "s3-diffusers-export",
        version: 1,
        name: plan.schedule.name.clone(),
        noise_schedule: NoiseInfo {
            name: plan.ns.name(),
            num_train_timesteps: Some(train),
            beta_schedule: Some(d.beta_schedule().as_str()),
            beta_start: Some(beta_start),
            beta_end: Some(beta_end),
            shift: None,
        },
        timesteps: Some(ks),
        sigmas: None,
        scheduler_hint: Hint { class, config },
        usage,
        notes: notes.clone(),
    };
    Ok(Exported {
        text: serde_json::to_string_pretty(&file).expect("serialises") + "\n",
        notes,
    })
}

/// `sigmas` for EulerDiscreteScheduler (VP) or EDMEulerScheduler (EDM).
fn continuous(plan: &Plan) -> Result<Exported> {
    let sigmas = plan.sigmas(CONTEXT)?;
    let class = if matches!(plan.ns, NoiseSchedule::Edm) {
        "EDMEulerScheduler"
    } else {
        "EulerDiscreteScheduler"
    };
    let mut notes = vec![plan.dropped_note("diffusers")];
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
    notes.push(format!(
        "The sigmas are σ/α of the {} model-call times (the noise level of the equivalent VE process); {class} maps them to the pipeline model's own timesteps.",
        plan.ns.name()
    ));
    notes.push(format!(
        "Use: pipe.scheduler = {class}.from_config(pipe.scheduler.config); pipe(prompt, sigmas=sigmas) (see `usage` in the file)."
    ));
    let file = DiffusersFile {
        format: "s3-diffusers-export",
        version: 1,
        name: plan.schedule.name.clone(),
        noise_schedule: NoiseInfo::named(plan.ns.name()),
        timesteps: None,
        sigmas: Some(sigmas),
        scheduler_hint: Hint {
            class,
            config: Map::new(),
        },
        usage: usage_lines(class, "sigmas"),
        notes: notes.clone(),
    };
    Ok(Exported {
        text: serde_json::to_string_pretty(&file).expect("serialises") + "\n",
        notes,
    })
}

/// `sigmas` for FlowMatchEulerDiscreteScheduler (or UniPCMultistepScheduler with flow sigmas
/// when that reproduces the schedule): the N flow sigmas of the model calls, no trailing 0.
fn flow(plan: &Plan, f: &FlowMatch) -> Result<Exported> {
    let mut sigmas = plan.sigmas(CONTEXT)?;
    sigmas.pop(); // the terminal 0, which set_timesteps appends itself
    let mut times = plan.call_times().to_vec();
    times.push(0.0);
    let mut notes = vec![plan.dropped_note("diffusers")];
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
    notes.push(format!(
        "Use: pipe.scheduler = {class}.from_config(pipe.scheduler.config, **scheduler_hint[\"config\"]); pipe(prompt, sigmas=sigmas) (see `usage` in the file)."
    ));
    let file = DiffusersFile {
        format: "s3-diffusers-export",
        version: 1,
        name: plan.schedule.name.clone(),
        noise_schedule: NoiseInfo {
            num_train_timesteps: Some(FLOW_TRAIN_TIMESTEPS),
            shift: Some(f.shift()),
            ..NoiseInfo::named(plan.ns.name())
        },
        timesteps: None,
        sigmas: Some(sigmas),
        scheduler_hint: Hint { class, config },
        usage: flow_usage_lines(class),
        notes: notes.clone(),
    };
    Ok(Exported {
        text: serde_json::to_string_pretty(&file).expect("serialises") + "\n",
        notes,
    })
}

/// [`usage_lines`] for flow: the sigmas as a numpy array (UniPC's set_timesteps needs one).
fn flow_usage_lines(class: &str) -> Vec<String> {
    let mut lines = usage_lines(class, "sigmas");
    lines.insert(1, "import numpy as np".into());
    let last = lines.len() - 1;
    lines[last] = "image = pipe(prompt, sigmas=np.array(export[\"sigmas\"])).images[0]".into();
    lines
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

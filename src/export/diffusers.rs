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

use super::{Exported, Plan, fmt_num, join};
use crate::error::{Result, S3Error};
use crate::noise::{BetaSchedule, DiscreteVp, NoiseSchedule};
use crate::solver::{ClassicSolver, Prediction};
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
    /// N + 1 sigmas ending in 0 (continuous schedules).
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
        Plan::classic(solver, tool_times.clone(), true).map(|c| (p, order, solver, c))
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
    let exact = Plan::classic(ClassicSolver::Ddim, times, false).is_some_and(|c| plan.same_as(&c));
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
        noise_schedule: NoiseInfo {
            name: plan.ns.name(),
            num_train_timesteps: None,
            beta_schedule: None,
            beta_start: None,
            beta_end: None,
        },
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

//! The sigma-list targets: k-diffusion (a JSON list) and ComfyUI (a `ManualSigmas` string).
//!
//! Both take N + 1 descending noise levels σ/α ending in 0: σ/α at the N model-call times
//! t_0 … t_{N−1}, then 0. Every k-diffusion sampler steps through consecutive pairs, calls the
//! model at each σ but the final 0 and returns the x0 prediction on the step into 0.
//!
//! For `flow` the levels are the flow σ = t (1 at pure noise), as ComfyUI's flow models (SD3,
//! Flux: `CONST` model sampling, x = (1 − σ)·x0 + σ·ε) take them. There the Euler sampler's
//! d = (x − x̂0)/σ is the velocity ε − x0, so `sample_euler` is exactly s3's flow Euler (=
//! DDIM); the multistep samplers step in log σ as for a VE process, which on a flow model is
//! not s3's λ = log((1 − σ)/σ), so they are never claimed to reproduce an s3 schedule.

use super::{Exported, Plan, fmt_num, join, pred_name};
use crate::error::Result;
use crate::noise::NoiseSchedule;
use crate::solver::{ClassicSolver, Prediction};

/// The note on the per-step decisions a target drops, or `None` when it drops none.
///
/// `runs` is the target's solver as s3 builds it (with its `lower_order_final` rule), `None`
/// when s3 has no builder for it. When that solver over the schedule's *own* timesteps is the
/// schedule, every per-step decision survives the export, whatever else differs (rounded
/// timesteps, the end at σ = 0; those have their own notes), so saying "Dropped: …" would
/// contradict the note that the target runs the same solver.
pub(super) fn dropped_note(
    plan: &Plan,
    tool: &str,
    runs: Option<(ClassicSolver, bool)>,
) -> Option<String> {
    let kept = runs.is_some_and(|(solver, lower_order_final)| {
        plan.classic(solver, plan.schedule.timesteps.clone(), lower_order_final)
            .is_some_and(|c| plan.same_as(&c))
    });
    (!kept).then(|| plan.dropped_note(tool))
}

/// The k-diffusion sampler a schedule is closest to.
struct Sampler {
    /// k-diffusion's function.
    k_diffusion: &'static str,
    /// Extra keyword arguments for it (", eta=0").
    k_kwargs: &'static str,
    /// How to get it in ComfyUI.
    comfyui: String,
    /// What it computes, with its per-step orders over these sigmas.
    runs: String,
    /// Whether it reproduces the schedule exactly.
    exact: bool,
    /// The same solver as s3 builds it (k-diffusion's `lower_order_final` is off), when s3 has
    /// one: `None` for ComfyUI's UniPC and k-diffusion's third-order formula, and for the
    /// multistep samplers on flow models (they step in log σ, not in s3's λ).
    solver: Option<ClassicSolver>,
}

fn choose(plan: &Plan, with_unipc: bool) -> Sampler {
    let mut times = plan.call_times().to_vec();
    times.push(0.0);
    let n = plan.n;
    let exact_as = |solver: ClassicSolver| {
        plan.classic(solver, times.clone(), false)
            .filter(|c| plan.same_as(c))
    };
    if let Some(c) = exact_as(ClassicSolver::Ddim) {
        return Sampler {
            k_diffusion: "sample_euler",
            k_kwargs: "",
            comfyui: "KSamplerSelect sampler_name = \"euler\"".into(),
            runs: format!("Euler in σ (= DDIM), orders {}", Plan::orders_of(&c)),
            exact: true,
            solver: Some(ClassicSolver::Ddim),
        };
    }
    let flow = matches!(plan.ns, NoiseSchedule::Flow(_));
    if let Some(c) = exact_as(ClassicSolver::DpmSolverPp { order: 2 }).filter(|_| !flow) {
        return Sampler {
            k_diffusion: "sample_dpmpp_2m",
            k_kwargs: "",
            comfyui: "KSamplerSelect sampler_name = \"dpmpp_2m\"".into(),
            runs: format!(
                "DPM-Solver++(2M) (data prediction, midpoint form), orders {}",
                Plan::orders_of(&c)
            ),
            exact: true,
            solver: Some(ClassicSolver::DpmSolverPp { order: 2 }),
        };
    }
    // The measured best plain sampler over these sigmas, when the caller has one, else the
    // schedule's most common order.
    let order = match plan.context.prefer {
        Some(ClassicSolver::Ddim) => Some(1),
        Some(ClassicSolver::DpmSolverPp { order: 2 }) if !flow => Some(2),
        _ => None,
    };
    let majority_corrected = 2 * plan.corrector_steps.len() >= n && n > 1;
    if with_unipc && majority_corrected && order.is_none() {
        let bh2 = plan
            .schedule
            .steps
            .iter()
            .flat_map(|s| s.derivatives.iter())
            .any(|d| d.relaxation == crate::solver::Relaxation::UnipcBh2);
        let name = if bh2 { "uni_pc_bh2" } else { "uni_pc" };
        return Sampler {
            k_diffusion: "sample_dpmpp_2m",
            k_kwargs: "",
            comfyui: format!("KSamplerSelect sampler_name = \"{name}\""),
            runs: "ComfyUI's UniPC predictor-corrector (data prediction, its own order up to 3, warm-up and final-step rules)".into(),
            exact: false,
            solver: None,
        };
    }
    match order.unwrap_or(plan.order) {
        1 => Sampler {
            k_diffusion: "sample_euler",
            k_kwargs: "",
            comfyui: "KSamplerSelect sampler_name = \"euler\"".into(),
            runs: format!("Euler in σ (= DDIM), order 1 at all {n} steps"),
            exact: false,
            solver: Some(ClassicSolver::Ddim),
        },
        2 => {
            let orders = plan
                .classic(ClassicSolver::DpmSolverPp { order: 2 }, times, false)
                .map(|c| format!(", orders {}", Plan::orders_of(&c)))
                .unwrap_or_default();
            Sampler {
                k_diffusion: "sample_dpmpp_2m",
                k_kwargs: "",
                comfyui: "KSamplerSelect sampler_name = \"dpmpp_2m\"".into(),
                runs: format!("DPM-Solver++(2M) (data prediction, midpoint form){orders}"),
                exact: false,
                solver: (!flow).then_some(ClassicSolver::DpmSolverPp { order: 2 }),
            }
        }
        _ => {
            let orders = (0..n).map(|i| if i + 1 == n { 1 } else { (i + 1).min(3) });
            Sampler {
                k_diffusion: "sample_dpmpp_3m_sde",
                k_kwargs: ", eta=0",
                comfyui: "the SamplerDPMPP_3M_SDE node with eta = 0".into(),
                runs: format!(
                    "deterministic DPM-Solver++(3M) (data prediction, k-diffusion's own third-order formula), orders {}",
                    join(orders)
                ),
                exact: false,
                solver: None,
            }
        }
    }
}

/// The notes shared by both sigma targets.
fn common_notes(plan: &Plan, tool: &str, sampler: &Sampler, how: &str) -> Vec<String> {
    let mut notes: Vec<String> = dropped_note(plan, tool, sampler.solver.map(|s| (s, false)))
        .into_iter()
        .collect();
    if sampler.exact {
        notes.push(format!(
            "Nothing is lost for this schedule: {tool} runs this schedule exactly with {how}: {} over these sigmas.",
            sampler.runs
        ));
    } else {
        let mut s = format!(
            "{tool} will run instead: {how}, i.e. {} over these {} sigmas, with no per-step choices",
            sampler.runs,
            plan.n + 1
        );
        if plan.prediction == Prediction::Noise && plan.order > 1 {
            s.push_str(&format!(
                " (the schedule mostly expands the {} prediction; {tool}'s deterministic multistep samplers expand x0)",
                pred_name(Prediction::Noise)
            ));
        }
        s.push('.');
        notes.push(s);
    }
    notes.extend(plan.afs_note(tool));
    notes.extend(plan.end_note(tool));
    notes
}

/// For flow: what the sigmas are and how the tool's samplers read them.
fn flow_note(plan: &Plan, tool: &str) -> Option<String> {
    let NoiseSchedule::Flow(f) = plan.ns else {
        return None;
    };
    Some(format!(
        "These are flow sigmas σ = t (x = (1 − σ)·x0 + σ·ε; σ = 1 is pure noise), already shifted (shift {}): give them to a flow model as they are (ComfyUI's ModelSamplingSD3/Flux shift applies only to its own schedulers, not to a SIGMAS list). {tool}'s Euler sampler is exactly flow Euler on them (its d = (x − x̂0)/σ is the velocity); its multistep samplers step in log σ as for a VE process, not in s3's λ = log((1 − σ)/σ), so only Euler reproduces an s3 solver.",
        fmt_num(f.shift())
    ))
}

/// A JSON list of N + 1 descending sigmas ending in 0.
pub(super) fn k_diffusion(plan: &Plan) -> Result<Exported> {
    let sigmas = plan.sigmas("export --format k-diffusion")?;
    let sampler = choose(plan, false);
    let how = format!(
        "k_diffusion.sampling.{}{}",
        sampler.k_diffusion,
        sampler.k_kwargs.replace(", ", " with ")
    );
    let mut notes = common_notes(plan, "k-diffusion", &sampler, &how);
    notes.extend(flow_note(plan, "k-diffusion"));
    notes.push(k_diffusion_use(plan, &sampler));
    let text = serde_json::to_string(&sigmas).expect("floats serialise") + "\n";
    Ok(Exported { text, notes })
}

/// The k-diffusion "Use:" note: Python statements in backticks, each runnable as written
/// once `json`, `torch`, `k_diffusion`, `FILE` (this export), `shape` and `device` are bound,
/// plus for VP models a diffusers ε-prediction UNet `unet` and its scheduler's
/// `alphas_cumprod` (python/tests/test_export_usage.py runs the VP statements so).
///
/// VP: k-diffusion's `DiscreteEpsDDPMDenoiser` maps each σ to a (fractional) training index
/// and feeds the UNet x·c_in = x/√(1 + σ²), the model's own frame; `CompVisDenoiser` instead
/// expects a CompVis LatentDiffusion model (`apply_model`, `alphas_cumprod` attributes) and
/// fails on a diffusers UNet. The initial state is s3's x_T = z in the model's frame, which in
/// k-diffusion's frame x/α is z·√(1 + σ_0²) (not z·σ_0). EDM and flow start at z·σ_0 (s3's
/// x_T = t_0·z; flow's σ_0 = 1 is pure noise).
fn k_diffusion_use(plan: &Plan, sampler: &Sampler) -> String {
    let (model, scale) = match plan.ns {
        NoiseSchedule::Flow(_) => (
            "a denoiser `model(x, sigma)` returning x̂0 = x − σ·v for the flow model (k-diffusion ships none)".to_string(),
            "sigmas[0]",
        ),
        NoiseSchedule::Edm => (
            "the EDM model's denoiser D(x; σ) as `model(x, sigma)` (k-diffusion's own convention)".to_string(),
            "sigmas[0]",
        ),
        _ => (
            "`model = k_diffusion.external.DiscreteEpsDDPMDenoiser(lambda x, t, **kw: unet(x, t, **kw).sample, alphas_cumprod, quantize=False).to(device)` for a diffusers ε-prediction UNet `unet` and its scheduler's `alphas_cumprod` (DiscreteVDDPMDenoiser for v-prediction; not CompVisDenoiser, which expects a CompVis LatentDiffusion model)".to_string(),
            "(1 + sigmas[0] ** 2) ** 0.5",
        ),
    };
    format!(
        "Use: `sigmas = torch.tensor(json.load(open(FILE)), device=device)`; {model}; then `x = k_diffusion.sampling.{}(model, torch.randn(shape, device=device) * {scale}, sigmas{})`.",
        sampler.k_diffusion, sampler.k_kwargs,
    )
}

/// The `ManualSigmas` text: N + 1 comma-separated sigmas ending in 0.0, one line.
pub(super) fn comfyui(plan: &Plan) -> Result<Exported> {
    let sigmas = plan.sigmas("export --format comfyui")?;
    let sampler = choose(plan, true);
    let mut notes = common_notes(plan, "ComfyUI", &sampler, &sampler.comfyui);
    notes.extend(flow_note(plan, "ComfyUI"));
    notes.push(format!(
        "Use: paste the line into a ManualSigmas node and connect its SIGMAS to SamplerCustom (or SamplerCustomAdvanced) together with {}. The {} values mean {} steps.",
        sampler.comfyui,
        plan.n + 1,
        plan.n
    ));
    if let NoiseSchedule::VpDiscrete(d) = plan.ns {
        let train = d.len() as f64;
        let off = plan
            .call_times()
            .iter()
            .map(|&t| {
                let k = t * train - 1.0;
                (k - k.round()).abs()
            })
            .fold(0.0, f64::max);
        if off > 1e-6 {
            notes.push(format!(
                "ComfyUI evaluates discrete models at the training timestep whose σ is nearest (in log σ) to each sigma, while the solver uses the exact sigma; these model-call times lie up to {} training steps off that grid.",
                fmt_num(off)
            ));
        }
    }
    let text = sigmas
        .iter()
        .map(|&s| {
            let v = s.to_string();
            if v.contains('.') { v } else { v + ".0" }
        })
        .collect::<Vec<_>>()
        .join(", ")
        + "\n";
    Ok(Exported { text, notes })
}

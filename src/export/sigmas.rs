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
        };
    }
    let majority_corrected = 2 * plan.corrector_steps.len() >= n && n > 1;
    if with_unipc && majority_corrected {
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
        };
    }
    match plan.order {
        1 => Sampler {
            k_diffusion: "sample_euler",
            k_kwargs: "",
            comfyui: "KSamplerSelect sampler_name = \"euler\"".into(),
            runs: format!("Euler in σ (= DDIM), order 1 at all {n} steps"),
            exact: false,
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
            }
        }
    }
}

/// The notes shared by both sigma targets.
fn common_notes(plan: &Plan, tool: &str, sampler: &Sampler, how: &str) -> Vec<String> {
    let mut notes = vec![plan.dropped_note(tool)];
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
    notes.push(format!(
        "Use: sigmas = torch.tensor(json.load(open(FILE)), device=device); x = k_diffusion.sampling.{}(model, torch.randn(shape, device=device) * sigmas[0], sigmas{}) with a k-diffusion denoiser wrapper for the model ({}).",
        sampler.k_diffusion,
        sampler.k_kwargs,
        if matches!(plan.ns, NoiseSchedule::Flow(_)) {
            "for a flow model one that returns x̂0 = x − σ·v; k-diffusion ships none"
        } else {
            "e.g. CompVisDenoiser for VP models"
        },
    ));
    let text = serde_json::to_string(&sigmas).expect("floats serialise") + "\n";
    Ok(Exported { text, notes })
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

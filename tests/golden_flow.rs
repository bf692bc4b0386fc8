//! s3's flow-matching support against diffusers' flow schedulers.
//!
//! `tests/golden/flow_cases.json` holds the final samples that diffusers 0.42.1 produced with
//! `FlowMatchEulerDiscreteScheduler` (shift 1 and 3) and with `UniPCMultistepScheduler` /
//! `DPMSolverMultistepScheduler` on flow sigmas (`use_flow_sigmas=True`,
//! `prediction_type="flow_prediction"`), driven by the exact velocity of the golden Gaussian
//! mixture (`gmm.json`, α = 1 − t, σ = t) from the shared noise (`noise.npy`);
//! `scripts/golden_flow.py` generated them (CI does not run it). Each case is rebuilt here with
//! s3's flow spacing and solver builder on the `flow` noise schedule and run by the s3 sampler:
//! the time grid must equal diffusers' float32 sigmas, the per-step orders (and UniPC's
//! correctors) must be the ones diffusers ran, and the final samples must agree to 1e-4
//! relative (max |Δ| / max |diffusers|) — with the mixture itself (ε, and its x0 at t = 1) and
//! with a wrapper that hands the sampler the flow velocity (the `velocity` conversion).
//! The exports of two of these schedules must be the sigma lists the script checked
//! diffusers' `set_timesteps(sigmas=…)` accepts.

use s3::export::{ExportFormat, export};
use s3::io::npy::read_samples;
use s3::model::{Denoiser, GaussianMixture, Parameterization, TimePoint, eval_predictions};
use s3::noise::{FlowMatch, NoiseSchedule};
use s3::solver::{ClassicSolver, Sampler, SolverSchedule, Spacing, UniPcVariant};
use serde_json::Value;
use std::path::Path;

/// The agreement required on the final samples (scale-relative).
const LIMIT: f64 = 1e-4;

fn golden(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(p)
}

fn cases_file() -> Value {
    serde_json::from_str(&std::fs::read_to_string(golden("flow_cases.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// A mixture that answers with the flow velocity v = ε − x0 (a flow-matching network's output).
struct VelocityOf<'a>(&'a GaussianMixture);

impl Denoiser for VelocityOf<'_> {
    fn sample_shape(&self) -> &[usize] {
        self.0.sample_shape()
    }
    fn parameterization(&self) -> Parameterization {
        Parameterization::Velocity
    }
    fn forward(&self, x: &[f32], time: TimePoint, out: &mut [f32]) -> s3::Result<()> {
        let mut x0 = vec![0f32; x.len()];
        eval_predictions(self.0, x, time, out, &mut x0)?;
        for (o, d) in out.iter_mut().zip(x0) {
            *o -= d;
        }
        Ok(())
    }
}

/// The s3 solver, spacing and flow schedule of one diffusers case.
fn translate(case: &Value) -> (ClassicSolver, Spacing, NoiseSchedule) {
    let kw = &case["init_kwargs"];
    let (solver, spacing) = match case["scheduler"].as_str().unwrap() {
        "FlowMatchEulerDiscreteScheduler" => (ClassicSolver::Ddim, Spacing::DiffusersFlowEuler),
        "UniPCMultistepScheduler" => {
            assert_eq!(kw["solver_type"], "bh2");
            let order = kw["solver_order"].as_u64().unwrap() as usize;
            let variant = UniPcVariant::Bh2;
            (
                ClassicSolver::UniPc { variant, order },
                Spacing::DiffusersFlowUnipc,
            )
        }
        "DPMSolverMultistepScheduler" => {
            assert_eq!(kw["algorithm_type"], "dpmsolver++");
            assert_eq!(kw["solver_type"], "midpoint");
            let order = kw["solver_order"].as_u64().unwrap() as usize;
            (
                ClassicSolver::DpmSolverPp { order },
                Spacing::DiffusersFlowDpm,
            )
        }
        other => panic!("unexpected scheduler {other}"),
    };
    if solver != ClassicSolver::Ddim {
        assert_eq!(kw["use_flow_sigmas"], true);
        assert_eq!(kw["prediction_type"], "flow_prediction");
        assert_eq!(kw["final_sigmas_type"], "zero");
        assert_eq!(kw["lower_order_final"], true);
    }
    assert_eq!(kw["num_train_timesteps"].as_u64(), Some(1000));
    let shift = case["shift"].as_f64().unwrap();
    let ns = NoiseSchedule::Flow(FlowMatch::new(shift).unwrap());
    (solver, spacing, ns)
}

/// The s3 schedule of a case, checked against the grid, orders and correctors diffusers ran.
fn rebuild(case: &Value) -> (SolverSchedule, NoiseSchedule) {
    let name = case["name"].as_str().unwrap();
    let (solver, spacing, ns) = translate(case);
    let n = case["steps"].as_u64().unwrap() as usize;
    let ts = spacing.timesteps(&ns, n, ns.t_max(), 0.0).unwrap();
    assert_eq!(
        ts,
        floats(&case["sigmas"]),
        "{name}: time grid = diffusers' sigmas"
    );
    let schedule = solver.build_for(&ns, ts, true).unwrap();
    let orders: Vec<f64> = schedule.steps.iter().map(|s| s.order as f64).collect();
    assert_eq!(orders, floats(&case["orders"]), "{name}: per-step orders");
    if let Some(c) = case.get("corrector") {
        // diffusers' corrector[i] corrects the sample reached by step i − 1.
        let want: Vec<bool> = c.as_array().unwrap().iter().map(|b| b == true).collect();
        let mut got = vec![false];
        got.extend(
            schedule.steps[..n - 1]
                .iter()
                .map(|s| s.corrector.is_some()),
        );
        assert_eq!(got, want, "{name}: UniC steps");
    }
    (schedule, ns)
}

fn rel_diff(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
    diff / scale
}

#[test]
fn flow_builders_reproduce_diffusers_to_1e_4() {
    let file = cases_file();
    let mix = GaussianMixture::from_json_file(&golden("gmm.json")).unwrap();
    let velocity = VelocityOf(&mix);
    let noise = read_samples(&golden("noise.npy"), &[6]).unwrap();
    let cases = file["cases"].as_array().unwrap();
    assert!(cases.len() >= 16, "expected the full golden set");
    let (mut worst, mut worst_v) = (0.0f64, 0.0f64);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (schedule, ns) = rebuild(case);
        let want: Vec<f64> = case["samples"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(floats)
            .collect();
        assert_eq!(want.len(), noise.data.len());
        let direct = Sampler::new(&mix, &ns)
            .sample(&schedule, &noise.data)
            .unwrap();
        let via_v = Sampler::new(&velocity, &ns)
            .sample(&schedule, &noise.data)
            .unwrap();
        let (rel, rel_v) = (
            rel_diff(&direct.samples, &want),
            rel_diff(&via_v.samples, &want),
        );
        eprintln!("{name:32} max|Δ|/max|x| = {rel:.2e} (velocity model {rel_v:.2e})");
        worst = worst.max(rel);
        worst_v = worst_v.max(rel_v);
        assert!(rel < LIMIT, "{name}: relative difference {rel:e}");
        assert!(rel_v < LIMIT, "{name}: velocity model: {rel_v:e}");
    }
    eprintln!(
        "worst relative difference over {} cases: {worst:.2e} (velocity model {worst_v:.2e})",
        cases.len()
    );
}

/// s3's diffusers export of two golden schedules is the list the script passed to
/// `set_timesteps(sigmas=…)` — accepted there, and sampling to the same result as the case.
#[test]
fn exported_flow_sigmas_are_what_diffusers_accepted() {
    let file = cases_file();
    let checks = &file["export_checks"];
    let case = |name: &str| {
        file["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    for (key, class, shift_key) in [
        (
            "flow_match_euler_sigmas",
            "FlowMatchEulerDiscreteScheduler",
            "shift",
        ),
        ("unipc_flow_sigmas", "UniPCMultistepScheduler", "flow_shift"),
    ] {
        let check = &checks[key];
        assert_eq!(check["accepted"], true, "{key}");
        assert_eq!(
            check["max_abs_diff_to_that_case"].as_f64(),
            Some(0.0),
            "{key}"
        );
        let (schedule, ns) = rebuild(&case(check["same_samples_as"].as_str().unwrap()));
        let e = export(&schedule, &ns, ExportFormat::Diffusers).unwrap();
        let v: Value = serde_json::from_str(&e.text).unwrap();
        assert_eq!(floats(&v["sigmas"]), floats(&check["sigmas_in"]), "{key}");
        assert_eq!(v["scheduler_hint"]["class"], class, "{key}");
        let cfg = &v["scheduler_hint"]["config"];
        assert_eq!(cfg[shift_key].as_f64(), Some(1.0), "{key}: {cfg}");
        assert_eq!(cfg["use_dynamic_shifting"], false, "{key}");
        assert!(
            e.notes.iter().any(|n| n.contains("Nothing is lost")),
            "{key}: {:?}",
            e.notes
        );
    }
    // Without shift = 1 diffusers shifts the exported sigmas a second time, and a trailing 0
    // would add a step: the reasons for the export's shape.
    let reshift = &checks["flow_match_euler_shift3_reshifts"];
    assert_ne!(
        floats(&reshift["scheduler_sigmas"])[1],
        floats(&reshift["sigmas_in"])[1]
    );
    assert_eq!(
        checks["flow_match_euler_trailing_zero"]["num_inference_steps"].as_u64(),
        Some(9)
    );
}

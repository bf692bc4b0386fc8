//! s3's classic-solver builders against diffusers' own schedulers.
//!
//! `tests/golden/` holds final samples that diffusers 0.42.1 (`DPMSolverMultistepScheduler`,
//! `UniPCMultistepScheduler`) produced from the same Gaussian-mixture ε and the same noise;
//! `scripts/golden_diffusers.py` generated them (CI does not run it). Each case is rebuilt here
//! from its diffusers configuration with s3's spacing and solver builders and run by the s3
//! sampler; the final samples must agree to 1e-4 relative (max |Δ| / max |diffusers|).

use s3::io::npy::read_samples;
use s3::model::GaussianMixture;
use s3::noise::{BetaSchedule, DiscreteVp, NoiseSchedule};
use s3::solver::{ClassicSolver, Sampler, Spacing, UniPcVariant};
use serde_json::Value;
use std::path::Path;

fn golden(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(p)
}

/// The s3 solver, spacing and final time equivalent to one diffusers configuration.
fn translate(case: &Value) -> (ClassicSolver, Spacing, BetaSchedule, f64) {
    let kw = &case["init_kwargs"];
    let order = kw["solver_order"].as_u64().unwrap() as usize;
    let solver = match case["scheduler"].as_str().unwrap() {
        "DPMSolverMultistepScheduler" => {
            assert_eq!(kw["solver_type"], "midpoint");
            match kw["algorithm_type"].as_str().unwrap() {
                "dpmsolver++" => ClassicSolver::DpmSolverPp { order },
                "dpmsolver" => ClassicSolver::DpmSolver { order },
                other => panic!("unexpected algorithm {other}"),
            }
        }
        "UniPCMultistepScheduler" => ClassicSolver::UniPc {
            order,
            variant: match kw["solver_type"].as_str().unwrap() {
                "bh1" => UniPcVariant::Bh1,
                "bh2" => UniPcVariant::Bh2,
                other => panic!("unexpected UniPC variant {other}"),
            },
        },
        other => panic!("unexpected scheduler {other}"),
    };
    let spacing = match kw["timestep_spacing"].as_str().unwrap() {
        "linspace" => Spacing::DiffusersLinspace,
        "leading" => Spacing::DiffusersLeading {
            offset: kw["steps_offset"].as_u64().unwrap() as usize,
        },
        "trailing" => Spacing::DiffusersTrailing,
        other => panic!("unexpected spacing {other}"),
    };
    let betas = match kw["beta_schedule"].as_str().unwrap() {
        "linear" => {
            assert_eq!(kw["beta_start"].as_f64(), Some(0.0001));
            assert_eq!(kw["beta_end"].as_f64(), Some(0.02));
            BetaSchedule::Linear
        }
        "scaled_linear" => {
            assert_eq!(kw["beta_start"].as_f64(), Some(0.00085));
            assert_eq!(kw["beta_end"].as_f64(), Some(0.012));
            BetaSchedule::ScaledLinear
        }
        other => panic!("unexpected betas {other}"),
    };
    let t_end = match kw["final_sigmas_type"].as_str().unwrap() {
        "zero" => 0.0,
        "sigma_min" => 1.0 / 1000.0,
        other => panic!("unexpected final sigma {other}"),
    };
    (solver, spacing, betas, t_end)
}

#[test]
fn classic_builders_reproduce_diffusers_to_1e_4() {
    let cases: Value =
        serde_json::from_str(&std::fs::read_to_string(golden("cases.json")).unwrap()).unwrap();
    let mix = GaussianMixture::from_json_file(&golden("gmm.json")).unwrap();
    let noise = read_samples(&golden("noise.npy"), &[6]).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 20, "expected the full golden set");
    let mut worst = 0.0f64;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (solver, spacing, betas, t_end) = translate(case);
        let ns = NoiseSchedule::VpDiscrete(DiscreteVp::new(betas, 1000));
        let n = case["steps"].as_u64().unwrap() as usize;
        let ts = spacing.timesteps(&ns, n, 1.0, t_end).unwrap();
        // Same integer timesteps as diffusers (k ↔ t = (k + 1)/1000).
        let ks: Vec<u64> = ts[..n]
            .iter()
            .map(|t| (t * 1000.0).round() as u64 - 1)
            .collect();
        let want: Vec<u64> = case["timesteps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(ks, want, "{name}: timesteps");
        let schedule = solver.build(ts, true).unwrap();
        let orders: Vec<u64> = schedule.steps.iter().map(|s| s.order as u64).collect();
        let want: Vec<u64> = case["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(orders, want, "{name}: per-step orders");
        let out = Sampler::new(&mix, &ns)
            .sample(&schedule, &noise.data)
            .unwrap();
        let expected = read_samples(&golden(case["file"].as_str().unwrap()), &[6]).unwrap();
        let scale = expected
            .data
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs() as f64));
        let diff = out
            .samples
            .iter()
            .zip(&expected.data)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs() as f64));
        let rel = diff / scale;
        eprintln!("{name:32} max|Δ|/max|x| = {rel:.2e}");
        worst = worst.max(rel);
        assert!(
            rel < 1e-4,
            "{name}: relative difference {rel:e} to diffusers"
        );
    }
    eprintln!(
        "worst relative difference over {} cases: {worst:.2e}",
        cases.len()
    );
}

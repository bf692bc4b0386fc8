//! The `flow` noise schedule end to end: schedules that start at pure noise (t = 1, α = 0,
//! λ = −∞) are run without a non-finite value — every classic solver × flow spacing, and the
//! random, mutated, crossed and repaired candidates of both shipped search spaces; a schedule
//! that puts t = 1 into a finite difference is refused with the step and rule; the reference
//! ODE solve starts at t = 1 and agrees with a fine solver run; and the CLI runs baselines,
//! MSE and a search on flow, with `--shift` and a dataset file's `{"name": "flow", ...}`.

mod common;
use common::{fails, ok};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use s3::model::{Denoiser, GaussianMixture};
use s3::noise::{FlowMatch, NoiseSchedule};
use s3::solver::reference::reference_solve;
use s3::solver::{ClassicSolver, Prediction, Sampler, SolverSchedule, Spacing};
use s3::space::{Candidates, SearchSpace};
use std::path::Path;

/// The golden 6-d, 3-component mixture.
fn mixture() -> GaussianMixture {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gmm.json");
    GaussianMixture::from_json_file(&p).unwrap()
}

fn flows() -> Vec<NoiseSchedule> {
    [1.0, 3.0]
        .into_iter()
        .map(|s| NoiseSchedule::Flow(FlowMatch::new(s).unwrap()))
        .collect()
}

fn noise(rows: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..rows * dim)
        .map(|_| {
            let z: f64 = StandardNormal.sample(&mut rng);
            z as f32
        })
        .collect()
}

/// Runs `s` in f32 and checks that every sample value is finite.
fn runs_finite(mix: &GaussianMixture, ns: &NoiseSchedule, s: &SolverSchedule, what: &str) {
    let z = noise(64, mix.dim(), 7);
    let out = Sampler::new(mix, ns)
        .with_data_mean(mix.data_mean())
        .sample(s, &z)
        .unwrap_or_else(|e| panic!("{what}: {e}\n{s:?}"));
    assert!(
        out.samples.iter().all(|v| v.is_finite()),
        "{what}: non-finite samples\n{s:?}"
    );
}

#[test]
fn every_classic_solver_and_spacing_runs_from_pure_noise() {
    let mix = mixture();
    for ns in flows() {
        for nfe in [2, 3, 5, 8] {
            let mut built = 0;
            for solver in ClassicSolver::all() {
                for spacing in Spacing::all_for(&ns) {
                    // The end times the search's seeds and `s3 baselines` use.
                    let t_end = match (spacing.is_discrete(), solver) {
                        (true, ClassicSolver::DpmSolver { .. }) | (false, _) => ns.t_min(),
                        (true, _) => 0.0,
                    };
                    let what = format!(
                        "{} {} nfe {nfe} {}",
                        solver.label(),
                        spacing.label(),
                        ns.name()
                    );
                    let Ok(ts) = spacing.timesteps(&ns, nfe, ns.t_max(), t_end) else {
                        // Only flow-euler with shift 1 ends at t_min itself (no room for it).
                        assert!(
                            spacing == Spacing::DiffusersFlowEuler && t_end > 0.0,
                            "{what}"
                        );
                        continue;
                    };
                    let s = solver
                        .build_for(&ns, ts, true)
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    s.validate_on(&ns).unwrap();
                    assert_eq!(s.nfe, nfe, "{what}");
                    runs_finite(&mix, &ns, &s, &what);
                    built += 1;
                }
            }
            assert!(built >= 9 * 6, "{} nfe {nfe}: {built}", ns.name());
        }
    }
}

#[test]
fn search_space_candidates_validate_and_sample_finitely_on_flow() {
    let mix = mixture();
    let mut rng = StdRng::seed_from_u64(11);
    for space_name in ["usf", "quick"] {
        let space = SearchSpace::load(space_name).unwrap();
        for ns in flows() {
            for nfe in [1, 3, 5, 8] {
                let ops = Candidates::new(&space, &ns, nfe).unwrap();
                let mut pool: Vec<SolverSchedule> = (0..30).map(|_| ops.random(&mut rng)).collect();
                // Classic schedules built without regard for the pure-noise start (t_0 in
                // their derivatives and correctors) are repaired into valid ones.
                for solver in ClassicSolver::all() {
                    let ts = Spacing::TimeUniform
                        .timesteps(&ns, nfe, 1.0, ns.t_min())
                        .unwrap();
                    let plain = solver.build(ts, true).unwrap();
                    pool.push(ops.repair(&plain, &mut rng));
                }
                for round in 0..120 {
                    let a = &pool[round % pool.len()];
                    let b = &pool[(round * 7 + 3) % pool.len()];
                    let child = match ops.crossover(a, b, &mut rng) {
                        Some(c) if round % 2 == 0 => c,
                        _ => ops.mutate(a, &mut rng),
                    };
                    pool.push(child);
                }
                let mut higher = 0;
                for s in &pool {
                    let what = format!("{space_name} {} nfe {nfe}", ns.name());
                    s.validate_on(&ns)
                        .unwrap_or_else(|e| panic!("{what}: {e}\n{s:?}"));
                    assert_eq!(s.nfe, nfe, "{what}");
                    assert_eq!(s.timesteps[0], 1.0, "{what}: starts at pure noise");
                    higher += usize::from(s.steps.iter().any(|x| x.order > 1));
                    runs_finite(&mix, &ns, s, &what);
                }
                if nfe >= 3 {
                    assert!(higher > pool.len() / 2, "{space_name}: mostly first order");
                }
            }
        }
    }
}

#[test]
fn pure_noise_in_a_finite_difference_is_refused_with_the_step_and_rule() {
    let ns = &flows()[1];
    let ts = Spacing::TimeUniform
        .timesteps(ns, 4, 1.0, ns.t_min())
        .unwrap();
    let dpm = ClassicSolver::DpmSolverPp { order: 2 }
        .build(ts.clone(), true)
        .unwrap();
    let e = dpm.validate_on(ns).unwrap_err().to_string();
    assert!(
        e.contains("step 1: predictor: derivative 1 uses point -2") && e.contains("pure noise"),
        "{e}"
    );
    let unipc = ClassicSolver::UniPc {
        variant: s3::solver::UniPcVariant::Bh2,
        order: 2,
    }
    .build(ts.clone(), true)
    .unwrap();
    let e = unipc.validate_on(ns).unwrap_err().to_string();
    assert!(e.contains("step 0: a corrector"), "{e}");
    // The sampler refuses it the same way, before any model call.
    let mix = mixture();
    let e = Sampler::new(&mix, ns)
        .sample(&dpm, &noise(2, 6, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("step 1") && e.contains("pure noise"), "{e}");
    // An ε-only model has no x0 at t = 1: the error says what it would need.
    struct EpsOnly;
    impl Denoiser for EpsOnly {
        fn sample_shape(&self) -> &[usize] {
            &[6]
        }
        fn parameterization(&self) -> s3::model::Parameterization {
            s3::model::Parameterization::Eps
        }
        fn forward(&self, x: &[f32], _t: s3::model::TimePoint, out: &mut [f32]) -> s3::Result<()> {
            out.copy_from_slice(x);
            Ok(())
        }
    }
    let ddim = ClassicSolver::Ddim.build_for(ns, ts, true).unwrap();
    let e = Sampler::new(&EpsOnly, ns)
        .sample(&ddim, &noise(2, 6, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("x0") && e.contains("velocity"), "{e}");
}

/// The first step from t = 1 is the exact finite limit, in both predictions: DDIM's first
/// step gives x_1 = σ_1·z + α_1·E[x0] for every sample, whatever the prediction type.
#[test]
fn the_first_step_from_pure_noise_is_the_exact_limit() {
    let mix = mixture();
    let ns = &flows()[1];
    let mean = mix.data_mean();
    let z = noise(8, 6, 3);
    for prediction in [Prediction::Noise, Prediction::Data] {
        let mut s = ClassicSolver::Ddim
            .build_for(ns, vec![1.0, 0.6], true)
            .unwrap();
        s.steps[0].prediction = prediction;
        let out = Sampler::new(&mix, ns)
            .sample_f64(&s, &z.iter().map(|&v| v as f64).collect::<Vec<_>>())
            .unwrap();
        for (i, x) in out.samples.iter().enumerate() {
            let want = 0.6 * z[i] as f64 + 0.4 * mean[i % 6];
            assert!((x - want).abs() < 1e-14, "{prediction:?}: {x} vs {want}");
        }
    }
}

/// The reference solve starts at t = 1 (in u = e^λ up to λ = 0, then in λ), and the sampler's
/// solves from t = 1 converge to it: DPM-Solver++(3M) (diffusers' form, second order in the
/// limit) with 4× the steps is ≥ 12× closer (measured ×25 for 200 → 800 logSNR steps).
#[test]
fn solves_from_pure_noise_converge_to_the_reference() {
    let mix = mixture();
    for ns in flows() {
        let z = noise(16, 6, 5);
        let x1: Vec<f64> = z.iter().map(|&v| v as f64).collect();
        let t_end = ns.t_min();
        let r = reference_solve(&mix, &ns, &x1, 1.0, t_end, 1e-9, 1 << 14).unwrap();
        assert!(r.x.iter().all(|v| v.is_finite()));
        let scale = r.x.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let error = |steps: usize| {
            let ts = Spacing::LogSnr.timesteps(&ns, steps, 1.0, t_end).unwrap();
            let s = ClassicSolver::DpmSolverPp { order: 3 }
                .build_for(&ns, ts, false)
                .unwrap();
            let out = Sampler::new(&mix, &ns).sample_f64(&s, &x1).unwrap();
            out.samples
                .iter()
                .zip(&r.x)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
                / scale
        };
        let (coarse, fine) = (error(200), error(800));
        eprintln!(
            "{} (shift {}): reference {} steps (est. error {:.1e}); DPM-Solver++(3M) logSNR × 200: {coarse:.2e}, × 800: {fine:.2e}",
            ns.name(),
            match ns {
                NoiseSchedule::Flow(f) => f.shift(),
                _ => unreachable!(),
            },
            r.steps,
            r.estimated_error
        );
        assert!(fine < 1e-4 && coarse / fine > 12.0, "{coarse:e} → {fine:e}");
    }
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

#[test]
fn baselines_run_on_flow_from_the_cli_and_dataset_files() {
    let out: serde_json::Value = serde_json::from_str(&ok(&[
        "baselines",
        "--dataset",
        "toy2d",
        "--noise-schedule",
        "flow",
        "--shift",
        "3",
        "--nfe",
        "5",
        "--samples",
        "200",
        "--json",
    ]))
    .unwrap();
    assert_eq!(out["noise_schedule"], "flow (shift 3)");
    let rows = out["results"].as_array().unwrap();
    assert_eq!(rows.len(), 9 * 7, "every solver × the 7 flow spacings");
    for r in rows {
        assert!(r["value"].as_f64().is_some_and(f64::is_finite), "{r}");
    }
    // MSE to the reference ODE solve, which starts at t = 1.
    let mse: serde_json::Value = serde_json::from_str(&ok(&[
        "baselines",
        "--dataset",
        "toy2d",
        "--noise-schedule",
        "flow",
        "--nfe",
        "4",
        "--samples",
        "50",
        "--metric",
        "mse",
        "--json",
    ]))
    .unwrap();
    let best = mse["results"][0]["value"].as_f64().unwrap();
    assert!(best.is_finite() && best < 0.1, "{best}");
    // A mixture file may name the schedule with its shift.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mix.json");
    std::fs::write(
        &file,
        r#"{"shape": [2], "weights": [0.5, 0.5], "means": [[1, 0], [-1, 0]], "stds": [0.1, 0.2],
            "noise_schedule": {"name": "flow", "shift": 2.5}, "samples": 100}"#,
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let out: serde_json::Value =
        serde_json::from_str(&ok(&["baselines", "--dataset", f, "--nfe", "3", "--json"])).unwrap();
    assert_eq!(out["noise_schedule"], "flow (shift 2.5)");
    // Bad shifts name the flag or the field.
    let e = fails(&[
        "baselines",
        "--dataset",
        "toy2d",
        "--shift",
        "3",
        "--nfe",
        "3",
    ]);
    assert!(
        e.contains("--shift applies only to --noise-schedule flow"),
        "{e}"
    );
    let e = fails(&[
        "baselines",
        "--dataset",
        "toy2d",
        "--noise-schedule",
        "flow",
        "--shift=-2",
        "--nfe",
        "3",
    ]);
    assert!(e.contains("--shift") && e.contains("shift"), "{e}");
    std::fs::write(
        &file,
        r#"{"shape": [2], "weights": [1.0], "means": [[1, 0]], "stds": [0.1],
            "noise_schedule": {"name": "vp-linear", "shift": 2.5}}"#,
    )
    .unwrap();
    let e = fails(&["baselines", "--dataset", f, "--nfe", "3"]);
    assert!(
        e.contains("noise_schedule") && e.contains("only the flow"),
        "{e}"
    );
}

#[test]
fn a_search_runs_on_flow_in_both_spaces_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    for space in ["usf", "quick"] {
        let run = format!("flow-{space}");
        ok(&[
            "search",
            "--dataset",
            "toy2d",
            "--noise-schedule",
            "flow",
            "--shift",
            "3",
            "--nfe",
            "4",
            "--budget",
            "90",
            "--samples",
            "200",
            "--stage-size",
            "15",
            "--space",
            space,
            "--store",
            store,
            "--run-id",
            &run,
            "--quiet",
            "--seed",
            "2",
        ]);
        let best = Path::new(store).join(format!("runs/{run}/best.json"));
        let s = SolverSchedule::load(&best).unwrap();
        s.validate_on(&flows()[1]).unwrap();
        let text = std::fs::read_to_string(&best).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        // The informational sigmas are the flow σ = t (finite at t = 1).
        assert_eq!(v["sigmas"][0].as_f64(), Some(s.timesteps[0]));
        for format in ["s3", "diffusers", "k-diffusion", "comfyui"] {
            let out = ok(&["export", &run, "--format", format, "--store", store]);
            assert!(!out.is_empty(), "{format}");
        }
        let d: serde_json::Value = serde_json::from_str(&ok(&[
            "export",
            &run,
            "--format",
            "diffusers",
            "--store",
            store,
        ]))
        .unwrap();
        assert_eq!(d["sigmas"].as_array().unwrap().len(), s.steps.len());
    }
}

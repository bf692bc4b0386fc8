//! `s3::export`: the file conventions of each target and the notes on what they cannot express.

mod common;
use s3::export::{ExportFormat, Exported, export};
use s3::names::Named;
use s3::noise::{BetaSchedule, DiscreteVp, FlowMatch, NoiseSchedule};
use s3::solver::{Afs, ClassicSolver, SolverSchedule, Spacing};
use serde_json::Value;

fn discrete() -> NoiseSchedule {
    NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::Linear, 1000))
}

fn all_schedules() -> Vec<NoiseSchedule> {
    vec![
        NoiseSchedule::vp_linear(),
        discrete(),
        NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::ScaledLinear, 1000)),
        NoiseSchedule::vp_cosine(),
        NoiseSchedule::Edm,
    ]
}

/// A schedule using every per-step feature (README's example), optionally with AFS.
fn fancy(afs: Afs) -> SolverSchedule {
    let s: SolverSchedule = serde_json::from_str(common::README_SCHEDULE).unwrap();
    let s = SolverSchedule::new(afs, s.timesteps, s.steps).with_name("example");
    s.validate().unwrap();
    s
}

fn karras(ns: &NoiseSchedule, n: usize, denoise: bool) -> Vec<f64> {
    let mut ts = Spacing::Karras { rho: 7.0 }
        .timesteps(ns, n, ns.t_max(), ns.t_min())
        .unwrap();
    if denoise {
        ts[n] = 0.0;
    }
    ts
}

fn run(s: &SolverSchedule, ns: &NoiseSchedule, f: ExportFormat) -> Exported {
    export(s, ns, f).unwrap_or_else(|e| panic!("{}: {e}", f.as_str()))
}

fn json(e: &Exported) -> Value {
    serde_json::from_str(&e.text).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn has(notes: &[String], needle: &str) -> bool {
    notes.iter().any(|n| n.contains(needle))
}

/// A JSON list of strings (the `usage` lines).
fn lines(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

fn expected_sigmas(s: &SolverSchedule, ns: &NoiseSchedule) -> Vec<f64> {
    let n = s.steps.len();
    // σ/α; EDM's is t itself, exactly.
    let ve = |t: f64| {
        if *ns == NoiseSchedule::Edm {
            t
        } else {
            ns.ve_sigma(t)
        }
    };
    let mut v: Vec<f64> = s.timesteps[..n].iter().map(|&t| ve(t)).collect();
    v.push(0.0);
    v
}

/// N + 1 strictly decreasing sigmas ending in exactly 0, equal to σ/α at the model-call times
/// (to 1e-15 relative: serde_json's default float parser may be off by an ulp).
fn assert_sigma_list(sigmas: &[f64], s: &SolverSchedule, ns: &NoiseSchedule) {
    let n = s.steps.len();
    assert_eq!(sigmas.len(), n + 1, "N + 1 sigmas for N steps");
    assert_eq!(*sigmas.last().unwrap(), 0.0, "ends in exactly 0");
    assert!(sigmas.windows(2).all(|w| w[1] < w[0]), "{sigmas:?}");
    for (got, want) in sigmas.iter().zip(expected_sigmas(s, ns)) {
        assert!((got - want).abs() <= 1e-15 * want, "{got} vs {want}");
    }
}

#[test]
fn diffusers_linspace_schedule_exports_the_integer_timesteps_exactly() {
    let ns = discrete();
    let ts = Spacing::DiffusersLinspace
        .timesteps(&ns, 5, 1.0, 0.0)
        .unwrap();
    let s = ClassicSolver::DpmSolverPp { order: 2 }
        .build(ts, true)
        .unwrap();
    let e = run(&s, &ns, ExportFormat::Diffusers);
    let v = json(&e);
    let ks: Vec<u64> = v["timesteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(ks, [999, 799, 599, 400, 200]);
    assert!(v.get("sigmas").is_none());
    let hint = &v["scheduler_hint"];
    assert_eq!(hint["class"], "DPMSolverMultistepScheduler");
    assert_eq!(hint["config"]["algorithm_type"], "dpmsolver++");
    assert_eq!(hint["config"]["solver_order"], 2);
    assert_eq!(hint["config"]["final_sigmas_type"], "zero");
    assert_eq!(hint["config"]["use_karras_sigmas"], false);
    assert_eq!(v["noise_schedule"]["beta_schedule"], "linear");
    assert!(
        lines(&v["usage"])
            .iter()
            .any(|l| { l == "image = pipe(prompt, timesteps=export[\"timesteps\"]).images[0]" })
    );
    // DDPMPipeline takes no timesteps=: its lines pin them through s3schedule.
    assert_eq!(
        lines(&v["usage_ddpm_pipeline"]),
        [
            "from s3schedule.diffusers import scheduler_from_export  # pip install ./python (s3's repository)",
            "pipe.scheduler = scheduler_from_export(path_to_this_file, pipe.scheduler.config)",
            "image = pipe(num_inference_steps=5).images[0]",
        ]
    );
    assert!(
        has(&e.notes, "In DDPMPipeline") && has(&e.notes, "`usage_ddpm_pipeline`"),
        "{:?}",
        e.notes
    );
    assert!(!has(&e.notes, "rounded"), "{:?}", e.notes);
    assert!(has(&e.notes, "runs this schedule exactly"), "{:?}", e.notes);
    // Exact: nothing is dropped, so no note says something is.
    assert!(!has(&e.notes, "cannot express per-step solver decisions"));
    assert!(!has(&e.notes, "Dropped"), "{:?}", e.notes);
    assert!(!has(&e.notes, "without denoising"));
    // The notes are in the file too.
    assert_eq!(v["notes"].as_array().unwrap().len(), e.notes.len());
}

#[test]
fn diffusers_third_order_and_noise_prediction_settings() {
    let ns = discrete();
    // DPM-Solver++(3M) is recognised as solver_order 3 even though order 3 is not the most
    // common order at N = 5 (warm-up and lower_order_final).
    let ts = Spacing::DiffusersLinspace
        .timesteps(&ns, 5, 1.0, 0.0)
        .unwrap();
    let s = ClassicSolver::DpmSolverPp { order: 3 }
        .build(ts, true)
        .unwrap();
    let e = run(&s, &ns, ExportFormat::Diffusers);
    assert_eq!(json(&e)["scheduler_hint"]["config"]["solver_order"], 3);
    assert!(has(&e.notes, "runs this schedule exactly"), "{:?}", e.notes);

    // Noise prediction ending at training timestep 0: dpmsolver with sigma_min, exact.
    let ts = Spacing::DiffusersLinspace
        .timesteps(&ns, 6, 1.0, 0.001)
        .unwrap();
    let s = ClassicSolver::DpmSolver { order: 2 }
        .build(ts, true)
        .unwrap();
    let e = run(&s, &ns, ExportFormat::Diffusers);
    let c = &json(&e)["scheduler_hint"]["config"];
    assert_eq!(c["algorithm_type"], "dpmsolver");
    assert_eq!(c["final_sigmas_type"], "sigma_min");
    assert!(has(&e.notes, "runs this schedule exactly"), "{:?}", e.notes);
    assert!(!has(&e.notes, "without denoising"), "{:?}", e.notes);

    // Noise prediction denoising to 0: diffusers' "dpmsolver" cannot end at σ = 0.
    let ts = Spacing::DiffusersLinspace
        .timesteps(&ns, 6, 1.0, 0.0)
        .unwrap();
    let s = ClassicSolver::DpmSolver { order: 2 }
        .build(ts, true)
        .unwrap();
    let e = run(&s, &ns, ExportFormat::Diffusers);
    assert_eq!(
        json(&e)["scheduler_hint"]["config"]["algorithm_type"],
        "dpmsolver++"
    );
    assert!(has(&e.notes, "cannot end at σ = 0"), "{:?}", e.notes);
    assert!(has(&e.notes, "will run instead"), "{:?}", e.notes);
}

#[test]
fn off_grid_discrete_schedule_is_rounded_with_a_note() {
    let ns = discrete();
    let ts = vec![1.0, 0.7503, 0.5, 0.2502, 0.0];
    let s = ClassicSolver::DpmSolverPp { order: 2 }
        .build(ts, true)
        .unwrap();
    let e = run(&s, &ns, ExportFormat::Diffusers);
    let ks: Vec<u64> = json(&e)["timesteps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(ks, [999, 749, 499, 249]);
    assert!(
        has(&e.notes, "rounded") && has(&e.notes, "0.3 training steps"),
        "{:?}",
        e.notes
    );
    assert!(has(&e.notes, "will run instead"), "{:?}", e.notes);
    // ComfyUI quantises discrete models' timesteps: said for off-grid times.
    let c = run(&s, &ns, ExportFormat::ComfyUi);
    assert!(has(&c.notes, "nearest"), "{:?}", c.notes);
}

#[test]
fn discrete_timesteps_that_round_together_are_an_error() {
    let ns = discrete();
    let s = ClassicSolver::Ddim
        .build(vec![1.0, 0.5004, 0.5001, 0.0], true)
        .unwrap();
    let e = export(&s, &ns, ExportFormat::Diffusers)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("both map to training timestep 499") && e.contains("k-diffusion"),
        "{e}"
    );
    // The sigma targets have no grid and still work.
    run(&s, &ns, ExportFormat::KDiffusion);
}

#[test]
fn discrete_timesteps_are_n_descending_integers_in_range_without_trailing_zero() {
    let ns = discrete();
    for n in [1, 2, 5, 10, 20] {
        for denoise in [false, true] {
            let s = ClassicSolver::DpmSolverPp { order: 2 }
                .build(karras(&ns, n, denoise), true)
                .unwrap();
            let v = json(&run(&s, &ns, ExportFormat::Diffusers));
            let ks: Vec<u64> = v["timesteps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap())
                .collect();
            assert_eq!(ks.len(), n);
            assert!(ks.iter().all(|&k| k <= 999));
            assert!(ks.windows(2).all(|w| w[1] < w[0]), "{ks:?}");
            if n > 1 {
                assert_ne!(*ks.last().unwrap(), 0);
            }
        }
    }
}

#[test]
fn a_schedule_stopping_short_of_zero_says_the_tool_denoises() {
    let ns = discrete();
    let s = ClassicSolver::DpmSolverPp { order: 2 }
        .build(vec![1.0, 0.6, 0.3, 0.05], true)
        .unwrap();
    let e = run(&s, &ns, ExportFormat::Diffusers);
    assert_eq!(
        json(&e)["scheduler_hint"]["config"]["final_sigmas_type"],
        "zero"
    );
    assert!(has(&e.notes, "without denoising"), "{:?}", e.notes);
    for f in [ExportFormat::KDiffusion, ExportFormat::ComfyUi] {
        let e = run(&s, &ns, f);
        assert!(has(&e.notes, "without denoising"), "{:?}", e.notes);
    }
}

#[test]
fn sigma_lists_follow_the_k_diffusion_and_comfyui_conventions() {
    for ns in all_schedules() {
        for n in [1, 3, 6] {
            for denoise in [false, true] {
                let s = ClassicSolver::DpmSolverPp { order: 2 }
                    .build(karras(&ns, n, denoise), true)
                    .unwrap();
                let k = run(&s, &ns, ExportFormat::KDiffusion);
                let sigmas = floats(&json(&k));
                assert_sigma_list(&sigmas, &s, &ns);

                let c = run(&s, &ns, ExportFormat::ComfyUi);
                assert_eq!(c.text.lines().count(), 1);
                assert!(!c.text.contains('e'), "no exponent notation: {}", c.text);
                let parsed: Vec<f64> = c
                    .text
                    .trim()
                    .split(',')
                    .map(|x| x.trim().parse().unwrap())
                    .collect();
                assert_eq!(
                    parsed,
                    expected_sigmas(&s, &ns),
                    "ComfyUI string parses back to exactly the same numbers"
                );
                assert!(c.text.trim_end().ends_with(", 0.0"), "{}", c.text);
                if ns == NoiseSchedule::Edm {
                    assert!(c.text.starts_with("80.0, "), "{}", c.text);
                }

                let d = json(&run(&s, &ns, ExportFormat::Diffusers));
                if matches!(ns, NoiseSchedule::VpDiscrete(_)) {
                    assert!(d.get("sigmas").is_none());
                } else {
                    assert!(d.get("timesteps").is_none());
                    assert_sigma_list(&floats(&d["sigmas"]), &s, &ns);
                    let class = if ns == NoiseSchedule::Edm {
                        "EDMEulerScheduler"
                    } else {
                        "EulerDiscreteScheduler"
                    };
                    assert_eq!(d["scheduler_hint"]["class"], class);
                    assert_eq!(
                        d.get("usage_ddpm_pipeline").is_some(),
                        ns != NoiseSchedule::Edm
                    );
                }
            }
        }
    }
}

#[test]
fn the_tools_own_solver_is_named_and_exact_matches_are_recognised() {
    let ns = NoiseSchedule::vp_linear();
    let ts = karras(&ns, 6, true);
    let s = ClassicSolver::DpmSolverPp { order: 2 }
        .build(ts.clone(), false)
        .unwrap();
    let k = run(&s, &ns, ExportFormat::KDiffusion);
    assert!(
        has(&k.notes, "runs this schedule exactly") && has(&k.notes, "sample_dpmpp_2m"),
        "{:?}",
        k.notes
    );
    let c = run(&s, &ns, ExportFormat::ComfyUi);
    assert!(has(&c.notes, "dpmpp_2m") && has(&c.notes, "ManualSigmas"));

    let ddim = ClassicSolver::Ddim.build(ts.clone(), true).unwrap();
    for f in [
        ExportFormat::Diffusers,
        ExportFormat::KDiffusion,
        ExportFormat::ComfyUi,
    ] {
        let e = run(&ddim, &ns, f);
        assert!(has(&e.notes, "runs this schedule exactly"), "{:?}", e.notes);
        assert!(!has(&e.notes, "Dropped"), "{:?}", e.notes);
    }
    assert!(!has(&k.notes, "Dropped"), "{:?}", k.notes);

    let uni = ClassicSolver::UniPc {
        variant: s3::solver::UniPcVariant::Bh2,
        order: 3,
    }
    .build(ts, true)
    .unwrap();
    let c = run(&uni, &ns, ExportFormat::ComfyUi);
    assert!(has(&c.notes, "uni_pc_bh2"), "{:?}", c.notes);
    let d = run(&uni, &ns, ExportFormat::Diffusers);
    assert!(has(&d.notes, "will run instead: EulerDiscreteScheduler"));
    assert!(
        has(&d.notes, "correctors (steps 0, 1, 2, 3, 4)"),
        "{:?}",
        d.notes
    );
}

/// A schedule whose per-step decisions a target keeps but whose end it cannot reach (DDIM
/// stopping at t_N > 0): no "Dropped" note, the end note says what differs.
#[test]
fn kept_decisions_are_not_reported_as_dropped() {
    for ns in all_schedules() {
        let s = ClassicSolver::Ddim
            .build_for(&ns, karras(&ns, 4, false), true)
            .unwrap();
        for f in [
            ExportFormat::Diffusers,
            ExportFormat::KDiffusion,
            ExportFormat::ComfyUi,
        ] {
            let e = run(&s, &ns, f);
            assert!(!has(&e.notes, "Dropped"), "{}: {:?}", f.as_str(), e.notes);
            assert!(!has(&e.notes, "Nothing is lost"), "{:?}", e.notes);
            if !(f == ExportFormat::Diffusers && matches!(ns, NoiseSchedule::VpDiscrete(_))) {
                assert!(has(&e.notes, "without denoising"), "{:?}", e.notes);
            }
        }
    }
}

/// The k-diffusion note's wrapper for VP models is k-diffusion's DiscreteEpsDDPMDenoiser
/// around a diffusers UNet (python/tests/test_export_usage.py runs it), with s3's initial
/// state z·√(1 + σ_0²); EDM and flow start at z·σ_0.
#[test]
fn k_diffusion_note_names_the_wrapper_that_runs_a_diffusers_unet() {
    for ns in all_schedules() {
        let s = ClassicSolver::Ddim
            .build_for(&ns, karras(&ns, 4, true), true)
            .unwrap();
        let e = run(&s, &ns, ExportFormat::KDiffusion);
        let vp = ns != NoiseSchedule::Edm;
        assert_eq!(
            has(
                &e.notes,
                "`model = k_diffusion.external.DiscreteEpsDDPMDenoiser(lambda x, t, **kw: unet(x, t, **kw).sample, alphas_cumprod, quantize=False).to(device)`"
            ),
            vp,
            "{:?}",
            e.notes
        );
        assert!(!has(&e.notes, "e.g. CompVisDenoiser"), "{:?}", e.notes);
        let start = if vp {
            "torch.randn(shape, device=device) * (1 + sigmas[0] ** 2) ** 0.5, sigmas)`"
        } else {
            "torch.randn(shape, device=device) * sigmas[0], sigmas)`"
        };
        assert!(has(&e.notes, start), "{:?}", e.notes);
        assert!(has(&e.notes, "k_diffusion.sampling.sample_euler(model, "));
    }
}

/// EDM: EDMEulerScheduler.set_timesteps(sigmas=…) takes Karras positions, so the export
/// carries `sigma_ramp` with a hint (ρ = 1, σ_max = σ_0, σ_min = σ_{N−1}) that maps it back to
/// the sigmas, and no DDPMPipeline lines (it never calls scale_model_input).
#[test]
fn edm_diffusers_export_carries_the_ramp_that_edm_euler_takes() {
    let ns = NoiseSchedule::Edm;
    for n in [1, 2, 6] {
        let s = ClassicSolver::Ddim
            .build_for(&ns, karras(&ns, n, true), true)
            .unwrap();
        let e = run(&s, &ns, ExportFormat::Diffusers);
        let d = json(&e);
        let sigmas = floats(&d["sigmas"]);
        let ramp = floats(&d["sigma_ramp"]);
        let cfg = &d["scheduler_hint"]["config"];
        assert_eq!(cfg["sigma_schedule"], "karras");
        assert_eq!(cfg["rho"].as_f64(), Some(1.0));
        assert_eq!(cfg["final_sigmas_type"], "zero");
        let (max, min) = (
            cfg["sigma_max"].as_f64().unwrap(),
            cfg["sigma_min"].as_f64().unwrap(),
        );
        assert_eq!((max, min), (sigmas[0], sigmas[n - 1]));
        assert_eq!(
            ramp.len(),
            n,
            "one position per model call; diffusers appends the 0"
        );
        for (r, s) in ramp.iter().zip(&sigmas) {
            // diffusers: (σ_max^(1/ρ) + r·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ with ρ = 1.
            assert!((max + r * (min - max) - s).abs() <= 1e-12 * s, "{r} → {s}");
            assert!((0.0..=1.0).contains(r));
        }
        assert!(d.get("usage_ddpm_pipeline").is_none());
        assert!(
            has(&e.notes, "DDPMPipeline cannot run these sigmas"),
            "{:?}",
            e.notes
        );
        assert_eq!(
            lines(&d["usage"]).last().unwrap(),
            "image = pipe(prompt, sigmas=torch.tensor(export[\"sigma_ramp\"], dtype=torch.float64)).images[0]"
        );
        assert!(!has(&e.notes, "Dropped"), "{:?}", e.notes);
    }
    // VP Euler: init_noise_sigma √(σ_0² + 1) needs timestep_spacing "leading"; DDPMPipeline
    // lines are there.
    let ns = NoiseSchedule::vp_linear();
    let s = ClassicSolver::Ddim
        .build_for(&ns, karras(&ns, 3, true), true)
        .unwrap();
    let d = json(&run(&s, &ns, ExportFormat::Diffusers));
    assert_eq!(d["scheduler_hint"]["config"]["timestep_spacing"], "leading");
    assert!(d.get("sigma_ramp").is_none());
    assert_eq!(
        lines(&d["usage_ddpm_pipeline"]).last().unwrap(),
        "image = pipe(num_inference_steps=3).images[0]"
    );
}

#[test]
fn per_step_decisions_and_afs_are_reported_as_lost() {
    for ns in [NoiseSchedule::vp_linear(), discrete()] {
        for afs in [Afs::None, Afs::ZeroX0] {
            let s = fancy(afs);
            for f in [
                ExportFormat::Diffusers,
                ExportFormat::KDiffusion,
                ExportFormat::ComfyUi,
            ] {
                let e = run(&s, &ns, f);
                let n = &e.notes;
                assert!(has(n, "cannot express per-step solver decisions"), "{n:?}");
                assert!(has(n, "prediction per step (data, noise, data)"), "{n:?}");
                assert!(has(n, "Taylor order per step (1, 2, 3)"), "{n:?}");
                assert!(has(n, "1 relaxed"), "{n:?}");
                assert!(has(n, "correctors (steps 0)"), "{n:?}");
                assert!(has(n, "will run instead"), "{n:?}");
                // The schedule stops at t = 0.001: diffusers reaches it exactly on the discrete
                // schedule (training timestep 0, final_sigmas_type "sigma_min").
                let exact_end = f == ExportFormat::Diffusers && ns != NoiseSchedule::vp_linear();
                assert_eq!(has(n, "without denoising"), !exact_end, "{n:?}");
                assert_eq!(
                    has(n, "analytical first step (zero_x0)"),
                    afs == Afs::ZeroX0,
                    "{n:?}"
                );
                if afs == Afs::ZeroX0 {
                    assert!(has(n, "NFE 2") && has(n, "NFE 3"), "{n:?}");
                }
            }
            // The s3 format loses nothing.
            assert!(run(&s, &ns, ExportFormat::S3).notes.is_empty());
        }
    }
}

/// `time_offsets` (the model told t_i + δ_i): no plain list carries them, so every plain
/// export lists them as dropped (and claims no exact run); the `s3` format keeps them.
#[test]
fn time_offsets_are_reported_as_lost_and_kept_by_the_s3_format() {
    for ns in [NoiseSchedule::vp_linear(), discrete()] {
        for afs in [Afs::None, Afs::ZeroX0] {
            let mut s = fancy(afs);
            // t = 1, 0.5, 0.1, 0.001: model times 0.9, 0.56 and 0.12 (none at t_0 under AFS).
            let first = if afs == Afs::None { -0.1 } else { 0.0 };
            s.time_offsets = Some(vec![first, 0.06, 0.02]);
            let steps = if afs == Afs::None { "0, 1, 2" } else { "1, 2" };
            for f in [
                ExportFormat::Diffusers,
                ExportFormat::KDiffusion,
                ExportFormat::ComfyUi,
            ] {
                let n = run(&s, &ns, f).notes;
                assert!(
                    has(&n, &format!("the model-time offsets (steps {steps}: "))
                        && has(&n, "the gain they bring is lost"),
                    "{}: {n:?}",
                    f.as_str()
                );
                assert!(!has(&n, "Nothing is lost"), "{n:?}");
            }
            let text = run(&s, &ns, ExportFormat::S3).text;
            let back: SolverSchedule = serde_json::from_str(&text).unwrap();
            back.validate_on(&ns).unwrap();
            let (a, b) = (back.time_offsets.unwrap(), s.time_offsets.clone().unwrap());
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-15 * y.abs().max(1e-300), "{x} vs {y}");
            }
        }
    }
}

#[test]
fn s3_format_round_trips_to_an_equal_schedule() {
    let ns = NoiseSchedule::vp_linear();
    for s in [
        fancy(Afs::None),
        fancy(Afs::AverageX0),
        ClassicSolver::DpmSolverPp { order: 3 }
            .build(karras(&ns, 7, true), true)
            .unwrap(),
    ] {
        let e = run(&s, &ns, ExportFormat::S3);
        assert_eq!(e.text, s.to_json(&ns));
        let mut back: SolverSchedule = serde_json::from_str(&e.text).unwrap();
        back.validate().unwrap();
        assert_eq!(back.noise_schedule.as_deref(), Some("vp-linear"));
        back.noise_schedule = None;
        back.sigmas = None;
        // serde_json's default float parser may be off by an ulp; Python's json is exact.
        for (a, b) in back.timesteps.iter().zip(&s.timesteps) {
            assert!((a - b).abs() <= 1e-15 * b.abs(), "{a} vs {b}");
        }
        back.timesteps = s.timesteps.clone();
        assert_eq!(back, s);
    }
}

/// Flow exports: sigma lists of the flow σ = t (1 at pure noise) for k-diffusion and
/// ComfyUI; for diffusers N sigmas without the trailing 0, a FlowMatchEulerDiscreteScheduler
/// hint that switches its shift off (the sigmas are already shifted), or UniPC where it runs
/// the schedule exactly; only Euler is claimed exact in the sigma-list tools.
#[test]
fn flow_exports_flow_sigmas_and_the_flow_schedulers() {
    let ns = NoiseSchedule::Flow(FlowMatch::new(3.0).unwrap());
    let times = |n: usize, denoise: bool| {
        let mut ts = Spacing::TimeUniform
            .timesteps(&ns, n, 1.0, ns.t_min())
            .unwrap();
        if denoise {
            ts[n] = 0.0;
        }
        ts
    };
    for n in [1, 3, 6] {
        for denoise in [false, true] {
            let s = ClassicSolver::DpmSolverPp { order: 2 }
                .build_for(&ns, times(n, denoise), true)
                .unwrap();
            let mut want: Vec<f64> = s.timesteps[..n].to_vec();
            want.push(0.0);
            assert_eq!(want[0], 1.0);
            assert_eq!(floats(&json(&run(&s, &ns, ExportFormat::KDiffusion))), want);
            let c = run(&s, &ns, ExportFormat::ComfyUi);
            assert!(c.text.starts_with("1.0, ") && c.text.trim_end().ends_with(", 0.0"));
            let parsed: Vec<f64> = c
                .text
                .trim()
                .split(',')
                .map(|x| x.trim().parse().unwrap())
                .collect();
            assert_eq!(parsed, want);
            assert!(has(&c.notes, "flow sigmas σ = t"), "{:?}", c.notes);
            let e = run(&s, &ns, ExportFormat::Diffusers);
            let d = json(&e);
            assert_eq!(floats(&d["sigmas"]), want[..n], "N sigmas, no trailing 0");
            assert_eq!(
                d["scheduler_hint"]["class"],
                "FlowMatchEulerDiscreteScheduler"
            );
            let cfg = &d["scheduler_hint"]["config"];
            assert_eq!(cfg["shift"].as_f64(), Some(1.0));
            assert_eq!(cfg["use_dynamic_shifting"], false);
            assert_eq!(d["noise_schedule"]["shift"].as_f64(), Some(3.0));
            assert!(has(&e.notes, "already shifted (shift 3)"), "{:?}", e.notes);
            // Exact when the schedule is flow Euler: first order throughout, ending at 0
            // (from t = 1 DPM-Solver++(2M) needs two finite points before its first 2M step).
            let euler = denoise && s.steps.iter().all(|x| x.order == 1);
            assert_eq!(has(&e.notes, "Nothing is lost"), euler, "{:?}", e.notes);
        }
    }
    // Flow Euler (= DDIM) is exact everywhere; DPM-Solver++(2M) only in s3 (k-diffusion's
    // multistep samplers step in log σ, which is not s3's λ on a flow model).
    let ts = Spacing::DiffusersFlowEuler
        .timesteps(&ns, 6, 1.0, 0.0)
        .unwrap();
    let ddim = ClassicSolver::Ddim
        .build_for(&ns, ts.clone(), true)
        .unwrap();
    for f in [
        ExportFormat::Diffusers,
        ExportFormat::KDiffusion,
        ExportFormat::ComfyUi,
    ] {
        let e = run(&ddim, &ns, f);
        assert!(has(&e.notes, "runs this schedule exactly"), "{:?}", e.notes);
    }
    let dpm = ClassicSolver::DpmSolverPp { order: 2 }
        .build_for(&ns, ts, false)
        .unwrap();
    let k = run(&dpm, &ns, ExportFormat::KDiffusion);
    assert!(
        has(&k.notes, "will run instead") && has(&k.notes, "only Euler reproduces"),
        "{:?}",
        k.notes
    );
    // UniPC-bh2 over diffusers' own UniPC flow grid: UniPC with flow sigmas runs it exactly.
    let ts = Spacing::DiffusersFlowUnipc
        .timesteps(&ns, 6, 1.0, 0.0)
        .unwrap();
    let uni = ClassicSolver::UniPc {
        variant: s3::solver::UniPcVariant::Bh2,
        order: 3,
    };
    let e = run(
        &uni.build_for(&ns, ts, true).unwrap(),
        &ns,
        ExportFormat::Diffusers,
    );
    let d = json(&e);
    assert_eq!(d["scheduler_hint"]["class"], "UniPCMultistepScheduler");
    let cfg = &d["scheduler_hint"]["config"];
    assert_eq!(cfg["flow_shift"].as_f64(), Some(1.0));
    assert_eq!(cfg["solver_order"].as_u64(), Some(3));
    assert_eq!(cfg["use_flow_sigmas"], true);
    assert!(has(&e.notes, "Nothing is lost"), "{:?}", e.notes);
    let usage = d["usage"].to_string();
    assert!(usage.contains("np.array(export"), "{usage}");
    // From t = 1 diffusers' UniPC would move the first sigma and correct step 0: Euler hint.
    let e = run(
        &uni.build_for(&ns, times(6, true), true).unwrap(),
        &ns,
        ExportFormat::Diffusers,
    );
    assert_eq!(
        json(&e)["scheduler_hint"]["class"],
        "FlowMatchEulerDiscreteScheduler"
    );
    // The s3 file carries the flow sigmas (finite at t = 1) and reads back.
    let text = run(&ddim, &ns, ExportFormat::S3).text;
    let back: SolverSchedule = serde_json::from_str(&text).unwrap();
    assert_eq!(back.sigmas.as_ref().unwrap()[0], 1.0);
    back.validate_on(&ns).unwrap();
}

#[test]
fn format_names_and_errors() {
    assert_eq!(ExportFormat::names(), "s3, diffusers, k-diffusion, comfyui");
    for (name, f, ext) in [
        ("s3", ExportFormat::S3, "json"),
        ("diffusers", ExportFormat::Diffusers, "json"),
        ("k-diffusion", ExportFormat::KDiffusion, "json"),
        ("comfyui", ExportFormat::ComfyUi, "txt"),
    ] {
        let parsed = ExportFormat::parse(name).unwrap();
        assert_eq!(parsed, f);
        assert_eq!(parsed.as_str(), name);
        assert_eq!(parsed.extension(), ext);
    }
    let e = ExportFormat::parse("a1111").unwrap_err().to_string();
    assert_eq!(
        e,
        "unknown export format `a1111`; expected one of: s3, diffusers, k-diffusion, comfyui"
    );

    // A schedule written for another noise schedule is refused.
    let mut s = fancy(Afs::None);
    s.noise_schedule = Some("edm".into());
    let e = export(&s, &NoiseSchedule::vp_linear(), ExportFormat::KDiffusion)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`edm`") && e.contains("`vp-linear`"), "{e}");

    // An invalid schedule is refused with the validation message.
    let mut s = fancy(Afs::None);
    s.timesteps.swap(1, 2);
    let e = export(&s, &NoiseSchedule::vp_linear(), ExportFormat::ComfyUi)
        .unwrap_err()
        .to_string();
    assert!(e.contains("strictly decrease"), "{e}");
}

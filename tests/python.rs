//! Python ≡ Rust: the `s3schedule` package (`python/`) runs s3 schedule files exactly.
//!
//! On exact Gaussian mixtures (isotropic and diagonal), for every classic solver × spacing
//! of every noise schedule (vp-linear, vp-discrete with both beta layouts, vp-cosine, edm,
//! flow with shift 1 and 3) at NFE 3 and 6, random schedules of the `usf` search space at
//! NFE 2–8 (AFS of both kinds, correctors, low-order estimates, linear relaxations) and
//! hand-made schedules covering every relaxation type, order 4 and a corrector of order 5,
//! s3 runs each schedule on fixed noise in f64; the schedule file (as s3 saves it), the noise
//! and the mixture go to a temporary directory; `python/tests/rust_cases.py` runs every case
//! with the package's own numpy mixture (float64, the noise schedule resolved from the file)
//! and writes its outputs, which must agree with s3's f64 run to 1e-5 relative
//! (max |py − rs| / max |rs|; they agree to ~1e-12). The worst difference is printed per
//! family, next to the difference to s3's production f32 run, which is f32 rounding
//! (amplified where σ/α is large, e.g. flow grids starting at t = 1 − 10⁻⁶) and so only
//! informational.
//!
//! The "offsets" families carry non-zero `time_offsets` (the model told t_i + δ_i, the solver
//! keeping t_i): the hand-made schedules (noise and data prediction, correctors, order 4,
//! `average_x0`) and one random `usf` draw per NFE, on every noise schedule (flow: those not
//! starting at the pure-noise t = 1), run natively and, for the VP families, also in the
//! variance-exploding frame x/α that k-diffusion and ComfyUI use ("offsets-ve"), where the
//! model's input is rescaled to x̃·α_t/α_m. Each differs from the same schedule run without
//! offsets (checked), so the agreement is not that of two runs ignoring them.
//!
//! Needs `python3` (or `S3_TEST_PYTHON`) with numpy, e.g. from `.pydeps/`
//! (`bash scripts/install_test_deps.sh`); never skips.

use npyz::WriterBuilder;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use s3::model::{Denoiser, GaussianMixture};
use s3::noise::{BetaSchedule, DiscreteVp, FlowMatch, NoiseSchedule};
use s3::solver::{
    Afs, Corrector, Derivative, Prediction, Relaxation, Sampler, SolverSchedule, Step, classic_grid,
};
use s3::space::{Candidates, SearchSpace};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;

const TOLERANCE: f64 = 1e-5;
const BATCH: usize = 24;

const ISOTROPIC: &str = r#"{"shape": [4], "weights": [0.3, 0.25, 0.25, 0.2],
  "means": [[1.0, 0.0, 0.5, -0.3], [-1.0, 0.5, 0.0, 0.2], [0.2, -0.8, 1.0, 0.4], [0.0, 0.3, -0.6, -1.0]],
  "stds": [0.2, 0.3, 0.15, 0.25]}"#;
const DIAGONAL: &str = r#"{"shape": [3], "weights": [0.6, 0.4],
  "means": [[0.8, -0.4, 0.3], [-0.5, 0.6, -0.2]],
  "stds": [[0.2, 0.1, 0.3], [0.15, 0.25, 0.05]]}"#;

/// One schedule to run: its family label, the schedule, which mixture, and the frame the
/// Python runner carries the state in (`native`, or `ve`: x/α).
struct Case {
    family: String,
    ns: usize,
    mixture: usize,
    schedule: SolverSchedule,
    frame: &'static str,
}

/// Time offsets for `s` that keep every model time inside (t_{i+1}, t_{i−1}): −0.2·(t_i −
/// t_{i+1}) at even i, +0.15·(t_{i−1} − t_i) at odd i (so none passes T), and δ_0 = 0 where
/// no call is made at t_0 (AFS).
fn offsets_for(s: &SolverSchedule) -> Vec<f64> {
    let t = &s.timesteps;
    let mut d: Vec<f64> = (0..s.steps.len())
        .map(|i| {
            if i % 2 == 0 {
                -0.2 * (t[i] - t[i + 1])
            } else {
                0.15 * (t[i - 1] - t[i])
            }
        })
        .collect();
    if s.afs != Afs::None {
        d[0] = 0.0;
    }
    d
}

/// The "offsets" cases of one noise schedule: `schedules` with [`offsets_for`], natively and
/// (VP) in the VE frame. Schedules starting at a pure-noise t_0 are left out.
fn offset_cases(
    label: &str,
    k: usize,
    ns: &NoiseSchedule,
    schedules: &[SolverSchedule],
) -> Vec<Case> {
    let vp = !matches!(ns, NoiseSchedule::Edm | NoiseSchedule::Flow(_));
    let mut out = Vec::new();
    for (j, s) in schedules.iter().enumerate() {
        if ns.is_pure_noise(s.timesteps[0]) {
            continue;
        }
        let mut s = s.clone();
        s.time_offsets = Some(offsets_for(&s));
        let name = format!("{} +offsets", s.name.as_deref().unwrap_or("random"));
        s.name = Some(name);
        for frame in ["native", "ve"] {
            if frame == "ve" && !vp {
                continue;
            }
            let family = if frame == "ve" {
                "offsets-ve"
            } else {
                "offsets"
            };
            out.push(Case {
                family: format!("{family} {label}"),
                ns: k,
                mixture: j % 2,
                schedule: s.clone(),
                frame,
            });
        }
    }
    out
}

fn noise_schedules() -> Vec<(&'static str, NoiseSchedule)> {
    vec![
        ("vp-linear", NoiseSchedule::vp_linear()),
        (
            "vp-discrete(linear)",
            NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::Linear, 1000)),
        ),
        (
            "vp-discrete(scaled_linear)",
            NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::ScaledLinear, 1000)),
        ),
        ("vp-cosine", NoiseSchedule::vp_cosine()),
        ("edm", NoiseSchedule::Edm),
        (
            "flow(shift 1)",
            NoiseSchedule::Flow(FlowMatch::new(1.0).unwrap()),
        ),
        (
            "flow(shift 3)",
            NoiseSchedule::Flow(FlowMatch::new(3.0).unwrap()),
        ),
    ]
}

fn der(points: &[i32], relaxation: Relaxation) -> Derivative {
    Derivative {
        points: points.to_vec(),
        relaxation,
    }
}

fn step(prediction: Prediction, order: usize, derivatives: Vec<Derivative>) -> Step {
    Step {
        prediction,
        order,
        derivatives,
        corrector: None,
    }
}

/// Hand-made schedules over `times` (8 values, t_0 not pure noise) using every relaxation
/// type, Taylor order 4, low-order estimates and pseudo correctors of orders 2–5, once
/// ending at t_N > 0 without AFS and once denoising to 0 with `average_x0`.
fn handmade(times: &[f64]) -> Vec<SolverSchedule> {
    use Prediction::{Data, Noise};
    use Relaxation as R;
    let n = R::None;
    let mut s0 = step(Data, 1, vec![]);
    s0.corrector = Some(Corrector::Pseudo {
        order: 2,
        derivatives: vec![der(&[-1], R::HalfExp)],
    });
    let mut s1 = step(Noise, 2, vec![der(&[-2], R::NegHalfExp)]);
    s1.corrector = Some(Corrector::Pseudo {
        order: 3,
        derivatives: vec![der(&[-3, -1], n), der(&[-3, -1], R::Linear { c: -0.2 })],
    });
    let s2 = step(
        Data,
        3,
        vec![
            der(&[-2, -3], R::Scale { k: 0.5 }),
            der(&[-2, -3], R::Linear { c: 0.3 }),
        ],
    );
    let mut s3 = step(
        Noise,
        4,
        vec![
            der(&[-2], R::DpmSolver2),
            der(&[-2, -3], n),
            der(&[-2, -3, -4], n),
        ],
    );
    s3.corrector = Some(Corrector::Pseudo {
        order: 5,
        derivatives: (0..4).map(|_| der(&[-1, -3, -4, -5], n)).collect(),
    });
    let s4 = step(
        Data,
        4,
        vec![
            der(&[-2, -4], R::UnipcBh1),
            der(&[-2, -3], R::UnipcBh2),
            der(&[-2, -3, -5], n),
        ],
    );
    let s5 = step(Noise, 2, vec![der(&[-3], n)]);
    let steps = vec![s0, s1, s2, s3, s4, s5];
    let mut open = steps.clone();
    open.push(step(Data, 2, vec![der(&[-2], R::UnipcBh2)]));
    let mut denoise = steps;
    denoise.push(step(Noise, 1, vec![]));
    let mut t_den = times.to_vec();
    *t_den.last_mut().unwrap() = 0.0;
    vec![
        SolverSchedule::new(Afs::None, times.to_vec(), open).with_name("handmade-open"),
        SolverSchedule::new(Afs::AverageX0, t_den, denoise).with_name("handmade-denoise"),
    ]
}

/// 8 times uniform in λ from t_max (or, from a pure-noise start, from 0.98) to t_min.
fn lambda_grid(ns: &NoiseSchedule) -> Vec<f64> {
    let t0 = if ns.is_pure_noise(ns.t_max()) {
        0.98
    } else {
        ns.t_max()
    };
    let (l0, l1) = (ns.lambda(t0), ns.lambda(ns.t_min()));
    (0..8)
        .map(|i| ns.t_of_lambda(l0 + (l1 - l0) * i as f64 / 7.0))
        .collect()
}

fn cases() -> Vec<Case> {
    let space = SearchSpace::load("usf").unwrap();
    let mut out = Vec::new();
    for (k, (label, ns)) in noise_schedules().iter().enumerate() {
        for nfe in [3, 6] {
            for entry in classic_grid(ns, nfe) {
                let Ok(schedule) = entry.schedule else {
                    continue;
                };
                out.push(Case {
                    family: format!("classic {label}"),
                    ns: k,
                    mixture: (nfe == 6) as usize,
                    schedule,
                    frame: "native",
                });
            }
        }
        let mut rng = StdRng::seed_from_u64(17 + k as u64);
        let mut shifted = Vec::new();
        for nfe in 2..=8 {
            let cand = Candidates::new(&space, ns, nfe).unwrap();
            for r in 0..4 {
                let schedule = cand.random(&mut rng);
                if r == 0 {
                    shifted.push(schedule.clone());
                }
                out.push(Case {
                    family: format!("random {label}"),
                    ns: k,
                    mixture: r % 2,
                    schedule,
                    frame: "native",
                });
            }
        }
        for (i, schedule) in handmade(&lambda_grid(ns)).into_iter().enumerate() {
            shifted.push(schedule.clone());
            out.push(Case {
                family: format!("handmade {label}"),
                ns: k,
                mixture: i % 2,
                schedule,
                frame: "native",
            });
        }
        out.extend(offset_cases(label, k, ns, &shifted));
    }
    out
}

fn write_npy(path: &Path, data: &[f64], shape: &[usize]) {
    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    let file = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

fn read_npy(path: &Path) -> Vec<f64> {
    let bytes = std::fs::read(path)
        .unwrap_or_else(|e| panic!("Python wrote no output {}: {e}", path.display()));
    npyz::NpyFile::new(&bytes[..])
        .unwrap()
        .into_vec::<f64>()
        .unwrap()
}

/// max |a − b| / max |b|.
fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
    diff / scale
}

/// The Python to run, with `python/` and `.pydeps/` on its path; panics with the install
/// command when it or numpy is missing.
fn python() -> (String, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let python = std::env::var("S3_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let path = format!("{root}/python:{root}/.pydeps");
    let hint = "run `bash scripts/install_test_deps.sh` (numpy into .pydeps/) or set \
                S3_TEST_PYTHON to a Python 3.9+ with numpy";
    let probe = Command::new(&python)
        .env("PYTHONPATH", &path)
        .args(["-c", "import numpy, s3schedule"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{python}` ({e}); {hint}"));
    assert!(
        probe.status.success(),
        "`{python}` cannot import numpy and s3schedule: {}; {hint}",
        String::from_utf8_lossy(&probe.stderr)
    );
    (python, path)
}

#[test]
fn python_runs_every_schedule_family_like_rust() {
    let (python, pythonpath) = python();
    let dir = tempfile::tempdir().unwrap();
    let mixtures = [ISOTROPIC, DIAGONAL];
    let models: Vec<GaussianMixture> = mixtures
        .iter()
        .map(|m| GaussianMixture::from_json_str(m, "mixture").unwrap())
        .collect();
    let mut manifest_mixtures = Vec::new();
    for (i, text) in mixtures.iter().enumerate() {
        let p = dir.path().join(format!("mixture{i}.json"));
        std::fs::write(&p, text).unwrap();
        manifest_mixtures.push(p.display().to_string());
    }
    let all = noise_schedules();
    let cases = cases();
    let mut entries = Vec::new();
    let mut rust: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    let mut rng = StdRng::seed_from_u64(5);
    for (c, case) in cases.iter().enumerate() {
        let ns = &all[case.ns].1;
        let model = &models[case.mixture];
        let dim = model.dim();
        let t0 = case.schedule.timesteps[0];
        // s3's initial states: z for VP and flow, t_0·z for EDM.
        let scale = if matches!(ns, NoiseSchedule::Edm) {
            t0
        } else {
            1.0
        };
        let x: Vec<f64> = (0..BATCH * dim)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                // Representable in f32, so both precisions start from the same state.
                (scale * z) as f32 as f64
            })
            .collect();
        let sampler = Sampler::new(model, ns).with_data_mean(model.data_mean());
        let r64 = sampler
            .sample_f64(&case.schedule, &x)
            .unwrap_or_else(|e| panic!("case {c} ({}): {e}", case.family))
            .samples;
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let r32 = sampler.sample(&case.schedule, &x32).unwrap().samples;
        let sched = dir.path().join(format!("case{c}.json"));
        std::fs::write(&sched, case.schedule.to_json(ns)).unwrap();
        let xt = dir.path().join(format!("case{c}_x.npy"));
        write_npy(&xt, &x, &[BATCH, dim]);
        entries.push(serde_json::json!({
            "id": c,
            "family": case.family,
            "schedule": sched,
            "mixture": case.mixture,
            "x_T": xt,
            "out": dir.path().join(format!("case{c}_py.npy")),
            "frame": case.frame,
        }));
        if case.schedule.has_time_offsets() {
            // The offsets must matter: the same schedule without them runs differently.
            let mut plain = case.schedule.clone();
            plain.time_offsets = None;
            let p64 = sampler.sample_f64(&plain, &x).unwrap().samples;
            let d = max_rel(&p64, &r64);
            assert!(
                d > 1e-6,
                "case {c} ({}): the offsets change the run by only {d:.1e}",
                case.family
            );
        }
        rust.push((r64, r32.iter().map(|&v| v as f64).collect()));
    }
    let manifest = dir.path().join("manifest.json");
    let doc = serde_json::json!({"mixtures": manifest_mixtures, "cases": entries});
    std::fs::write(&manifest, doc.to_string()).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/tests/rust_cases.py");
    let out = Command::new(&python)
        .env("PYTHONPATH", &pythonpath)
        .args([script, manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python/tests/rust_cases.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    print!("{}", String::from_utf8_lossy(&out.stdout));
    // family → (cases, worst vs f64, worst vs f32)
    let mut worst: BTreeMap<String, (usize, f64, f64)> = BTreeMap::new();
    let mut failures = Vec::new();
    let (mut afs, mut corrected) = (HashMap::new(), HashMap::new());
    // Offset cases per (noise schedule, frame): (cases, with a corrector, with a noise-
    // prediction step, with a data-prediction step).
    let mut offsets: HashMap<(&str, &str), [usize; 4]> = HashMap::new();
    for (c, case) in cases.iter().enumerate() {
        let py = read_npy(&dir.path().join(format!("case{c}_py.npy")));
        let (d64, d32) = (max_rel(&py, &rust[c].0), max_rel(&py, &rust[c].1));
        let w = worst.entry(case.family.clone()).or_insert((0, 0.0, 0.0));
        w.0 += 1;
        w.1 = w.1.max(d64);
        w.2 = w.2.max(d32);
        if d64.is_nan() || d64 > TOLERANCE {
            failures.push(format!(
                "case {c} ({}, {}): {d64:.2e} vs Rust f64 (limit {TOLERANCE:e})",
                case.family,
                case.schedule.name.as_deref().unwrap_or("unnamed")
            ));
        }
        let label = all[case.ns].0;
        *afs.entry((label, case.schedule.afs)).or_insert(0) += 1;
        if case.schedule.steps.iter().any(|s| s.corrector.is_some()) {
            *corrected.entry(label).or_insert(0) += 1;
        }
        if case.schedule.has_time_offsets() {
            let steps = &case.schedule.steps;
            let o = offsets.entry((label, case.frame)).or_insert([0; 4]);
            o[0] += 1;
            o[1] += steps.iter().any(|s| s.corrector.is_some()) as usize;
            o[2] += steps.iter().any(|s| s.prediction == Prediction::Noise) as usize;
            o[3] += steps.iter().any(|s| s.prediction == Prediction::Data) as usize;
        }
    }
    println!("Python (float64) vs Rust, max relative difference per family:");
    println!(
        "{:<38} {:>5} {:>12} {:>22}",
        "family", "cases", "vs Rust f64", "vs Rust f32 (info)"
    );
    for (family, (n, d64, d32)) in &worst {
        println!("{family:<38} {n:>5} {d64:>12.2e} {d32:>22.2e}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The draws cover every AFS kind and correctors under every noise schedule.
    for (label, _) in &all {
        for kind in [Afs::None, Afs::ZeroX0, Afs::AverageX0] {
            assert!(
                afs.get(&(*label, kind)).copied().unwrap_or(0) > 0,
                "{label}: no case with afs {kind:?}"
            );
        }
        assert!(corrected.get(label).copied().unwrap_or(0) > 0, "{label}");
        // Offsets with noise and data prediction and a corrector, natively and (VP) in the VE
        // frame of k-diffusion and ComfyUI.
        let vp = label.starts_with("vp-");
        for frame in ["native", "ve"] {
            let o = offsets.get(&(*label, frame)).copied().unwrap_or([0; 4]);
            if frame == "ve" && !vp {
                assert_eq!(o[0], 0, "{label}");
                continue;
            }
            assert!(
                o.iter().all(|&n| n > 0),
                "{label} ({frame}): offset cases {o:?}"
            );
        }
    }
    assert!(cases.len() >= 7 * 20, "{} cases", cases.len());
}

//! The ONNX Runtime backend on committed fixtures (tests/fixtures/, scripts/make_onnx_fixtures.py):
//! the exact-mixture graph against the native analytic model, the cifar10 preset end to end on
//! tiny random-weight networks, and the errors a user sees without ONNX Runtime or files.
//!
//! These tests need ONNX Runtime (`bash scripts/install_onnxruntime.sh`); without it they
//! fail with the install command. They never skip.

use s3::dataset::Dataset;
use s3::metric::standard_noise;
use s3::model::{Denoiser, TimePoint};
use s3::noise::NoiseSchedule;
use s3::onnx::{OnnxModel, RunOptions};
use s3::solver::{ClassicSolver, Sampler, SolverSchedule, Spacing};
use std::path::Path;
use std::process::{Command, Output};

const MIXTURE_DIR: &str = "tests/fixtures/onnx/mixture";
const MODELS_DIR: &str = "tests/fixtures/models";

fn mixture_graph(batch_size: usize) -> OnnxModel {
    OnnxModel::load(
        &Path::new(MIXTURE_DIR).join("model.json"),
        RunOptions {
            batch_size,
            ..RunOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    let scale = a.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    diff / scale
}

#[test]
fn mixture_graph_matches_the_independent_float64_values() {
    let text = std::fs::read_to_string(Path::new(MIXTURE_DIR).join("expected.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let native = Dataset::load(&format!("{MIXTURE_DIR}/mixture.json")).unwrap();
    let graph = mixture_graph(64);
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let f = |k: &str| c[k].as_f64().unwrap();
        let v = |k: &str| -> Vec<f64> {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let time = TimePoint {
            t: f("t"),
            alpha: f("alpha"),
            sigma: f("sigma"),
        };
        let (x, want) = (v("x"), v("eps"));
        // The native model in f64 agrees with numpy's float64 to rounding.
        let mut got = vec![0f64; 4];
        native.model().forward_f64(&x, time, &mut got).unwrap();
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 1e-9 * scale,
                "native {got:?} vs {want:?} at {c}"
            );
        }
        // The graph in f32, through ONNX Runtime, to float32 precision.
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut out = vec![0f32; 4];
        graph.forward(&xf, time, &mut out).unwrap();
        let wantf: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        assert!(
            max_rel(&wantf, &out) < 2e-6,
            "graph {out:?} vs {want:?} at t = {}",
            time.t
        );
    }
}

/// Every classic solver at NFE 5, 6 and 10 on two time spacings. (Random searched schedules
/// are left out: some take tiny steps with high-order extrapolation, which amplifies any f32
/// difference in ε — 1e-7 — to ~1e-4 in the samples, for either backend alike.)
fn schedules(ns: &NoiseSchedule) -> Vec<SolverSchedule> {
    let spacings = Spacing::all_for(ns);
    let mut out = Vec::new();
    for (i, solver) in ClassicSolver::all().into_iter().enumerate() {
        let nfe = [5, 6, 10][i % 3];
        let spacing = spacings[i % 2];
        let ts = spacing.timesteps(ns, nfe, ns.t_max(), ns.t_min()).unwrap();
        out.push(solver.build(ts, true).unwrap());
    }
    out
}

#[test]
fn sampling_through_ort_equals_the_native_model() {
    let native = Dataset::load(&format!("{MIXTURE_DIR}/mixture.json")).unwrap();
    let ns = native.noise.build();
    let mean = native.data_mean().unwrap();
    let mut worst = 0f64;
    // Model batch sizes that split the sample batch unevenly, and sample batches of 1 to 64.
    for (samples, model_batch) in [(1, 64), (7, 3), (64, 64), (64, 5)] {
        let graph = mixture_graph(model_batch);
        let z = standard_noise(samples, 4, samples as u64);
        for s in schedules(&ns) {
            let x_t: Vec<f32> = z
                .iter()
                .map(|v| v * s3::metric::prior_std(&ns, s.timesteps[0]) as f32)
                .collect();
            let a = native.sampler(&ns).sample(&s, &x_t).unwrap().samples;
            let b = Sampler::new(&graph, &ns)
                .with_data_mean(mean.clone())
                .sample(&s, &x_t)
                .unwrap()
                .samples;
            let rel = max_rel(&a, &b);
            worst = worst.max(rel);
            assert!(
                rel <= 1e-5,
                "{samples} samples, model batch {model_batch}: ORT vs native {rel:.2e} for {}",
                serde_json::to_string(&s).unwrap()
            );
        }
    }
    eprintln!("worst ORT vs native relative difference: {worst:.2e}");
}

fn s3(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_s3"));
    c.args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = s3(args, &[]);
    assert!(
        out.status.success(),
        "s3 {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cifar10_search_runs_end_to_end_on_the_fixture_networks() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let stdout = ok(&[
        "search",
        "--no-refine",
        "--dataset",
        "cifar10",
        "--models-dir",
        MODELS_DIR,
        "--nfe",
        "5",
        "--space",
        "quick",
        "--budget",
        "12",
        "--stage-size",
        "6",
        "--samples",
        "16",
        "--final-samples",
        "16",
        "--batch-size",
        "16",
        "--store",
        store,
        "--run-id",
        "c10",
        "--json",
    ]);
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outcome = &events.last().unwrap()["outcome"];
    assert_eq!(outcome["completed"], true, "{stdout}");
    // Every trial evaluated (AFS average_x0 uses the config's data_mean), none failed.
    let trials: Vec<_> = events.iter().filter(|e| e["event"] == "trial").collect();
    assert_eq!(trials.len(), 12);
    assert!(trials.iter().all(|t| t["error"].is_null()), "{trials:?}");
    assert_eq!(outcome["evaluated"], 12);
    let finals = outcome["final_ranking"].as_array().unwrap();
    assert!(!finals.is_empty());
    for f in finals {
        let v = f["value"].as_f64().unwrap();
        assert!(v.is_finite() && v >= 0.0, "{f}");
    }
    // The store records the run with its models directory, and the cache keys carry FID.
    let show: serde_json::Value =
        serde_json::from_str(&ok(&["runs", "show", "c10", "--store", store, "--json"])).unwrap();
    assert!(
        show["run"]["config"]["models_dir"]
            .as_str()
            .unwrap()
            .ends_with("fixtures/models")
    );
    assert_eq!(show["finished"], 12);
    // The winner exports; for a discrete DDPM, diffusers gets integer timesteps.
    let d: serde_json::Value = serde_json::from_str(&ok(&[
        "export",
        "c10",
        "--format",
        "diffusers",
        "--store",
        store,
    ]))
    .unwrap();
    assert!(d["timesteps"].as_array().is_some(), "{d}");
    // A resumed, finished run is still complete and evaluates nothing new.
    let again = ok(&["search", "--resume", "c10", "--store", store, "--json"]);
    assert!(!again.contains("\"event\":\"trial\""), "{again}");
}

#[test]
fn missing_cifar10_files_are_listed_with_the_commands_that_make_them() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir_all(models.join("cifar10")).unwrap();
    std::fs::copy(
        Path::new(MODELS_DIR).join("cifar10/train_stats.npz"),
        models.join("cifar10/train_stats.npz"),
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = s3(
        &[
            "search",
            "--nfe",
            "5",
            "--dataset",
            "cifar10",
            "--store",
            store.to_str().unwrap(),
        ],
        &[("S3_MODELS_DIR", models.to_str().unwrap())],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "model.json",
        "export.py ddpm-cifar10",
        "inception.json",
        "export.py inception",
    ] {
        assert!(err.contains(needle), "missing `{needle}` in: {err}");
    }
    assert!(
        !err.contains("train_stats.npz\n"),
        "present file listed: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // Nothing else ran: no run was recorded.
    assert!(!store.join("runs").exists());
}

#[test]
fn a_missing_onnx_runtime_gives_the_install_command() {
    let out = s3(
        &[
            "baselines",
            "--nfe",
            "5",
            "--dataset",
            "cifar10",
            "--models-dir",
            MODELS_DIR,
        ],
        &[("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ORT_DYLIB_PATH") && err.contains("scripts/install_onnxruntime.sh"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn cuda_on_a_cpu_runtime_says_so() {
    let out = s3(
        &[
            "baselines",
            "--nfe",
            "5",
            "--dataset",
            "cifar10",
            "--models-dir",
            MODELS_DIR,
            "--device",
            "cuda",
        ],
        &[],
    );
    // The CPU wheel has no CUDA provider; a CUDA build would run instead.
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no CUDA execution provider") && err.contains("--device cpu"),
            "{err}"
        );
    }
}

//! Networks as datasets (`--dataset model.json` or a directory): model configs against the
//! native mixture for each output parameterization, a latent model with a decoder and
//! classifier-free guidance against numpy, the teacher reference (converged and cached), the
//! budget bound on the cifar10 fixtures, and the errors of configs that do not fit their
//! graphs. Fixtures: tests/fixtures/ (scripts/make_onnx_fixtures.py). Needs ONNX Runtime
//! (`bash scripts/install_onnxruntime.sh`); never skips.

mod common;
use common::{fails, max_rel, ok};

use s3::dataset::Dataset;
use s3::metric::standard_noise;
use s3::model::{Denoiser, TimePoint};
use s3::onnx::{OnnxModel, RunOptions};
use s3::solver::{Spacing, classic_grid};
use std::path::{Path, PathBuf};
use std::process::Command;

const FIXTURES: &str = "tests/fixtures/onnx";
const MODELS_DIR: &str = "tests/fixtures/models";

/// ‖a − b‖₂ / ‖a‖₂ over the whole array.
fn norm_rel(a: &[f32], b: &[f32]) -> f64 {
    let (mut d, mut n) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        d += (*x as f64 - *y as f64).powi(2);
        n += (*x as f64).powi(2);
    }
    (d / n).sqrt()
}

#[test]
fn model_configs_equal_the_native_mixture_for_eps_x0_v_and_velocity() {
    for param in ["eps", "x0", "v", "flow"] {
        let dir = format!("{FIXTURES}/mixture-{param}");
        // A directory and its model.json load the same network.
        let graph = Dataset::load(&dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let by_file = Dataset::load(&format!("{dir}/model.json")).unwrap();
        assert_eq!(graph.identity(), by_file.identity());
        let want = if param == "flow" { "velocity" } else { param };
        assert_eq!(
            serde_json::to_value(graph.model().parameterization()).unwrap(),
            want
        );
        // The same mixture natively, under the noise schedule the graph was built for.
        let mut native = Dataset::load(&format!("{dir}/mixture.json")).unwrap();
        native.noise = graph.noise;
        let ns = graph.noise.build();
        let z = standard_noise(32, 4, 3);
        let (mut worst, mut worst_max) = (0f64, 0f64);
        for nfe in [5, 8] {
            // Spacings without the tiny last steps of Karras's, where high-order extrapolation
            // magnifies any f32 difference in the model output (either backend alike).
            let grid = classic_grid(&ns, nfe)
                .into_iter()
                .filter(|e| !matches!(e.spacing, Spacing::Karras { .. }));
            for entry in grid {
                let label = entry.label();
                let s = entry.schedule.unwrap();
                let scale = s3::metric::prior_std(&ns, s.timesteps[0]) as f32;
                let x_t: Vec<f32> = z.iter().map(|v| v * scale).collect();
                let a = native.sampler(&ns).sample(&s, &x_t).unwrap().samples;
                let b = graph.sampler(&ns).sample(&s, &x_t).unwrap().samples;
                let rel = norm_rel(&a, &b);
                worst = worst.max(rel);
                worst_max = worst_max.max(max_rel(&a, &b));
                assert!(rel <= 1e-5, "{param}: {label} at NFE {nfe}: {rel:.2e}");
            }
        }
        eprintln!(
            "{param}: graph vs native, worst normwise relative difference {worst:.2e} \
             (largest element difference / largest value {worst_max:.2e})"
        );
        // The config's `data` gives FD against the exact moments, with a floor.
        assert_eq!(graph.metric, s3::metric::MetricKind::Fd);
        assert!(graph.exact_data().is_some());
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    fn walk(v: &serde_json::Value, out: &mut Vec<f32>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

#[test]
fn guidance_equals_uncond_plus_w_times_the_difference_against_numpy() {
    let dir = Path::new(FIXTURES).join("latent-cfg");
    let doc = json(&dir.join("expected_cfg.json"));
    let w = doc["guidance_scale"].as_f64().unwrap();
    assert_ne!(w, 1.0);
    let model = OnnxModel::load(
        &dir,
        RunOptions {
            batch_size: 4, // splits the 6 samples: condition rows must follow the global index
            ..RunOptions::default()
        },
    )
    .unwrap();
    let ns = model.config().noise_schedule.build();
    let batches = doc["batches"].as_array().unwrap();
    assert!(batches.len() >= 3);
    for b in batches {
        let t = b["t"].as_f64().unwrap();
        let x = floats(&b["x"]);
        let want = floats(&b["out"]);
        let mut out = vec![0f32; x.len()];
        let time = TimePoint {
            t,
            alpha: ns.alpha(t),
            sigma: ns.sigma(t),
        };
        model.forward(&x, time, &mut out).unwrap();
        let diff = out
            .iter()
            .zip(&want)
            .fold(0f64, |m, (a, b)| m.max((*a as f64 - *b as f64).abs()));
        assert!(diff <= 1e-6, "t = {t}: CFG differs from numpy by {diff:e}");
    }
    // The decoder, through the dataset, equals onnxruntime's image.
    let ds = Dataset::load(dir.to_str().unwrap()).unwrap();
    assert_eq!(ds.output_shape(), &[3, 8, 8]);
    let images = ds.decode(floats(&doc["decoder"]["latent"])).unwrap();
    let want = floats(&doc["decoder"]["image"]);
    assert!(max_rel(&want, &images) <= 1e-6);
}

#[test]
fn a_latent_model_runs_sample_decoder_metric_and_search() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let fixture = format!("{FIXTURES}/latent-cfg");
    let out = dir.path().join("x.npy");
    let png = dir.path().join("x.png");
    let schedules = dir.path().join("sch");
    ok(&[
        "baselines",
        "--dataset",
        &fixture,
        "--nfe",
        "5",
        "--samples",
        "8",
        "--reference-nfe",
        "40",
        "--store",
        store,
        "--emit",
        schedules.to_str().unwrap(),
    ]);
    let schedule = schedules.join("unipc-bh1-3_time-quadratic.json");
    let stderr = String::from_utf8(
        Command::new(env!("CARGO_BIN_EXE_s3"))
            .args([
                "sample",
                "--dataset",
                &fixture,
                "--schedule",
                schedule.to_str().unwrap(),
                "--samples",
                "6",
                "--out",
                out.to_str().unwrap(),
                "--grid",
                png.to_str().unwrap(),
            ])
            .output()
            .unwrap()
            .stderr,
    )
    .unwrap();
    assert!(
        stderr.contains("decoded samples of shape [3, 8, 8]"),
        "{stderr}"
    );
    let x = s3::io::npy::read_samples(&out, &[3, 8, 8]).unwrap();
    assert_eq!(x.count, 6);
    assert!(x.data.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert!(png.exists());
    // No FID files and no exact data: the default metric is MSE to the teacher.
    let report: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--dataset",
        &fixture,
        "--schedule",
        schedule.to_str().unwrap(),
        "--samples",
        "8",
        "--reference-nfe",
        "40",
        "--store",
        store,
        "--json",
    ]))
    .unwrap();
    assert_eq!(report["metric"], "mse");
    assert_eq!(report["reference"]["cached"], true, "baselines solved it");
    assert!(report["psnr_db"].as_f64().unwrap().is_finite());
    let search = ok(&[
        "search",
        "--no-refine",
        "--dataset",
        &fixture,
        "--nfe",
        "4",
        "--budget",
        "8",
        "--samples",
        "8",
        "--final-samples",
        "8",
        "--reference-nfe",
        "40",
        "--store",
        store,
        "--json",
    ]);
    let last: serde_json::Value = serde_json::from_str(search.lines().last().unwrap()).unwrap();
    assert_eq!(last["outcome"]["completed"], true, "{search}");
}

/// `s3 eval --metric mse --json` on `dataset` with a fresh or shared store.
fn teacher_eval(dataset: &[&str], schedule: &Path, store: &str, nfe: &str) -> serde_json::Value {
    let mut args = vec!["eval"];
    args.extend(dataset);
    args.extend([
        "--schedule",
        schedule.to_str().unwrap(),
        "--metric",
        "mse",
        "--samples",
        "8",
        "--reference-nfe",
        nfe,
        "--store",
        store,
        "--json",
    ]);
    serde_json::from_str(&ok(&args)).unwrap()
}

#[test]
fn the_teacher_converges_by_doubling_and_is_paid_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let schedules = dir.path().join("sch");
    let cifar = ["--dataset", "cifar10", "--models-dir", MODELS_DIR];
    let latent = [
        "--dataset",
        "tests/fixtures/onnx/latent-cfg",
        "--models-dir",
        MODELS_DIR,
    ];
    let mut emit = vec!["baselines", "--nfe", "5", "--samples", "2", "--emit"];
    emit.push(schedules.to_str().unwrap());
    emit.extend(cifar);
    ok(&emit);
    let schedule = schedules.join("dpm-solver++-2M_logsnr.json");
    let digits_net = ["--dataset", "digits-net", "--models-dir", MODELS_DIR];
    for (name, dataset, nfe) in [
        ("tiny U-Net", cifar, "200"),
        ("latent", latent, "100"),
        ("digits-net", digits_net, "200"),
    ] {
        let first = teacher_eval(&dataset, &schedule, store, nfe);
        let second = teacher_eval(&dataset, &schedule, store, nfe);
        assert_eq!(first["reference"]["cached"], false, "{name}");
        assert_eq!(
            second["reference"]["cached"], true,
            "{name}: the second run pays no reference"
        );
        assert_eq!(first["value"], second["value"], "{name}");
        // Converged: the half-NFE solve agrees with the teacher far better than the NFE-5
        // schedule does.
        let doubling = first["reference"]["doubling_mse"].as_f64().unwrap();
        let value = first["value"].as_f64().unwrap();
        eprintln!("{name}: teacher doubling MSE {doubling:.3e}, NFE-5 schedule MSE {value:.3e}");
        assert!(doubling < 0.01 * value, "{name}: {doubling:e} vs {value:e}");
        assert_eq!(first["floor"]["mean"], first["reference"]["doubling_mse"]);
        // Another teacher NFE is another reference.
        let other = teacher_eval(&dataset, &schedule, store, "48");
        assert_eq!(other["reference"]["cached"], false, "{name}");
    }
}

#[test]
fn the_headline_search_runs_on_the_cifar10_fixtures_and_the_budget_bounds_its_cost() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    // The default space (no --space) on the discrete DDPM schedule.
    let stdout = ok(&[
        "search",
        "--no-refine",
        "--nfe",
        "5",
        "--dataset",
        "cifar10",
        "--models-dir",
        MODELS_DIR,
        "--budget",
        "6",
        "--samples",
        "16",
        "--store",
        store,
        "--run-id",
        "b6",
        "--json",
    ]);
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |kind: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["event"] == kind).collect()
    };
    let trials = of("trial");
    assert_eq!(trials.len(), 6, "{stdout}");
    let computed = trials.iter().filter(|t| t["cached"] == false).count();
    assert!(computed <= 6);
    assert!(trials.iter().all(|t| t["error"].is_null()), "{trials:?}");
    // The seeds are the best-known few, inside the budget.
    assert_eq!(of("started")[0]["seeds"], 2);
    let seeds: Vec<_> = trials
        .iter()
        .filter(|t| t["source"].as_str().unwrap().starts_with("seed:"))
        .collect();
    assert_eq!(seeds.len(), 2);
    assert_eq!(seeds[0]["source"], "seed:unipc-bh1(3) time-quadratic");
    // The estimate comes after the first evaluation and counts the final ranking.
    let estimate = of("estimate");
    assert_eq!(estimate.len(), 1);
    assert!(estimate[0]["total_s"].as_f64().unwrap() > 0.0);
    assert_eq!(estimate[0]["evaluations_left"], 5);
    let fin = of("final");
    assert_eq!(fin.len(), 1);
    assert!(fin[0]["evaluations"].as_u64().unwrap() <= 6);
    let outcome = &events.last().unwrap()["outcome"];
    assert_eq!(outcome["evaluated"], 6);
    // The run's log holds the same events, one JSON object a line.
    let log = PathBuf::from(store).join("runs/b6/events.jsonl");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.lines().count(),
        events.len() - 1,
        "{}",
        log.display()
    );
}

/// A copy in `dst` of the fixture folder `fixture` (its `files` and its `model.json`, edited by
/// `edit`).
fn edited_fixture(
    fixture: &str,
    files: &[&str],
    dst: &Path,
    edit: &dyn Fn(&mut serde_json::Value),
) -> PathBuf {
    let src = Path::new(FIXTURES).join(fixture);
    std::fs::create_dir_all(dst).unwrap();
    for f in files {
        std::fs::copy(src.join(f), dst.join(f)).unwrap();
    }
    let mut c = json(&src.join("model.json"));
    edit(&mut c);
    std::fs::write(dst.join("model.json"), c.to_string()).unwrap();
    dst.to_path_buf()
}

#[test]
fn configs_that_do_not_fit_their_graphs_are_refused_naming_field_and_graph() {
    let dir = tempfile::tempdir().unwrap();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &[&str])> = vec![
        (
            "input name",
            Box::new(|c| c["inputs"]["sample"] = "x".into()),
            &["inputs.sample", "`x`", "sample, time"],
        ),
        (
            "output name",
            Box::new(|c| c["output"] = "noise".into()),
            &["output", "`noise`", "eps"],
        ),
        (
            "sample shape",
            Box::new(|c| c["sample_shape"] = serde_json::json!([2, 2])),
            &["inputs.sample", "[?, 4]", "[?, 2, 2]"],
        ),
        (
            "data shape",
            Box::new(|c| c["data"] = "../../nothing.json".into()),
            &["nothing.json"],
        ),
    ];
    for (what, edit, needles) in cases {
        let sub = dir.path().join(what.replace(' ', "-"));
        let model = edited_fixture(
            "mixture-eps",
            &["model.onnx", "mixture.json"],
            &sub.join("model"),
            &*edit,
        );
        let store = sub.join("store");
        let err = fails(&[
            "search",
            "--dataset",
            model.to_str().unwrap(),
            "--nfe",
            "4",
            "--store",
            store.to_str().unwrap(),
        ]);
        for n in needles {
            assert!(err.contains(n), "{what}: {n:?} missing from: {err}");
        }
        assert!(
            !store.exists(),
            "{what}: a model that fails to load records nothing"
        );
    }
}

#[test]
fn decoders_and_conditioning_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| -> PathBuf {
        let files = ["model.onnx", "decoder.onnx", "conditioning.npy"];
        edited_fixture("latent-cfg", &files, &dir.path().join(name), edit)
    };
    let decoder = copy("decoder", &|c| {
        c["decoder"]["output_shape"] = serde_json::json!([3, 16, 16])
    });
    let err = fails(&[
        "eval",
        "--dataset",
        decoder.to_str().unwrap(),
        "--schedule",
        "x.json",
    ]);
    assert!(
        err.contains("decoder.output")
            && err.contains("[?, 3, 8, 8]")
            && err.contains("[?, 3, 16, 16]"),
        "{err}"
    );
    let null = copy("null", &|c| c["conditioning"]["null_index"] = 9.into());
    let err = fails(&[
        "eval",
        "--dataset",
        null.to_str().unwrap(),
        "--schedule",
        "x.json",
    ]);
    assert!(
        err.contains("conditioning.null_index") && err.contains("5 rows"),
        "{err}"
    );
    // Conditions whose shape the graph's input does not take.
    let dst = copy("shape", &|_| {});
    let rows: Vec<f32> = (0..5 * 4 * 8).map(|i| i as f32).collect();
    s3::io::npy::write_samples(&dst.join("conditioning.npy"), &rows, &[4, 8]).unwrap();
    let err = fails(&[
        "eval",
        "--dataset",
        dst.to_str().unwrap(),
        "--schedule",
        "x.json",
    ]);
    assert!(
        err.contains("conditioning.input")
            && err.contains("[?, 3, 8]")
            && err.contains("[?, 4, 8]"),
        "{err}"
    );
}

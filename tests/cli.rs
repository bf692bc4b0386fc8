//! The `s3` binary end to end: the happy paths of `baselines`, `sample` and `eval`, and bad
//! input that must fail with a clear error naming the file and field (never a panic).

mod common;
use common::{fails, ok};

use std::path::{Path, PathBuf};

/// Emits the classic schedules for toy2d at NFE 4 into `dir` and returns the DPM-Solver++(2M)
/// logSNR one.
fn emitted(dir: &Path) -> PathBuf {
    let d = dir.to_str().unwrap();
    ok(&[
        "baselines",
        "--dataset",
        "toy2d",
        "--nfe",
        "4",
        "--samples",
        "200",
        "--emit",
        d,
    ]);
    let p = dir.join("dpm-solver++-2M_logsnr.json");
    assert!(p.exists(), "missing {}", p.display());
    p
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn schedule_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(emitted(dir)).unwrap()).unwrap()
}

#[test]
fn baselines_table_lists_every_solver_and_spacing_best_first() {
    let out = ok(&[
        "baselines",
        "--dataset",
        "toy2d",
        "--nfe",
        "5",
        "--samples",
        "300",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = v["results"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        9 * 4,
        "9 solvers × 4 spacings for a continuous schedule"
    );
    let values: Vec<f64> = rows.iter().map(|r| r["value"].as_f64().unwrap()).collect();
    assert!(
        values.windows(2).all(|w| w[0] <= w[1]),
        "sorted best first: {values:?}"
    );
    assert!(v["floor"]["mean"].as_f64().unwrap() > 0.0);
    // The text form is a table with a header.
    let text = ok(&[
        "baselines",
        "--dataset",
        "toy2d",
        "--nfe",
        "5",
        "--samples",
        "300",
    ]);
    assert!(text.contains("rank") && text.contains("dpm-solver++(3M)") && text.contains("logsnr"));
}

#[test]
fn discrete_schedule_adds_diffusers_spacings() {
    let out = ok(&[
        "baselines",
        "--dataset",
        "toy2d",
        "--nfe",
        "5",
        "--samples",
        "200",
        "--noise-schedule",
        "vp-discrete",
        "--betas",
        "scaled_linear",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["results"].as_array().unwrap().len(), 9 * 7);
    assert_eq!(v["noise_schedule"], "vp-discrete (scaled_linear betas)");
}

#[test]
fn sample_and_eval_run_an_emitted_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let sched = emitted(dir.path());
    let sched = sched.to_str().unwrap();
    let out = dir.path().join("x.npy");
    let png = dir.path().join("x.png");
    ok(&[
        "sample",
        "--dataset",
        "toy2d",
        "--schedule",
        sched,
        "--samples",
        "50",
        "--out",
        out.to_str().unwrap(),
        "--grid",
        png.to_str().unwrap(),
    ]);
    let x = s3::io::npy::read_samples(&out, &[2]).unwrap();
    assert_eq!(x.count, 50);
    assert!(std::fs::metadata(&png).unwrap().len() > 100);
    // The same noise file reproduces the same samples.
    let noise = dir.path().join("z.npy");
    s3::io::npy::write_samples(&noise, &s3::metric::standard_noise(50, 2, 0), &[2]).unwrap();
    let out2 = dir.path().join("x2.npy");
    ok(&[
        "sample",
        "--dataset",
        "toy2d",
        "--schedule",
        sched,
        "--noise",
        noise.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert_eq!(s3::io::npy::read_samples(&out2, &[2]).unwrap().data, x.data);
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "eval",
        "--dataset",
        "toy2d",
        "--schedule",
        sched,
        "--samples",
        "300",
        "--json",
    ]))
    .unwrap();
    assert_eq!(v["nfe"], 4);
    assert!(v["value"].as_f64().unwrap() > 0.0 && v["floor"]["mean"].as_f64().unwrap() > 0.0);
}

#[test]
fn digits_grid_is_a_picture() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    ok(&["baselines", "--nfe", "3", "--samples", "100", "--emit", d]);
    let sched = dir.path().join("unipc-bh2-3_time-quadratic.json");
    let png = dir.path().join("digits.png");
    ok(&[
        "sample",
        "--schedule",
        sched.to_str().unwrap(),
        "--samples",
        "16",
        "--out",
        dir.path().join("d.npy").to_str().unwrap(),
        "--grid",
        png.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
}

#[test]
fn malformed_schedule_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.json", "{\"format\": \"s3-schedule\", ");
    let err = fails(&["eval", "--dataset", "toy2d", "--schedule", &p]);
    assert!(
        err.contains("bad.json") && err.contains("--schedule"),
        "{err}"
    );
}

#[test]
fn schedule_rule_violations_name_the_field_or_step() {
    let dir = tempfile::tempdir().unwrap();
    let base = schedule_json(dir.path());
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "increasing.json",
            Box::new(|v| v["timesteps"][2] = serde_json::json!(0.99)),
            "strictly decrease",
        ),
        (
            "order.json",
            Box::new(|v| {
                v["steps"][1]["order"] = serde_json::json!(3);
                v["steps"][1]["derivatives"] =
                    serde_json::json!([{"points": [-2]}, {"points": [-2, -3]}]);
            }),
            "step 1: order 3 needs 3 history points",
        ),
        (
            "points.json",
            Box::new(|v| v["steps"][2]["derivatives"][0]["points"] = serde_json::json!([-4])),
            "point -4 is not in the history",
        ),
        (
            "nfe.json",
            Box::new(|v| v["nfe"] = serde_json::json!(7)),
            "field `nfe` is 7",
        ),
        (
            "unknown.json",
            Box::new(|v| v["steps"][0]["ordr"] = serde_json::json!(1)),
            "unknown field `ordr`",
        ),
        (
            "version.json",
            Box::new(|v| v["version"] = serde_json::json!(9)),
            "field `version`",
        ),
        (
            "corrector.json",
            Box::new(|v| {
                let last = v["steps"].as_array().unwrap().len() - 1;
                v["steps"][last]["corrector"] = serde_json::json!({"type": "pseudo", "order": 2, "derivatives": [{"points": [-1]}]});
            }),
            "last step cannot have a corrector",
        ),
    ];
    for (name, edit, expected) in cases {
        let mut v = base.clone();
        edit(&mut v);
        let p = write(dir.path(), name, &v.to_string());
        let err = fails(&["eval", "--dataset", "toy2d", "--schedule", &p]);
        assert!(
            err.contains(name) && err.contains(expected),
            "{name}: {err}"
        );
    }
}

#[test]
fn inconsistent_mixture_files_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let sched = emitted(dir.path());
    let cases = [
        (
            "w.json",
            r#"{"shape":[2],"weights":[0.7,0.7],"means":[[0,0],[1,1]],"stds":[1,1]}"#,
            "weights",
        ),
        (
            "m.json",
            r#"{"shape":[2],"weights":[1.0],"means":[[0,0,1]],"stds":[1]}"#,
            "means[0] has 3 values",
        ),
        (
            "s.json",
            r#"{"shape":[2],"weights":[1.0],"means":[[0,0]],"stds":[0]}"#,
            "stds",
        ),
        (
            "x.json",
            r#"{"shape":[2],"weights":[1.0],"means":[[0,0]],"stds":[1],"sigma":1}"#,
            "unknown field `sigma`",
        ),
        (
            "n.json",
            r#"{"shape":[2],"weights":[1.0],"means":[[0,0]],"stds":[1],"noise_schedule":"vp-quad"}"#,
            "noise_schedule",
        ),
        (
            "j.json",
            r#"{"shape":[2],"weights":[1.0],"#,
            "not a valid mixture file",
        ),
    ];
    for (name, text, expected) in cases {
        let p = write(dir.path(), name, text);
        let err = fails(&[
            "eval",
            "--dataset",
            &p,
            "--schedule",
            sched.to_str().unwrap(),
        ]);
        assert!(
            err.contains(name) && err.contains(expected),
            "{name}: {err}"
        );
    }
    let err = fails(&[
        "eval",
        "--dataset",
        "cifar11",
        "--schedule",
        sched.to_str().unwrap(),
    ]);
    assert!(
        err.contains("cifar11") && err.contains("digits, toy2d, gmm32"),
        "{err}"
    );
}

#[test]
fn bad_noise_files_name_the_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let sched = emitted(dir.path());
    let sched = sched.to_str().unwrap();
    let out = dir.path().join("o.npy");
    let out = out.to_str().unwrap();
    let mut z = vec![0.5f32; 20];
    z[7] = f32::NAN;
    let nan = dir.path().join("nan.npy");
    s3::io::npy::write_samples(&nan, &z, &[2]).unwrap();
    let err = fails(&[
        "sample",
        "--dataset",
        "toy2d",
        "--schedule",
        sched,
        "--noise",
        nan.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert!(
        err.contains("nan.npy") && err.contains("[3, 1]") && err.contains("finite"),
        "{err}"
    );
    let wrong = dir.path().join("wrong.npy");
    s3::io::npy::write_samples(&wrong, &[0.0; 12], &[3]).unwrap();
    let err = fails(&[
        "sample",
        "--dataset",
        "toy2d",
        "--schedule",
        sched,
        "--noise",
        wrong.to_str().unwrap(),
        "--out",
        out,
    ]);
    assert!(
        err.contains("wrong.npy") && err.contains("[4, 3]") && err.contains("expected [n, 2]"),
        "{err}"
    );
    let text = write(dir.path(), "text.npy", "not numpy");
    let err = fails(&[
        "sample",
        "--dataset",
        "toy2d",
        "--schedule",
        sched,
        "--noise",
        &text,
        "--out",
        out,
    ]);
    assert!(
        err.contains("text.npy") && err.contains("not a .npy file"),
        "{err}"
    );
    let err = fails(&[
        "sample",
        "--dataset",
        "toy2d",
        "--schedule",
        sched,
        "--noise",
        "/nonexistent/z.npy",
        "--out",
        out,
    ]);
    assert!(err.contains("/nonexistent/z.npy"), "{err}");
}

#[test]
fn bad_flags_are_clear_errors() {
    let err = fails(&["baselines", "--nfe", "0"]);
    assert!(err.contains("--nfe"), "{err}");
    let err = fails(&["baselines", "--nfe", "3", "--noise-schedule", "vp-square"]);
    assert!(
        err.contains("--noise-schedule") && err.contains("vp-square"),
        "{err}"
    );
    let err = fails(&["baselines", "--nfe", "3", "--betas", "linear"]);
    assert!(
        err.contains("--betas applies only to --noise-schedule vp-discrete"),
        "{err}"
    );
    let err = fails(&["baselines", "--nfe", "3", "--metric", "fid"]);
    assert!(err.contains("--metric") && err.contains("fid"), "{err}");
}

/// Runs `s3 args`, reads `lines` lines of its stdout, closes the pipe (as `| head -N` does) and
/// waits: returns the exit status and stderr.
fn closed_after(args: &[&str], lines: usize) -> (std::process::ExitStatus, String) {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_s3"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    for _ in 0..lines {
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
    }
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (child.wait().unwrap(), err)
}

/// `s3 search … --json | head -2` and `s3 baselines | head -1`: a closed stdout neither
/// panics nor stops the work; the search completes its budget and records it.
#[test]
fn a_closed_stdout_stops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let args = [
        "search",
        "--dataset",
        "toy2d",
        "--nfe",
        "3",
        "--budget",
        "8",
        "--stage-size",
        "4",
        "--samples",
        "100",
        "--store",
        store,
        "--run-id",
        "piped",
        "--json",
        "--no-refine",
    ];
    let (status, err) = closed_after(&args, 2);
    assert!(status.success(), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let show: serde_json::Value =
        serde_json::from_str(&ok(&["runs", "show", "piped", "--store", store, "--json"])).unwrap();
    assert_eq!(show["finished"], 8, "{show}");
    let (status, err) = closed_after(
        &[
            "baselines",
            "--dataset",
            "toy2d",
            "--nfe",
            "3",
            "--samples",
            "100",
        ],
        1,
    );
    assert!(
        status.success() && !err.contains("panicked"),
        "{status:?}: {err}"
    );
}

/// Run ids are one folder name: a path is refused before anything is written.
#[test]
fn run_ids_cannot_leave_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    for id in ["../escaped", "a/b", ".hidden", ""] {
        let e = fails(&["search", "--nfe", "3", "--store", s, "--run-id", id]);
        assert!(e.contains("--run-id") && e.contains("run id"), "{e}");
        let e = fails(&["runs", "show", id, "--store", s]);
        assert!(e.contains("run id"), "{e}");
    }
    assert!(!store.exists() && !dir.path().join("escaped").exists());
}

/// Sizes that cannot fit memory are clear errors before any work or store record: a
/// mixture shape whose product overflows, and sample counts beyond one buffer.
#[test]
fn oversized_shapes_and_sample_counts_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let huge = write(
        dir.path(),
        "huge.json",
        r#"{"shape": [4294967296, 4294967296], "weights": [1.0], "means": [[0.0]], "stds": [0.1]}"#,
    );
    let e = fails(&["baselines", "--dataset", &huge, "--nfe", "3"]);
    assert!(
        e.contains("shape") && e.contains("values per sample"),
        "{e}"
    );
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let e = fails(&[
        "search",
        "--nfe",
        "3",
        "--samples",
        "10000000000000000000",
        "--store",
        s,
    ]);
    assert!(e.contains("--samples") && e.contains("exceeds"), "{e}");
    let e = fails(&[
        "search",
        "--nfe",
        "3",
        "--final-samples",
        "100000000000",
        "--store",
        s,
    ]);
    assert!(e.contains("--final-samples"), "{e}");
    assert!(!store.exists(), "a refused search left a store behind");
    let sched = emitted(dir.path());
    let out = dir.path().join("x.npy");
    let e = fails(&[
        "sample",
        "--dataset",
        "toy2d",
        "--schedule",
        sched.to_str().unwrap(),
        "--samples",
        "10000000000000000000",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(e.contains("--samples"), "{e}");
}

/// A statistics file with empty `mu`/`sigma` is a clear error naming the file, not a panic
/// in the linear algebra.
#[test]
fn empty_fid_statistics_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.npz");
    let empty = s3::metric::Moments {
        mu: vec![],
        cov: vec![],
    };
    s3::metric::stats_file::write_fid_stats(&path, &empty).unwrap();
    let p = path.to_str().unwrap();
    let e = fails(&["fid", p, p]);
    assert!(e.contains("empty.npz") && e.contains("d ≥ 1"), "{e}");
}

/// The default store `./s3-store` (and any relative `--store`) works from a fresh working
/// directory: a search creates it, journals included, and `runs list` and `store check`
/// read it back.
#[test]
fn a_relative_store_path_works_from_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_s3"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("S3_STORE")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{args:?}: {err}");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let search = [
        "search",
        "--dataset",
        "toy2d",
        "--nfe",
        "2",
        "--budget",
        "3",
        "--samples",
        "50",
        "--final-samples",
        "60",
        "--run-id",
        "rel",
        "--quiet",
    ];
    run(&search);
    assert!(dir.path().join("s3-store/evals.jsonl").is_file());
    assert!(run(&["runs", "list"]).contains("rel"));
    let mut relative = search.to_vec();
    relative.extend(["--store", "st"]);
    run(&relative);
    assert!(run(&["store", "check", "--store", "st"]).contains("ok"));
}

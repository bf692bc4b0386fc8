//! `s3 runs plot` and `s3 runs compare` on real (tiny) searches: the picture is a valid SVG
//! and PNG with a line per run, the comparison agrees with the trial table, and bad input is
//! a clear error.

mod common;
use common::{fails, ok, s3};

use s3::search::TrialSource;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tempfile::TempDir;

/// The picture's size (`SIZE` in `src/cli/plot.rs`).
const PICTURE: (u32, u32) = (1000, 620);
/// The first run colour (Tableau blue), which the first run's curve is drawn in.
const FIRST_RUN_RGB: [u8; 3] = [31, 119, 180];
/// The first two run colours as SVG writes them (Tableau blue and orange).
const RUN_COLOURS_SVG: [&str; 2] = ["#1F77B4", "#FF7F0E"];

/// A store with three tiny toy2d searches: `a` (random) and `b` (evolution) at NFE 3 on equal
/// budgets, and `c` (random) at NFE 4, an unequal comparison with the others. Made once.
fn store() -> &'static Path {
    static STORE: OnceLock<TempDir> = OnceLock::new();
    STORE
        .get_or_init(|| {
            let dir = TempDir::new().unwrap();
            let d = dir.path().to_str().unwrap();
            for (id, strategy, nfe) in [
                ("a", "random", "3"),
                ("b", "evolution", "3"),
                ("c", "random", "4"),
            ] {
                ok(&[
                    "search",
                    "--dataset",
                    "toy2d",
                    "--nfe",
                    nfe,
                    "--budget",
                    "12",
                    "--samples",
                    "200",
                    "--final-samples",
                    "300",
                    "--stage-size",
                    "4",
                    "--strategy",
                    strategy,
                    "--store",
                    d,
                    "--run-id",
                    id,
                    "--quiet",
                ]);
            }
            dir
        })
        .path()
}

fn store_arg() -> &'static str {
    store().to_str().unwrap()
}

/// The trials of `run` as `s3 runs trials --format jsonl` prints them.
fn trials(run: &str) -> Vec<Value> {
    ok(&[
        "runs",
        "trials",
        run,
        "--format",
        "jsonl",
        "--store",
        store_arg(),
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// What `compare` must report, recomputed from the trial table: evaluations counted, best
/// value, best classic (label, value), and the evaluations at which the best so far first beat
/// the classic.
struct Expected {
    evaluated: usize,
    best: f64,
    classic: (String, f64),
    first_beat: Option<usize>,
}

fn expected(run: &str) -> Expected {
    let mut rows = trials(run);
    rows.sort_by_key(|t| t["number"].as_u64().unwrap());
    let counted: Vec<&Value> = rows
        .iter()
        .filter(|t| t["status"] == "finished" || t["status"] == "failed")
        .collect();
    let finished = |t: &Value| t["status"] == "finished";
    let mut classic: Option<(String, f64)> = None;
    for t in counted.iter().filter(|t| finished(t)) {
        let source = TrialSource::parse(t["source"].as_str().unwrap());
        let v = t["value"].as_f64().unwrap();
        if let Some(label) = source.classic_label()
            && classic.as_ref().is_none_or(|c| v < c.1)
        {
            classic = Some((label.to_string(), v));
        }
    }
    let classic = classic.expect("every run has classic seeds");
    let mut best = f64::INFINITY;
    let mut first_beat = None;
    for (i, t) in counted.iter().enumerate() {
        if let Some(v) = t["value"].as_f64().filter(|_| finished(t)) {
            best = best.min(v);
        }
        if first_beat.is_none() && best < classic.1 {
            first_beat = Some(i + 1);
        }
    }
    Expected {
        evaluated: counted.len(),
        best,
        classic,
        first_beat,
    }
}

fn compare_json(runs: &[&str], store: &str) -> Value {
    let mut args = vec!["runs", "compare"];
    args.extend(runs);
    args.extend(["--json", "--store", store]);
    serde_json::from_str(&ok(&args)).unwrap()
}

#[test]
fn compare_agrees_with_the_trial_table() {
    let doc = compare_json(&["a", "b"], store_arg());
    assert_eq!(doc["unequal"], serde_json::json!([]), "{doc}");
    let table = ok(&["runs", "compare", "a", "b", "--store", store_arg()]);
    let header = table.lines().next().unwrap();
    for col in [
        "strategy",
        "best FD",
        "best classic",
        "beat classic at",
        "final winner",
        "wall time",
    ] {
        assert!(header.contains(col), "{header}");
    }
    for (row, run) in doc["runs"].as_array().unwrap().iter().zip(["a", "b"]) {
        let want = expected(run);
        assert_eq!(row["run"], run);
        assert_eq!(row["nfe"], 3);
        assert_eq!(row["budget"], 12);
        assert_eq!(row["evaluated"].as_u64().unwrap() as usize, want.evaluated);
        assert_eq!(row["best"].as_f64().unwrap(), want.best);
        assert_eq!(row["best_classic"]["label"], want.classic.0.as_str());
        assert_eq!(
            row["best_classic"]["value"].as_f64().unwrap(),
            want.classic.1
        );
        assert_eq!(row["ratio"].as_f64().unwrap(), want.classic.1 / want.best);
        assert_eq!(
            row["first_beat"].as_u64().map(|n| n as usize),
            want.first_beat
        );
        assert!(row["wall_seconds"].as_f64().unwrap() >= 0.0, "{row}");
        let fin: Value = serde_json::from_str(
            &std::fs::read_to_string(store().join("runs").join(run).join("final.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            row["final_ranking"]["winner"],
            fin["ranking"][0]["schedule"]
        );
        assert_eq!(row["final_ranking"]["value"], fin["ranking"][0]["value"]);
        // The table row says the same.
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{run} ")))
            .unwrap();
        let beat = want
            .first_beat
            .map_or("never".to_string(), |n| n.to_string());
        for cell in [
            row["strategy"].as_str().unwrap().to_string(),
            format!("{:.6}", want.best),
            want.classic.0.clone(),
            format!("×{:.2}", want.classic.1 / want.best),
            beat,
            fin["ranking"][0]["schedule"].as_str().unwrap().to_string(),
        ] {
            assert!(line.contains(&cell), "{cell:?} not in {line}");
        }
    }
}

#[test]
fn compare_warns_when_runs_are_measured_differently() {
    let out = s3(&["runs", "compare", "a", "c", "--store", store_arg()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: the runs differ in NFE: a 3, c 4"),
        "{err}"
    );
    let doc = compare_json(&["a", "c"], store_arg());
    assert_eq!(doc["unequal"].as_array().unwrap().len(), 1, "{doc}");
}

#[test]
fn a_run_without_a_final_ranking_reads_not_finished() {
    let copy = TempDir::new().unwrap();
    copy_dir(store(), copy.path());
    std::fs::remove_file(copy.path().join("runs/a/final.json")).unwrap();
    let store = copy.path().to_str().unwrap();
    let doc = compare_json(&["a"], store);
    assert!(doc["runs"][0]["final_ranking"].is_null(), "{doc}");
    let table = ok(&["runs", "compare", "a", "--store", store]);
    assert!(table.contains("not finished"), "{table}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// Plots runs `a` and `b` into `name` in a fresh folder and returns its path.
fn plotted(dir: &TempDir, name: &str) -> PathBuf {
    let out = dir.path().join(name);
    let said = ok(&[
        "runs",
        "plot",
        "a",
        "b",
        "--out",
        out.to_str().unwrap(),
        "--store",
        store_arg(),
    ]);
    assert!(said.contains("2 runs"), "{said}");
    out
}

#[test]
fn plot_writes_an_svg_with_a_line_and_legend_per_run() {
    let dir = TempDir::new().unwrap();
    let svg = std::fs::read_to_string(plotted(&dir, "curve.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
    assert!(svg.trim_end().ends_with("</svg>"));
    // A curve per run in its colour, and the dashed classic line (drawn as segments).
    assert!(svg.matches("<polyline").count() >= 3, "{svg}");
    for colour in RUN_COLOURS_SVG {
        assert!(
            svg.contains(&format!(
                "<polyline fill=\"none\" opacity=\"1\" stroke=\"{colour}\" stroke-width=\"2\""
            )),
            "no curve in {colour}"
        );
    }
    for text in [
        "a (random)",
        "b (evolution)",
        "best classic",
        "best FD so far",
        "evaluations",
    ] {
        assert!(svg.contains(text), "{text:?} missing");
    }
}

#[test]
fn plot_writes_a_png_that_is_a_picture() {
    let dir = TempDir::new().unwrap();
    let file = std::fs::File::open(plotted(&dir, "curve.PNG")).unwrap();
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), PICTURE);
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(3).collect();
    let white = pixels.iter().filter(|p| **p == [255, 255, 255]).count();
    let dark = pixels.iter().filter(|p| p.iter().all(|&c| c < 80)).count();
    let curve = pixels.iter().filter(|p| **p == FIRST_RUN_RGB).count();
    // Mostly white background, with axes and text in black and the first run's curve.
    assert!(
        white > pixels.len() / 2,
        "{white} white of {}",
        pixels.len()
    );
    assert!(dark > 1000, "only {dark} dark pixels: no axes or text");
    assert!(curve > 100, "only {curve} pixels of the first run's colour");
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = TempDir::new().unwrap();
    let png = dir.path().join("x.png");
    let png = png.to_str().unwrap();
    let err = fails(&[
        "runs",
        "plot",
        "a",
        "nope",
        "--out",
        png,
        "--store",
        store_arg(),
    ]);
    assert!(err.contains("no run `nope`"), "{err}");
    assert!(!Path::new(png).exists(), "a failed plot wrote {png}");
    let err = fails(&["runs", "compare", "nope", "--store", store_arg()]);
    assert!(err.contains("no run `nope`"), "{err}");
    let jpg = dir.path().join("x.jpg");
    let err = fails(&[
        "runs",
        "plot",
        "a",
        "--out",
        jpg.to_str().unwrap(),
        "--store",
        store_arg(),
    ]);
    assert!(
        err.contains("--out") && err.contains(".png or .svg"),
        "{err}"
    );
    let err = fails(&[
        "runs",
        "plot",
        "a",
        "--out",
        dir.path().to_str().unwrap(),
        "--store",
        store_arg(),
    ]);
    assert!(err.contains("--out"), "{err}");
    for args in [
        &["runs", "plot", "--out", png][..],
        &["runs", "compare"][..],
    ] {
        let out = s3(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("<RUNS>"), "{args:?}: {err}");
    }
}

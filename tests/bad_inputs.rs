//! The bad-input sweep: the real `s3` binary on hundreds of bad inputs across every command —
//! bad flag values (negative, zero, huge, NaN, inf, 1e19), malformed, truncated and
//! wrong-typed schedule, mixture, search-space and model-config files, broken `.npy`/`.npz`
//! files and image sets, missing paths, directories where files belong, and run ids with
//! path characters. The bad files are written deterministically into a temporary folder.
//!
//! Every case must end in an ordinary error (exit 1, or clap's 2 for a flag it refuses): no
//! panic (101), no signal, no timeout; stderr holds an error line that names the offending
//! flag, file or field; and the case's own fresh working directory (with `S3_STORE` unset,
//! so the default store would land there) is still empty. The closing line gives the count
//! of cases and of panics.

mod common;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A case that runs longer than this is killed and counted as a failure.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);
/// Cases run at once.
const WORKERS: usize = 3;
/// The sweep must try at least this many inputs.
const MIN_CASES: usize = 256;
/// How often a running case is polled.
const POLL: Duration = Duration::from_millis(5);

/// One bad input: the arguments, and a text stderr must contain (the flag, file or field).
struct Case {
    args: Vec<String>,
    needle: String,
}

/// The sweep's cases and the folder their bad files are written into.
struct Sweep {
    dir: PathBuf,
    /// A path inside the sweep's folder that does not exist (and must not come to exist).
    missing: String,
    cases: Vec<Case>,
}

impl Sweep {
    /// Adds a case: `args` must fail with `needle` in stderr.
    fn case<S: AsRef<str>>(&mut self, args: &[S], needle: &str) {
        self.cases.push(Case {
            args: args.iter().map(|a| a.as_ref().to_string()).collect(),
            needle: needle.to_string(),
        });
    }

    /// Adds a case from a command line split at spaces (paths here have none).
    fn line(&mut self, line: &str, needle: &str) {
        let args: Vec<&str> = line.split(' ').collect();
        self.case(&args, needle);
    }

    /// Writes `bytes` to `name` in the sweep folder; returns its path.
    fn file(&self, name: &str, bytes: impl AsRef<[u8]>) -> String {
        let p = self.dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    /// A folder in the sweep folder; returns its path.
    fn folder(&self, name: &str) -> String {
        let p = self.dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p.display().to_string()
    }
}

fn repo(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

/// Base arguments as (flag, value) pairs, with `flag` set to `value` (replaced or added),
/// written `--flag=value` so that values starting with `-` reach the flag.
fn with(base: &[(&str, &str)], flag: &str, value: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (f, v) in base.iter().filter(|(f, _)| *f != flag) {
        out.push(f.to_string());
        if !v.is_empty() {
            out.push(v.to_string());
        }
    }
    out.push(format!("{flag}={value}"));
    out
}

/// A named edit of a valid JSON document: the field path and its new value (`None`: removed).
type Edit = (&'static str, &'static str, Option<Value>);
/// Owned (flag, value) pairs.
type Pairs = Vec<(String, String)>;
/// A base command, the flag set, and its value.
type FlagCase<'a> = (Vec<(&'a str, &'a str)>, &'a str, &'a str);

/// Arguments `[command, flag, value, …]` as (flag, value) pairs (the command's value empty).
fn pairs(v: &[&str]) -> Vec<(String, String)> {
    let mut out = vec![(v[0].to_string(), String::new())];
    out.extend(
        v[1..]
            .chunks(2)
            .map(|c| (c[0].to_string(), c[1].to_string())),
    );
    out
}

/// Borrowed pairs, as [`with`] takes them.
fn own(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect()
}

/// Cheap contexts of each command, so a case that is wrongly accepted still ends quickly.
const BASELINES: &[(&str, &str)] = &[
    ("baselines", ""),
    ("--dataset", "toy2d"),
    ("--nfe", "2"),
    ("--samples", "16"),
];
const SEARCH: &[(&str, &str)] = &[
    ("search", ""),
    ("--dataset", "toy2d"),
    ("--nfe", "3"),
    ("--samples", "16"),
    ("--budget", "2"),
    ("--max-time", "5"),
];

/// A valid schedule (the README's example), the base of every bad one.
fn valid_schedule() -> Value {
    serde_json::from_str(common::README_SCHEDULE).unwrap()
}

/// Sets `path` (dot-separated keys and indices) in `v` to `x`, or removes it for `None`.
fn edit(mut v: Value, path: &str, x: Option<Value>) -> Value {
    let keys: Vec<&str> = path.split('.').collect();
    let (last, parents) = keys.split_last().unwrap();
    let mut at = &mut v;
    for k in parents {
        at = match k.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[*k],
        };
    }
    match (x, last.parse::<usize>()) {
        (Some(x), Ok(i)) => at[i] = x,
        (Some(x), Err(_)) => at[*last] = x,
        (None, _) => {
            at.as_object_mut().unwrap().remove(*last);
        }
    }
    v
}

/// Text that is not JSON, or not the JSON expected, shared by every JSON file kind.
fn broken_json(valid: &str) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("open-brace".into(), b"{".to_vec()),
        ("null".into(), b"null".to_vec()),
        ("array".into(), b"[]".to_vec()),
        ("number".into(), b"42".to_vec()),
        ("binary".into(), vec![0xff, 0xfe, 0x00, 0x93, 0x01]),
        ("nested".into(), "[".repeat(5000).into_bytes()),
        ("inf".into(), b"{\"version\": 1e999}".to_vec()),
    ];
    for cut in [1, valid.len() / 3, valid.len() / 2, valid.len() - 2] {
        v.push((format!("cut{cut}"), valid.as_bytes()[..cut].to_vec()));
    }
    v
}

/// The (name, field, new value or removal) edits of the schedule cases.
fn schedule_edits() -> Vec<Edit> {
    vec![
        ("format", "format", Some(json!("s4"))),
        ("format-num", "format", Some(json!(1))),
        ("version", "version", Some(json!(2))),
        ("version-str", "version", Some(json!("1"))),
        ("nfe0", "nfe", Some(json!(0))),
        ("nfe-neg", "nfe", Some(json!(-1))),
        ("nfe-huge", "nfe", Some(json!(1e19))),
        ("nfe-wrong", "nfe", Some(json!(7))),
        ("afs", "afs", Some(json!("bogus"))),
        ("ts-empty", "timesteps", Some(json!([]))),
        ("ts-one", "timesteps", Some(json!([1.0]))),
        ("ts-up", "timesteps", Some(json!([0.001, 0.1, 0.5, 1.0]))),
        ("ts-neg", "timesteps", Some(json!([1.0, 0.5, 0.1, -0.5]))),
        ("ts-big", "timesteps", Some(json!([1e300, 0.5, 0.1, 0.001]))),
        ("ts-str", "timesteps", Some(json!(["1", 0.5, 0.1, 0.001]))),
        ("ts-missing", "timesteps", None),
        ("steps-empty", "steps", Some(json!([]))),
        ("steps-obj", "steps", Some(json!({}))),
        ("order0", "steps.1.order", Some(json!(0))),
        ("order5", "steps.1.order", Some(json!(5))),
        ("order-huge", "steps.1.order", Some(json!(100000))),
        ("pred", "steps.0.prediction", Some(json!("velocity"))),
        ("points0", "steps.1.derivatives.0.points", Some(json!([0]))),
        ("points1", "steps.1.derivatives.0.points", Some(json!([1]))),
        (
            "points-far",
            "steps.1.derivatives.0.points",
            Some(json!([-100000])),
        ),
        (
            "points-min",
            "steps.1.derivatives.0.points",
            Some(json!([i64::MIN])),
        ),
        (
            "points-empty",
            "steps.2.derivatives.1.points",
            Some(json!([])),
        ),
        (
            "relax-type",
            "steps.1.derivatives.0.relaxation.type",
            Some(json!("x")),
        ),
        (
            "relax-c",
            "steps.1.derivatives.0.relaxation.c",
            Some(json!(1e308)),
        ),
        (
            "corr-last",
            "steps.2.corrector",
            Some(json!({"type": "pseudo", "order": 1, "derivatives": []})),
        ),
        ("corr-order", "steps.0.corrector.order", Some(json!(0))),
        ("extra", "bogus_field", Some(json!(1))),
    ]
}

fn schedule_cases(s: &mut Sweep) {
    let nx = s.missing.clone();
    let base = valid_schedule();
    let valid = s.file("schedules/valid.json", base.to_string());
    let mut bad: Vec<(String, Vec<u8>)> = broken_json(&base.to_string());
    let edits = schedule_edits();
    for (name, path, x) in edits {
        let v = edit(base.clone(), path, x);
        bad.push((name.into(), v.to_string().into_bytes()));
    }
    for (name, bytes) in bad {
        let f = s.file(&format!("schedules/sched-{name}.json"), bytes);
        let needle = format!("sched-{name}.json");
        s.line(
            &format!("eval --dataset toy2d --samples 16 --schedule {f}"),
            &needle,
        );
        s.line(
            &format!("sample --dataset toy2d --samples 4 --schedule {f} --out x.npy"),
            &needle,
        );
        s.line(&format!("export {f} --format diffusers"), &needle);
    }
    let dir = s.folder("schedules/a-dir.json");
    for f in [dir.as_str(), &format!("{nx}/sched.json")] {
        s.line(&format!("eval --dataset toy2d --schedule {f}"), f);
        s.line(
            &format!("sample --dataset toy2d --schedule {f} --out x.npy"),
            f,
        );
    }
    // A valid schedule with bad outputs and shapes.
    s.line(
        &format!("sample --dataset toy2d --schedule {valid} --out {nx}/x.npy"),
        "--out",
    );
    let out_dir = s.folder("outdir");
    s.line(
        &format!("sample --dataset toy2d --schedule {valid} --out {out_dir}"),
        "--out",
    );
    s.line(
        &format!("sample --dataset toy2d --schedule {valid} --out x.npy --grid {nx}/g.png"),
        "--grid",
    );
    let mix5 = s.file(
        "mixtures/five-d.json",
        json!({"shape": [5], "weights": [1.0], "means": [[0, 0, 0, 0, 0]], "stds": [1.0]})
            .to_string(),
    );
    s.line(
        &format!("sample --dataset {mix5} --schedule {valid} --out x.npy --grid g.png"),
        "--grid",
    );
    s.line(
        &format!("sample --dataset toy2d --schedule {valid} --noise {nx}/z.npy --out x.npy"),
        "--noise",
    );
    s.line(&format!("export {valid} --format bogus"), "--format");
    s.line(
        &format!("export {valid} --noise-schedule bogus"),
        "--noise-schedule",
    );
    s.line(
        &format!("export {valid} --shift NaN --noise-schedule flow"),
        "--shift",
    );
    s.line(
        &format!("export {valid} --betas bogus --noise-schedule vp-discrete"),
        "--betas",
    );
    s.line(
        &format!("export {valid} --noise-schedule vp-linear --out {out_dir}"),
        "--out",
    );
}

/// Each command's cheap context and the count flags probed on it.
fn flag_groups(eval_s: &Pairs, sample_s: &Pairs) -> Vec<(Pairs, Vec<&'static str>)> {
    vec![
        (
            BASELINES
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            vec![
                "--nfe",
                "--samples",
                "--seed",
                "--batch-size",
                "--threads",
                "--reference-nfe",
            ],
        ),
        (
            eval_s.clone(),
            vec!["--samples", "--seed", "--batch-size", "--reference-nfe"],
        ),
        (sample_s.clone(), vec!["--samples", "--seed", "--threads"]),
        (
            SEARCH
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            vec![
                "--nfe",
                "--budget",
                "--samples",
                "--final-samples",
                "--stage-size",
                "--max-time",
            ],
        ),
    ]
}

fn flag_cases(s: &mut Sweep) {
    let nx = s.missing.clone();
    let counts = [
        "-1",
        "1e19",
        "NaN",
        "inf",
        "18446744073709551616",
        "abc",
        "",
    ];
    let valid = s.dir.join("schedules/valid.json").display().to_string();
    let eval_s = pairs(&[
        "eval",
        "--dataset",
        "toy2d",
        "--samples",
        "16",
        "--schedule",
        &valid,
    ]);
    let sample_s = pairs(&[
        "sample",
        "--dataset",
        "toy2d",
        "--samples",
        "4",
        "--out",
        "x.npy",
        "--schedule",
        &valid,
    ]);
    let groups = flag_groups(&eval_s, &sample_s);
    for (base, flags) in &groups {
        let base: Vec<(&str, &str)> = base.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        for flag in flags {
            for v in counts {
                s.case(&with(&base, flag, v), flag);
            }
        }
        for (flag, v) in [
            ("--metric", "bogus"),
            ("--noise-schedule", "bogus"),
            ("--device", "bogus"),
            ("--device", "cuda:x"),
            ("--dataset", ""),
            ("--dataset", &format!("{nx}/mix.json")),
            ("--dataset", &nx),
            ("--guidance-scale", "NaN"),
            ("--guidance-scale", "inf"),
            ("--shift", "2"),
            ("--betas", "linear"),
            ("--batch-size", "0"),
        ] {
            if base[0].0 == "sample" && flag == "--metric" {
                continue;
            }
            s.case(&with(&base, flag, v), flag);
        }
        for v in ["NaN", "inf", "-inf", "-1", "0"] {
            let mut a = with(&base, "--noise-schedule", "flow");
            a.push(format!("--shift={v}"));
            s.case(&a, "--shift");
        }
        let mut a = with(&base, "--noise-schedule", "vp-discrete");
        a.extend(["--betas".to_string(), "bogus".to_string()]);
        s.case(&a, "--betas");
    }
    zero_and_huge_cases(s, &eval_s, &sample_s);
}

/// Counts that parse but are out of range: zero, one, and sizes that would not fit memory.
fn zero_and_huge_cases(s: &mut Sweep, e: &Pairs, sm: &Pairs) {
    let pred = format!("{}/pred", s.missing);
    let cases: Vec<FlagCase> = vec![
        (BASELINES.to_vec(), "--nfe", "0"),
        (BASELINES.to_vec(), "--nfe", "100000"),
        (BASELINES.to_vec(), "--nfe", "18446744073709551615"),
        (BASELINES.to_vec(), "--samples", "0"),
        (BASELINES.to_vec(), "--samples", "1"),
        (BASELINES.to_vec(), "--samples", "1000000000"),
        (BASELINES.to_vec(), "--samples", "18446744073709551615"),
        (own(e), "--samples", "0"),
        (own(e), "--samples", "1000000000"),
        (own(e), "--samples", "18446744073709551615"),
        (own(sm), "--samples", "0"),
        (own(sm), "--samples", "1000000000"),
        (own(sm), "--samples", "18446744073709551615"),
        (SEARCH.to_vec(), "--nfe", "0"),
        (SEARCH.to_vec(), "--nfe", "100000"),
        (SEARCH.to_vec(), "--budget", "0"),
        (SEARCH.to_vec(), "--stage-size", "0"),
        (SEARCH.to_vec(), "--samples", "1"),
        (SEARCH.to_vec(), "--samples", "1000000000"),
        (SEARCH.to_vec(), "--final-samples", "18446744073709551615"),
        (SEARCH.to_vec(), "--strategy", "bogus"),
        (SEARCH.to_vec(), "--space", "bogus"),
        (SEARCH.to_vec(), "--solver", "bogus"),
        (SEARCH.to_vec(), "--predictor", &pred),
    ];
    for (base, flag, v) in cases {
        s.case(&with(&base, flag, v), flag);
    }
    for n in ["0", "1", "1000000000", "18446744073709551615"] {
        let mut a = with(&own(e), "--metric", "mse");
        a.extend(["--reference-nfe".into(), n.into()]);
        s.case(&a, "--reference-nfe");
        let mut a = with(BASELINES, "--metric", "mse");
        a.extend(["--reference-nfe".into(), n.into()]);
        s.case(&a, "--reference-nfe");
    }
}

/// The (name, field, new value or removal) edits of the mixture cases.
fn mixture_edits() -> Vec<Edit> {
    vec![
        ("shape-empty", "shape", Some(json!([]))),
        ("shape-zero", "shape", Some(json!([0]))),
        ("shape-neg", "shape", Some(json!([-2]))),
        ("shape-float", "shape", Some(json!([1e19]))),
        ("shape-overflow", "shape", Some(json!([u64::MAX, 2]))),
        ("shape-huge", "shape", Some(json!([100000, 100000, 3]))),
        ("shape-big-image", "shape", Some(json!([3, 32768, 32768]))),
        ("shape-missing", "shape", None),
        ("weights-empty", "weights", Some(json!([]))),
        ("weights-zero", "weights", Some(json!([0.0, 1.0]))),
        ("weights-neg", "weights", Some(json!([-0.5, 1.5]))),
        ("weights-sum", "weights", Some(json!([0.5, 0.6]))),
        ("weights-huge", "weights", Some(json!([1e308, 1e308]))),
        ("weights-str", "weights", Some(json!(["a", "b"]))),
        ("means-short", "means", Some(json!([[1.0], [0.0]]))),
        ("means-count", "means", Some(json!([[1.0, 0.0]]))),
        (
            "means-huge",
            "means",
            Some(json!([[1e308, 1e308], [-1e308, 0.0]])),
        ),
        ("means-flat", "means", Some(json!([1.0, 0.0]))),
        ("stds-neg", "stds", Some(json!([-0.1, 0.2]))),
        ("stds-zero", "stds", Some(json!([0.0, 0.2]))),
        ("stds-count", "stds", Some(json!([0.1]))),
        ("stds-rows", "stds", Some(json!([[0.1], [0.2]]))),
        ("stds-str", "stds", Some(json!("0.1"))),
        ("noise", "noise_schedule", Some(json!("bogus"))),
        (
            "noise-shift",
            "noise_schedule",
            Some(json!({"name": "flow", "shift": -1.0})),
        ),
        (
            "noise-obj",
            "noise_schedule",
            Some(json!({"name": "bogus"})),
        ),
        ("betas", "betas", Some(json!("bogus"))),
        ("metric", "metric", Some(json!("bogus"))),
        ("samples0", "samples", Some(json!(0))),
        ("samples-huge", "samples", Some(json!(1e19))),
        ("unknown-key", "bogus", Some(json!(1))),
    ]
}

fn mixture_cases(s: &mut Sweep) {
    let base = json!({"shape": [2], "weights": [0.5, 0.5], "means": [[1.0, 0.0], [-1.0, 0.0]], "stds": [0.1, 0.2]});
    let mut bad = broken_json(&base.to_string());
    let edits = mixture_edits();
    for (name, path, x) in edits {
        bad.push((
            name.into(),
            edit(base.clone(), path, x).to_string().into_bytes(),
        ));
    }
    // Many components of a large (but allowed) dimension: refused before allocating.
    let many = json!({"shape": [1 << 29], "weights": vec![1.0 / 4096.0; 4096], "means": vec![vec![0.0]; 4096], "stds": vec![1.0; 4096]});
    bad.push(("many-components".into(), many.to_string().into_bytes()));
    let valid = s.dir.join("schedules/valid.json").display().to_string();
    for (name, bytes) in bad {
        let f = s.file(&format!("mixtures/mix-{name}.json"), bytes);
        let needle = format!("mix-{name}.json");
        s.line(
            &format!("baselines --dataset {f} --nfe 2 --samples 16"),
            &needle,
        );
        s.line(
            &format!(
                "sample --dataset {f} --schedule {valid} --samples 4 --out x.npy --grid g.png"
            ),
            &needle,
        );
    }
    let big = edit(base.clone(), "samples", Some(json!(1_000_000_000u64)));
    let f = s.file("mixtures/mix-samples-big.json", big.to_string());
    s.line(&format!("baselines --dataset {f} --nfe 2"), "samples");
    let dir = s.folder("mixtures/dir.json");
    s.line(&format!("baselines --dataset {dir} --nfe 2"), "dir.json");
}

/// The (name, field, new value or removal) edits of the space cases.
fn space_edits() -> Vec<Edit> {
    vec![
        ("pool0", "s3.pool", Some(json!(0))),
        ("pool-float", "s3.pool", Some(json!(1e12))),
        ("pool-huge", "s3.pool", Some(json!(1_000_000_000_000u64))),
        ("pool-max", "s3.pool", Some(json!(u64::MAX))),
        (
            "warmup-huge",
            "s3.warmup",
            Some(json!(1_000_000_000_000u64)),
        ),
        ("holdout", "s3.holdout", Some(json!(0.95))),
        ("evolve", "s3.evolve_fraction", Some(json!(1.5))),
        ("explore", "s3.exploration", Some(json!(-0.1))),
        ("rank0", "evolution.rank_bar", Some(json!(0))),
        ("rank-huge", "evolution.rank_bar", Some(json!(u64::MAX))),
        ("format", "format", Some(json!("x"))),
        ("version", "version", Some(json!(2))),
        ("tend", "time.t_end_relative", Some(json!([0.0, 0.0]))),
        ("tend-rev", "time.t_end_relative", Some(json!([2.0, 1.0]))),
        ("tend-one", "time.t_end_relative", Some(json!([1.0]))),
        ("jitter", "time.jitter_std", Some(json!(-1.0))),
        ("gap0", "time.min_gap", Some(json!(0.0))),
        ("gap-big", "time.min_gap", Some(json!(0.5))),
        ("coord", "time.coordinate", Some(json!("x"))),
        ("order-key", "priors.order", Some(json!({"9": 1.0}))),
        ("order-neg", "priors.order", Some(json!({"1": -1.0}))),
        ("order-zero", "priors.order", Some(json!({"1": 0.0}))),
        ("relax-empty", "priors.relaxation_values", Some(json!([]))),
        ("relax-std", "priors.relaxation_std", Some(json!(-1.0))),
        ("prob", "mutation.add_step", Some(json!(2.0))),
        ("cross", "crossover.deep", Some(json!(-1.0))),
        ("time-missing", "time", None),
        ("unknown", "bogus", Some(json!(1))),
    ]
}

fn space_cases(s: &mut Sweep) {
    let text = std::fs::read_to_string(repo("search_spaces/quick.json")).unwrap();
    let base: Value = serde_json::from_str(&text).unwrap();
    let mut bad = broken_json(&text);
    let edits = space_edits();
    for (name, path, x) in edits {
        bad.push((
            name.into(),
            edit(base.clone(), path, x).to_string().into_bytes(),
        ));
    }
    for (name, bytes) in bad {
        let f = s.file(&format!("spaces/space-{name}.json"), bytes);
        s.case(&with(SEARCH, "--space", &f), &format!("space-{name}.json"));
    }
}

/// The edits of the model-config cases: `dir` holds the graphs, `nx` is a missing folder,
/// and the two arrays are broken conditioning values.
fn model_edits(dir: &str, nx: &str, npy_3x0: &str, npy_0d: &str) -> Vec<Edit> {
    vec![
        ("format", "format", Some(json!("x"))),
        (
            "onnx-missing",
            "onnx",
            Some(json!(&format!("{nx}/model.onnx"))),
        ),
        ("onnx-dir", "onnx", Some(json!(dir))),
        (
            "onnx-json",
            "onnx",
            Some(json!(format!("{dir}/model.json"))),
        ),
        ("shape-empty", "sample_shape", Some(json!([]))),
        ("shape-zero", "sample_shape", Some(json!([4, 0, 8]))),
        (
            "shape-huge",
            "sample_shape",
            Some(json!([4, 100000, 100000])),
        ),
        ("shape-overflow", "sample_shape", Some(json!([u64::MAX, 4]))),
        ("param", "parameterization", Some(json!("bogus"))),
        ("time-kind", "time_input.kind", Some(json!("bogus"))),
        ("time-scale", "time_input.scale", Some(json!(f64::MAX))),
        ("input-name", "inputs.sample", Some(json!("nope"))),
        ("output-name", "output", Some(json!("nope"))),
        (
            "dec-shape",
            "decoder.output_shape",
            Some(json!([3, 100000, 100000])),
        ),
        ("dec-zero", "decoder.output_shape", Some(json!([3, 0, 16]))),
        (
            "cond-missing",
            "conditioning.values",
            Some(json!(&format!("{nx}/c.npy"))),
        ),
        ("cond-3x0", "conditioning.values", Some(json!(npy_3x0))),
        ("cond-0d", "conditioning.values", Some(json!(npy_0d))),
        ("cond-null", "conditioning.null_index", Some(json!(100))),
        (
            "cond-guidance",
            "conditioning.guidance_scale",
            Some(json!(f64::MAX)),
        ),
        (
            "fid-missing",
            "fid.stats",
            Some(json!(&format!("{nx}/s.npz"))),
        ),
        ("unknown", "bogus", Some(json!(1))),
    ]
}

fn model_cases(s: &mut Sweep) {
    let nx = s.missing.clone();
    let dir = repo("tests/fixtures/models/latent-tiny");
    let text = std::fs::read_to_string(format!("{dir}/model.json")).unwrap();
    let mut base: Value = serde_json::from_str(&text).unwrap();
    // Absolute paths, so edited copies elsewhere still find the graphs.
    base["onnx"] = json!(format!("{dir}/model.onnx"));
    base["decoder"]["onnx"] = json!(format!("{dir}/decoder.onnx"));
    base["conditioning"]["values"] = json!(format!("{dir}/conditioning.npy"));
    base["fid"] = json!({"extractor": format!("{dir}/inception.json"), "stats": format!("{dir}/train_stats.npz")});
    let mut bad = broken_json(&base.to_string());
    let npy_3x0 = s.file("models/cond-3x0.npy", npy("<f4", false, "(3, 0)", &[]));
    let npy_0d = s.file("models/cond-0d.npy", npy("<f4", false, "()", &[0; 4]));
    let edits = model_edits(&dir, &nx, &npy_3x0, &npy_0d);
    for (name, path, x) in edits {
        bad.push((
            name.into(),
            edit(base.clone(), path, x).to_string().into_bytes(),
        ));
    }
    let valid = s.dir.join("schedules/valid.json").display().to_string();
    for (name, bytes) in bad {
        let f = s.file(&format!("models/model-{name}.json"), bytes);
        // A config naming a missing or wrong file is reported with that file; absurd but
        // finite numbers are caught where the model first returns non-finite values.
        let needle = match name.as_str() {
            "onnx-missing" => format!("{nx}/model.onnx"),
            "onnx-dir" => "latent-tiny".to_string(),
            "onnx-json" => "model.json".to_string(),
            "cond-missing" => format!("{nx}/c.npy"),
            "fid-missing" => format!("{nx}/s.npz"),
            "time-scale" | "cond-guidance" => "non-finite".to_string(),
            _ => format!("model-{name}.json"),
        };
        s.line(
            &format!(
                "sample --dataset {f} --schedule {valid} --samples 2 --out x.npy --grid g.png"
            ),
            &needle,
        );
    }
    let empty = s.folder("models/empty-dir");
    s.line(&format!("baselines --dataset {empty} --nfe 2"), "empty-dir");
    s.line(
        &format!("eval --dataset cifar10 --schedule {valid}"),
        "cifar10",
    );
    s.line(
        &format!("eval --dataset cifar10 --models-dir {nx} --schedule {valid}"),
        &nx,
    );
    s.line(
        "baselines --dataset cifar10 --nfe 2 --emit emitted",
        "cifar10",
    );
    s.line("search --dataset cifar10 --nfe 2", "cifar10");
}

/// A v1 `.npy` with a hand-written header and raw data bytes.
fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut h = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((h.len() as u16).to_le_bytes());
    b.extend(h.as_bytes());
    b.extend(data);
    b
}

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Broken `.npy` files, each a (name, bytes) pair; `shape` is the good shape for the reader.
fn broken_npy(shape: &str, count: usize) -> Vec<(String, Vec<u8>)> {
    let good = f32s(&vec![0.5; count]);
    let mut nan = vec![0.5f32; count];
    nan[count - 1] = f32::NAN;
    vec![
        ("empty".into(), vec![]),
        ("magic".into(), b"\x93NUMP".to_vec()),
        ("garbage".into(), b"not an npy file at all".to_vec()),
        ("version9".into(), b"\x93NUMPY\x09\x00\x10\x00{}".to_vec()),
        (
            "header-long".into(),
            b"\x93NUMPY\x01\x00\xff\xff{'descr'".to_vec(),
        ),
        (
            "header-v2-long".into(),
            b"\x93NUMPY\x02\x00\xff\xff\xff\xff{".to_vec(),
        ),
        ("header-text".into(), npy("<f4", false, "(((", &good)),
        (
            "header-bytes".into(),
            [npy("<f4", false, shape, &[]), vec![0xff; 3]].concat()[..60].to_vec(),
        ),
        (
            "truncated".into(),
            npy("<f4", false, shape, &good[..good.len() / 2]),
        ),
        (
            "huge-shape".into(),
            npy("<f4", false, "(1000000000000, 2)", &good),
        ),
        (
            "overflow-shape".into(),
            npy("<f4", false, "(4294967296, 4294967296, 16)", &good),
        ),
        ("neg-shape".into(), npy("<f4", false, "(-2, 2)", &good)),
        ("int".into(), npy("<i8", false, shape, &vec![0; count * 8])),
        ("bool".into(), npy("|b1", false, shape, &vec![0; count])),
        (
            "complex".into(),
            npy("<c8", false, shape, &vec![0; count * 8]),
        ),
        (
            "string".into(),
            npy("|S4", false, shape, &vec![b'a'; count * 4]),
        ),
        (
            "object".into(),
            npy("|O", false, shape, &vec![0; count * 8]),
        ),
        ("record".into(), npy("[('a', '<f4')]", false, shape, &good)),
        ("f16-odd".into(), npy("<f16", false, shape, &good)),
        ("scalar".into(), npy("<f4", false, "()", &good[..4])),
        ("zero-n".into(), npy("<f4", false, "(0, 2)", &[])),
        (
            "wrong-shape".into(),
            npy("<f4", false, "(3, 7)", &f32s(&[0.5; 21])),
        ),
        ("nan".into(), npy("<f4", false, shape, &f32s(&nan))),
        (
            "f8-inf".into(),
            npy("<f8", false, shape, &vec![0x7f; count * 8]),
        ),
    ]
}

fn npy_cases(s: &mut Sweep) {
    let valid = s.dir.join("schedules/valid.json").display().to_string();
    for (name, bytes) in broken_npy("(4, 2)", 8) {
        let f = s.file(&format!("npy/noise-{name}.npy"), bytes);
        s.line(
            &format!("sample --dataset toy2d --schedule {valid} --noise {f} --out x.npy"),
            &format!("noise-{name}.npy"),
        );
    }
    let dir = s.folder("npy/dir.npy");
    s.line(
        &format!("sample --dataset toy2d --schedule {valid} --noise {dir} --out x.npy"),
        "dir.npy",
    );
    // Images for FID.
    let ex = repo("tests/fixtures/models/cifar10/inception.json");
    let stats = repo("tests/fixtures/models/cifar10/train_stats.npz");
    let mut images = broken_npy("(2, 3, 4, 4)", 96);
    images.extend([
        (
            "one-image".to_string(),
            npy("|u1", false, "(1, 3, 4, 4)", &[7; 48]),
        ),
        (
            "zero-height".to_string(),
            npy("|u1", false, "(2, 3, 0, 4)", &[]),
        ),
        (
            "four-channels".to_string(),
            npy("|u1", false, "(2, 4, 4, 4)", &[7; 128]),
        ),
        (
            "two-channels".to_string(),
            npy("<f4", false, "(2, 2, 4, 4)", &f32s(&[0.0; 64])),
        ),
        (
            "pixel-300".to_string(),
            npy("<i2", false, "(2, 3, 4, 4)", &[[0x2c, 0x01]; 96].concat()),
        ),
        (
            "pixel-neg".to_string(),
            npy("<i2", false, "(2, 3, 4, 4)", &[[0xff, 0xff]; 96].concat()),
        ),
        (
            "rank3".to_string(),
            npy("|u1", false, "(2, 4, 4)", &[7; 32]),
        ),
    ]);
    for (name, bytes) in images {
        let f = s.file(&format!("images/img-{name}.npy"), bytes);
        let needle = format!("img-{name}.npy");
        s.line(&format!("fid {f} {stats} --extractor {ex}"), &needle);
        s.line(
            &format!("fid-stats {f} --out s.npz --extractor {ex}"),
            &needle,
        );
    }
    image_folder_cases(s, &ex, &stats);
}

fn image_folder_cases(s: &mut Sweep, ex: &str, stats: &str) {
    let nx = s.missing.clone();
    let empty = s.folder("images/empty");
    let one = s.folder("images/one");
    s.file("images/one/a.png", [0u8; 8]);
    let garbage = s.folder("images/garbage");
    s.file("images/garbage/a.png", b"not a png");
    s.file("images/garbage/b.png", b"\x89PNG\r\n\x1a\n");
    let wrong = s.file("images/x.txt", b"hello");
    for (p, needle) in [
        (&empty, "empty"),
        (&one, "one"),
        (&garbage, "a.png"),
        (&wrong, "x.txt"),
    ] {
        s.line(&format!("fid {p} {stats} --extractor {ex}"), needle);
        s.line(
            &format!("fid-stats {p} --out s.npz --extractor {ex}"),
            needle,
        );
    }
    // Images the extractor takes, so only the flag under test is wrong.
    let good = s.file(
        "images/good32.npy",
        npy("|u1", false, "(2, 32, 32, 3)", &[9; 2 * 32 * 32 * 3]),
    );
    s.line(
        &format!("fid-stats {good} --out {nx}/s.npz --extractor {ex}"),
        "--out",
    );
    let out_dir = s.folder("images/out-dir");
    s.line(
        &format!("fid-stats {good} --out {out_dir} --extractor {ex}"),
        "--out",
    );
    s.line(
        &format!("fid-stats {good} --out s.npz --extractor {nx}/e.json"),
        "--extractor",
    );
    s.line(
        &format!("fid-stats {good} --out s.npz --extractor {out_dir}"),
        "--extractor",
    );
    s.line(
        &format!("fid-stats {good} --out s.npz --extractor {ex} --batch-size 0"),
        "--batch-size",
    );
    s.line(
        &format!("fid-stats {good} --out s.npz --extractor {ex} --device bogus"),
        "--device",
    );
    s.line(
        &format!("fid-stats {stats} --out s.npz --extractor {ex}"),
        "train_stats.npz",
    );
    let bad_ex = s.file(
        "images/extractor.json",
        "{\"format\": \"s3-feature-extractor\"",
    );
    s.line(
        &format!("fid-stats {good} --out s.npz --extractor {bad_ex}"),
        "extractor.json",
    );
    s.line(&format!("fid {good} {good} --models-dir {nx}"), &nx);
}

/// An `.npz` of (key, .npy bytes) entries, stored or deflated.
fn npz(entries: &[(&str, Vec<u8>)], deflate: bool) -> Vec<u8> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut buf);
    let method = if deflate {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    for (k, bytes) in entries {
        z.start_file(
            format!("{k}.npy"),
            zip::write::SimpleFileOptions::default().compression_method(method),
        )
        .unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
    buf.into_inner()
}

fn npz_cases(s: &mut Sweep) {
    let nx = s.missing.clone();
    let mu = |d: usize| npy("<f8", false, &format!("({d},)"), &vec![0; d * 8]);
    let sigma = |d: usize| npy("<f8", false, &format!("({d}, {d})"), &vec![0; d * d * 8]);
    let good = s.file(
        "npz/good.npz",
        npz(&[("mu", mu(2)), ("sigma", sigma(2))], true),
    );
    let mut bad: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("not-zip".into(), b"PK\x03\x04 not really".to_vec()),
        ("no-entries".into(), npz(&[], false)),
        ("no-sigma".into(), npz(&[("mu", mu(2))], true)),
        (
            "empty-mu".into(),
            npz(&[("mu", mu(0)), ("sigma", sigma(0))], true),
        ),
        (
            "mismatch".into(),
            npz(&[("mu", mu(2)), ("sigma", sigma(3))], false),
        ),
        (
            "mu-2d".into(),
            npz(&[("mu", sigma(2)), ("sigma", sigma(2))], false),
        ),
        (
            "int".into(),
            npz(
                &[
                    ("mu", npy("<i8", false, "(2,)", &[0; 16])),
                    ("sigma", sigma(2)),
                ],
                false,
            ),
        ),
        (
            "nan".into(),
            npz(
                &[
                    ("mu", npy("<f8", false, "(2,)", &[0xff; 16])),
                    ("sigma", sigma(2)),
                ],
                false,
            ),
        ),
        (
            "mu-garbage".into(),
            npz(&[("mu", b"garbage".to_vec()), ("sigma", sigma(2))], true),
        ),
        (
            "mu-truncated".into(),
            npz(
                &[
                    ("mu", mu(2)[..mu(2).len() - 3].to_vec()),
                    ("sigma", sigma(2)),
                ],
                false,
            ),
        ),
        (
            "mu-huge".into(),
            npz(
                &[
                    ("mu", npy("<f8", false, "(1000000000000,)", &[0; 16])),
                    ("sigma", sigma(2)),
                ],
                true,
            ),
        ),
        (
            "other-side-d".into(),
            npz(&[("mu", mu(3)), ("sigma", sigma(3))], true),
        ),
    ];
    let whole = std::fs::read(&good).unwrap();
    bad.push(("cut".into(), whole[..whole.len() / 2].to_vec()));
    for (name, bytes) in bad {
        let f = s.file(&format!("npz/stats-{name}.npz"), bytes);
        s.line(&format!("fid {f} {good}"), &format!("stats-{name}.npz"));
    }
    let dir = s.folder("npz/dir.npz");
    s.line(&format!("fid {good} {dir}"), "dir.npz");
    s.line(&format!("fid {good} {nx}/s.npz"), &format!("{nx}/s.npz"));
}

fn runs_cases(s: &mut Sweep) {
    let nx = s.missing.clone();
    let long = "a".repeat(5000);
    let ids = [
        "../x",
        "a/b",
        "/abs",
        "..",
        ".",
        "",
        "-x",
        "a b",
        "ü",
        "a\\b",
        long.as_str(),
        "x?",
    ];
    for id in ids {
        let needle = if id.is_empty() || id.len() > 100 {
            "run"
        } else {
            id
        };
        s.case(&["runs", "show", id], needle);
        s.case(&["runs", "trials", id], needle);
        s.case(&["export", id], needle);
        if id != "-x" {
            // `-x` is a valid run id; everything else here is refused before a store opens.
            s.case(&with(SEARCH, "--run-id", id), "--run-id");
        }
        s.case(&["search", "--resume", id], needle);
    }
    let file = s.file("store-file", b"not a store");
    let empty = s.folder("store-empty");
    let junk = s.folder("store-junk");
    s.file("store-junk/db", b"garbage");
    s.file("store-junk/conf", b"garbage");
    for store in [
        file.as_str(),
        empty.as_str(),
        junk.as_str(),
        &format!("{nx}/store"),
    ] {
        s.line(&format!("runs show r1 --store {store}"), "store");
        s.line(&format!("export r1 --store {store}"), "store");
        s.line(&format!("search --resume r1 --store {store}"), "store");
    }
    s.line("runs trials r1 --format bogus", "--format");
    s.line("runs bogus", "bogus");
    s.line("bogus-command", "bogus-command");
    s.line("export nope-run", "nope-run");
}

/// What one case did.
struct Outcome {
    code: Option<i32>,
    stderr: String,
    timed_out: bool,
    left: Vec<String>,
}

fn run_case(c: &Case, cwd: &Path, err_file: &Path) -> Outcome {
    std::fs::create_dir_all(cwd).unwrap();
    let err = std::fs::File::create(err_file).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_s3"))
        .args(&c.args)
        .current_dir(cwd)
        .env_remove("S3_STORE")
        .env_remove("S3_MODELS_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("the s3 binary runs");
    let start = Instant::now();
    let (status, timed_out) = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break (Some(st), false);
        }
        if start.elapsed() > CASE_TIMEOUT {
            child.kill().ok();
            child.wait().ok();
            break (None, true);
        }
        std::thread::sleep(POLL);
    };
    let stderr = std::fs::read_to_string(err_file).unwrap_or_default();
    let left = std::fs::read_dir(cwd)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    Outcome {
        code: status.and_then(|s| s.code()),
        stderr,
        timed_out,
        left,
    }
}

/// What is wrong with an outcome, if anything (every problem, joined); the flag says
/// whether it panicked.
fn judge(c: &Case, o: &Outcome) -> Option<(String, bool)> {
    let panicked = o.code == Some(101) || o.stderr.contains("panicked");
    let error_line = o
        .stderr
        .lines()
        .any(|l| (l.starts_with("Error: ") || l.starts_with("error: ")) && l.len() > 8);
    let mut problems = Vec::new();
    if o.timed_out {
        problems.push(format!("timed out after {CASE_TIMEOUT:?}"));
    }
    if panicked {
        problems.push("panicked".to_string());
    }
    match o.code {
        None if !o.timed_out => problems.push("killed by a signal".to_string()),
        Some(0) => problems.push("succeeded on a bad input".to_string()),
        Some(1 | 2) | None => {}
        Some(code) => problems.push(format!("exit status {code}")),
    }
    if o.code.is_some_and(|c| c != 0) && !error_line {
        problems.push("no error line".to_string());
    }
    if o.code.is_some_and(|c| c != 0) && !o.stderr.contains(&c.needle) {
        problems.push(format!("the error does not name `{}`", c.needle));
    }
    if !o.left.is_empty() {
        problems.push(format!("left files behind: {:?}", o.left));
    }
    (!problems.is_empty()).then(|| (problems.join("; "), panicked))
}

#[test]
fn bad_inputs_fail_cleanly_without_panics_or_files() {
    let root = tempfile::tempdir().unwrap();
    let mut s = Sweep {
        dir: root.path().join("files"),
        missing: root.path().join("missing").display().to_string(),
        cases: Vec::new(),
    };
    schedule_cases(&mut s);
    flag_cases(&mut s);
    mixture_cases(&mut s);
    space_cases(&mut s);
    model_cases(&mut s);
    npy_cases(&mut s);
    npz_cases(&mut s);
    runs_cases(&mut s);
    let s_missing = s.missing.clone();
    let cases = Arc::new(s.cases);
    let next = Arc::new(AtomicUsize::new(0));
    let problems = Arc::new(Mutex::new(Vec::new()));
    let panics = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..WORKERS {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(c) = cases.get(i) else { break };
                    let cwd = root.path().join(format!("cwd-{i}"));
                    let o = run_case(c, &cwd, &root.path().join(format!("stderr-{i}.txt")));
                    if let Some((problem, panicked)) = judge(c, &o) {
                        if panicked {
                            panics.fetch_add(1, Ordering::SeqCst);
                        }
                        let first = o.stderr.lines().take(3).collect::<Vec<_>>().join(" | ");
                        problems.lock().unwrap().push(format!(
                            "case {i} {:?}: {problem}; exit {:?}; stderr: {first}",
                            c.args, o.code
                        ));
                    }
                }
            });
        }
    });
    let problems = problems.lock().unwrap();
    eprintln!(
        "bad inputs: {} cases, {} panics, {} problems, in {:.1} s",
        cases.len(),
        panics.load(Ordering::SeqCst),
        problems.len(),
        start.elapsed().as_secs_f64()
    );
    for p in problems.iter() {
        eprintln!("{p}");
    }
    assert!(cases.len() >= MIN_CASES, "only {} cases", cases.len());
    assert!(
        !Path::new(&s_missing).exists(),
        "a case created {s_missing}"
    );
    assert!(
        problems.is_empty(),
        "{} bad inputs were mishandled",
        problems.len()
    );
}

//! Helpers shared by the integration tests: running the `s3` binary and comparing arrays.
#![allow(dead_code)] // each test file uses its own subset

use std::path::Path;
use std::process::{Command, Output};

/// Runs the `s3` binary with `args`.
pub fn s3(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_s3"))
        .args(args)
        .output()
        .expect("the s3 binary runs")
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(args: &[&str]) -> String {
    let out = s3(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs a command that must fail with exit 1 and an `Error: …` line (never a panic);
/// returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = s3(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1 for {args:?}; stderr: {err}"
    );
    assert!(err.starts_with("Error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// One JSON event per line of `--json` output.
pub fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l}: {e}")))
        .collect()
}

/// max |a − b| / max |a|.
pub fn max_rel(a: &[f32], b: &[f32]) -> f64 {
    let scale = a.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    diff / scale
}

/// The README's example schedule: every per-step feature (a pseudo corrector, a relaxed
/// derivative, orders 1–3, both predictions).
pub const README_SCHEDULE: &str = r#"{
      "format": "s3-schedule", "version": 1, "name": "example", "nfe": 3, "afs": "none",
      "timesteps": [1.0, 0.5, 0.1, 0.001],
      "steps": [
        {"prediction": "data", "order": 1, "derivatives": [],
         "corrector": {"type": "pseudo", "order": 2, "derivatives": [{"points": [-1]}]}},
        {"prediction": "noise", "order": 2,
         "derivatives": [{"points": [-2], "relaxation": {"type": "linear", "c": 0.1}}]},
        {"prediction": "data", "order": 3,
         "derivatives": [{"points": [-2]}, {"points": [-2, -3]}]}
      ]
    }"#;

/// Copies a folder tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

//! Helpers shared by the integration tests: running the `s3` binary and comparing arrays.
#![allow(dead_code)] // each test file uses its own subset

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

//! The `s3schedule` package's own tests (`python/tests`, pytest): the loader's errors, the
//! runner, the diffusers scheduler inside `DDPMPipeline` with a tiny random UNet (NFE model
//! calls at the schedule's model times), `sample_s3` under k-diffusion's calling convention
//! with its real `DiscreteEpsDDPMDenoiser`, and the ComfyUI node's interface.
//!
//! They need torch and diffusers, in the venv `scripts/install_python_test_deps.sh` builds
//! (`$S3_TORCH_VENV`, else `~/.cache/s3-torch-venv`; `scripts/install_test_deps.sh` runs it).
//! Never skips: without the venv this test fails with the command that makes it.

use std::path::PathBuf;
use std::process::Command;

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("S3_TORCH_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/s3-torch-venv")
        });
    venv.join("bin/python")
}

#[test]
fn the_python_package_tests_pass() {
    let python = venv_python();
    assert!(
        python.exists(),
        "{} is missing: run `bash scripts/install_python_test_deps.sh` (or scripts/install_test_deps.sh)",
        python.display()
    );
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "python/tests"])
        .current_dir(root)
        // The tests that run `s3 export` use this build's binary.
        .env("S3_BIN", env!("CARGO_BIN_EXE_s3"))
        .output()
        .expect("run pytest");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "pytest failed:\n{text}");
    assert!(
        text.contains(" passed") && !text.contains(" skipped"),
        "{text}"
    );
}

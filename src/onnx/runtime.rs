//! Finding and loading the ONNX Runtime shared library (ort's `load-dynamic`): nothing is
//! linked or downloaded at build time, so the library is looked up when a model is first
//! loaded, in this order:
//!
//! 1. `ORT_DYLIB_PATH` (a file; an error if it is set but missing);
//! 2. a project-local `.ort/` folder (what `scripts/install_onnxruntime.sh` fills) in the
//!    current directory or one of its ancestors, or beside an ancestor of the `s3` executable
//!    (so `target/release/s3` finds the repository's `.ort/`);
//! 3. the `onnxruntime` package of the Python on `PATH` (`python3`, then `python`).
//!
//! When none is found the error gives the one command that installs it.

use crate::error::{Result, S3Error};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The ONNX Runtime version s3 is built and tested against (the PyPI wheel).
pub const ORT_VERSION: &str = "1.31.1";

/// The command that installs ONNX Runtime where s3 finds it.
pub const INSTALL_HINT: &str = "install it with `bash scripts/install_onnxruntime.sh` (from the s3 \
     repository; it runs `pip install --no-deps --target .ort onnxruntime==1.31.1`), or \
     `pip install onnxruntime==1.31.1`, or point ORT_DYLIB_PATH at libonnxruntime.so";

/// Where the library was found, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeLibrary {
    pub path: PathBuf,
    /// `ORT_DYLIB_PATH`, `.ort/` or `python onnxruntime`.
    pub found_by: &'static str,
}

/// The shared-library file inside an onnxruntime wheel's `capi/` folder, if any.
fn library_in(capi: &Path) -> Option<PathBuf> {
    let mut hits: Vec<PathBuf> = std::fs::read_dir(capi)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            name.is_some_and(|n| {
                n.starts_with("libonnxruntime.so")
                    || (n.starts_with("libonnxruntime") && n.ends_with(".dylib"))
                    || n == "onnxruntime.dll"
            })
        })
        .collect();
    // Prefer the most specific name (libonnxruntime.so.1.31.1 over libonnxruntime.so).
    hits.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    hits.into_iter().next()
}

/// A `.ort/` install (pip `--target` layout) in `dir`.
fn project_local(dir: &Path) -> Option<PathBuf> {
    library_in(&dir.join(".ort").join("onnxruntime").join("capi"))
}

/// The library of the `onnxruntime` package of `python`, if it imports.
fn python_package(python: &str) -> Option<PathBuf> {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import os, onnxruntime; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?;
    library_in(&Path::new(dir.trim()).join("capi"))
}

/// Looks the library up (see the module documentation for the order).
pub fn find_library() -> Result<RuntimeLibrary> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(p);
        if !path.is_file() {
            return Err(S3Error::Onnx(format!(
                "ORT_DYLIB_PATH is {} but there is no such file; {INSTALL_HINT}",
                path.display()
            )));
        }
        return Ok(RuntimeLibrary {
            path,
            found_by: "ORT_DYLIB_PATH",
        });
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    if let Some(path) = roots.iter().find_map(|r| project_local(r)) {
        return Ok(RuntimeLibrary {
            path,
            found_by: ".ort/",
        });
    }
    if let Some(path) = ["python3", "python"].iter().find_map(|p| python_package(p)) {
        return Ok(RuntimeLibrary {
            path,
            found_by: "python onnxruntime",
        });
    }
    Err(S3Error::Onnx(format!(
        "the ONNX Runtime library was not found (looked at ORT_DYLIB_PATH, .ort/ in the \
         current directory and its parents, and the onnxruntime package of python3); \
         {INSTALL_HINT}"
    )))
}

type Loaded = std::result::Result<(ort::environment::Environment, RuntimeLibrary), String>;

/// Loads the library and creates the environment once per process; a failure is remembered,
/// so every later call reports the same error instead of retrying.
fn loaded() -> &'static Loaded {
    static ENV: OnceLock<Loaded> = OnceLock::new();
    ENV.get_or_init(|| {
        let lib = find_library().map_err(|e| e.to_string())?;
        let builder = ort::init_from(&lib.path).map_err(|e| {
            format!(
                "loading {} (found by {}) failed: {e}; s3 needs ONNX Runtime {ORT_VERSION} \
                 or a compatible release; {INSTALL_HINT}",
                lib.path.display(),
                lib.found_by
            )
        })?;
        let env = builder
            .with_name("s3")
            .build()
            .map_err(|e| format!("creating the environment failed: {e}"))?;
        Ok((env, lib))
    })
}

/// The process-wide ONNX Runtime environment, loaded on first use.
pub fn environment() -> Result<&'static ort::environment::Environment> {
    match loaded() {
        Ok((env, _)) => Ok(env),
        Err(m) => Err(S3Error::Onnx(
            m.trim_start_matches("ONNX Runtime: ").to_string(),
        )),
    }
}

/// The library the environment was loaded from (loading it if needed).
pub fn library() -> Result<&'static RuntimeLibrary> {
    environment()?;
    Ok(&loaded().as_ref().expect("loaded").1)
}

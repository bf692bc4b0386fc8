//! One ONNX model file as a reusable session: built once (threads, execution provider) and
//! run many times on f32 tensors. `ort`'s `Session::run` needs `&mut`, so the session sits
//! behind a mutex; callers split work into batches rather than running sessions in parallel.

use super::runtime::environment;
use crate::error::{Result, S3Error};
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::value::TensorRef;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// The CUDA execution provider (GPU `id`); an error when the loaded ONNX Runtime was not
    /// built with it.
    Cuda(i32),
}

impl Device {
    /// Parses `--device`: `cpu`, `cuda` or `cuda:N`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| S3Error::UnknownName {
                    kind: "device",
                    name: s.into(),
                    expected: "cpu, cuda, cuda:N".into(),
                }),
        }
    }
}

/// Session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOptions {
    pub device: Device,
    /// ONNX Runtime's intra-op threads (0: its default, all cores).
    pub threads: usize,
}

impl Default for SessionOptions {
    /// CPU, all cores.
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            threads: 0,
        }
    }
}

/// An f32 input: name, shape and values (row-major).
pub struct Input<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// A loaded ONNX model.
pub struct OnnxSession {
    path: PathBuf,
    session: Mutex<Session>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// Declared tensor shapes by name (−1 for a dynamic dimension); None for non-tensors.
    shapes: Vec<(String, Option<Vec<i64>>)>,
}

/// A tensor outlet's declared shape.
fn outlet_shape(t: &ort::value::ValueType) -> Option<Vec<i64>> {
    match t {
        ort::value::ValueType::Tensor { shape, .. } => Some(shape.to_vec()),
        _ => None,
    }
}

/// A shape for messages: `[batch, 3, 32, 32]` with dynamic dimensions written as `?`.
fn show_shape(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|&d| if d < 0 { "?".into() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(", "))
}

impl std::fmt::Debug for OnnxSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxSession")
            .field("path", &self.path)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

fn build(path: &Path, options: SessionOptions) -> ort::Result<Session> {
    let mut b = Session::builder(environment().map_err(|e| ort::Error::new(e.to_string()))?)?;
    if options.threads > 0 {
        b = b.with_intra_threads(options.threads)?;
    }
    if let Device::Cuda(id) = options.device {
        b = b.with_execution_providers([ort::ep::CUDA::default()
            .with_device_id(id)
            .build()
            .error_on_failure()])?;
    }
    b.commit_from_file(path)
}

impl OnnxSession {
    /// Loads `path` (errors name the file; `--device cuda` on a runtime without CUDA says so).
    pub fn load(path: &Path, options: SessionOptions) -> Result<Self> {
        environment()?;
        if !path.is_file() {
            return Err(S3Error::Onnx(format!(
                "{}: no such ONNX model file",
                path.display()
            )));
        }
        if let Device::Cuda(_) = options.device {
            let available = ort::ep::CUDA::is_available().unwrap_or(false);
            if !available {
                let lib = super::runtime::library()?;
                return Err(S3Error::Onnx(format!(
                    "--device cuda: the loaded ONNX Runtime ({}) has no CUDA execution \
                     provider; install a CUDA build (`pip install onnxruntime-gpu==1.31.1` \
                     and point ORT_DYLIB_PATH at its libonnxruntime.so) or use --device cpu",
                    lib.path.display()
                )));
            }
        }
        let session = build(path, options).map_err(|e| {
            S3Error::Onnx(format!("{}: loading the model failed: {e}", path.display()))
        })?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let shapes = session
            .inputs()
            .iter()
            .chain(session.outputs())
            .map(|o| (o.name().to_string(), outlet_shape(o.dtype())))
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            session: Mutex::new(session),
            inputs,
            outputs,
            shapes,
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The graph's input names.
    pub fn input_names(&self) -> &[String] {
        &self.inputs
    }

    /// The graph's output names.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// Errors unless the graph has an input (`is_input`) or output named `name`; `what` says
    /// which config field named it.
    pub fn require(&self, name: &str, is_input: bool, what: &str) -> Result<()> {
        let names = if is_input {
            &self.inputs
        } else {
            &self.outputs
        };
        if names.iter().any(|n| n == name) {
            return Ok(());
        }
        Err(S3Error::Onnx(format!(
            "{}: {what} `{name}` is not an {} of the graph; it has {}",
            self.path.display(),
            if is_input { "input" } else { "output" },
            names.join(", ")
        )))
    }

    /// Errors unless the graph's input (`is_input`) or output `name` is a rank-(1 + k)
    /// tensor `[batch, ...per_sample]` whose fixed dimensions agree with `per_sample` (k
    /// values); dynamic dimensions are accepted. `what` names the config field; the message
    /// gives the graph's actual shape.
    pub fn require_shape(
        &self,
        name: &str,
        is_input: bool,
        per_sample: &[usize],
        what: &str,
    ) -> Result<()> {
        self.require(name, is_input, what)?;
        let Some((_, Some(shape))) = self.shapes.iter().find(|(n, _)| n == name) else {
            return Ok(());
        };
        let fits = shape.len() == per_sample.len() + 1
            && shape[1..]
                .iter()
                .zip(per_sample)
                .all(|(&g, &want)| g < 0 || g as usize == want);
        if fits {
            return Ok(());
        }
        let want: Vec<i64> = std::iter::once(-1)
            .chain(per_sample.iter().map(|&d| d as i64))
            .collect();
        Err(S3Error::Onnx(format!(
            "{}: {what} `{name}` has shape {} in the graph; the config implies {}",
            self.path.display(),
            show_shape(shape),
            show_shape(&want)
        )))
    }

    /// Runs the graph on f32 inputs and returns the f32 output `output` (its values; the
    /// caller knows the shape) into `out`, which must have exactly the output's size.
    pub fn run(&self, inputs: &[Input], output: &str, out: &mut [f32]) -> Result<()> {
        let err = |m: String| S3Error::Onnx(format!("{}: {m}", self.path.display()));
        let mut values = Vec::with_capacity(inputs.len());
        for i in inputs {
            let t = TensorRef::from_array_view((i.shape.clone(), i.data))
                .map_err(|e| err(format!("input `{}` {:?}: {e}", i.name, i.shape)))?;
            values.push((i.name.to_string(), ort::session::SessionInputValue::from(t)));
        }
        let mut session = self
            .session
            .lock()
            .map_err(|_| err("a previous run panicked".into()))?;
        let result = session
            .run(values)
            .map_err(|e| err(format!("running the model failed: {e}")))?;
        let value = result
            .get(output)
            .ok_or_else(|| err(format!("the graph produced no output `{output}`")))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| err(format!("output `{output}` is not an f32 tensor: {e}")))?;
        if data.len() != out.len() {
            return Err(err(format!(
                "output `{output}` has shape {shape:?} ({} values); expected {}",
                data.len(),
                out.len()
            )));
        }
        out.copy_from_slice(data);
        Ok(())
    }
}

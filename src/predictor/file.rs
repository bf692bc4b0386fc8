//! The saved predictor: `<stem>.json` ([`PredictorFile`]: what the weights are and what they
//! were trained on) next to `<stem>.safetensors` (the layer weights and the scaling).

use super::loss::Loss;
use super::model::Predictor;
use super::scaling::InputScaling;
use super::settings::{TrainConfig, TrainReport};
use super::{bad, ce};
use crate::error::{Result, S3Error};
use candle_core::{DType, Tensor};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The value of the `format` field of a predictor's JSON file.
pub const PREDICTOR_FORMAT: &str = "s3-predictor";
/// The version of the predictor files this build reads and writes.
pub const PREDICTOR_VERSION: u32 = 1;
/// The extension added to the stem for the JSON half.
const JSON_EXT: &str = "json";
/// The extension added to the stem for the weights.
const WEIGHTS_EXT: &str = "safetensors";
/// Names of the non-trainable tensors in the safetensors file: the input standardisation
/// (f32, input_dim each) and the ln-metric mean and std of the MSE loss (f64, 2 values, so
/// that MSE scores round-trip exactly).
const NORM_MEAN: &str = "norm.mean";
const NORM_STD: &str = "norm.std";
const TARGET: &str = "target.mean_std";

/// The JSON half of a saved predictor. Serialised with its keys sorted and the caller's
/// `meta` keys at the top level beside them; read back by [`PredictorFile::from_json`],
/// which checks every field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictorFile {
    /// Always [`PREDICTOR_FORMAT`].
    pub format: String,
    /// [`PREDICTOR_VERSION`] when written; a file of another version is refused.
    pub version: u32,
    /// The s3 version that wrote the file (informational).
    pub s3_version: String,
    /// The file name of the weights when written (informational: the weights are always read
    /// from `<stem>.safetensors`, so a renamed pair still loads).
    pub weights: String,
    /// The length of the feature vectors the predictor reads.
    pub input_dim: usize,
    /// The hidden layer widths; the same as `train_config.hidden`.
    pub hidden: Vec<usize>,
    /// The training loss; the same as `train_config.loss`.
    pub loss: Loss,
    /// The training settings; they fix the architecture and continue a warm start.
    pub train_config: TrainConfig,
    /// Whether the input standardisation in the weights file was fitted (else the identity,
    /// to be fitted by the next training call).
    pub input_scaling_fitted: bool,
    /// Likewise for the ln-metric scale of the MSE loss.
    pub target_scaling_fitted: bool,
    /// Trials of the last training call (0 if never trained).
    pub trials: usize,
    /// `report.train_tau`, repeated at the top level for readers of the file.
    pub train_tau: Option<f64>,
    /// `report.holdout_tau`, repeated likewise.
    pub holdout_tau: Option<f64>,
    /// The report of the last training call.
    pub report: Option<TrainReport>,
    /// The caller's metadata (e.g. `encoder`, `dataset`, `metric`), written at the top level.
    #[serde(skip)]
    pub meta: Map<String, Value>,
}

/// `stem` with `.ext` appended (not replacing an extension: `run.v1` → `run.v1.json`).
fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut s = OsString::from(stem.as_os_str());
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// An error about the JSON file `path`.
fn json_err(path: &Path, message: String) -> S3Error {
    S3Error::Json {
        path: path.to_path_buf(),
        message,
    }
}

/// The fields of a JSON object, taken out one by one with errors naming the file and field;
/// what is left at the end is the caller's metadata.
struct Fields<'a> {
    map: Map<String, Value>,
    path: &'a Path,
}

impl Fields<'_> {
    /// The field `name`, which must be present.
    fn take<T: DeserializeOwned>(&mut self, name: &str) -> Result<T> {
        let value = self
            .map
            .remove(name)
            .ok_or_else(|| json_err(self.path, format!("missing field `{name}`")))?;
        serde_json::from_value(value)
            .map_err(|e| json_err(self.path, format!("field `{name}`: {e}")))
    }

    /// The field `name`; None when it is missing or null.
    fn take_optional<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>> {
        match self.map.get(name) {
            None | Some(Value::Null) => {
                self.map.remove(name);
                Ok(None)
            }
            Some(_) => self.take(name).map(Some),
        }
    }
}

impl PredictorFile {
    /// The file describing `p`, whose weights are saved as `weights`, without metadata.
    fn describe(p: &Predictor, weights: String) -> Self {
        Self {
            format: PREDICTOR_FORMAT.into(),
            version: PREDICTOR_VERSION,
            s3_version: env!("CARGO_PKG_VERSION").into(),
            weights,
            input_dim: p.input_dim,
            hidden: p.config.hidden.clone(),
            loss: p.config.loss,
            train_config: p.config.clone(),
            input_scaling_fitted: p.input.fitted,
            target_scaling_fitted: p.target.fitted,
            trials: p.trained_on,
            train_tau: p.report.as_ref().map(|r| r.train_tau),
            holdout_tau: p.report.as_ref().and_then(|r| r.holdout_tau),
            report: p.report.clone(),
            meta: Map::new(),
        }
    }

    /// The JSON document: the fields, then the `meta` keys at the top level. A `meta` key
    /// that is one of the fields is refused (the message names it).
    pub fn to_json(&self) -> std::result::Result<Value, String> {
        let Ok(Value::Object(mut doc)) = serde_json::to_value(self) else {
            unreachable!("a struct of JSON values serialises to an object");
        };
        for (k, v) in &self.meta {
            if doc.contains_key(k) {
                return Err(format!(
                    "metadata key `{k}` is reserved by the predictor file"
                ));
            }
            doc.insert(k.clone(), v.clone());
        }
        Ok(Value::Object(doc))
    }

    /// Reads and checks the document `doc` of the file `path` (named in errors): the format
    /// and version first, then every field's type, then that the copies agree with
    /// `train_config` and that the settings are usable. `report`, `train_tau` and
    /// `holdout_tau` may be null; other keys become `meta`.
    pub fn from_json(doc: &Value, path: &Path) -> Result<Self> {
        let Value::Object(map) = doc else {
            return Err(json_err(
                path,
                "not a predictor file: not a JSON object".into(),
            ));
        };
        if map.get("format").and_then(Value::as_str) != Some(PREDICTOR_FORMAT) {
            return Err(json_err(
                path,
                format!(
                    "field `format` is {}; expected {PREDICTOR_FORMAT:?}",
                    map.get("format").unwrap_or(&Value::Null)
                ),
            ));
        }
        let version = map.get("version").and_then(Value::as_u64);
        if version != Some(u64::from(PREDICTOR_VERSION)) {
            return Err(json_err(
                path,
                format!(
                    "field `version` is {version:?}; this build reads version {PREDICTOR_VERSION}"
                ),
            ));
        }
        let mut f = Fields {
            map: map.clone(),
            path,
        };
        let file = Self {
            format: f.take("format")?,
            version: f.take("version")?,
            s3_version: f.take("s3_version")?,
            weights: f.take("weights")?,
            input_dim: f.take("input_dim")?,
            hidden: f.take("hidden")?,
            loss: f.take("loss")?,
            train_config: f.take("train_config")?,
            input_scaling_fitted: f.take("input_scaling_fitted")?,
            target_scaling_fitted: f.take("target_scaling_fitted")?,
            trials: f.take("trials")?,
            train_tau: f.take_optional("train_tau")?,
            holdout_tau: f.take_optional("holdout_tau")?,
            report: f.take_optional("report")?,
            meta: Map::new(),
        };
        let file = Self {
            meta: f.map,
            ..file
        };
        file.validate().map_err(|m| json_err(path, m))?;
        Ok(file)
    }

    /// Checks what the types alone do not: a usable architecture and settings, and copies
    /// that agree with `train_config`.
    fn validate(&self) -> std::result::Result<(), String> {
        if self.input_dim == 0 {
            return Err("field `input_dim` is 0; expected at least 1".into());
        }
        self.train_config
            .check()
            .map_err(|e| format!("field `train_config`: {e}"))?;
        if self.hidden != self.train_config.hidden {
            return Err(format!(
                "field `hidden` is {:?} but `train_config.hidden` is {:?}",
                self.hidden, self.train_config.hidden
            ));
        }
        if self.loss != self.train_config.loss {
            return Err(format!(
                "field `loss` is {:?} but `train_config.loss` is {:?}",
                self.loss, self.train_config.loss
            ));
        }
        Ok(())
    }
}

/// The tensors of a safetensors file, taken out by name with errors naming the file.
struct WeightFile<'a> {
    tensors: HashMap<String, Tensor>,
    path: &'a Path,
    /// The JSON file and the architecture it describes, for messages.
    json_path: &'a Path,
    architecture: String,
}

impl WeightFile<'_> {
    /// An error about the weights file.
    fn err(&self, message: String) -> S3Error {
        S3Error::Predictor(format!("{}: {message}", self.path.display()))
    }

    /// The tensor `name`, which must have `shape`, converted to `dtype`.
    fn take(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let t = self.tensors.remove(name).ok_or_else(|| {
            self.err(format!(
                "no tensor `{name}`; {} describes a {} MLP",
                self.json_path.display(),
                self.architecture
            ))
        })?;
        if t.dims() != shape {
            return Err(self.err(format!(
                "tensor `{name}` has shape {:?}; {} implies {shape:?}",
                t.dims(),
                self.json_path.display()
            )));
        }
        t.to_dtype(dtype)
            .map_err(|e| self.err(format!("tensor `{name}`: {e}")))
    }

    /// The 1-d tensor `name` of `len` values of type `T`.
    fn take_vec<T: candle_core::WithDType>(&mut self, name: &str, len: usize) -> Result<Vec<T>> {
        self.take(name, &[len], T::DTYPE)?
            .to_vec1::<T>()
            .map_err(|e| self.err(format!("tensor `{name}`: {e}")))
    }

    /// Refuses a tensor left over after everything was taken (the first by name).
    fn check_all_taken(&self) -> Result<()> {
        match self.tensors.keys().min() {
            Some(name) => Err(self.err(format!(
                "unexpected tensor `{name}` for the {} MLP of {}",
                self.architecture,
                self.json_path.display()
            ))),
            None => Ok(()),
        }
    }
}

impl Predictor {
    /// Writes `<stem>.safetensors` (the layer weights, the input standardisation `norm.mean` /
    /// `norm.std`, and `target.mean_std` (f64) for MSE) and `<stem>.json`, a
    /// [`PredictorFile`]: format and version, the s3 version, input_dim, hidden sizes, loss and
    /// the rest of the training settings, the number of trials, the last training report (τ
    /// on train and held-out trials), and the caller's `meta` — an object (or null) whose keys
    /// are written at the top level, e.g. `{"encoder": Encoder::meta(), "dataset": ...,
    /// "metric": ...}`. A `meta` key that collides with one of the predictor's own keys is an
    /// error. Missing parent folders are created.
    pub fn save(&self, stem: &Path, meta: Value) -> Result<()> {
        let weights_path = with_suffix(stem, WEIGHTS_EXT);
        let json_path = with_suffix(stem, JSON_EXT);
        let weights_name = weights_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut file = PredictorFile::describe(self, weights_name);
        file.meta = match meta {
            Value::Null => Map::new(),
            Value::Object(extra) => extra,
            other => {
                return bad(format!(
                    "saving {}: metadata must be a JSON object, got {other}",
                    json_path.display()
                ));
            }
        };
        let doc = file
            .to_json()
            .or_else(|m| bad(format!("saving {}: {m}", json_path.display())))?;
        if let Some(parent) = stem.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| S3Error::io(parent, e))?;
        }
        self.write_weights(&weights_path)?;
        let text = serde_json::to_string_pretty(&doc).expect("JSON values serialise") + "\n";
        std::fs::write(&json_path, text).map_err(|e| S3Error::io(&json_path, e))
    }

    /// Writes the layer weights and the scaling tensors to `path`.
    fn write_weights(&self, path: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, var) in self.varmap.data().lock().expect("VarMap lock").iter() {
            tensors.insert(name.clone(), var.as_tensor().clone());
        }
        let d = self.input_dim;
        let extra = || -> candle_core::Result<[Tensor; 3]> {
            Ok([
                Tensor::from_vec(self.input.mean.clone(), d, &self.device)?,
                Tensor::from_vec(self.input.std.clone(), d, &self.device)?,
                Tensor::from_vec(self.target.mean_std.to_vec(), 2, &self.device)?,
            ])
        };
        let [m, s, t] = extra().map_err(ce("collecting the scaling tensors"))?;
        tensors.insert(NORM_MEAN.into(), m);
        tensors.insert(NORM_STD.into(), s);
        tensors.insert(TARGET.into(), t);
        candle_core::safetensors::save(&tensors, path)
            .map_err(ce(format!("writing {}", path.display())))
    }

    /// Reads a predictor written by [`Predictor::save`] and returns it with the whole JSON
    /// document (the caller's `meta` keys are at its top level; [`PredictorFile::from_json`]
    /// types it). Errors name the file and field: a missing `<stem>.json` or
    /// `<stem>.safetensors`, another format or version, a field of the wrong type or out of
    /// range, and weights whose names or shapes do not match the architecture the JSON
    /// describes.
    pub fn load(stem: &Path) -> Result<(Self, Value)> {
        let json_path = with_suffix(stem, JSON_EXT);
        let weights_path = with_suffix(stem, WEIGHTS_EXT);
        let text = std::fs::read_to_string(&json_path).map_err(|e| S3Error::io(&json_path, e))?;
        let doc: Value = serde_json::from_str(&text)
            .map_err(|e| json_err(&json_path, format!("not a predictor file: {e}")))?;
        let file = PredictorFile::from_json(&doc, &json_path)?;
        let mut p = Predictor::new(file.input_dim, &file.train_config)
            .map_err(|e| json_err(&json_path, e.to_string()))?;
        p.trained_on = file.trials;
        p.report = file.report.clone();
        p.read_weights(&weights_path, &json_path, &file)?;
        Ok((p, doc))
    }

    /// Replaces the weights and scaling with those of the safetensors file `path`, which must
    /// hold exactly the tensors of the architecture `file` (read from `json_path`) describes.
    fn read_weights(&mut self, path: &Path, json_path: &Path, file: &PredictorFile) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| S3Error::io(path, e))?;
        let mut w = WeightFile {
            tensors: HashMap::new(),
            path,
            json_path,
            architecture: format!("{}→{:?}→1", file.input_dim, file.train_config.hidden),
        };
        w.tensors = candle_core::safetensors::load_buffer(&bytes, &self.device)
            .map_err(|e| w.err(format!("not a readable safetensors file: {e}")))?;
        {
            let data = self.varmap.data().lock().expect("VarMap lock");
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for name in names {
                let var = &data[name];
                let t = w.take(name, var.dims(), DType::F32)?;
                var.set(&t)
                    .map_err(|e| w.err(format!("setting `{name}`: {e}")))?;
            }
        }
        let d = file.input_dim;
        let mean = w.take_vec::<f32>(NORM_MEAN, d)?;
        let std = w.take_vec::<f32>(NORM_STD, d)?;
        let target = w.take_vec::<f64>(TARGET, 2)?;
        w.check_all_taken()?;
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(w.err(format!("`{NORM_STD}` holds a non-positive value")));
        }
        self.input = InputScaling::new(mean, std, file.input_scaling_fitted, &self.device)
            .map_err(ce("restoring the scaling"))?;
        self.target.mean_std = [target[0], target[1]];
        self.target.fitted = file.target_scaling_fitted;
        Ok(())
    }
}

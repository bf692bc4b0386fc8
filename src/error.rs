//! The library's error type: every failure names the file, field, flag or step it concerns.

use std::path::PathBuf;

/// Errors raised by the s3 library. The CLI wraps them with `anyhow` context.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A JSON document is malformed or does not have the expected shape.
    #[error("{path}: {message}")]
    Json { path: PathBuf, message: String },
    /// A named field holds a value that is not allowed.
    #[error("{context}: field `{field}`: {message}")]
    InvalidField {
        context: String,
        field: String,
        message: String,
    },
    /// A solver schedule breaks a rule; the message names the step and the rule.
    #[error("invalid schedule: {0}")]
    InvalidSchedule(String),
    /// An array file (.npy) has the wrong type, shape or contents.
    #[error("{path}: {message}")]
    Array { path: PathBuf, message: String },
    /// A name (dataset, noise schedule, solver, ...) is not known.
    #[error("unknown {kind} `{name}`; expected one of: {expected}")]
    UnknownName {
        kind: &'static str,
        name: String,
        expected: String,
    },
    /// Input data (noise, samples) has the wrong shape for the model.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A numerical failure (non-finite values, singular system).
    #[error("numerical error: {0}")]
    Numerical(String),
    /// The result store could not be opened, read or written.
    #[error("store {path}: {message}")]
    Store { path: PathBuf, message: String },
    /// The learned predictor failed (training, inference, weights I/O).
    #[error("predictor: {0}")]
    Predictor(String),
    /// ONNX Runtime could not be found or loaded, or an ONNX model failed to load or run.
    #[error("ONNX Runtime: {0}")]
    Onnx(String),
    /// Files a preset needs are missing; the message lists them and how to create each.
    #[error("{0}")]
    MissingFiles(String),
}

/// Result alias for the library.
pub type Result<T, E = S3Error> = std::result::Result<T, E>;

impl S3Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        S3Error::Io {
            path: path.into(),
            error: source,
        }
    }

    /// An invalid value in `field` of `context`.
    pub fn field(
        context: impl Into<String>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        S3Error::InvalidField {
            context: context.into(),
            field: field.into(),
            message: message.into(),
        }
    }
}

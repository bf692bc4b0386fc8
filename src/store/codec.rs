//! Turning records into bytes and back, and sled failures into [`S3Error::Store`] errors that
//! name the store directory and, for a bad record, its key.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::keys::describe_key;
use crate::error::{Result, S3Error};

/// A store error about the store in `path`.
pub(crate) fn store_error(path: &Path, message: impl Into<String>) -> S3Error {
    S3Error::Store {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// A sled failure while doing `what`.
pub(crate) fn sled_error(path: &Path, what: &str, error: sled::Error) -> S3Error {
    store_error(path, format!("{what}: {error}"))
}

/// The result of a sled transaction whose closure aborts with an [`S3Error`].
pub(crate) fn transaction_result<T>(
    path: &Path,
    what: &str,
    result: std::result::Result<T, TransactionError<S3Error>>,
) -> Result<T> {
    result.map_err(|e| match e {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => sled_error(path, what, error),
    })
}

/// Turns a library result into one a transaction closure can return (an `Err` aborts).
pub(crate) fn abort_on_error<T>(
    result: Result<T>,
) -> std::result::Result<T, ConflictableTransactionError<S3Error>> {
    result.map_err(ConflictableTransactionError::Abort)
}

/// The JSON bytes of a record.
pub(crate) fn encode<T: Serialize>(
    path: &Path,
    tree: &str,
    key: &[u8],
    value: &T,
) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| {
        store_error(
            path,
            format!("cannot encode record {}: {e}", describe_key(tree, key)),
        )
    })
}

/// Parses the JSON record stored under `key` in `tree`; a bad record is an error naming the
/// store and the key, never a panic.
pub(crate) fn decode<T: DeserializeOwned>(
    path: &Path,
    tree: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        store_error(
            path,
            format!("corrupt record {}: {e}", describe_key(tree, key)),
        )
    })
}

/// Seconds since the Unix epoch, as the records keep time.
pub(crate) fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

//! Sizes s3 refuses up front, before any work or store record: a buffer of samples that
//! cannot fit memory is a clear error naming the flag, not an aborted allocation. It sits at
//! the bottom of the crate so the model, metric and command layers share one rule.

use crate::error::{Result, S3Error};

/// The most values one sample buffer may hold (2³⁰ f32 = 4 GiB; the sampler keeps several
/// such buffers), so an oversized `--samples` or shape is a clear error before any work or
/// store record instead of an aborted allocation.
pub const MAX_SAMPLE_VALUES: usize = 1 << 30;

/// Checks that `n` samples of `dim` values fit one buffer; `flag` names the count in the error.
pub fn check_sample_size(n: usize, dim: usize, flag: &str) -> Result<()> {
    match n.checked_mul(dim) {
        Some(v) if v <= MAX_SAMPLE_VALUES => Ok(()),
        _ => Err(S3Error::field(
            "samples",
            flag,
            format!(
                "{n} samples × {dim} values each exceeds the limit of {MAX_SAMPLE_VALUES} values (4 GiB of f32 per buffer); use fewer samples"
            ),
        )),
    }
}

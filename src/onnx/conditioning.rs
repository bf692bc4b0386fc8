//! Per-sample conditioning inputs of a network (class labels or text embeddings) and the
//! null entry classifier-free guidance needs: sample i of a batch gets condition row
//! i mod K, so a sample set is balanced over the conditions and reproducible.

use super::config::{ClassLabels, ConditioningConfig, ModelConfigPath};
use crate::error::{Result, S3Error};
use crate::io::npy::read_array;

/// The conditions and the null entry, each `row_len` f32 values of shape `cond_shape`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conditions {
    /// The graph input they feed.
    pub input: String,
    /// The shape of one entry (`[]` for a class label).
    pub cond_shape: Vec<usize>,
    rows: Vec<Vec<f32>>,
    null: Vec<f32>,
    /// The guidance scale w of the config.
    pub guidance_scale: f64,
}

impl Conditions {
    /// Class labels 0…K−1 as f32, with the null class.
    pub fn from_class_labels(c: &ClassLabels) -> Self {
        Self {
            input: c.input.clone(),
            cond_shape: Vec::new(),
            rows: (0..c.num_classes).map(|k| vec![k as f32]).collect(),
            null: vec![c.null_class as f32],
            guidance_scale: c.guidance_scale,
        }
    }

    /// Reads the `conditioning.values` array; errors name the config field and the array's
    /// actual shape.
    pub fn load(c: &ConditioningConfig, config: &ModelConfigPath) -> Result<Self> {
        let path = config.resolve(&c.values);
        let ctx = config.file().display().to_string();
        let a = read_array(&path)?;
        let Some((&r, cond_shape)) = a.shape.split_first() else {
            return Err(S3Error::field(
                &ctx,
                "conditioning.values",
                format!("{}: a 0-d array; expected [R, ...]", path.display()),
            ));
        };
        if cond_shape.contains(&0) {
            return Err(S3Error::field(
                &ctx,
                "conditioning.values",
                format!(
                    "{}: shape {:?} holds empty conditions; expected [R, ...] with every \
                     dimension at least 1",
                    path.display(),
                    a.shape
                ),
            ));
        }
        if r < 2 || c.null_index >= r {
            return Err(S3Error::field(
                &ctx,
                "conditioning.null_index",
                format!(
                    "{} with {} rows in {} (shape {:?}); expected at least one condition and \
                     the null entry, null_index < rows",
                    c.null_index,
                    r,
                    path.display(),
                    a.shape
                ),
            ));
        }
        let len: usize = cond_shape.iter().product();
        let mut rows: Vec<Vec<f32>> = a.data.chunks(len.max(1)).map(<[f32]>::to_vec).collect();
        let null = rows.remove(c.null_index);
        Ok(Self {
            input: c.input.clone(),
            cond_shape: cond_shape.to_vec(),
            rows,
            null,
            guidance_scale: c.guidance_scale,
        })
    }

    /// Number of conditions (without the null entry).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Always false: at least one condition is required on load.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The conditions of samples `first .. first + count`, concatenated.
    pub fn batch(&self, first: usize, count: usize) -> Vec<f32> {
        (first..first + count)
            .flat_map(|i| self.rows[i % self.rows.len()].iter().copied())
            .collect()
    }

    /// The null entry repeated `count` times.
    pub fn null_batch(&self, count: usize) -> Vec<f32> {
        (0..count).flat_map(|_| self.null.iter().copied()).collect()
    }
}

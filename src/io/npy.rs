//! `.npy` arrays of samples: read as f32 (from f32 or f64 files) with shape and value checks,
//! written as little-endian f32 with the sample shape.

use crate::error::{Result, S3Error};
use npyz::WriterBuilder;
use std::path::Path;

/// A batch of samples read from a `.npy` file.
#[derive(Debug, Clone)]
pub struct SampleArray {
    /// Number of samples (the leading axis).
    pub count: usize,
    /// `count × dim` values.
    pub data: Vec<f32>,
}

/// Any `.npy` array of f32 or f64 values, in C order, with finite values: its shape and
/// its values as f32.
#[derive(Debug, Clone)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads `path` as an f32 array (from f32 or f64 files); errors name the file and what is
/// wrong (dtype, order, a non-finite value and its index).
pub fn read_array(path: &Path) -> Result<Array> {
    let err = |m: String| S3Error::Array {
        path: path.into(),
        message: m,
    };
    let bytes = std::fs::read(path).map_err(|e| S3Error::io(path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| err(format!("not a .npy file: {e}")))?;
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if npy.order() != npyz::Order::C {
        return Err(err(
            "Fortran-ordered arrays are not supported; save with C order".into(),
        ));
    }
    let dtype = npy.dtype();
    let type_str = match &dtype {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => format!("{other:?}"),
    };
    let data: Vec<f32> = match type_str.as_str() {
        "<f4" => npy.into_vec::<f32>().map_err(|e| err(e.to_string()))?,
        "<f8" => npy
            .into_vec::<f64>()
            .map_err(|e| err(e.to_string()))?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        other => {
            return Err(err(format!(
                "dtype {other}; expected float32 (<f4) or float64 (<f8)"
            )));
        }
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        let idx = unravel(i, &shape);
        return Err(err(format!(
            "value at index {idx:?} is {}; expected finite numbers",
            data[i]
        )));
    }
    Ok(Array { shape, data })
}

/// Reads `path` as samples of `sample_shape`: the array must be `[n, *sample_shape]` or
/// `[n, prod(sample_shape)]`, of dtype f32 or f64, in C order, with finite values.
pub fn read_samples(path: &Path, sample_shape: &[usize]) -> Result<SampleArray> {
    let a = read_array(path)?;
    let shape = &a.shape;
    let dim: usize = sample_shape.iter().product();
    let ok_shape = shape.len() >= 2
        && shape[0] > 0
        && (shape[1..] == *sample_shape || (shape.len() == 2 && shape[1] == dim));
    if !ok_shape {
        return Err(S3Error::Array {
            path: path.into(),
            message: format!(
                "array shape {shape:?}; expected [n, {}] or [n, {dim}] with n ≥ 1",
                sample_shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(SampleArray {
        count: shape[0],
        data: a.data,
    })
}

fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        idx[k] = i % d;
        i /= d;
    }
    idx
}

/// Writes `data` (`n × prod(sample_shape)`) as an f32 array of shape `[n, *sample_shape]`.
pub fn write_samples(path: &Path, data: &[f32], sample_shape: &[usize]) -> Result<()> {
    let dim: usize = sample_shape.iter().product();
    let mut shape = vec![(data.len() / dim) as u64];
    shape.extend(sample_shape.iter().map(|&d| d as u64));
    let file = std::fs::File::create(path).map_err(|e| S3Error::io(path, e))?;
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(&shape)
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| S3Error::io(path, e))?;
    w.extend(data.iter().copied())
        .map_err(|e| S3Error::io(path, e))?;
    w.finish().map_err(|e| S3Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_shape_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write_samples(&p, &data, &[3, 2, 2]).unwrap();
        let back = read_samples(&p, &[3, 2, 2]).unwrap();
        assert_eq!(back.count, 2);
        assert_eq!(back.data, data);
        // The flat form [n, dim] is accepted too.
        let back = read_samples(&p, &[12]).unwrap_err();
        assert!(back.to_string().contains("expected [n, 12]"));
    }
}

//! FID reference statistics as pytorch-fid writes them: an `.npz` holding `mu` (float64,
//! `[d]`) and `sigma` (float64, `[d, d]`). Reads compressed (`np.savez_compressed`, what
//! pytorch-fid's `--save-stats` uses) and stored archives, float16/32/64 in either byte
//! order and C or Fortran order (see [`crate::io::npy`]); writes float64
//! with the same two keys, deflate-compressed, so numpy and pytorch-fid load s3's files.

use super::Moments;
use crate::error::{Result, S3Error};
use crate::io::npy::{NpyArray, Numeric};
use npyz::WriterBuilder;
use std::io::{Read, Write};
use std::path::Path;

/// The largest array entry read from a statistics archive (1 GiB: a float64 `sigma` of
/// d ≈ 11,000 features); a larger declared size is refused before it is read.
pub const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// One array of the archive as f64 with its shape, from any float dtype, order and byte
/// order numpy writes.
fn read_array(
    archive: &mut zip::ZipArchive<std::io::BufReader<std::fs::File>>,
    key: &str,
    path: &Path,
) -> Result<(Vec<usize>, Vec<f64>)> {
    let err = |m: String| S3Error::Array {
        path: path.into(),
        message: m,
    };
    let names: Vec<String> = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .collect();
    let mut entry = archive.by_name(&format!("{key}.npy")).map_err(|_| {
        err(format!(
            "no array `{key}`; FID statistics need `mu` and `sigma` (the file has {})",
            names
                .iter()
                .map(|n| n.trim_end_matches(".npy"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    if entry.size() > MAX_ENTRY_BYTES {
        return Err(err(format!(
            "`{key}` is {} bytes; the limit is {MAX_ENTRY_BYTES}",
            entry.size()
        )));
    }
    let mut bytes = Vec::new();
    (&mut entry)
        .take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(format!("reading `{key}`: {e}")))?;
    let npy = NpyArray::parse(&bytes).map_err(|e| err(format!("`{key}`: {e}")))?;
    if npy.numeric() != Numeric::Float {
        return Err(err(format!(
            "`{key}` has dtype {}; expected float64, float32 or float16",
            npy.dtype()
        )));
    }
    let shape = npy.shape().to_vec();
    let data = npy
        .into_values(|v| v.is_finite().then_some(v), "finite numbers")
        .map_err(|e| err(format!("`{key}`: {e}")))?;
    Ok((shape, data))
}

/// Reads `mu` and `sigma` from a pytorch-fid statistics file; errors name the file and key.
pub fn read_fid_stats(path: &Path) -> Result<Moments> {
    let file = std::fs::File::open(path).map_err(|e| S3Error::io(path, e))?;
    let mut archive =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| S3Error::Array {
            path: path.into(),
            message: format!("not an .npz archive: {e}"),
        })?;
    let (mu_shape, mu) = read_array(&mut archive, "mu", path)?;
    let (sigma_shape, sigma) = read_array(&mut archive, "sigma", path)?;
    let d = mu.len();
    if mu_shape.len() != 1 || sigma_shape != [d, d] || d == 0 {
        return Err(S3Error::Array {
            path: path.into(),
            message: format!(
                "`mu` has shape {mu_shape:?} and `sigma` {sigma_shape:?}; expected [d] and [d, d] with d ≥ 1"
            ),
        });
    }
    Ok(Moments { mu, cov: sigma })
}

fn npy_bytes(shape: &[u64], data: &[f64]) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut buf)
        .begin_nd()?;
    w.extend(data.iter().copied())?;
    w.finish()?;
    Ok(buf)
}

/// Writes `m` as `mu`/`sigma` float64 arrays (atomically: a temporary file renamed into place).
pub fn write_fid_stats(path: &Path, m: &Moments) -> Result<()> {
    let d = m.mu.len() as u64;
    if m.cov.len() != m.mu.len() * m.mu.len() {
        return Err(S3Error::Shape(format!(
            "writing {}: a {}-d mean needs a {}×{} covariance, got {} values",
            path.display(),
            d,
            d,
            d,
            m.cov.len()
        )));
    }
    let io = |e: std::io::Error| S3Error::io(path, e);
    let zerr = |e: zip::result::ZipError| S3Error::io(path, std::io::Error::other(e));
    let tmp = path.with_extension("npz.tmp");
    {
        let file = std::fs::File::create(&tmp).map_err(|e| S3Error::io(&tmp, e))?;
        let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(m.cov.len() * 8 > u32::MAX as usize);
        for (name, shape, data) in [("mu", vec![d], &m.mu), ("sigma", vec![d, d], &m.cov)] {
            zw.start_file(format!("{name}.npy"), options)
                .map_err(zerr)?;
            zw.write_all(&npy_bytes(&shape, data).map_err(io)?)
                .map_err(io)?;
        }
        zw.finish().map_err(zerr)?.flush().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.npz");
        let m = Moments {
            mu: vec![0.5, -1.25, 3.0],
            cov: vec![2.0, 0.1, 0.0, 0.1, 1.0, -0.3, 0.0, -0.3, 0.7],
        };
        write_fid_stats(&p, &m).unwrap();
        assert_eq!(read_fid_stats(&p).unwrap(), m);
    }

    /// An archive with arbitrary named arrays.
    fn write_arrays(path: &Path, arrays: &[(&str, Vec<u64>, Vec<f64>)]) {
        let file = std::fs::File::create(path).unwrap();
        let mut zw = zip::ZipWriter::new(file);
        for (name, shape, data) in arrays {
            zw.start_file(
                format!("{name}.npy"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            zw.write_all(&npy_bytes(shape, data).unwrap()).unwrap();
        }
        zw.finish().unwrap();
    }

    #[test]
    fn missing_key_and_bad_shapes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.npz");
        write_arrays(
            &p,
            &[
                ("mu", vec![2], vec![1.0, 2.0]),
                ("sigma", vec![3], vec![1.0; 3]),
            ],
        );
        let e = read_fid_stats(&p).unwrap_err().to_string();
        assert!(
            e.contains("bad.npz") && e.contains("expected [d] and [d, d]"),
            "{e}"
        );
        write_arrays(&p, &[("m", vec![2], vec![1.0, 2.0])]);
        let e = read_fid_stats(&p).unwrap_err().to_string();
        assert!(e.contains("no array `mu`") && e.contains("has m"), "{e}");
        std::fs::write(&p, b"not a zip").unwrap();
        let e = read_fid_stats(&p).unwrap_err().to_string();
        assert!(e.contains("not an .npz archive"), "{e}");
    }
}

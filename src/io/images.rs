//! Image sets for FID, read the way pytorch-fid reads them: a folder of PNG files (8-bit or
//! 16-bit; grey and alpha converted to RGB), or an `.npy` array — uint8 `[N, H, W, 3]`
//! (numpy's image layout) or `[N, 3, H, W]`, or float `[N, C, H, W]` samples in [−1, 1] as
//! `s3 sample` writes them (quantised to 8 bits like a saved PNG).

use crate::error::{Result, S3Error};
use crate::onnx::Images;
use std::path::{Path, PathBuf};

/// Reads a folder of PNGs or an `.npy` file; errors name the file and what was expected.
pub fn read_images(path: &Path) -> Result<Images> {
    if path.is_dir() {
        read_png_folder(path)
    } else if path.extension().is_some_and(|e| e == "npy") {
        read_npy_images(path)
    } else {
        Err(S3Error::Array {
            path: path.into(),
            message: "expected a folder of .png images, an .npy array of images or an .npz of \
                      FID statistics"
                .into(),
        })
    }
}

fn read_png(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let err = |m: String| S3Error::Array {
        path: path.into(),
        message: m,
    };
    let file = std::fs::File::open(path).map_err(|e| S3Error::io(path, e))?;
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder
        .read_info()
        .map_err(|e| err(format!("not a PNG: {e}")))?;
    let mut buf = vec![0; reader.output_buffer_size().unwrap_or(0)];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| err(format!("decoding: {e}")))?;
    let (w, h) = (info.width as usize, info.height as usize);
    let channels = match info.color_type {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => return Err(err("indexed colour left unexpanded".into())),
    };
    let pixels = &buf[..w * h * channels];
    // Planar RGB, channels first.
    let mut out = vec![0u8; 3 * h * w];
    for (i, px) in pixels.chunks(channels).enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = if channels < 3 { px[0] } else { px[c] };
        }
    }
    Ok((h, w, out))
}

fn read_png_folder(dir: &Path) -> Result<Images> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| S3Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    if files.len() < 2 {
        return Err(S3Error::Array {
            path: dir.into(),
            message: format!(
                "{} .png files; FID statistics need at least 2 images",
                files.len()
            ),
        });
    }
    let mut data = Vec::new();
    let mut size = None;
    for f in &files {
        let (h, w, px) = read_png(f)?;
        match size {
            None => size = Some((h, w)),
            Some(s) if s != (h, w) => {
                return Err(S3Error::Array {
                    path: f.clone(),
                    message: format!(
                        "{h}×{w} pixels, but the folder's first image is {}×{}; all images must \
                         have one size",
                        s.0, s.1
                    ),
                });
            }
            _ => {}
        }
        data.extend(px);
    }
    let (height, width) = size.expect("at least 2 files");
    Ok(Images {
        count: files.len(),
        height,
        width,
        data,
    })
}

fn read_npy_images(path: &Path) -> Result<Images> {
    let err = |m: String| S3Error::Array {
        path: path.into(),
        message: m,
    };
    let bytes = std::fs::read(path).map_err(|e| S3Error::io(path, e))?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| err(format!("not a .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(err("Fortran-ordered arrays are not supported".into()));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let type_str = match npy.dtype() {
        npyz::DType::Plain(ts) => ts.to_string(),
        other => format!("{other:?}"),
    };
    let expected = "expected uint8 [N, H, W, 3] or [N, 3, H, W], or float [N, 3 or 1, H, W] \
                    samples in [-1, 1]";
    if shape.len() != 4 || shape[0] < 2 {
        return Err(err(format!("array shape {shape:?}; {expected}, N ≥ 2")));
    }
    let n = shape[0];
    match type_str.as_str() {
        "|u1" => {
            let raw = npy.into_vec::<u8>().map_err(|e| err(e.to_string()))?;
            if shape[1] == 3 {
                Ok(Images {
                    count: n,
                    height: shape[2],
                    width: shape[3],
                    data: raw,
                })
            } else if shape[3] == 3 {
                let (h, w) = (shape[1], shape[2]);
                let mut data = vec![0u8; raw.len()];
                for (k, img) in raw.chunks(h * w * 3).enumerate() {
                    for (i, px) in img.chunks(3).enumerate() {
                        for c in 0..3 {
                            data[k * 3 * h * w + c * h * w + i] = px[c];
                        }
                    }
                }
                Ok(Images {
                    count: n,
                    height: h,
                    width: w,
                    data,
                })
            } else {
                Err(err(format!("uint8 array of shape {shape:?}; {expected}")))
            }
        }
        "<f4" | "<f8" => {
            let x: Vec<f32> = if type_str == "<f4" {
                npy.into_vec::<f32>().map_err(|e| err(e.to_string()))?
            } else {
                npy.into_vec::<f64>()
                    .map_err(|e| err(e.to_string()))?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect()
            };
            if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                return Err(err(format!(
                    "value {i} is {}; expected finite numbers",
                    x[i]
                )));
            }
            Images::from_samples(&x, &shape[1..]).map_err(|e| err(format!("{e}; {expected}")))
        }
        other => Err(err(format!("dtype {other}; {expected}"))),
    }
}

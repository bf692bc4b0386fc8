//! Image sets for FID, read the way pytorch-fid reads them: a folder of PNG files (8-bit or
//! 16-bit; grey and alpha converted to RGB), or an `.npy` array in any layout numpy writes —
//! integer (uint8) pixels `[N, H, W, 3]` (numpy's image layout) or `[N, 3, H, W]`, or float
//! `[N, C, H, W]` samples in [−1, 1] as `s3 sample` writes them (quantised to 8 bits like a
//! saved PNG).

use crate::error::{Result, S3Error};
use crate::io::npy::{FINITE_F32, NpyArray, Numeric, finite_f32};
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

/// What an `.npy` of images may be.
const NPY_IMAGES: &str = "expected integer (uint8) [N, H, W, 3] or [N, 3, H, W] images with \
                          values 0-255, or float [N, 3 or 1, H, W] samples in [-1, 1]";

/// Reads an `.npy` of images in any layout numpy writes (see [`crate::io::npy`]): integer
/// arrays as 8-bit pixels (channels last or first), float arrays as samples.
fn read_npy_images(path: &Path) -> Result<Images> {
    let err = |m: String| S3Error::Array {
        path: path.into(),
        message: m,
    };
    let bytes = std::fs::read(path).map_err(|e| S3Error::io(path, e))?;
    let npy = NpyArray::parse(&bytes).map_err(err)?;
    let shape = npy.shape().to_vec();
    if shape.len() != 4 || shape[0] < 2 || shape[1..].contains(&0) {
        return Err(err(format!("array shape {shape:?}; {NPY_IMAGES}, N ≥ 2")));
    }
    if npy.numeric() == Numeric::Float {
        let x = npy.into_values(finite_f32, FINITE_F32).map_err(err)?;
        return Images::from_samples(&x, &shape[1..])
            .map_err(|e| err(format!("{e}; {NPY_IMAGES}")));
    }
    let channels_first = shape[1] == 3;
    if !channels_first && shape[3] != 3 {
        return Err(err(format!(
            "integer array of shape {shape:?}; {NPY_IMAGES}"
        )));
    }
    let raw = npy
        .into_values(pixel, "an integer pixel value 0-255")
        .map_err(err)?;
    let (n, h, w) = if channels_first {
        (shape[0], shape[2], shape[3])
    } else {
        (shape[0], shape[1], shape[2])
    };
    let data = if channels_first {
        raw
    } else {
        channels_last_to_planar(&raw, h, w)
    };
    Ok(Images {
        count: n,
        height: h,
        width: w,
        data,
    })
}

/// An 8-bit pixel value, or `None` outside 0–255.
fn pixel(v: f64) -> Option<u8> {
    (0.0..=255.0).contains(&v).then_some(v as u8)
}

/// `[N, H, W, 3]` pixels as planar `[N, 3, H, W]`.
fn channels_last_to_planar(raw: &[u8], h: usize, w: usize) -> Vec<u8> {
    let mut data = vec![0u8; raw.len()];
    for (k, img) in raw.chunks(h * w * 3).enumerate() {
        for (i, px) in img.chunks(3).enumerate() {
            for c in 0..3 {
                data[k * 3 * h * w + c * h * w + i] = px[c];
            }
        }
    }
    data
}

/// 8-bit images, channels first: `count × 3 × height × width` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Images {
    pub count: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

/// Quantises a model sample value in [−1, 1] to 8 bits, like saving it as a PNG.
pub fn quantize(x: f32) -> u8 {
    ((x as f64 + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

impl Images {
    /// Quantised copies of model samples `[n, C, H, W]` in [−1, 1] (C = 3, or 1, repeated
    /// to 3 channels as pytorch-fid converts grey images to RGB).
    pub fn from_samples(x: &[f32], shape: &[usize]) -> Result<Self> {
        let [c, h, w] = match shape {
            [c, h, w] if *c == 1 || *c == 3 => [*c, *h, *w],
            _ => {
                return Err(S3Error::Shape(format!(
                    "FID needs image samples of shape [3, H, W] or [1, H, W], got {shape:?}"
                )));
            }
        };
        let dim = c * h * w;
        if !x.len().is_multiple_of(dim) {
            return Err(S3Error::Shape(format!(
                "{} values are not a whole number of {shape:?} samples",
                x.len()
            )));
        }
        let count = x.len() / dim;
        let mut data = Vec::with_capacity(count * 3 * h * w);
        for s in x.chunks(dim) {
            for ch in 0..3 {
                let src = if c == 1 { 0 } else { ch };
                data.extend(
                    s[src * h * w..(src + 1) * h * w]
                        .iter()
                        .map(|&v| quantize(v)),
                );
            }
        }
        Ok(Self {
            count,
            height: h,
            width: w,
            data,
        })
    }
}

//! Pictures of samples a person can look at: image-shaped samples (`[C, H, W]`, C = 1 or 3,
//! values in [−1, 1]) tiled into a grid, and 2-D points as a scatter plot.

use crate::error::{Result, S3Error};
use std::path::Path;

/// The most samples a grid shows.
pub const MAX_GRID: usize = 64;
/// Images per grid row.
const GRID_COLUMNS: usize = 8;
/// Small images are enlarged to at least this many pixels on their longer side.
const MIN_TILE: usize = 32;
/// White pixels between and around the tiles.
const PAD: usize = 2;
/// The side of the scatter plot of 2-D points, in pixels.
const SCATTER_SIZE: usize = 512;
/// The longest side a picture may have (PNG viewers and decoders give up well before
/// PNG's own 2³¹ limit), so a huge sample shape is a clear error, not an aborted allocation.
pub const MAX_PICTURE_SIDE: usize = 16384;

/// The picture's width and height for samples of `shape`, or an error when it cannot be
/// drawn: a shape that is not an image or 2-D points, a zero dimension, or a picture
/// larger than [`MAX_PICTURE_SIDE`].
pub fn check_drawable(shape: &[usize]) -> Result<(usize, usize)> {
    let (ih, iw) = match *shape {
        [c, ih, iw] if c == 1 || c == 3 => (ih, iw),
        [ih, iw] => (ih, iw),
        [2] => return Ok((SCATTER_SIZE, SCATTER_SIZE)),
        _ => {
            return Err(S3Error::Shape(format!(
                "--grid draws images [C, H, W] with C = 1 or 3, [H, W], or 2-D points; samples have shape {shape:?}"
            )));
        }
    };
    let scale = MIN_TILE.div_ceil(ih.max(iw).max(1)).max(1);
    let side = |n: usize| {
        n.checked_mul(scale)
            .and_then(|t| t.checked_add(PAD))
            .and_then(|t| t.checked_mul(GRID_COLUMNS))
            .and_then(|t| t.checked_add(PAD))
            .filter(|&t| t <= MAX_PICTURE_SIDE)
    };
    match (ih.min(iw) > 0, side(ih), side(iw)) {
        (true, Some(h), Some(w)) => Ok((w, h)),
        _ => Err(S3Error::Shape(format!(
            "--grid: images of shape {shape:?} make a picture beyond {MAX_PICTURE_SIDE} pixels a side (or have a zero side); write the .npy only"
        ))),
    }
}

/// Writes `samples` (`n × prod(shape)`) as a PNG: a grid of up to 64 images (8 per row,
/// small images enlarged to at least 32 pixels), or for 2-D points a 512×512 scatter plot of
/// the square [−2, 2]².
pub fn write_png(path: &Path, samples: &[f32], shape: &[usize]) -> Result<()> {
    check_drawable(shape)?;
    let (w, h, channels, pixels) = match *shape {
        [c, ih, iw] if c == 1 || c == 3 => image_grid(samples, c, ih, iw),
        [ih, iw] => image_grid(samples, 1, ih, iw),
        _ => scatter(samples),
    };
    let file = std::fs::File::create(path).map_err(|e| S3Error::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w as u32, h as u32);
    enc.set_color(if channels == 3 {
        png::ColorType::Rgb
    } else {
        png::ColorType::Grayscale
    });
    enc.set_depth(png::BitDepth::Eight);
    let to_io = |e: png::EncodingError| S3Error::io(path, std::io::Error::other(e.to_string()));
    let mut writer = enc.write_header().map_err(to_io)?;
    writer.write_image_data(&pixels).map_err(to_io)?;
    writer.finish().map_err(to_io)
}

fn to_u8(v: f32) -> u8 {
    (((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round()) as u8
}

fn image_grid(samples: &[f32], c: usize, ih: usize, iw: usize) -> (usize, usize, usize, Vec<u8>) {
    let dim = c * ih * iw;
    let n = (samples.len() / dim).min(MAX_GRID);
    let cols = n.clamp(1, GRID_COLUMNS);
    let rows = n.div_ceil(cols).max(1);
    let scale = MIN_TILE.div_ceil(ih.max(iw)).max(1);
    let (th, tw, pad) = (ih * scale, iw * scale, PAD);
    let (gw, gh) = (cols * (tw + pad) + pad, rows * (th + pad) + pad);
    let mut px = vec![255u8; gw * gh * c];
    for s in 0..n {
        let img = &samples[s * dim..(s + 1) * dim];
        let (ox, oy) = (pad + (s % cols) * (tw + pad), pad + (s / cols) * (th + pad));
        for y in 0..th {
            for x in 0..tw {
                for ch in 0..c {
                    let v = img[ch * ih * iw + (y / scale) * iw + x / scale];
                    px[((oy + y) * gw + ox + x) * c + ch] = to_u8(v);
                }
            }
        }
    }
    (gw, gh, c, px)
}

fn scatter(samples: &[f32]) -> (usize, usize, usize, Vec<u8>) {
    let size = SCATTER_SIZE;
    let mut px = vec![255u8; size * size];
    for p in samples.chunks(2) {
        let x = ((p[0] + 2.0) / 4.0 * size as f32) as isize;
        let y = ((2.0 - p[1]) / 4.0 * size as f32) as isize;
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (xx, yy) = (x + dx, y + dy);
                if (0..size as isize).contains(&xx) && (0..size as isize).contains(&yy) {
                    px[yy as usize * size + xx as usize] = 0;
                }
            }
        }
    }
    (size, size, 1, px)
}

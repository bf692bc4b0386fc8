//! Every `.npy`/`.npz` layout numpy writes reads to the same values: the committed fixtures in
//! `tests/fixtures/npy_layouts/` (written by `scripts/make_npy_layouts.py`) hold one array in
//! C and Fortran order, little- and big-endian, float16/32/64 and integer dtypes, format
//! versions 1–3, and compressed and stored archives; each must read exactly like the C-order
//! float64 (for pixels: C-order uint8) file.

use s3::io::images::read_images;
use s3::io::npy::{read_array, read_samples};
use s3::metric::stats_file::read_fid_stats;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/npy_layouts")
        .join(name)
}

/// Fixture files whose names start with `prefix`, sorted.
fn fixtures(prefix: &str) -> Vec<PathBuf> {
    let dir = fixture("");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

/// The samples every `samples_*` file holds: `[3, 2, 4]`, (index / 8) − 1.5.
fn expected_samples() -> Vec<f32> {
    (0..24).map(|i| i as f32 / 8.0 - 1.5).collect()
}

#[test]
fn sample_arrays_read_alike_in_every_layout() {
    let reference = read_samples(&fixture("samples_c_f8.npy"), &[2, 4]).unwrap();
    assert_eq!(reference.count, 3);
    assert_eq!(reference.data, expected_samples());
    let files = fixtures("samples_");
    assert!(files.len() >= 12, "{files:?}");
    for f in &files {
        let a = read_samples(f, &[2, 4]).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(a.count, reference.count, "{}", f.display());
        assert_eq!(a.data, reference.data, "{}", f.display());
        // The flat sample shape reads the same values; so does the generic array reader.
        let flat = read_samples(f, &[8]);
        assert!(flat.is_err(), "[3, 2, 4] is not [n, 8]: {}", f.display());
        let any = read_array(f).unwrap();
        assert_eq!(
            (any.shape, any.data),
            (vec![3, 2, 4], reference.data.clone())
        );
    }
}

#[test]
fn pixel_arrays_read_alike_in_every_layout() {
    let reference = read_images(&fixture("pixels_c_u1.npy")).unwrap();
    assert_eq!(
        (reference.count, reference.height, reference.width),
        (2, 4, 5)
    );
    // Channel-planar [N, 3, H, W]: pixel (n, y, x, c) is ((n·60 + y·15 + x·3 + c)·7 + 3) mod 256.
    let at = |n: usize, c: usize, y: usize, x: usize| reference.data[((n * 3 + c) * 4 + y) * 5 + x];
    assert_eq!(at(1, 2, 2, 4), (((60 + 30 + 12 + 2) * 7 + 3) % 256) as u8);
    let files = fixtures("pixels_");
    assert!(files.len() >= 8, "{files:?}");
    for f in &files {
        let a = read_images(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(
            (a.count, a.height, a.width, &a.data),
            (2, 4, 5, &reference.data),
            "{}",
            f.display()
        );
    }
}

#[test]
fn fid_statistics_read_alike_in_every_layout() {
    let reference = read_fid_stats(&fixture("stats_c_f8.npz")).unwrap();
    assert_eq!(reference.mu, [0.5, -1.25, 3.0]);
    assert_eq!(
        reference.cov,
        [2.0, 0.125, 0.0, 0.25, 1.0, -0.375, 0.5, -0.75, 0.625]
    );
    let files = fixtures("stats_");
    assert!(files.len() >= 12, "{files:?}");
    for f in &files {
        let m = read_fid_stats(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(m, reference, "{}", f.display());
    }
}

#[test]
fn integer_samples_are_refused_with_the_dtype_named() {
    let e = read_samples(&fixture("pixels_c_i8.npy"), &[3, 5, 3])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("pixels_c_i8.npy") && e.contains("<i8") && e.contains("float"),
        "{e}"
    );
}

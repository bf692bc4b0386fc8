//! `s3 fid` and `s3 fid-stats` against independent computations (tests/golden/fid/, written
//! by scripts/golden_fid.py): pytorch-fid's own Fréchet distance on statistics files
//! numpy wrote, and statistics of images through the fixture feature extractor computed by
//! Python's onnxruntime. Files s3 writes must load in numpy with pytorch-fid's keys and shapes.
//! Needs ONNX Runtime (`bash scripts/install_onnxruntime.sh`) and a Python with numpy
//! (`S3_TEST_PYTHON`, else `python3`, with `.pydeps/` from `scripts/install_test_deps.sh` on its
//! path); never skips.

mod common;
use common::{ok, s3};

use s3::metric::stats_file::read_fid_stats;
use std::path::Path;
use std::process::Command;

const GOLDEN: &str = "tests/golden/fid";
const EXTRACTOR: &str = "tests/fixtures/models/cifar10/inception.json";

#[test]
fn fid_of_stats_files_matches_pytorch_fid() {
    let text = std::fs::read_to_string(Path::new(GOLDEN).join("expected.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    for pair in doc["pairs"].as_array().unwrap() {
        let a = format!("{GOLDEN}/{}", pair["a"].as_str().unwrap());
        let b = format!("{GOLDEN}/{}", pair["b"].as_str().unwrap());
        let want = pair["fid"].as_f64().unwrap();
        let got: serde_json::Value = serde_json::from_str(&ok(&["fid", &a, &b, "--json"])).unwrap();
        let got = got["fid"].as_f64().unwrap();
        // 1e-6 relative; near 0 (identical or singular statistics) pytorch-fid's own value
        // carries its εI offset and sqrtm rounding, ~1e-7 absolute.
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "{a} vs {b}: s3 {got} vs pytorch-fid {want}"
        );
    }
}

#[test]
fn fid_stats_match_python_onnxruntime_and_load_in_numpy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stats.npz");
    let images = format!("{GOLDEN}/images.npy");
    ok(&[
        "fid-stats",
        &images,
        "--extractor",
        EXTRACTOR,
        "--out",
        out.to_str().unwrap(),
    ]);
    let ours = read_fid_stats(&out).unwrap();
    let theirs = read_fid_stats(&Path::new(GOLDEN).join("images_stats.npz")).unwrap();
    let close = |a: &[f64], b: &[f64], what: &str| {
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-5 * scale, "{what}: {x} vs {y}");
        }
    };
    close(&ours.mu, &theirs.mu, "mu");
    close(&ours.cov, &theirs.cov, "sigma");
    // FID between the two computations of the same statistics is ~0, and the images against
    // themselves through the folder/npy path agree with the stats path.
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "fid",
        out.to_str().unwrap(),
        &images,
        "--extractor",
        EXTRACTOR,
        "--json",
    ]))
    .unwrap();
    assert!(v["fid"].as_f64().unwrap().abs() < 1e-9, "{v}");
    assert_eq!(v["images2"], 24);
    // numpy reads s3's file with pytorch-fid's keys, shapes and dtype.
    let python = std::env::var("S3_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    // scripts/install_test_deps.sh puts numpy in .pydeps/ when the Python lacks it.
    let pythonpath = std::fs::canonicalize(".pydeps")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let check = Command::new(&python)
        .env("PYTHONPATH", pythonpath)
        .args([
            "-c",
            "import sys, numpy as np; d = np.load(sys.argv[1]); \
             assert sorted(d.files) == ['mu', 'sigma'], d.files; \
             assert d['mu'].shape == (32,) and d['sigma'].shape == (32, 32); \
             assert d['mu'].dtype == np.float64 and d['sigma'].dtype == np.float64; print('ok')",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("running {python}: {e}; set S3_TEST_PYTHON to a Python with numpy")
        });
    assert!(
        check.status.success(),
        "numpy could not read s3's stats (python {python}): {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn png_folders_give_the_same_statistics_as_the_array() {
    // Write the golden images as PNGs with s3's own writer-independent path: png crate here.
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(Path::new(GOLDEN).join("images.npy")).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let pixels: Vec<u8> = npy.into_vec().unwrap();
    for (i, img) in pixels.chunks(32 * 32 * 3).enumerate() {
        let f = std::fs::File::create(dir.path().join(format!("{i:03}.png"))).unwrap();
        let mut enc = png::Encoder::new(std::io::BufWriter::new(f), 32, 32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header().unwrap().write_image_data(img).unwrap();
    }
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "fid",
        dir.path().to_str().unwrap(),
        &format!("{GOLDEN}/images_stats.npz"),
        "--extractor",
        EXTRACTOR,
        "--json",
    ]))
    .unwrap();
    assert!(v["fid"].as_f64().unwrap().abs() < 1e-9, "{v}");
    assert_eq!(v["images1"], 24);
}

#[test]
fn bad_inputs_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "x").unwrap();
    let out = s3(&["fid", txt.to_str().unwrap(), &format!("{GOLDEN}/a.npz")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notes.txt") && err.contains("folder of .png"),
        "{err}"
    );
    // Statistics of different dimensions.
    let out = s3(&[
        "fid",
        &format!("{GOLDEN}/a.npz"),
        &format!("{GOLDEN}/images_stats.npz"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("16-d") && err.contains("32-d"), "{err}");
    // An extractor config that does not exist.
    let out = s3(&[
        "fid-stats",
        &format!("{GOLDEN}/images.npy"),
        "--extractor",
        "nope/inception.json",
        "--out",
        dir.path().join("s.npz").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nope/inception.json"), "{err}");
}

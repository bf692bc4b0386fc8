//! FD∞ and KID: the maths against an independent numpy implementation
//! (`scripts/golden_unbiased.py`: torch-fidelity's and clean-fid's KID formulas, FD∞ with the
//! same subsets and scipy's pytorch-fid FD), and the properties that make them worth having
//! on exact mixture draws: ≈ 0 for exact data, growing with a shift or shrink, and — unlike
//! the FD of N samples — not rewarding a sample set that lost diversity.

use s3::dataset::Dataset;
use s3::metric::fd_inf::{FD_INF_SUBSET_SEED, fd_inf_sizes, fd_inf_subsets, fd_infinity};
use s3::metric::kid::{KID_SUBSETS, KidReference, kid, kid_subset_size, kid_subsets};
use s3::metric::{FeatureMap, FrechetReference, Moments, frechet_distance};
use s3::model::{Denoiser, GaussianMixture};
use serde_json::Value;

fn golden() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/unbiased.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x.as_array() {
            Some(row) => row.iter().map(|y| y.as_f64().unwrap()).collect(),
            None => vec![x.as_f64().unwrap()],
        })
        .collect()
}

fn indices(v: &Value) -> Vec<Vec<usize>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as usize)
                .collect()
        })
        .collect()
}

/// Relative agreement on the scale of the quantity (the FDs of a case, or 1 for KID).
fn close(ours: f64, want: f64, scale: f64, rel: f64) -> bool {
    (ours - want).abs() <= rel * scale.max(want.abs())
}

#[test]
fn fd_inf_matches_numpy_on_the_same_subsets() {
    let g = golden();
    let cases = g["fd_inf"].as_array().unwrap();
    assert_eq!(cases.len(), 3);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let d = c["d"].as_u64().unwrap() as usize;
        let rows = floats(&c["rows"]);
        let sizes: Vec<usize> = indices(&Value::Array(vec![c["sizes"].clone()])).remove(0);
        assert_eq!(
            fd_inf_sizes(rows.len() / d, d).unwrap(),
            sizes,
            "{name}: size rule"
        );
        let reference = Moments {
            mu: floats(&c["mu_ref"]),
            cov: floats(&c["cov_ref"]),
        };
        let prepared = FrechetReference::new(&reference).unwrap();
        let fit = fd_infinity(&rows, d, &prepared, &indices(&c["subsets"])).unwrap();
        assert_eq!(fit.sizes, sizes);
        let want_fds = floats(&c["fds"]);
        let scale = want_fds.iter().fold(0f64, |m, v| m.max(v.abs()));
        for (ours, want) in fit.fds.iter().zip(&want_fds) {
            assert!(
                close(*ours, *want, scale, 1e-9),
                "{name}: FD {ours} vs {want}"
            );
        }
        let want = c["fd_inf"].as_f64().unwrap();
        assert!(
            close(fit.value, want, scale, 1e-9),
            "{name}: FD∞ {} vs {want}",
            fit.value
        );
        let slope = c["slope"].as_f64().unwrap();
        assert!(close(fit.slope, slope, 0.0, 1e-8), "{name}: slope");
    }
}

#[test]
fn kid_matches_torch_fidelity_and_clean_fid_on_the_same_subsets() {
    let g = golden();
    let cases = g["kid"].as_array().unwrap();
    assert_eq!(cases.len(), 4);
    for c in cases {
        let name = c["name"].as_str().unwrap();
        let d = c["d"].as_u64().unwrap() as usize;
        let reference = KidReference::new(floats(&c["y"]), d, indices(&c["y_subsets"])).unwrap();
        let got = kid(&floats(&c["x"]), &reference, &indices(&c["x_subsets"])).unwrap();
        let want = c["kid"].as_f64().unwrap();
        // KID is a difference of kernel means of order 1: agreement relative to that scale.
        assert!(
            close(got.value, want, 1.0, 1e-11),
            "{name}: {got:?} vs {want}"
        );
        let std = c["kid_std"].as_f64().unwrap();
        assert!(close(got.std, std, 1.0, 1e-10), "{name}: std {}", got.std);
    }
}

/// The three distribution metrics of feature rows against one exact mixture, with the
/// evaluator's settings: FD∞'s seeded subsets, KID against 10,000 exact reference draws.
struct Metrics {
    map: FeatureMap,
    exact: Moments,
    prepared: FrechetReference,
    kid_reference: KidReference,
    kid_subsets: Vec<Vec<usize>>,
    fd_inf_subsets: Vec<Vec<usize>>,
}

/// Exact draws in KID's reference set (as the evaluator's `KID_REFERENCE_SAMPLES`).
const REFERENCE_DRAWS: usize = 10_000;

impl Metrics {
    fn new(mix: &GaussianMixture, n: usize) -> Self {
        let map = FeatureMap::for_shape(mix.sample_shape());
        let d = map.out_dim();
        let exact = map.mixture_moments(mix);
        let y = map.apply(&mix.sample_data(REFERENCE_DRAWS, &mut rng(0xdead)));
        let m = kid_subset_size(n, REFERENCE_DRAWS);
        let ref_subsets = kid_subsets(REFERENCE_DRAWS, m, KID_SUBSETS, 1);
        Self {
            prepared: FrechetReference::new(&exact).unwrap(),
            kid_reference: KidReference::new(y, d, ref_subsets).unwrap(),
            kid_subsets: kid_subsets(n, m, KID_SUBSETS, 2),
            fd_inf_subsets: fd_inf_subsets(n, d, FD_INF_SUBSET_SEED).unwrap(),
            exact,
            map,
        }
    }

    /// [FD at N, FD∞, KID] of `rows`.
    fn of(&self, rows: &[f64]) -> [f64; 3] {
        let d = self.map.out_dim();
        [
            frechet_distance(&Moments::from_rows(rows, d).unwrap(), &self.exact).unwrap(),
            fd_infinity(rows, d, &self.prepared, &self.fd_inf_subsets)
                .unwrap()
                .value,
            kid(rows, &self.kid_reference, &self.kid_subsets)
                .unwrap()
                .value,
        ]
    }

    /// Feature rows of `n` exact draws.
    fn draws(&self, mix: &GaussianMixture, n: usize, seed: u64) -> Vec<f64> {
        self.map.apply(&mix.sample_data(n, &mut rng(seed)))
    }

    /// `rows` moved toward the data mean by the factor `s` (s < 1: less diversity).
    fn shrunk(&self, rows: &[f64], s: f64) -> Vec<f64> {
        let mu = &self.exact.mu;
        rows.chunks(mu.len())
            .flat_map(|r| r.iter().zip(mu).map(move |(v, m)| m + s * (v - m)))
            .collect()
    }
}

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::SeedableRng::seed_from_u64(seed)
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    (m, var.sqrt())
}

/// `iso64`: 4 equal Gaussians in 64 dimensions, close together (means ±0.1) with a large
/// isotropic std (0.5) — data whose variance is spread over every direction, as image noise
/// is, so the FD's ~k/N bias is a large part of what it reads at a few hundred samples.
fn iso64() -> GaussianMixture {
    let means: Vec<Vec<f64>> = (0..4)
        .map(|k| {
            (0..64)
                .map(|i| if (i + k) % 4 < 2 { 0.1 } else { -0.1 })
                .collect()
        })
        .collect();
    let json = serde_json::json!({
        "shape": [64], "weights": [0.25, 0.25, 0.25, 0.25], "means": means,
        "stds": [0.5, 0.5, 0.5, 0.5]
    });
    GaussianMixture::from_json_str(&json.to_string(), "iso64").unwrap()
}

/// Exact digits draws: FD∞ and KID read ≈ 0 within their noise (unbiased: either sign),
/// and FD∞ is below the FD of all N samples in every draw (that FD is its bias).
#[test]
fn exact_data_reads_about_zero_on_fd_inf_and_kid() {
    let ds = Dataset::load("digits").unwrap();
    let mix = ds.mixture().unwrap();
    let n = 2000;
    let metrics = Metrics::new(mix, n);
    let values: Vec<[f64; 3]> = (0..6)
        .map(|i| metrics.of(&metrics.draws(mix, n, 100 + i)))
        .collect();
    let column = |k: usize| values.iter().map(|v| v[k]).collect::<Vec<_>>();
    let ((fd, fd_s), (inf, inf_s), (k, k_s)) = (
        mean_std(&column(0)),
        mean_std(&column(1)),
        mean_std(&column(2)),
    );
    println!(
        "exact digits draws, N = {n}: FD {fd:.5} ± {fd_s:.5}, FD∞ {inf:.5} ± {inf_s:.5}, KID {k:.3e} ± {k_s:.3e}"
    );
    let sem = |s: f64| 3.0 * s / (values.len() as f64).sqrt();
    assert!(
        inf.abs() < sem(inf_s) + 1e-3,
        "FD∞ of exact data {inf} ± {inf_s}"
    );
    assert!(k.abs() < sem(k_s) + 1e-5, "KID of exact data {k} ± {k_s}");
    assert!(fd > 5.0 * fd_s, "FD at N reads its bias: {fd} ± {fd_s}");
    assert!(values.iter().all(|v| v[1] < v[0]), "{values:?}");
}

/// A shifted or shrunk copy of exact draws reads clearly above the exact draws on FD∞ and
/// KID.
#[test]
fn shift_and_shrink_raise_fd_inf_and_kid() {
    let ds = Dataset::load("digits").unwrap();
    let mix = ds.mixture().unwrap();
    let n = 2000;
    let metrics = Metrics::new(mix, n);
    let rows = metrics.draws(mix, n, 7);
    let exact = metrics.of(&rows);
    let shifted = metrics.of(&rows.iter().map(|v| v + 0.05).collect::<Vec<_>>());
    let shrunk = metrics.of(&metrics.shrunk(&rows, 0.8));
    println!(
        "digits N = {n} [FD, FD∞, KID]: exact {exact:?}, shifted by 0.05 {shifted:?}, shrunk by 20 % {shrunk:?}"
    );
    for changed in [shifted, shrunk] {
        assert!(changed[1] > exact[1] + 0.05, "FD∞ {changed:?} vs {exact:?}");
        assert!(changed[2] > exact[2] + 1e-4, "KID {changed:?} vs {exact:?}");
    }
}

/// Diversity loss must not be rewarded: exact `iso64` draws moved 2 % toward the data mean
/// read BELOW the same draws on the FD of N = 400 samples in every paired draw (the shrink
/// removes more of FD's ~k/N bias than the 0.0067 of true distance it adds), but ABOVE them
/// on FD∞ in every draw. KID's expected difference is the true MMD² (> 0, but ~1e-6 here, far
/// below its noise at 400 samples): it must not read the shrink better on average.
#[test]
fn diversity_loss_is_not_rewarded() {
    let mix = iso64();
    let (n, shrink, draws) = (400, 0.98, 6);
    let metrics = Metrics::new(&mix, n);
    let mut diffs = Vec::new();
    for i in 0..draws {
        let rows = metrics.draws(&mix, n, 300 + i);
        let exact = metrics.of(&rows);
        let shrunk = metrics.of(&metrics.shrunk(&rows, shrink));
        println!("iso64 N = {n} draw {i} [FD, FD∞, KID]: exact {exact:.6?}, shrunk {shrunk:.6?}");
        diffs.push([
            shrunk[0] - exact[0],
            shrunk[1] - exact[1],
            shrunk[2] - exact[2],
        ]);
    }
    let column = |k: usize| diffs.iter().map(|d| d[k]).collect::<Vec<_>>();
    for (k, name) in ["FD at N", "FD∞", "KID"].iter().enumerate() {
        let (m, s) = mean_std(&column(k));
        println!("shrunk − exact on {name}: {m:.3e} ± {s:.3e} over {draws} paired draws");
    }
    assert!(
        column(0).iter().all(|d| *d < 0.0),
        "FD at N rewards the shrink: {diffs:?}"
    );
    assert!(
        column(1).iter().all(|d| *d > 0.0),
        "FD∞ must not: {diffs:?}"
    );
    let (kid_mean, kid_std) = mean_std(&column(2));
    let sem = kid_std / (draws as f64).sqrt();
    assert!(kid_mean > -2.0 * sem, "KID must not on average: {diffs:?}");
}

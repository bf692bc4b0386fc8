//! Gaussian-mixture data laws. Under any schedule x_t = α·x0 + σ·ε (VP, EDM, flow) a mixture
//! has closed-form noise and data predictions, so it is an exact diffusion model: solver error
//! can be measured against the true ODE, and data moments are known exactly.
//!
//! Its `forward` output is ε. For both predictions ([`Denoiser::predictions`]) it computes ε
//! directly where α ≥ σ and x0 directly where α < σ: each is then the well-conditioned one,
//! the other following from x = α·x0 + σ·ε with a factor ≤ 1 (x0 = (x − σ·ε)/α would amplify
//! the f32 rounding of ε by σ/α, 10⁶ at flow's t = 1 − 10⁻⁶, and is 0/0 at pure noise, where
//! the x0 prediction is the data mean).

mod diagonal;
mod isotropic;
mod kernels;
#[cfg(test)]
mod oracle;

use super::{Denoiser, Parameterization, Real, TimePoint};
use crate::error::{Result, S3Error};
use diagonal::Diagonal;
use isotropic::Isotropic;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal, weighted::WeightedIndex};
use rayon::prelude::*;
use serde::Deserialize;
use std::path::Path;

/// The per-component standard deviations of a mixture.
#[derive(Debug, Clone, PartialEq)]
pub enum Stds {
    /// One std per component (isotropic).
    Isotropic(Vec<f64>),
    /// One std per component and dimension, `K × D` row-major.
    Diagonal(Vec<f64>),
}

/// x0 ~ Σ_k w_k N(m_k, diag(s_k²)).
#[derive(Debug, Clone)]
pub struct GaussianMixture {
    shape: Vec<usize>,
    dim: usize,
    weights: Vec<f64>,
    log_weights: Vec<f64>,
    /// `K × D` row-major.
    means: Vec<f64>,
    /// ‖m_k‖².
    mean_norms: Vec<f64>,
    stds: Stds,
}

/// The JSON form of a mixture (`--dataset path.json`). The optional keys after `stds` are
/// dataset defaults read by the dataset layer; any other key is an error (a typo).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct MixtureJson {
    shape: Option<Vec<usize>>,
    weights: Option<Vec<f64>>,
    means: Option<Vec<Vec<f64>>>,
    stds: Option<serde_json::Value>,
    name: Option<serde_json::Value>,
    noise_schedule: Option<serde_json::Value>,
    betas: Option<serde_json::Value>,
    metric: Option<serde_json::Value>,
    samples: Option<serde_json::Value>,
}

/// The largest std whose variance is finite.
const MAX_STD: f64 = 1e150;

/// The K means as one flat `K × dim` list, after checking each has `dim` finite values
/// (every length is checked before anything is allocated); the error is for field `means`.
fn flat_means(
    means: &[Vec<f64>],
    dim: usize,
    shape: &[usize],
) -> std::result::Result<Vec<f64>, String> {
    if let Some((i, m)) = means.iter().enumerate().find(|(_, m)| m.len() != dim) {
        return Err(format!(
            "means[{i}] has {} values; shape {shape:?} needs {dim}",
            m.len()
        ));
    }
    let mut flat = Vec::with_capacity(means.len() * dim);
    for (i, m) in means.iter().enumerate() {
        if let Some(j) = m.iter().position(|v| !v.is_finite()) {
            return Err(format!("means[{i}][{j}] is not finite"));
        }
        flat.extend_from_slice(m);
    }
    Ok(flat)
}

/// Checks that `stds` has K (isotropic) or K × dim (diagonal) values in (0, [`MAX_STD`]];
/// the error is for field `stds`.
fn check_stds(stds: &Stds, k: usize, dim: usize) -> std::result::Result<(), String> {
    let (values, what) = match stds {
        Stds::Isotropic(s) if s.len() != k => {
            return Err(format!("{} stds for {k} components", s.len()));
        }
        Stds::Diagonal(s) if s.len() != k * dim => {
            return Err(format!("expected {k} rows of {dim} stds"));
        }
        Stds::Isotropic(s) | Stds::Diagonal(s) => (s, "stds"),
    };
    match values.iter().position(|s| !(*s > 0.0 && *s <= MAX_STD)) {
        Some(j) => Err(format!(
            "{what}[{j}] = {}; expected > 0 and at most {MAX_STD:e}",
            values[j]
        )),
        None => Ok(()),
    }
}

impl GaussianMixture {
    /// Builds a mixture, checking every field; `context` names the source in errors.
    pub fn new(
        context: &str,
        shape: Vec<usize>,
        weights: Vec<f64>,
        means: Vec<Vec<f64>>,
        stds: Stds,
    ) -> Result<Self> {
        let bad = |field: &str, msg: String| S3Error::field(context, field, msg);
        if shape.is_empty() || shape.contains(&0) {
            return Err(bad(
                "shape",
                format!("expected positive dimensions, got {shape:?}"),
            ));
        }
        let dim = shape
            .iter()
            .try_fold(1usize, |d, &s| d.checked_mul(s))
            .filter(|&d| d <= crate::limits::MAX_SAMPLE_VALUES)
            .ok_or_else(|| {
                bad(
                    "shape",
                    format!(
                        "{shape:?} holds more than {} values per sample",
                        crate::limits::MAX_SAMPLE_VALUES
                    ),
                )
            })?;
        let k = weights.len();
        if k == 0 {
            return Err(bad("weights", "expected at least one component".into()));
        }
        if let Some((i, w)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !w.is_finite() || **w <= 0.0)
        {
            return Err(bad(
                "weights",
                format!("weights[{i}] = {w}; expected a positive finite number"),
            ));
        }
        let total: f64 = weights.iter().sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err(bad(
                "weights",
                format!("weights sum to {total}; expected 1"),
            ));
        }
        if means.len() != k {
            return Err(bad(
                "means",
                format!(
                    "{} means for {k} weights; expected one mean per component",
                    means.len()
                ),
            ));
        }
        let flat = flat_means(&means, dim, &shape).map_err(|m| bad("means", m))?;
        check_stds(&stds, k, dim).map_err(|m| bad("stds", m))?;
        let total: f64 = weights.iter().sum();
        let weights: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let mean_norms: Vec<f64> = flat
            .chunks(dim)
            .map(|m| m.iter().map(|v| v * v).sum())
            .collect();
        if let Some(i) = mean_norms.iter().position(|n| !n.is_finite()) {
            return Err(bad(
                "means",
                format!("means[{i}] is too large: its squared norm overflows f64"),
            ));
        }
        Ok(Self {
            mean_norms,
            log_weights: weights.iter().map(|w| w.ln()).collect(),
            weights,
            shape,
            dim,
            means: flat,
            stds,
        })
    }

    /// Reads a mixture from a JSON file of the shape
    /// `{"shape": [..], "weights": [K], "means": [[D] × K], "stds": [K] | [[D] × K]}`.
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| S3Error::io(path, e))?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Parses the JSON form; `context` (usually the file path) prefixes every error.
    pub fn from_json_str(text: &str, context: &str) -> Result<Self> {
        let json: MixtureJson = serde_json::from_str(text).map_err(|e| S3Error::Json {
            path: context.into(),
            message: format!("not a valid mixture file: {e}"),
        })?;
        let missing = |f: &str| S3Error::field(context, f, "missing");
        let shape = json.shape.ok_or_else(|| missing("shape"))?;
        let weights = json.weights.ok_or_else(|| missing("weights"))?;
        let means = json.means.ok_or_else(|| missing("means"))?;
        let stds_value = json.stds.ok_or_else(|| missing("stds"))?;
        // Saturating: an overflowing shape is refused by `new` with the field named.
        let dim = shape.iter().fold(1usize, |d, &s| d.saturating_mul(s));
        let stds = parse_stds(&stds_value, weights.len(), dim)
            .map_err(|m| S3Error::field(context, "stds", m))?;
        Self::new(context, shape, weights, means, stds)
    }

    /// A stable fingerprint of the mixture's parameters (blake3, 16 hex digits): two
    /// mixtures with the same identity define the same model.
    pub fn identity(&self) -> String {
        let mut h = blake3::Hasher::new();
        for d in &self.shape {
            h.update(&(*d as u64).to_le_bytes());
        }
        let floats = self
            .weights
            .iter()
            .chain(&self.means)
            .chain(match &self.stds {
                Stds::Isotropic(s) | Stds::Diagonal(s) => s.iter(),
            });
        for v in floats {
            h.update(&v.to_le_bytes());
        }
        h.update(if matches!(self.stds, Stds::Isotropic(_)) {
            b"iso"
        } else {
            b"diag"
        });
        h.finalize().to_hex()[..16].to_string()
    }

    /// The number of components K.
    pub fn components(&self) -> usize {
        self.weights.len()
    }

    /// The mixture weights.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// Component `k`'s mean.
    pub fn mean_of(&self, k: usize) -> &[f64] {
        &self.means[k * self.dim..(k + 1) * self.dim]
    }

    /// The variance of component `k` in dimension `d`.
    pub fn component_variance(&self, k: usize, d: usize) -> f64 {
        let s = self.std_of(k, d);
        s * s
    }

    fn std_of(&self, k: usize, d: usize) -> f64 {
        match &self.stds {
            Stds::Isotropic(s) => s[k],
            Stds::Diagonal(s) => s[k * self.dim + d],
        }
    }

    /// The data mean E[x0].
    pub fn data_mean(&self) -> Vec<f64> {
        let mut mu = vec![0.0; self.dim];
        for (k, w) in self.weights.iter().enumerate() {
            for (m, v) in mu.iter_mut().zip(self.mean_of(k)) {
                *m += w * v;
            }
        }
        mu
    }

    /// The data covariance Cov[x0], `D × D` row-major.
    pub fn data_covariance(&self) -> Vec<f64> {
        let d = self.dim;
        let mu = self.data_mean();
        let mut cov = vec![0.0; d * d];
        for (k, w) in self.weights.iter().enumerate() {
            let m = self.mean_of(k);
            for i in 0..d {
                let wi = w * (m[i] - mu[i]);
                let row = &mut cov[i * d..(i + 1) * d];
                for (c, mj) in row.iter_mut().zip(m.iter().zip(&mu)) {
                    *c += wi * (mj.0 - mj.1);
                }
                let s = self.std_of(k, i);
                row[i] += w * s * s;
            }
        }
        cov
    }

    /// Draws `n` exact samples of x0 (f32, `n × D`).
    pub fn sample_data(&self, n: usize, rng: &mut impl Rng) -> Vec<f32> {
        let pick = WeightedIndex::new(&self.weights).expect("weights validated positive");
        let mut out = Vec::with_capacity(n * self.dim);
        for _ in 0..n {
            let k = pick.sample(rng);
            for d in 0..self.dim {
                let z: f64 = StandardNormal.sample(rng);
                out.push((self.mean_of(k)[d] + self.std_of(k, d) * z) as f32);
            }
        }
        out
    }
}

fn parse_stds(v: &serde_json::Value, k: usize, dim: usize) -> std::result::Result<Stds, String> {
    let arr = v
        .as_array()
        .ok_or("expected a list of K numbers or K lists of D numbers")?;
    if arr.iter().all(|e| e.is_number()) {
        return Ok(Stds::Isotropic(
            arr.iter().map(|e| e.as_f64().unwrap_or(f64::NAN)).collect(),
        ));
    }
    let mut flat = Vec::new();
    for (i, row) in arr.iter().enumerate() {
        let row = row
            .as_array()
            .ok_or_else(|| format!("stds[{i}] is neither a number nor a list"))?;
        if row.len() != dim {
            return Err(format!(
                "stds[{i}] has {} values; expected {dim}",
                row.len()
            ));
        }
        for (j, e) in row.iter().enumerate() {
            flat.push(
                e.as_f64()
                    .ok_or_else(|| format!("stds[{i}][{j}] is not a number"))?,
            );
        }
    }
    if arr.len() != k {
        return Err(format!("{} rows of stds for {k} components", arr.len()));
    }
    Ok(Stds::Diagonal(flat))
}

impl Denoiser for GaussianMixture {
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }

    fn parameterization(&self) -> Parameterization {
        Parameterization::Eps
    }

    fn forward(&self, x: &[f32], time: TimePoint, out: &mut [f32]) -> Result<()> {
        self.forward_real(x, time, false, out)
    }

    fn forward_f64(&self, x: &[f64], time: TimePoint, out: &mut [f64]) -> Result<()> {
        self.forward_real(x, time, false, out)
    }

    fn predictions(
        &self,
        x: &[f32],
        time: TimePoint,
        eps: &mut [f32],
        x0: &mut [f32],
    ) -> Option<Result<()>> {
        Some(self.predictions_real(x, time, eps, x0))
    }

    fn predictions_f64(
        &self,
        x: &[f64],
        time: TimePoint,
        eps: &mut [f64],
        x0: &mut [f64],
    ) -> Option<Result<()>> {
        Some(self.predictions_real(x, time, eps, x0))
    }
}

impl GaussianMixture {
    /// ε and x0, the well-conditioned one computed directly (see the module notes).
    fn predictions_real<T: Real>(
        &self,
        x: &[T],
        time: TimePoint,
        eps: &mut [T],
        x0: &mut [T],
    ) -> Result<()> {
        let data = time.alpha < time.sigma;
        self.forward_real(x, time, data, eps)?;
        let param = if data {
            Parameterization::X0
        } else {
            Parameterization::Eps
        };
        super::output_to_predictions(param, x, time, eps, x0)
    }

    /// ε, or with `data` the x0 prediction, into `out`.
    fn forward_real<T: Real>(
        &self,
        x: &[T],
        time: TimePoint,
        data: bool,
        out: &mut [T],
    ) -> Result<()> {
        let d = self.dim;
        if time.sigma <= 0.0 {
            return Err(S3Error::Numerical(format!(
                "the mixture's ε is undefined at σ = 0 (t = {})",
                time.t
            )));
        }
        let (alpha, sigma) = (time.alpha, time.sigma);
        match &self.stds {
            Stds::Isotropic(s) => {
                let terms = Isotropic::new(self, s, alpha, sigma, data);
                let block = d * isotropic::BLOCK_SAMPLES;
                out.par_chunks_mut(block)
                    .zip(x.par_chunks(block))
                    .for_each(|(o, xi)| isotropic::with_scratch(self, |s| terms.block(xi, o, s)));
            }
            Stds::Diagonal(s) => {
                let terms = Diagonal::new(self, s, alpha, sigma, data);
                out.par_chunks_mut(d).zip(x.par_chunks(d)).for_each_init(
                    || vec![0.0; self.components() + 2 * d],
                    |scratch, (o, xi)| terms.predict_one(xi, scratch, o),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_component() -> GaussianMixture {
        GaussianMixture::from_json_str(
            r#"{"shape":[2],"weights":[0.3,0.7],"means":[[1,0],[-1,0.5]],"stds":[0.2,0.4]}"#,
            "test",
        )
        .unwrap()
    }

    /// ε = −σ ∇ log p_t(x); compare with central differences of log p_t.
    #[test]
    fn eps_is_minus_sigma_times_the_score() {
        let g = two_component();
        let (alpha, sigma) = (0.8f64, 0.6f64);
        let log_p = |x: [f64; 2]| -> f64 {
            let mut p = 0.0;
            for k in 0..2 {
                let s = [0.2, 0.4][k];
                let v = alpha * alpha * s * s + sigma * sigma;
                let m = g.mean_of(k);
                let r2: f64 = (0..2).map(|d| (x[d] - alpha * m[d]).powi(2)).sum();
                p += g.weights()[k] * (-0.5 * r2 / v).exp() / (2.0 * std::f64::consts::PI * v);
            }
            p.ln()
        };
        let x = [0.3f64, -0.2];
        let mut out = [0f32; 2];
        let time = TimePoint {
            t: 0.5,
            alpha,
            sigma,
        };
        g.forward(&[x[0] as f32, x[1] as f32], time, &mut out)
            .unwrap();
        for d in 0..2 {
            let h = 1e-5;
            let (mut xp, mut xm) = (x, x);
            xp[d] += h;
            xm[d] -= h;
            let score = (log_p(xp) - log_p(xm)) / (2.0 * h);
            assert!((out[d] as f64 + sigma * score).abs() < 1e-5, "d={d}");
        }
    }

    /// At α = 0 the mixture's x0 prediction is E[x0], and its ε is exactly x/σ.
    #[test]
    fn pure_noise_gives_the_data_mean_as_x0() {
        let g = two_component();
        let time = TimePoint {
            t: 1.0,
            alpha: 0.0,
            sigma: 1.0,
        };
        let x = [0.3f64, -0.2, 1.5, 2.0];
        let (mut eps, mut x0) = ([0f64; 4], [0f64; 4]);
        crate::model::eval_predictions(&g, &x, time, &mut eps, &mut x0).unwrap();
        let mu = g.data_mean();
        for (got, want) in x0.iter().zip([mu[0], mu[1], mu[0], mu[1]]) {
            assert!((got - want).abs() < 1e-15, "{got} vs {want}");
        }
        assert_eq!(eps, x);
    }

    /// Both outputs are the exact predictions: x = α·x0 + σ·ε across the switch at α = σ, for
    /// isotropic and diagonal components.
    #[test]
    fn x0_and_eps_outputs_are_consistent() {
        let diag = GaussianMixture::from_json_str(
            r#"{"shape":[2],"weights":[0.3,0.7],"means":[[1,0],[-1,0.5]],"stds":[[0.2,0.3],[0.4,0.1]]}"#,
            "test",
        )
        .unwrap();
        let x = [0.3f64, -0.2, 1.5, 2.0];
        for g in [two_component(), diag] {
            for (alpha, sigma) in [(0.8, 0.6), (0.6, 0.8), (0.3, 0.7), (0.7, 0.3)] {
                let time = TimePoint {
                    t: sigma,
                    alpha,
                    sigma,
                };
                let (mut eps, mut x0) = ([0f64; 4], [0f64; 4]);
                crate::model::eval_predictions(&g, &x, time, &mut eps, &mut x0).unwrap();
                for i in 0..4 {
                    let back = alpha * x0[i] + sigma * eps[i];
                    assert!((back - x[i]).abs() < 1e-14, "α={alpha}: {back} vs {}", x[i]);
                }
                // The same ε as `forward` whichever prediction was computed directly.
                let mut direct = [0f64; 4];
                g.forward_f64(&x, time, &mut direct).unwrap();
                for i in 0..4 {
                    assert!((direct[i] - eps[i]).abs() < 1e-13, "α={alpha}");
                }
            }
        }
    }

    #[test]
    fn moments_match_the_closed_form() {
        let g = two_component();
        let mu = g.data_mean();
        assert!((mu[0] - (0.3 - 0.7)).abs() < 1e-12 && (mu[1] - 0.35).abs() < 1e-12);
        let cov = g.data_covariance();
        // Var x = Σ w (s² + m²) − μ²
        let var0 = 0.3 * (0.04 + 1.0) + 0.7 * (0.16 + 1.0) - 0.16;
        assert!((cov[0] - var0).abs() < 1e-12);
    }

    #[test]
    fn bad_mixture_files_name_the_field() {
        let cases = [
            (
                r#"{"shape":[2],"weights":[0.5,0.6],"means":[[0,0],[1,1]],"stds":[1,1]}"#,
                "weights",
            ),
            (
                r#"{"shape":[2],"weights":[1.0],"means":[[0,0,0]],"stds":[1]}"#,
                "means",
            ),
            (
                r#"{"shape":[2],"weights":[1.0],"means":[[0,0]],"stds":[-1]}"#,
                "stds",
            ),
            (r#"{"shape":[2],"weights":[1.0],"means":[[0,0]]}"#, "stds"),
            (
                r#"{"shape":[2],"weights":[0.5,0.5],"means":[[0,0]],"stds":[1,1]}"#,
                "means",
            ),
            (
                r#"{"shape":[2],"weights":[1.0],"means":[[0,0]],"stds":[[1]]}"#,
                "stds",
            ),
        ];
        for (text, field) in cases {
            let e = GaussianMixture::from_json_str(text, "mix.json")
                .unwrap_err()
                .to_string();
            assert!(e.contains("mix.json") && e.contains(field), "{e}");
        }
        let e = GaussianMixture::from_json_str("{not json", "mix.json").unwrap_err();
        assert!(e.to_string().contains("mix.json"));
    }
}

//! Feature maps for the Fréchet distance on analytic datasets. Each is a fixed linear map
//! whose output features average disjoint groups of input values, so exact mixture moments
//! map through it in closed form:
//! - identity when a sample has at most [`MAX_IDENTITY_DIM`] values (`toy2d`, `digits`);
//! - for image-shaped data `[C, H, W]`, average pooling of each channel by the smallest factor
//!   that brings it to at most 8×8 (`gmm32`: 4×4 blocks, 3×8×8 = 192 features);
//! - otherwise averages of consecutive runs of values down to at most 256 features.

use super::frechet::Moments;
use crate::model::GaussianMixture;
use rayon::prelude::*;

/// Samples with at most this many values are compared on raw values.
pub const MAX_IDENTITY_DIM: usize = 256;

/// A linear feature map: output i = mean of the inputs in `groups[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMap {
    /// A description, e.g. `identity(64)` or `avgpool4x4(3x32x32 -> 192)`.
    pub label: String,
    in_dim: usize,
    groups: Vec<Vec<usize>>,
}

impl FeatureMap {
    /// The documented default map for samples of `shape`.
    pub fn for_shape(shape: &[usize]) -> Self {
        let d: usize = shape.iter().product();
        if d <= MAX_IDENTITY_DIM {
            return Self {
                label: format!("identity({d})"),
                in_dim: d,
                groups: (0..d).map(|i| vec![i]).collect(),
            };
        }
        if let [c, h, w] = *shape {
            let f = (1..=h.max(w))
                .find(|f| h % f == 0 && w % f == 0 && h / f <= 8 && w / f <= 8)
                .unwrap_or(h.max(w));
            let (oh, ow) = (h.div_ceil(f), w.div_ceil(f));
            let mut groups = Vec::with_capacity(c * oh * ow);
            for ch in 0..c {
                for by in 0..oh {
                    for bx in 0..ow {
                        let mut g = Vec::new();
                        for y in by * f..((by + 1) * f).min(h) {
                            for x in bx * f..((bx + 1) * f).min(w) {
                                g.push(ch * h * w + y * w + x);
                            }
                        }
                        groups.push(g);
                    }
                }
            }
            return Self {
                label: format!("avgpool{f}x{f}({c}x{h}x{w} -> {})", groups.len()),
                in_dim: d,
                groups,
            };
        }
        let run = d.div_ceil(MAX_IDENTITY_DIM);
        let groups: Vec<Vec<usize>> = (0..d)
            .collect::<Vec<_>>()
            .chunks(run)
            .map(|c| c.to_vec())
            .collect();
        Self {
            label: format!("runmean{run}({d} -> {})", groups.len()),
            in_dim: d,
            groups,
        }
    }

    /// The number of features.
    pub fn out_dim(&self) -> usize {
        self.groups.len()
    }

    /// Features of `n × in_dim` samples, as `n × out_dim` f64 rows.
    pub fn apply(&self, samples: &[f32]) -> Vec<f64> {
        let mut out = vec![0.0; samples.len() / self.in_dim * self.out_dim()];
        out.par_chunks_mut(self.out_dim())
            .zip(samples.par_chunks(self.in_dim))
            .for_each(|(o, x)| {
                for (oi, g) in o.iter_mut().zip(&self.groups) {
                    *oi = g.iter().map(|&j| x[j] as f64).sum::<f64>() / g.len() as f64;
                }
            });
        out
    }

    /// The exact feature mean and covariance of the mixture's data distribution.
    pub fn mixture_moments(&self, mix: &GaussianMixture) -> Moments {
        let d = self.out_dim();
        let k = mix.components();
        // Component means in feature space, and the (diagonal) feature variance of each
        // component's noise: Σ_j∈g s_kj² / |g|².
        let fm: Vec<Vec<f64>> = (0..k)
            .map(|c| {
                let m = mix.mean_of(c);
                self.groups
                    .iter()
                    .map(|g| g.iter().map(|&j| m[j]).sum::<f64>() / g.len() as f64)
                    .collect()
            })
            .collect();
        let w = mix.weights();
        let mut mu = vec![0.0; d];
        for (c, m) in fm.iter().enumerate() {
            for (a, v) in mu.iter_mut().zip(m) {
                *a += w[c] * v;
            }
        }
        let mut cov = vec![0.0; d * d];
        for (c, m) in fm.iter().enumerate() {
            for i in 0..d {
                let wi = w[c] * (m[i] - mu[i]);
                if wi != 0.0 {
                    for (x, (mj, muj)) in cov[i * d..(i + 1) * d].iter_mut().zip(m.iter().zip(&mu))
                    {
                        *x += wi * (mj - muj);
                    }
                }
                let g = &self.groups[i];
                let var: f64 = g.iter().map(|&j| mix.component_variance(c, j)).sum::<f64>()
                    / (g.len() * g.len()) as f64;
                cov[i * d + i] += w[c] * var;
            }
        }
        Moments { mu, cov }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_maps_for_the_presets() {
        assert_eq!(FeatureMap::for_shape(&[2]).out_dim(), 2);
        assert_eq!(FeatureMap::for_shape(&[1, 8, 8]).out_dim(), 64);
        let m = FeatureMap::for_shape(&[3, 32, 32]);
        assert_eq!(m.out_dim(), 192);
        assert!(m.label.starts_with("avgpool4x4"));
        assert_eq!(FeatureMap::for_shape(&[1000]).out_dim(), 250);
    }

    /// The closed-form moments agree with the statistics of many exact draws.
    #[test]
    fn mixture_moments_match_sampled_statistics() {
        use rand::SeedableRng;
        let mix = GaussianMixture::from_json_str(
            r#"{"shape":[1,4,4],"weights":[0.4,0.6],"means":[[1,0,0,0,0,1,0,0,0,0,1,0,0,0,0,1],[0,0,0,1,0,0,1,0,0,1,0,0,1,0,0,0]],"stds":[0.3,0.1]}"#,
            "t",
        )
        .unwrap();
        let map = FeatureMap::for_shape(&[1, 4, 4]);
        let exact = map.mixture_moments(&mix);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let x = mix.sample_data(40_000, &mut rng);
        let est = Moments::from_rows(&map.apply(&x), map.out_dim()).unwrap();
        for (a, b) in exact.mu.iter().zip(&est.mu) {
            assert!((a - b).abs() < 0.02, "{a} vs {b}");
        }
        for (a, b) in exact.cov.iter().zip(&est.cov) {
            assert!((a - b).abs() < 0.02, "{a} vs {b}");
        }
    }
}

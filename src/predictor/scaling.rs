//! Input standardisation and the ln-metric scale of the MSE loss. Both are fitted on the
//! first training call and kept afterwards (also across save/load), so that a warm-started
//! predictor sees its inputs, and predicts its targets, on the scale its weights were
//! trained for.

use candle_core::{Device, Tensor};
use candle_nn::Module;

/// A feature whose standard deviation on the training rows is at most this is treated as
/// constant and keeps std 1 (dividing by ~0 would blow up unseen values of it).
const MIN_FEATURE_STD: f64 = 1e-6;
/// Likewise for ln(metric) under the MSE loss: all training metrics (nearly) equal.
const MIN_TARGET_STD: f64 = 1e-12;

/// Per-feature standardisation x ↦ (x − mean) / std, applied before the MLP.
#[derive(Debug, Clone)]
pub(super) struct InputScaling {
    pub(super) mean: Vec<f32>,
    pub(super) std: Vec<f32>,
    /// (1, d) tensors of mean and 1/std for the forward pass.
    mean_t: Tensor,
    inv_std_t: Tensor,
    /// False until fitted on training rows (the identity until then).
    pub(super) fitted: bool,
}

impl InputScaling {
    /// The scaling with the given statistics (`std` must be positive) and `fitted` flag.
    pub(super) fn new(
        mean: Vec<f32>,
        std: Vec<f32>,
        fitted: bool,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let d = mean.len();
        let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
        Ok(Self {
            mean_t: Tensor::from_vec(mean.clone(), (1, d), device)?,
            inv_std_t: Tensor::from_vec(inv, (1, d), device)?,
            mean,
            std,
            fitted,
        })
    }

    /// The identity on `d` features (mean 0, std 1), not yet fitted.
    pub(super) fn identity(d: usize, device: &Device) -> candle_core::Result<Self> {
        Self::new(vec![0.0; d], vec![1.0; d], false, device)
    }

    /// Mean and population std of each of the `d` features over `rows`, accumulated in f64.
    pub(super) fn fit(rows: &[&Vec<f32>], d: usize, device: &Device) -> candle_core::Result<Self> {
        let n = rows.len() as f64;
        let mut mean = vec![0.0f64; d];
        for r in rows {
            for (m, &x) in mean.iter_mut().zip(r.iter()) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0f64; d];
        for r in rows {
            for ((v, &x), m) in var.iter_mut().zip(r.iter()).zip(&mean) {
                *v += (f64::from(x) - m).powi(2);
            }
        }
        let std: Vec<f32> = var
            .iter()
            .map(|v| {
                let s = (v / n).sqrt();
                if s > MIN_FEATURE_STD { s as f32 } else { 1.0 }
            })
            .collect();
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        Self::new(mean, std, true, device)
    }
}

impl Module for InputScaling {
    /// (rows, d) → (rows, d), standardised.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        xs.broadcast_sub(&self.mean_t)?
            .broadcast_mul(&self.inv_std_t)
    }
}

/// The MSE loss regresses standardised ln(metric), z = (ln m − mean) / std; scores are mapped
/// back with z · std + mean. The ranking loss does not use it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct TargetScaling {
    /// Mean and std of ln(metric); (0, 1) until fitted.
    pub(super) mean_std: [f64; 2],
    pub(super) fitted: bool,
}

impl Default for TargetScaling {
    /// The identity, not yet fitted.
    fn default() -> Self {
        Self {
            mean_std: [0.0, 1.0],
            fitted: false,
        }
    }
}

impl TargetScaling {
    /// Fits on ln(metric) statistics (a (near-)zero std becomes 1).
    pub(super) fn fit(&mut self, mean: f64, std: f64) {
        self.mean_std = [mean, if std > MIN_TARGET_STD { std } else { 1.0 }];
        self.fitted = true;
    }

    /// ln(metric) → the standardised target the network is trained on.
    pub(super) fn standardise(&self, log_metric: f64) -> f32 {
        let [m, s] = self.mean_std;
        ((log_metric - m) / s) as f32
    }

    /// A network output → its ln(metric) estimate.
    pub(super) fn to_log_metric(self, raw: f64) -> f64 {
        let [m, s] = self.mean_std;
        raw * s + m
    }
}

/// Mean and (population) standard deviation.
pub(super) fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|y| (y - m).powi(2)).sum::<f64>() / n;
    (m, v.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_feature_keeps_std_one() {
        let rows = [vec![1.0f32, 2.0], vec![3.0, 2.0]];
        let refs: Vec<&Vec<f32>> = rows.iter().collect();
        let s = InputScaling::fit(&refs, 2, &Device::Cpu).unwrap();
        assert_eq!(
            (s.mean.clone(), s.std.clone()),
            (vec![2.0, 2.0], vec![1.0, 1.0])
        );
        assert!(s.fitted);
        let x = Tensor::new(&[[3.0f32, 5.0]], &Device::Cpu).unwrap();
        let z = s.forward(&x).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(z, [[1.0, 3.0]]);
    }

    #[test]
    fn the_target_scale_round_trips_and_survives_equal_metrics() {
        let mut t = TargetScaling::default();
        t.fit(2.0, 0.5);
        let z = t.standardise(3.0);
        assert_eq!(z, 2.0);
        assert_eq!(t.to_log_metric(f64::from(z)), 3.0);
        t.fit(2.0, 0.0);
        assert_eq!(t.mean_std, [2.0, 1.0]);
        assert_eq!(mean_std(&[1.0, 3.0]), (2.0, 1.0));
    }
}

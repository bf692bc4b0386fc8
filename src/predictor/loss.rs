//! The two training objectives: OMS-DPM's pairwise hinge ranking loss and MSE on the
//! standardised ln(metric).

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Pairs whose metrics differ by less than this in ln(metric) (about 5 %) are too close to
/// call, given the sampling noise of FD/FID on few samples, and are left out of the ranking
/// loss. When the training metrics are tightly clustered the threshold shrinks to a tenth of
/// the standard deviation of ln(metric), so that some pairs always remain.
pub const PAIR_MIN_LOG_GAP: f64 = 0.05;
/// The fraction of the std of ln(metric) that caps [`PAIR_MIN_LOG_GAP`] (see there).
const PAIR_GAP_STD_FRACTION: f64 = 0.1;

/// The training objective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Loss {
    /// OMS-DPM's pairwise hinge loss: for every pair (i, j) of a batch whose ln-metric gap
    /// exceeds [`PAIR_MIN_LOG_GAP`], max(0, margin − (s_j − s_i)·sign(ln m_j − ln m_i)), so
    /// the better schedule (lower metric) gets the lower score by at least `margin`. Only the
    /// order matters, which is what a search needs; scores have no units.
    PairwiseRanking { margin: f32 },
    /// Mean squared error on the standardised ln(metric); scores are then predictions of
    /// ln(metric) itself.
    MseLogMetric,
}

/// The ln-metric gap below which a pair is left out of the ranking loss, for training
/// targets whose ln(metric) has standard deviation `log_std`.
pub(super) fn pair_gap(log_std: f64) -> f32 {
    PAIR_MIN_LOG_GAP.min(PAIR_GAP_STD_FRACTION * log_std) as f32
}

/// The pairs of one batch that the ranking loss compares, as dense (b, b) matrices over the
/// upper triangle: `sign[i][j]` = sign(y_j − y_i) and `mask[i][j]` = 1 for a compared pair.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RankedPairs {
    batch: usize,
    sign: Vec<f32>,
    mask: Vec<f32>,
    count: usize,
}

impl RankedPairs {
    /// The pairs of the batch `chunk` (indices into `y`, the ln metrics) whose gap exceeds
    /// `gap`; None when there is no such pair.
    pub(super) fn of_batch(chunk: &[usize], y: &[f32], gap: f32) -> Option<Self> {
        let b = chunk.len();
        let mut sign = vec![0.0f32; b * b];
        let mut mask = vec![0.0f32; b * b];
        let mut count = 0usize;
        for (i, &a) in chunk.iter().enumerate() {
            for (j, &c) in chunk.iter().enumerate().skip(i + 1) {
                let d = y[c] - y[a];
                if d.abs() > gap {
                    sign[i * b + j] = d.signum();
                    mask[i * b + j] = 1.0;
                    count += 1;
                }
            }
        }
        (count > 0).then_some(Self {
            batch: b,
            sign,
            mask,
            count,
        })
    }

    /// The mean hinge loss over the pairs, given the batch's scores `s` (shape (b)).
    pub(super) fn hinge_loss(
        self,
        s: &Tensor,
        margin: f32,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let b = self.batch;
        // diff[i][j] = s_j − s_i; a pair with m_j > m_i (j worse) wants diff ≥ margin.
        let diff = s.unsqueeze(0)?.broadcast_sub(&s.unsqueeze(1)?)?;
        let sign = Tensor::from_vec(self.sign, (b, b), device)?;
        let mask = Tensor::from_vec(self.mask, (b, b), device)?;
        let hinge = (diff * sign)?
            .neg()?
            .affine(1.0, f64::from(margin))?
            .relu()?;
        (hinge * mask)?.sum_all()? / self.count as f64
    }
}

/// Mean squared error between the batch's scores `s` and its standardised targets `y`.
pub(super) fn mse_loss(s: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    (s - y)?.sqr()?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_gap_shrinks_for_clustered_metrics() {
        assert_eq!(pair_gap(10.0), PAIR_MIN_LOG_GAP as f32);
        assert_eq!(pair_gap(0.1), (PAIR_GAP_STD_FRACTION * 0.1) as f32);
    }

    #[test]
    fn pairs_closer_than_the_gap_are_left_out() {
        // ln metrics of rows 0..4; the batch visits rows 2, 0, 3.
        let y = [0.0f32, 5.0, 1.0, 1.01];
        let pairs = RankedPairs::of_batch(&[2, 0, 3], &y, 0.05).unwrap();
        assert_eq!(pairs.count, 2);
        // (2, 0): row 0 is better → sign −1; (2, 3) too close; (0, 3): row 3 worse → +1.
        assert_eq!(pairs.sign, [0.0, -1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(pairs.mask, [0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
        assert_eq!(RankedPairs::of_batch(&[2, 3], &y, 0.05), None);
    }

    #[test]
    fn the_hinge_loss_is_zero_for_a_well_separated_order() {
        let device = Device::Cpu;
        let y = [0.0f32, 1.0];
        let s = Tensor::new(&[0.0f32, 1.0], &device).unwrap();
        let pairs = RankedPairs::of_batch(&[0, 1], &y, 0.05).unwrap();
        let loss = pairs.hinge_loss(&s, 0.1, &device).unwrap();
        assert_eq!(loss.to_scalar::<f32>().unwrap(), 0.0);
        // Reversed scores: margin + 1 per pair.
        let s = Tensor::new(&[1.0f32, 0.0], &device).unwrap();
        let pairs = RankedPairs::of_batch(&[0, 1], &y, 0.05).unwrap();
        let loss = pairs.hinge_loss(&s, 0.1, &device).unwrap();
        assert!((loss.to_scalar::<f32>().unwrap() - 1.1).abs() < 1e-6);
    }
}

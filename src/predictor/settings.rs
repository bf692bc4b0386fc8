//! Training settings ([`TrainConfig`], with named defaults) and what a training call reports
//! ([`TrainReport`]): plain data that the predictor, the training loop and the file format
//! all read, kept apart from the loop itself.

use super::bad;
use super::loss::Loss;
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// The fewest trials that form a pair: the least a ranking batch, a training set and a
/// held-out part (for its τ) need.
pub(super) const MIN_TRIALS: usize = 2;

/// [`TrainConfig::default`]'s ranking margin.
const DEFAULT_MARGIN: f32 = 0.1;
/// [`TrainConfig::default`]'s passes over the training part.
const DEFAULT_EPOCHS: usize = 150;
/// [`TrainConfig::default`]'s trials per gradient step.
const DEFAULT_BATCH_SIZE: usize = 128;
/// [`TrainConfig::default`]'s initial learning rate.
const DEFAULT_LR: f64 = 2e-3;
/// [`TrainConfig::default`]'s hidden layer widths.
const DEFAULT_HIDDEN: [usize; 2] = [128, 64];

/// Training settings. The defaults fit ~1,000 trials in a few seconds on 2 cores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub loss: Loss,
    /// Passes over the training part.
    pub epochs: usize,
    /// Trials per gradient step (≥ 2; the ranking loss uses all pairs within a batch).
    pub batch_size: usize,
    /// AdamW's initial learning rate (cosine-decayed to a tenth over the epochs).
    pub lr: f64,
    /// Hidden layer widths (ReLU between layers); empty gives a linear model.
    pub hidden: Vec<usize>,
    /// Seeds the weight initialisation, the holdout split and the batch order.
    pub seed: u64,
}

impl Default for TrainConfig {
    /// Ranking loss with margin 0.1, 150 epochs of batch 128, lr 2e-3, hidden [128, 64], seed 0.
    fn default() -> Self {
        Self {
            loss: Loss::PairwiseRanking {
                margin: DEFAULT_MARGIN,
            },
            epochs: DEFAULT_EPOCHS,
            batch_size: DEFAULT_BATCH_SIZE,
            lr: DEFAULT_LR,
            hidden: DEFAULT_HIDDEN.to_vec(),
            seed: 0,
        }
    }
}

impl TrainConfig {
    /// Refuses settings training cannot run with, naming the setting.
    pub(super) fn check(&self) -> Result<()> {
        if self.batch_size < MIN_TRIALS {
            return bad(format!(
                "batch_size {} is too small; expected at least {MIN_TRIALS}",
                self.batch_size
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if let Some(i) = self.hidden.iter().position(|&h| h == 0) {
            return bad(format!("hidden layer {i} has width 0"));
        }
        if let Loss::PairwiseRanking { margin } = self.loss
            && !(margin.is_finite() && margin >= 0.0)
        {
            return bad(format!("ranking margin {margin} must be finite and ≥ 0"));
        }
        Ok(())
    }
}

/// What one [`Predictor::train`] call did and how well the result ranks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    pub epochs: usize,
    /// Mean batch loss of the last epoch.
    pub final_loss: f64,
    /// Kendall τ-b between scores and metrics on the training part.
    pub train_tau: f64,
    /// The same on the held-out part (None without one, or with fewer than 2 held-out trials).
    pub holdout_tau: Option<f64>,
    /// Wall time of the call.
    pub seconds: f64,
}

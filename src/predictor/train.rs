//! Training: the loop (AdamW with decoupled weight decay, cosine learning-rate decay,
//! seeded batches) over the settings and report of [`super::settings`].

use super::kendall::kendall_tau;
use super::loss::{Loss, RankedPairs, mse_loss, pair_gap};
use super::model::Predictor;
use super::scaling::{InputScaling, mean_std};
use super::settings::{MIN_TRIALS, TrainReport};
use super::{bad, ce};
use crate::error::{Result, S3Error};
use candle_core::Tensor;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::time::Instant;

/// AdamW's decoupled weight decay: each step shrinks the weights by lr × this (1 % per step
/// at the default lr). Trial sets are small (hundreds to a few thousand) and the encoding
/// wide, so without it the MLP memorises the training trials (train τ ≈ 1, held-out τ far
/// lower); 5 gave the best held-out τ on synthetic targets and on 1,500 random schedules on
/// the digits data, while 20 under-fitted and could collapse the MSE fit.
pub const WEIGHT_DECAY: f64 = 5.0;
/// The learning rate decays along a cosine from `lr` to this fraction of it.
const FINAL_LR_FRACTION: f64 = 0.1;
/// Mixed into `seed` for the batch-order generator, so that the batch order is not the
/// same random stream as the holdout split (which uses `seed` itself).
const BATCH_SEED_SALT: u64 = 0x5eed_ba7c_4e55_0001;
/// The objective of one training call with its targets as the loss sees them.
enum Objective {
    /// ln(metric) of each training row, compared in pairs further apart than `gap`.
    Ranking {
        log_metrics: Vec<f32>,
        margin: f32,
        gap: f32,
    },
    /// Standardised ln(metric) of each training row, shape (rows).
    Mse { targets: Tensor },
}

/// The learning rate of `epoch` of `epochs`: a cosine from `lr` down to
/// `lr` × [`FINAL_LR_FRACTION`].
fn cosine_lr(lr: f64, epoch: usize, epochs: usize) -> f64 {
    let progress = epoch as f64 / epochs.max(1) as f64;
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    lr * (FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * cosine)
}

/// Splits trials 0..n into (held out, training) by a shuffle seeded with `seed`; the held-out
/// part is `holdout` × n rounded, leaving at least [`MIN_TRIALS`] to train on.
fn holdout_split(n: usize, holdout: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    let n_hold = ((n as f64 * holdout).round() as usize).min(n - MIN_TRIALS);
    let train = order.split_off(n_hold);
    (order, train)
}

impl Predictor {
    /// Fits on (features, metric) pairs; lower metric = better. The model outputs a score where
    /// lower = better (for MSE it regresses ln(metric)). A `holdout` fraction (e.g. 0.2) of the
    /// trials, chosen by a shuffle seeded with `config.seed`, is kept out of training; the
    /// report gives Kendall τ between scores and metrics on the train and held-out parts.
    ///
    /// Training continues from the current weights (a loaded predictor is warm-started); the
    /// input standardisation is fitted on the first call only. Metrics must be finite and
    /// positive (they enter as ln(metric)); a diverged trial should be given a large finite
    /// metric or left out by the caller.
    pub fn train(
        &mut self,
        features: &[Vec<f32>],
        metrics: &[f64],
        holdout: f64,
    ) -> Result<TrainReport> {
        let start = Instant::now();
        self.check_training_data(features, metrics, holdout)?;
        let (hold_idx, train_idx) = holdout_split(features.len(), holdout, self.config.seed);
        let train_rows: Vec<&Vec<f32>> = train_idx.iter().map(|&i| &features[i]).collect();
        let train_y: Vec<f64> = train_idx.iter().map(|&i| metrics[i].ln()).collect();
        if !self.input.fitted {
            self.input = InputScaling::fit(&train_rows, self.input_dim, &self.device)
                .map_err(ce("building the input scaling"))?;
        }
        let objective = self.objective(&train_y)?;
        let x_all = self
            .stack(&train_rows)
            .map_err(ce("building the training set"))?;
        let final_loss = self.run_epochs(&x_all, &objective)?;
        let train_tau = self.tau_on(&train_idx, features, metrics)?;
        let holdout_tau = if hold_idx.len() >= MIN_TRIALS {
            Some(self.tau_on(&hold_idx, features, metrics)?)
        } else {
            None
        };
        let report = TrainReport {
            epochs: self.config.epochs,
            final_loss,
            train_tau,
            holdout_tau,
            seconds: start.elapsed().as_secs_f64(),
        };
        self.trained_on = features.len();
        self.report = Some(report.clone());
        Ok(report)
    }

    /// Refuses training data that does not fit: lengths that differ, a holdout fraction
    /// outside [0, 1), bad feature vectors, a non-finite or non-positive metric, or fewer
    /// than [`MIN_TRIALS`] trials.
    fn check_training_data(
        &self,
        features: &[Vec<f32>],
        metrics: &[f64],
        holdout: f64,
    ) -> Result<()> {
        if features.len() != metrics.len() {
            return bad(format!(
                "{} feature vectors but {} metrics",
                features.len(),
                metrics.len()
            ));
        }
        if !(0.0..1.0).contains(&holdout) {
            return bad(format!("holdout fraction {holdout} is outside [0, 1)"));
        }
        self.check_features(features)?;
        if let Some(i) = metrics.iter().position(|m| !(m.is_finite() && *m > 0.0)) {
            return bad(format!(
                "metric {i} is {}; expected a finite positive value",
                metrics[i]
            ));
        }
        let n = features.len();
        if n < MIN_TRIALS {
            return bad(format!(
                "{n} trials are too few to train on (at least {MIN_TRIALS})"
            ));
        }
        Ok(())
    }

    /// The objective of the configured loss for training ln metrics `train_y`; for MSE this
    /// fits the target scaling on the first call.
    fn objective(&mut self, train_y: &[f64]) -> Result<Objective> {
        let (y_mean, y_std) = mean_std(train_y);
        match self.config.loss {
            Loss::PairwiseRanking { margin } => Ok(Objective::Ranking {
                log_metrics: train_y.iter().map(|&y| y as f32).collect(),
                margin,
                gap: pair_gap(y_std),
            }),
            Loss::MseLogMetric => {
                if !self.target.fitted {
                    self.target.fit(y_mean, y_std);
                }
                let z: Vec<f32> = train_y
                    .iter()
                    .map(|&y| self.target.standardise(y))
                    .collect();
                let targets = Tensor::from_vec(z, train_y.len(), &self.device)
                    .map_err(ce("building the training targets"))?;
                Ok(Objective::Mse { targets })
            }
        }
    }

    /// Runs the configured epochs over the training rows `x_all`; returns the mean batch loss
    /// of the last epoch that had a batch with a loss (0 if none had).
    fn run_epochs(&self, x_all: &Tensor, objective: &Objective) -> Result<f64> {
        let cfg = &self.config;
        let params = ParamsAdamW {
            lr: cfg.lr,
            weight_decay: WEIGHT_DECAY,
            ..ParamsAdamW::default()
        };
        let mut opt = AdamW::new(self.varmap.all_vars(), params).map_err(ce("creating AdamW"))?;
        let mut batch_rng = StdRng::seed_from_u64(cfg.seed ^ BATCH_SEED_SALT);
        let mut perm: Vec<usize> = (0..x_all.dims()[0]).collect();
        let mut final_loss = 0.0;
        for epoch in 0..cfg.epochs {
            opt.set_learning_rate(cosine_lr(cfg.lr, epoch, cfg.epochs));
            perm.shuffle(&mut batch_rng);
            if let Some(mean) = self.run_epoch(&mut opt, &perm, x_all, objective, epoch)? {
                final_loss = mean;
            }
        }
        Ok(final_loss)
    }

    /// One pass over the training rows in the order `perm`, one AdamW step per batch; returns
    /// the mean batch loss (None when no batch had a loss). A non-finite loss is an error.
    fn run_epoch(
        &self,
        opt: &mut AdamW,
        perm: &[usize],
        x_all: &Tensor,
        objective: &Objective,
        epoch: usize,
    ) -> Result<Option<f64>> {
        let (mut sum, mut count) = (0.0f64, 0usize);
        for chunk in perm.chunks(self.config.batch_size) {
            let Some(loss) = self.batch_loss(chunk, x_all, objective)? else {
                continue;
            };
            opt.backward_step(&loss)
                .map_err(ce(format!("training step in epoch {epoch}")))?;
            let value = loss.to_scalar::<f32>().map_err(ce("reading the loss"))?;
            if !value.is_finite() {
                return Err(S3Error::Numerical(format!(
                    "predictor training diverged in epoch {epoch} (loss {value}); \
                     try a lower learning rate"
                )));
            }
            sum += f64::from(value);
            count += 1;
        }
        Ok((count > 0).then(|| sum / count as f64))
    }

    /// The loss of the batch `chunk` (indices into the training rows `x_all`); None for a
    /// ranking batch without a pair far enough apart to compare.
    fn batch_loss(
        &self,
        chunk: &[usize],
        x_all: &Tensor,
        objective: &Objective,
    ) -> Result<Option<Tensor>> {
        let index = || {
            let idx: Vec<u32> = chunk.iter().map(|&i| i as u32).collect();
            Tensor::from_vec(idx, chunk.len(), &self.device)
        };
        match objective {
            Objective::Ranking {
                log_metrics,
                margin,
                gap,
            } => {
                let Some(pairs) = RankedPairs::of_batch(chunk, log_metrics, *gap) else {
                    return Ok(None);
                };
                let f = || -> candle_core::Result<Tensor> {
                    let s = self.forward(&x_all.index_select(&index()?, 0)?)?;
                    pairs.hinge_loss(&s, *margin, &self.device)
                };
                f().map(Some).map_err(ce("ranking loss"))
            }
            Objective::Mse { targets } => {
                let f = || -> candle_core::Result<Tensor> {
                    let idx = index()?;
                    let s = self.forward(&x_all.index_select(&idx, 0)?)?;
                    mse_loss(&s, &targets.index_select(&idx, 0)?)
                };
                f().map(Some).map_err(ce("MSE loss"))
            }
        }
    }

    /// Kendall τ between the current scores of the trials `idx` and their metrics.
    fn tau_on(&self, idx: &[usize], features: &[Vec<f32>], metrics: &[f64]) -> Result<f64> {
        let rows: Vec<&Vec<f32>> = idx.iter().map(|&i| &features[i]).collect();
        let scores = self.raw_scores(&rows)?;
        let m: Vec<f64> = idx.iter().map(|&i| metrics[i]).collect();
        Ok(kendall_tau(&scores, &m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::predictor::TrainConfig;

    #[test]
    fn learning_rate_decays_along_a_cosine_to_the_final_fraction() {
        assert_eq!(cosine_lr(2.0, 0, 10), 2.0);
        let half = cosine_lr(2.0, 5, 10);
        assert!((half - 2.0 * (FINAL_LR_FRACTION + 1.0) / 2.0).abs() < 1e-12);
        let last = cosine_lr(2.0, 9, 10);
        assert!(last > 2.0 * FINAL_LR_FRACTION && last < half);
        assert_eq!(cosine_lr(2.0, 0, 0), 2.0);
    }

    #[test]
    fn holdout_split_partitions_and_keeps_trials_to_train_on() {
        let (hold, train) = holdout_split(10, 0.25, 7);
        assert_eq!((hold.len(), train.len()), (3, 7));
        let mut all: Vec<usize> = hold.iter().chain(&train).copied().collect();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(holdout_split(10, 0.25, 7), (hold, train));
        let (hold, train) = holdout_split(3, 0.9, 1);
        assert_eq!((hold.len(), train.len()), (1, MIN_TRIALS));
    }

    #[test]
    fn defaults_are_usable_and_bad_settings_are_named() {
        TrainConfig::default().check().unwrap();
        let bad = TrainConfig {
            hidden: vec![4, 0],
            ..TrainConfig::default()
        };
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("hidden layer 1")
        );
        let bad = TrainConfig {
            lr: f64::NAN,
            ..TrainConfig::default()
        };
        assert!(bad.check().is_err());
    }
}

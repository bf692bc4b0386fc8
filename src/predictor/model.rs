//! The MLP, its training (pairwise ranking or MSE on ln metric) and its safetensors + JSON files.

use super::kendall::kendall_tau;
use crate::error::{Result, S3Error};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Linear, Module, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Normal, Uniform};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The value of the `format` field of a predictor's JSON file.
pub const PREDICTOR_FORMAT: &str = "s3-predictor";
/// The version of the predictor files this build reads and writes.
pub const PREDICTOR_VERSION: u32 = 1;
/// Pairs whose metrics differ by less than this in ln(metric) (about 5 %) are too close to
/// call, given the sampling noise of FD/FID on few samples, and are left out of the ranking
/// loss. When the training metrics are tightly clustered the threshold shrinks to a tenth of
/// the standard deviation of ln(metric), so that some pairs always remain.
pub const PAIR_MIN_LOG_GAP: f64 = 0.05;
/// Rows per forward pass in [`Predictor::score`].
const SCORE_CHUNK: usize = 4096;
/// AdamW's decoupled weight decay: each step shrinks the weights by lr × this (1 % per step
/// at the default lr). Trial sets are small (hundreds to a few thousand) and the encoding
/// wide, so without it the MLP memorises the training trials (train τ ≈ 1, held-out τ far
/// lower); 5 gave the best held-out τ on synthetic targets and on 1,500 random schedules on
/// the digits data, while 20 under-fitted and could collapse the MSE fit.
pub const WEIGHT_DECAY: f64 = 5.0;
/// The learning rate decays along a cosine from `lr` to this fraction of it.
const FINAL_LR_FRACTION: f64 = 0.1;
/// Names of the non-trainable tensors in the safetensors file.
const NORM_MEAN: &str = "norm.mean";
const NORM_STD: &str = "norm.std";
const TARGET: &str = "target.mean_std";

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
            loss: Loss::PairwiseRanking { margin: 0.1 },
            epochs: 150,
            batch_size: 128,
            lr: 2e-3,
            hidden: vec![128, 64],
            seed: 0,
        }
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

/// Input standardisation and, for the MSE loss, the ln-metric scale; both are fitted on the
/// first training call and kept afterwards (also across save/load), so that a warm-started
/// predictor sees its inputs on the scale its weights were trained for.
#[derive(Debug, Clone)]
struct Scaling {
    mean: Vec<f32>,
    std: Vec<f32>,
    /// Standardised copies for the forward pass: (1, d) tensors of mean and 1/std.
    mean_t: Tensor,
    inv_std_t: Tensor,
    fitted: bool,
    /// Mean and std of ln(metric) (MSE only; (0, 1) until fitted).
    target: [f64; 2],
    target_fitted: bool,
}

impl Scaling {
    fn new(mean: Vec<f32>, std: Vec<f32>, device: &Device) -> candle_core::Result<Self> {
        let d = mean.len();
        let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
        Ok(Self {
            mean_t: Tensor::from_vec(mean.clone(), (1, d), device)?,
            inv_std_t: Tensor::from_vec(inv, (1, d), device)?,
            mean,
            std,
            fitted: false,
            target: [0.0, 1.0],
            target_fitted: false,
        })
    }
}

/// A candle MLP that scores encoded schedules; lower score = better schedule.
///
/// The weights live in a candle `VarMap` (layers `layer{i}.weight` / `layer{i}.bias`) on the
/// CPU; the net is small enough that a forward pass over thousands of candidates takes
/// milliseconds. Inputs are standardised with statistics fitted on the first training set.
pub struct Predictor {
    varmap: VarMap,
    layers: Vec<Linear>,
    input_dim: usize,
    config: TrainConfig,
    device: Device,
    scaling: Scaling,
    trained_on: usize,
    report: Option<TrainReport>,
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor")
            .field("input_dim", &self.input_dim)
            .field("config", &self.config)
            .field("trained_on", &self.trained_on)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// Wraps a candle error with what was being done.
fn ce(context: impl std::fmt::Display) -> impl FnOnce(candle_core::Error) -> S3Error {
    move |e| S3Error::Predictor(format!("{context}: {e}"))
}

fn bad<T>(message: String) -> Result<T> {
    Err(S3Error::Predictor(message))
}

/// `stem` with `.ext` appended (not replacing an extension: `run.v1` → `run.v1.json`).
fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut s = OsString::from(stem.as_os_str());
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

impl TrainConfig {
    fn check(&self) -> Result<()> {
        if self.batch_size < 2 {
            return bad(format!(
                "batch_size {} is too small; expected at least 2",
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

impl Predictor {
    /// A freshly initialised MLP input_dim → hidden… → 1 (Kaiming-normal weights and uniform
    /// biases drawn from `config.seed`, so two predictors built alike are identical).
    pub fn new(input_dim: usize, config: &TrainConfig) -> Result<Self> {
        if input_dim == 0 {
            return bad("input dimension 0".into());
        }
        config.check()?;
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut widths = vec![input_dim];
        widths.extend(&config.hidden);
        widths.push(1);
        {
            let mut data = varmap.data().lock().expect("VarMap lock");
            for (i, w) in widths.windows(2).enumerate() {
                let (fan_in, fan_out) = (w[0], w[1]);
                let normal = Normal::new(0.0f32, (2.0 / fan_in as f32).sqrt()).expect("std > 0");
                let bound = 1.0 / (fan_in as f32).sqrt();
                let uniform = Uniform::new_inclusive(-bound, bound).expect("bound > 0");
                let weight: Vec<f32> = (0..fan_in * fan_out)
                    .map(|_| normal.sample(&mut rng))
                    .collect();
                let bias: Vec<f32> = (0..fan_out).map(|_| uniform.sample(&mut rng)).collect();
                let weight = Tensor::from_vec(weight, (fan_out, fan_in), &device)
                    .and_then(|t| Var::from_tensor(&t))
                    .map_err(ce("initialising the weights"))?;
                let bias = Tensor::from_vec(bias, fan_out, &device)
                    .and_then(|t| Var::from_tensor(&t))
                    .map_err(ce("initialising the biases"))?;
                data.insert(format!("layer{i}.weight"), weight);
                data.insert(format!("layer{i}.bias"), bias);
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| candle_nn::linear(w[0], w[1], vb.pp(format!("layer{i}"))))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(ce("building the MLP"))?;
        let scaling = Scaling::new(vec![0.0; input_dim], vec![1.0; input_dim], &device)
            .map_err(ce("building the input scaling"))?;
        Ok(Self {
            varmap,
            layers,
            input_dim,
            config: config.clone(),
            device,
            scaling,
            trained_on: 0,
            report: None,
        })
    }

    /// The length of the feature vectors this predictor reads.
    pub fn input_dim(&self) -> usize {
        self.input_dim
    }

    /// The training settings (those of the last `new`, `load` or `set_config`).
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Replaces the training settings of a (possibly loaded) predictor before further
    /// training, e.g. fewer epochs for a warm start. The layer widths are fixed by the
    /// weights and must stay the same.
    pub fn set_config(&mut self, config: TrainConfig) -> Result<()> {
        config.check()?;
        if config.hidden != self.config.hidden {
            return bad(format!(
                "hidden layers {:?} differ from the predictor's {:?}",
                config.hidden, self.config.hidden
            ));
        }
        self.config = config;
        Ok(())
    }

    /// The number of trials of the last training call (0 before any).
    pub fn trained_on(&self) -> usize {
        self.trained_on
    }

    /// The report of the last training call (kept across save/load).
    pub fn report(&self) -> Option<&TrainReport> {
        self.report.as_ref()
    }

    /// Raw network outputs for a (rows, d) batch (after input standardisation).
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = x
            .broadcast_sub(&self.scaling.mean_t)?
            .broadcast_mul(&self.scaling.inv_std_t)?;
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i < last {
                h = h.relu()?;
            }
        }
        h.squeeze(1)
    }

    fn check_features(&self, features: &[Vec<f32>]) -> Result<()> {
        for (i, f) in features.iter().enumerate() {
            if f.len() != self.input_dim {
                return bad(format!(
                    "feature vector {i} has {} values; the predictor reads {}",
                    f.len(),
                    self.input_dim
                ));
            }
            if let Some(k) = f.iter().position(|x| !x.is_finite()) {
                return bad(format!("feature vector {i} has a non-finite value at {k}"));
            }
        }
        Ok(())
    }

    fn stack(&self, rows: &[&Vec<f32>]) -> candle_core::Result<Tensor> {
        let mut flat = Vec::with_capacity(rows.len() * self.input_dim);
        for r in rows {
            flat.extend_from_slice(r);
        }
        Tensor::from_vec(flat, (rows.len(), self.input_dim), &self.device)
    }

    /// Raw outputs (no target de-standardisation) for rows of already-checked features.
    fn raw_scores(&self, rows: &[&Vec<f32>]) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(SCORE_CHUNK) {
            let s = self
                .stack(chunk)
                .and_then(|x| self.forward(&x))
                .and_then(|y| y.to_vec1::<f32>())
                .map_err(ce("scoring"))?;
            out.extend(s.into_iter().map(f64::from));
        }
        Ok(out)
    }

    /// Scores feature vectors in batches of 4,096; lower = better. With the ranking loss the
    /// scores have no units (only their order means something); with MSE they estimate
    /// ln(metric).
    pub fn score(&self, features: &[Vec<f32>]) -> Result<Vec<f64>> {
        self.check_features(features)?;
        let rows: Vec<&Vec<f32>> = features.iter().collect();
        let raw = self.raw_scores(&rows)?;
        Ok(self.to_metric_scale(raw))
    }

    fn to_metric_scale(&self, raw: Vec<f64>) -> Vec<f64> {
        match self.config.loss {
            Loss::MseLogMetric => {
                let [m, s] = self.scaling.target;
                raw.into_iter().map(|r| r * s + m).collect()
            }
            Loss::PairwiseRanking { .. } => raw,
        }
    }

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
        if n < 2 {
            return bad(format!("{n} trials are too few to train on (at least 2)"));
        }
        let cfg = self.config.clone();
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        let n_hold = ((n as f64 * holdout).round() as usize).min(n - 2);
        let (hold_idx, train_idx) = order.split_at(n_hold);
        let log_m: Vec<f64> = metrics.iter().map(|m| m.ln()).collect();
        let train_rows: Vec<&Vec<f32>> = train_idx.iter().map(|&i| &features[i]).collect();
        let train_y: Vec<f64> = train_idx.iter().map(|&i| log_m[i]).collect();

        if !self.scaling.fitted {
            self.fit_scaling(&train_rows)?;
        }
        let (y_mean, y_std) = mean_std(&train_y);
        let ranking_margin = match cfg.loss {
            Loss::PairwiseRanking { margin } => Some(margin),
            Loss::MseLogMetric => None,
        };
        if ranking_margin.is_none() && !self.scaling.target_fitted {
            self.scaling.target = [y_mean, if y_std > 1e-12 { y_std } else { 1.0 }];
            self.scaling.target_fitted = true;
        }
        // Targets as the loss sees them: ln m for ranking, standardised ln m for MSE.
        let target: Vec<f32> = match ranking_margin {
            Some(_) => train_y.iter().map(|&y| y as f32).collect(),
            None => {
                let [m, s] = self.scaling.target;
                train_y.iter().map(|&y| ((y - m) / s) as f32).collect()
            }
        };
        let gap = PAIR_MIN_LOG_GAP.min(0.1 * y_std) as f32;

        let x_all = self
            .stack(&train_rows)
            .map_err(ce("building the training set"))?;
        let y_all = Tensor::from_vec(target.clone(), target.len(), &self.device)
            .map_err(ce("building the training targets"))?;
        let params = ParamsAdamW {
            lr: cfg.lr,
            weight_decay: WEIGHT_DECAY,
            ..ParamsAdamW::default()
        };
        let mut opt = AdamW::new(self.varmap.all_vars(), params).map_err(ce("creating AdamW"))?;
        let mut batch_rng = StdRng::seed_from_u64(cfg.seed ^ 0x5eed_ba7c_4e55_0001);
        let mut perm: Vec<usize> = (0..train_rows.len()).collect();
        let mut final_loss = 0.0;
        for epoch in 0..cfg.epochs {
            let progress = epoch as f64 / cfg.epochs.max(1) as f64;
            let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            opt.set_learning_rate(
                cfg.lr * (FINAL_LR_FRACTION + (1.0 - FINAL_LR_FRACTION) * cosine),
            );
            perm.shuffle(&mut batch_rng);
            let (mut sum, mut count) = (0.0f64, 0usize);
            for chunk in perm.chunks(cfg.batch_size) {
                let loss = match ranking_margin {
                    Some(margin) => self.ranking_loss(chunk, &x_all, &target, gap, margin)?,
                    None => self.mse_loss(chunk, &x_all, &y_all)?,
                };
                let Some(loss) = loss else { continue };
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
            if count > 0 {
                final_loss = sum / count as f64;
            }
        }

        let train_scores = self.raw_scores(&train_rows)?;
        let train_m: Vec<f64> = train_idx.iter().map(|&i| metrics[i]).collect();
        let train_tau = kendall_tau(&train_scores, &train_m);
        let holdout_tau = if hold_idx.len() >= 2 {
            let rows: Vec<&Vec<f32>> = hold_idx.iter().map(|&i| &features[i]).collect();
            let scores = self.raw_scores(&rows)?;
            let m: Vec<f64> = hold_idx.iter().map(|&i| metrics[i]).collect();
            Some(kendall_tau(&scores, &m))
        } else {
            None
        };
        let report = TrainReport {
            epochs: cfg.epochs,
            final_loss,
            train_tau,
            holdout_tau,
            seconds: start.elapsed().as_secs_f64(),
        };
        self.trained_on = n;
        self.report = Some(report.clone());
        Ok(report)
    }

    /// Fits the input standardisation on the training rows (a constant feature keeps std 1).
    fn fit_scaling(&mut self, rows: &[&Vec<f32>]) -> Result<()> {
        let d = self.input_dim;
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
                if s > 1e-6 { s as f32 } else { 1.0 }
            })
            .collect();
        let mean: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let target = (self.scaling.target, self.scaling.target_fitted);
        self.scaling =
            Scaling::new(mean, std, &self.device).map_err(ce("building the input scaling"))?;
        (self.scaling.target, self.scaling.target_fitted) = target;
        self.scaling.fitted = true;
        Ok(())
    }

    /// The hinge ranking loss over all pairs of the batch whose ln-metric gap exceeds `gap`;
    /// None when the batch has no such pair.
    fn ranking_loss(
        &self,
        chunk: &[usize],
        x_all: &Tensor,
        y: &[f32],
        gap: f32,
        margin: f32,
    ) -> Result<Option<Tensor>> {
        let b = chunk.len();
        let mut sign = vec![0.0f32; b * b];
        let mut mask = vec![0.0f32; b * b];
        let mut pairs = 0usize;
        for (i, &a) in chunk.iter().enumerate() {
            for (j, &c) in chunk.iter().enumerate().skip(i + 1) {
                let d = y[c] - y[a];
                if d.abs() > gap {
                    sign[i * b + j] = d.signum();
                    mask[i * b + j] = 1.0;
                    pairs += 1;
                }
            }
        }
        if pairs == 0 {
            return Ok(None);
        }
        let f = || -> candle_core::Result<Tensor> {
            let idx = Tensor::from_vec(
                chunk.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                b,
                &self.device,
            )?;
            let s = self.forward(&x_all.index_select(&idx, 0)?)?;
            // diff[i][j] = s_j − s_i; a pair with m_j > m_i (j worse) wants diff ≥ margin.
            let diff = s.unsqueeze(0)?.broadcast_sub(&s.unsqueeze(1)?)?;
            let sign = Tensor::from_vec(sign, (b, b), &self.device)?;
            let mask = Tensor::from_vec(mask, (b, b), &self.device)?;
            let hinge = (diff * sign)?
                .neg()?
                .affine(1.0, f64::from(margin))?
                .relu()?;
            (hinge * mask)?.sum_all()? / pairs as f64
        };
        f().map(Some).map_err(ce("ranking loss"))
    }

    /// Mean squared error against the standardised ln(metric).
    fn mse_loss(&self, chunk: &[usize], x_all: &Tensor, y_all: &Tensor) -> Result<Option<Tensor>> {
        let f = || -> candle_core::Result<Tensor> {
            let idx = Tensor::from_vec(
                chunk.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                chunk.len(),
                &self.device,
            )?;
            let s = self.forward(&x_all.index_select(&idx, 0)?)?;
            (s - y_all.index_select(&idx, 0)?)?.sqr()?.mean_all()
        };
        f().map(Some).map_err(ce("MSE loss"))
    }

    /// Writes `<stem>.safetensors` (the layer weights, the input standardisation `norm.mean` /
    /// `norm.std`, and `target.mean_std` (f64) for MSE) and `<stem>.json`: format and version, the
    /// s3 version, input_dim, hidden sizes, loss and the rest of the training settings, the
    /// number of trials, the last training report (τ on train and held-out trials), and the
    /// caller's `meta` — an object (or null) whose keys are written at the top level, e.g.
    /// `{"encoder": Encoder::meta(), "dataset": ..., "metric": ...}`. A `meta` key that
    /// collides with one of the predictor's own keys is an error. Missing parent folders are
    /// created.
    pub fn save(&self, stem: &Path, meta: serde_json::Value) -> Result<()> {
        let weights_path = with_suffix(stem, "safetensors");
        let json_path = with_suffix(stem, "json");
        let weights_name = weights_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut doc = serde_json::json!({
            "format": PREDICTOR_FORMAT,
            "version": PREDICTOR_VERSION,
            "s3_version": env!("CARGO_PKG_VERSION"),
            "weights": weights_name,
            "input_dim": self.input_dim,
            "hidden": self.config.hidden,
            "loss": self.config.loss,
            "train_config": self.config,
            "input_scaling_fitted": self.scaling.fitted,
            "target_scaling_fitted": self.scaling.target_fitted,
            "trials": self.trained_on,
            "train_tau": self.report.as_ref().map(|r| r.train_tau),
            "holdout_tau": self.report.as_ref().and_then(|r| r.holdout_tau),
            "report": self.report,
        });
        match meta {
            serde_json::Value::Null => {}
            serde_json::Value::Object(extra) => {
                let obj = doc.as_object_mut().expect("an object");
                for (k, v) in extra {
                    if obj.contains_key(&k) {
                        return bad(format!(
                            "saving {}: metadata key `{k}` is reserved by the predictor file",
                            json_path.display()
                        ));
                    }
                    obj.insert(k, v);
                }
            }
            other => {
                return bad(format!(
                    "saving {}: metadata must be a JSON object, got {other}",
                    json_path.display()
                ));
            }
        }
        if let Some(parent) = stem.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| S3Error::io(parent, e))?;
        }
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for (name, var) in self.varmap.data().lock().expect("VarMap lock").iter() {
            tensors.insert(name.clone(), var.as_tensor().clone());
        }
        let d = self.input_dim;
        let extra = || -> candle_core::Result<[Tensor; 3]> {
            Ok([
                Tensor::from_vec(self.scaling.mean.clone(), d, &self.device)?,
                Tensor::from_vec(self.scaling.std.clone(), d, &self.device)?,
                // f64, so that MSE scores round-trip exactly.
                Tensor::from_vec(self.scaling.target.to_vec(), 2, &self.device)?,
            ])
        };
        let [m, s, t] = extra().map_err(ce("collecting the scaling tensors"))?;
        tensors.insert(NORM_MEAN.into(), m);
        tensors.insert(NORM_STD.into(), s);
        tensors.insert(TARGET.into(), t);
        candle_core::safetensors::save(&tensors, &weights_path)
            .map_err(ce(format!("writing {}", weights_path.display())))?;
        let text = serde_json::to_string_pretty(&doc).expect("JSON values serialise") + "\n";
        std::fs::write(&json_path, text).map_err(|e| S3Error::io(&json_path, e))
    }

    /// Reads a predictor written by [`Predictor::save`] and returns it with the whole JSON
    /// document (the caller's `meta` keys are at its top level). Errors name the file: a
    /// missing `<stem>.json` or `<stem>.safetensors`, another format or version, and weights
    /// whose names or shapes do not match the architecture the JSON describes.
    pub fn load(stem: &Path) -> Result<(Self, serde_json::Value)> {
        let json_path = with_suffix(stem, "json");
        let weights_path = with_suffix(stem, "safetensors");
        let text = std::fs::read_to_string(&json_path).map_err(|e| S3Error::io(&json_path, e))?;
        let json_err = |m: String| S3Error::Json {
            path: json_path.clone(),
            message: m,
        };
        let doc: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| json_err(format!("not a predictor file: {e}")))?;
        if doc.get("format").and_then(|v| v.as_str()) != Some(PREDICTOR_FORMAT) {
            return Err(json_err(format!(
                "field `format` is {}; expected {PREDICTOR_FORMAT:?}",
                doc.get("format").unwrap_or(&serde_json::Value::Null)
            )));
        }
        let version = doc.get("version").and_then(|v| v.as_u64());
        if version != Some(u64::from(PREDICTOR_VERSION)) {
            return Err(json_err(format!(
                "field `version` is {version:?}; this build reads version {PREDICTOR_VERSION}"
            )));
        }
        let field = |name: &str| {
            doc.get(name)
                .cloned()
                .ok_or_else(|| json_err(format!("missing field `{name}`")))
        };
        let input_dim: usize = serde_json::from_value(field("input_dim")?)
            .map_err(|e| json_err(format!("field `input_dim`: {e}")))?;
        let config: TrainConfig = serde_json::from_value(field("train_config")?)
            .map_err(|e| json_err(format!("field `train_config`: {e}")))?;
        let report: Option<TrainReport> =
            serde_json::from_value(doc.get("report").cloned().unwrap_or_default())
                .map_err(|e| json_err(format!("field `report`: {e}")))?;
        let flag = |name: &str| doc.get(name).and_then(|v| v.as_bool()).unwrap_or(false);
        let mut p = Predictor::new(input_dim, &config).map_err(|e| json_err(e.to_string()))?;
        p.trained_on = doc.get("trials").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
        p.report = report;

        let bytes = std::fs::read(&weights_path).map_err(|e| S3Error::io(&weights_path, e))?;
        let wbad = |m: String| S3Error::Predictor(format!("{}: {m}", weights_path.display()));
        let mut tensors = candle_core::safetensors::load_buffer(&bytes, &p.device)
            .map_err(|e| wbad(format!("not a readable safetensors file: {e}")))?;
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors.remove(name).ok_or_else(|| {
                wbad(format!(
                    "no tensor `{name}`; {} describes a {input_dim}→{:?}→1 MLP",
                    json_path.display(),
                    config.hidden
                ))
            })?;
            if t.dims() != shape {
                return Err(wbad(format!(
                    "tensor `{name}` has shape {:?}; {} implies {shape:?}",
                    t.dims(),
                    json_path.display()
                )));
            }
            let dtype = if name == TARGET {
                DType::F64
            } else {
                DType::F32
            };
            t.to_dtype(dtype)
                .map_err(|e| wbad(format!("tensor `{name}`: {e}")))
        };
        {
            let data = p.varmap.data().lock().expect("VarMap lock");
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for name in names {
                let var = &data[name];
                let t = take(name, var.dims())?;
                var.set(&t)
                    .map_err(|e| wbad(format!("setting `{name}`: {e}")))?;
            }
        }
        let vec1 = |t: Tensor, name: &str| {
            t.to_vec1::<f32>()
                .map_err(|e| wbad(format!("tensor `{name}`: {e}")))
        };
        let mean = vec1(take(NORM_MEAN, &[input_dim])?, NORM_MEAN)?;
        let std = vec1(take(NORM_STD, &[input_dim])?, NORM_STD)?;
        let target = take(TARGET, &[2])?
            .to_vec1::<f64>()
            .map_err(|e| wbad(format!("tensor `{TARGET}`: {e}")))?;
        if let Some(name) = tensors.keys().min() {
            return Err(wbad(format!(
                "unexpected tensor `{name}` for the {input_dim}→{:?}→1 MLP of {}",
                config.hidden,
                json_path.display()
            )));
        }
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(wbad(format!("`{NORM_STD}` holds a non-positive value")));
        }
        p.scaling = Scaling::new(mean, std, &p.device).map_err(ce("restoring the scaling"))?;
        p.scaling.fitted = flag("input_scaling_fitted");
        p.scaling.target = [target[0], target[1]];
        p.scaling.target_fitted = flag("target_scaling_fitted");
        Ok((p, doc))
    }
}

/// Mean and (population) standard deviation.
fn mean_std(x: &[f64]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let m = x.iter().sum::<f64>() / n;
    let v = x.iter().map(|y| (y - m).powi(2)).sum::<f64>() / n;
    (m, v.sqrt())
}

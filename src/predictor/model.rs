//! [`Predictor`]: the network with its scaling and training settings, and scoring.

use super::loss::Loss;
use super::network::{Mlp, layer_widths};
use super::scaling::{InputScaling, TargetScaling};
use super::settings::{TrainConfig, TrainReport};
use super::{bad, ce};
use crate::error::Result;
use candle_core::{Device, Tensor};
use candle_nn::{Module, VarMap};

/// Rows per forward pass in [`Predictor::score`].
const SCORE_CHUNK: usize = 4096;

/// A candle MLP that scores encoded schedules; lower score = better schedule.
///
/// The weights live in a candle `VarMap` (layers `layer{i}.weight` / `layer{i}.bias`) on the
/// CPU; the net is small enough that a forward pass over thousands of candidates takes
/// milliseconds. Inputs are standardised with statistics fitted on the first training set.
pub struct Predictor {
    /// The trainable weights, shared with `net`'s layers.
    pub(super) varmap: VarMap,
    pub(super) net: Mlp,
    pub(super) input_dim: usize,
    pub(super) config: TrainConfig,
    pub(super) device: Device,
    pub(super) input: InputScaling,
    pub(super) target: TargetScaling,
    /// Trials of the last training call (0 before any).
    pub(super) trained_on: usize,
    pub(super) report: Option<TrainReport>,
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

impl Predictor {
    /// A freshly initialised MLP input_dim → hidden… → 1 (Kaiming-normal weights and uniform
    /// biases drawn from `config.seed`, so two predictors built alike are identical).
    pub fn new(input_dim: usize, config: &TrainConfig) -> Result<Self> {
        if input_dim == 0 {
            return bad("input dimension 0".into());
        }
        config.check()?;
        let device = Device::Cpu;
        let widths = layer_widths(input_dim, &config.hidden);
        let (varmap, net) = Mlp::seeded(&widths, config.seed, &device)?;
        let input =
            InputScaling::identity(input_dim, &device).map_err(ce("building the input scaling"))?;
        Ok(Self {
            varmap,
            net,
            input_dim,
            config: config.clone(),
            device,
            input,
            target: TargetScaling::default(),
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
    pub(super) fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.net.forward(&self.input.forward(x)?)
    }

    /// Refuses feature vectors of the wrong length or with non-finite values, naming the
    /// first such vector.
    pub(super) fn check_features(&self, features: &[Vec<f32>]) -> Result<()> {
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

    /// The rows as one (rows, input_dim) tensor.
    pub(super) fn stack(&self, rows: &[&Vec<f32>]) -> candle_core::Result<Tensor> {
        let mut flat = Vec::with_capacity(rows.len() * self.input_dim);
        for r in rows {
            flat.extend_from_slice(r);
        }
        Tensor::from_vec(flat, (rows.len(), self.input_dim), &self.device)
    }

    /// Raw outputs (no target de-standardisation) for rows of already-checked features.
    pub(super) fn raw_scores(&self, rows: &[&Vec<f32>]) -> Result<Vec<f64>> {
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

    /// Scores feature vectors in batches of 4,096 rows; lower = better. With the ranking
    /// loss the scores have no units (only their order means something); with MSE they
    /// estimate ln(metric).
    pub fn score(&self, features: &[Vec<f32>]) -> Result<Vec<f64>> {
        self.check_features(features)?;
        let rows: Vec<&Vec<f32>> = features.iter().collect();
        let raw = self.raw_scores(&rows)?;
        Ok(match self.config.loss {
            Loss::MseLogMetric => raw
                .into_iter()
                .map(|r| self.target.to_log_metric(r))
                .collect(),
            Loss::PairwiseRanking { .. } => raw,
        })
    }
}

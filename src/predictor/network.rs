//! The network: a Linear/ReLU MLP input_dim → hidden… → 1 as a candle [`Module`], and the
//! seeded initialisation of its weights.

use super::ce;
use crate::error::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Linear, Module, VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};

/// Layer `i`'s tensors are `{LAYER_PREFIX}{i}.weight` and `{LAYER_PREFIX}{i}.bias` in the
/// `VarMap` and in the safetensors file.
const LAYER_PREFIX: &str = "layer";
/// Kaiming (He) initialisation for ReLU nets: weights ~ N(0, GAIN / fan_in) keep the
/// activations' variance roughly constant from layer to layer.
const KAIMING_RELU_GAIN: f32 = 2.0;
/// The network has one output: the score.
const OUTPUT_WIDTH: usize = 1;

/// The widths of every layer boundary: `input_dim`, the hidden widths, then the output.
pub(super) fn layer_widths(input_dim: usize, hidden: &[usize]) -> Vec<usize> {
    let mut widths = vec![input_dim];
    widths.extend(hidden);
    widths.push(OUTPUT_WIDTH);
    widths
}

/// The `VarBuilder` prefix of layer `i`.
fn layer_name(i: usize) -> String {
    format!("{LAYER_PREFIX}{i}")
}

/// Fills `varmap` with the weights of an MLP of `widths`: Kaiming-normal weights and biases
/// uniform in ±1/√fan_in (PyTorch's `Linear` default), all drawn in layer order from one
/// generator seeded with `seed`, so that two predictors built alike are identical.
fn init_weights(varmap: &VarMap, widths: &[usize], seed: u64, device: &Device) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut data = varmap.data().lock().expect("VarMap lock");
    for (i, w) in widths.windows(2).enumerate() {
        let (fan_in, fan_out) = (w[0], w[1]);
        let normal =
            Normal::new(0.0f32, (KAIMING_RELU_GAIN / fan_in as f32).sqrt()).expect("std > 0");
        let bound = 1.0 / (fan_in as f32).sqrt();
        let uniform = Uniform::new_inclusive(-bound, bound).expect("bound > 0");
        let weight: Vec<f32> = (0..fan_in * fan_out)
            .map(|_| normal.sample(&mut rng))
            .collect();
        let bias: Vec<f32> = (0..fan_out).map(|_| uniform.sample(&mut rng)).collect();
        let weight = Tensor::from_vec(weight, (fan_out, fan_in), device)
            .and_then(|t| Var::from_tensor(&t))
            .map_err(ce("initialising the weights"))?;
        let bias = Tensor::from_vec(bias, fan_out, device)
            .and_then(|t| Var::from_tensor(&t))
            .map_err(ce("initialising the biases"))?;
        let name = layer_name(i);
        data.insert(format!("{name}.weight"), weight);
        data.insert(format!("{name}.bias"), bias);
    }
    Ok(())
}

/// A Linear/ReLU MLP ending in one output, in candle-nn's style: built from a [`VarBuilder`],
/// used through [`Module::forward`].
#[derive(Debug, Clone)]
pub(super) struct Mlp {
    layers: Vec<Linear>,
}

impl Mlp {
    /// The layers of `widths`, taken from `vb` (whose `VarMap` [`init_weights`] filled).
    fn new(widths: &[usize], vb: &VarBuilder) -> candle_core::Result<Self> {
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(i, w)| candle_nn::linear(w[0], w[1], vb.pp(layer_name(i))))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// A `VarMap` with seeded weights for `widths` and the MLP that reads them.
    pub(super) fn seeded(widths: &[usize], seed: u64, device: &Device) -> Result<(VarMap, Self)> {
        let varmap = VarMap::new();
        init_weights(&varmap, widths, seed, device)?;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let mlp = Self::new(widths, &vb).map_err(ce("building the MLP"))?;
        Ok((varmap, mlp))
    }
}

impl Module for Mlp {
    /// (rows, input_dim) → (rows): ReLU between layers, none after the last.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = xs.clone();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i < last {
                h = h.relu()?;
            }
        }
        h.squeeze(1)
    }
}

//! Denoisers: batched model calls at one time t, and the one place where a model's output
//! parameterisation (ε, x0 or v) is converted to the noise prediction ε the solvers use.

pub mod gmm;

pub use gmm::GaussianMixture;

use crate::error::{Result, S3Error};
use serde::{Deserialize, Serialize};

/// What a network's output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parameterization {
    /// The noise ε.
    Eps,
    /// The clean sample x0.
    X0,
    /// The velocity v = α·ε − σ·x0.
    V,
}

/// A point on the noise schedule at which a model is called. Models that need their own time
/// input (a discrete index, 999·t, σ) map `t` themselves; analytic models use α and σ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimePoint {
    pub t: f64,
    pub alpha: f64,
    pub sigma: f64,
}

/// A diffusion model evaluated on a batch of samples stored contiguously as `[batch, dim]` f32.
pub trait Denoiser: Send + Sync {
    /// The shape of one sample, e.g. `[3, 32, 32]` for images or `[2]` for points.
    fn sample_shape(&self) -> &[usize];

    /// The number of f32 values in one sample.
    fn dim(&self) -> usize {
        self.sample_shape().iter().product()
    }

    /// What [`Denoiser::forward`] returns.
    fn parameterization(&self) -> Parameterization;

    /// The raw model output for the batch `x` (`batch × dim` values) at `time`, into `out`.
    fn forward(&self, x: &[f32], time: TimePoint, out: &mut [f32]) -> Result<()>;

    /// The same in f64, for high-precision verification runs. The default goes through
    /// [`Denoiser::forward`] in f32; exact models override it.
    fn forward_f64(&self, x: &[f64], time: TimePoint, out: &mut [f64]) -> Result<()> {
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut of = vec![0f32; out.len()];
        self.forward(&xf, time, &mut of)?;
        for (o, v) in out.iter_mut().zip(of) {
            *o = v as f64;
        }
        Ok(())
    }
}

/// The element types the sampler runs in: f32 for production, f64 for verification.
pub trait Real: Copy + Send + Sync + PartialEq + std::fmt::Debug + 'static {
    /// Widens to f64.
    fn to_f64(self) -> f64;
    /// Narrows from f64.
    fn from_f64(v: f64) -> Self;
    /// Calls the model's forward pass of this precision.
    fn forward(model: &dyn Denoiser, x: &[Self], time: TimePoint, out: &mut [Self]) -> Result<()>;
}

impl Real for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn forward(model: &dyn Denoiser, x: &[f32], time: TimePoint, out: &mut [f32]) -> Result<()> {
        model.forward(x, time, out)
    }
}

impl Real for f64 {
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn forward(model: &dyn Denoiser, x: &[f64], time: TimePoint, out: &mut [f64]) -> Result<()> {
        model.forward_f64(x, time, out)
    }
}

/// Converts a model output, in place, into the noise prediction ε at (x, time).
pub fn output_to_eps<T: Real>(
    param: Parameterization,
    x: &[T],
    time: TimePoint,
    out: &mut [T],
) -> Result<()> {
    let (a, s) = (time.alpha, time.sigma);
    match param {
        Parameterization::Eps => {}
        Parameterization::X0 => {
            if s <= 0.0 {
                return Err(S3Error::Numerical(format!(
                    "cannot convert an x0 output to ε at σ = 0 (t = {})",
                    time.t
                )));
            }
            for (o, &xi) in out.iter_mut().zip(x) {
                *o = T::from_f64((xi.to_f64() - a * o.to_f64()) / s);
            }
        }
        Parameterization::V => {
            for (o, &xi) in out.iter_mut().zip(x) {
                *o = T::from_f64(a * o.to_f64() + s * xi.to_f64());
            }
        }
    }
    Ok(())
}

/// Evaluates ε(x, t) with any denoiser: the model call plus the output conversion.
pub fn eval_eps<T: Real>(
    model: &dyn Denoiser,
    x: &[T],
    time: TimePoint,
    out: &mut [T],
) -> Result<()> {
    let dim = model.dim();
    if !x.len().is_multiple_of(dim) || out.len() != x.len() {
        return Err(S3Error::Shape(format!(
            "model expects batches of {dim}-value samples; got {} input and {} output values",
            x.len(),
            out.len()
        )));
    }
    T::forward(model, x, time, out)?;
    output_to_eps(model.parameterization(), x, time, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_recover_eps_from_x0_and_v() {
        let (x0, eps) = (0.7f32, -1.3f32);
        let (a, s) = (0.6f64, 0.8f64);
        let x = a as f32 * x0 + s as f32 * eps;
        let time = TimePoint {
            t: 0.5,
            alpha: a,
            sigma: s,
        };
        let mut o = [x0];
        output_to_eps(Parameterization::X0, &[x], time, &mut o).unwrap();
        assert!((o[0] - eps).abs() < 1e-6);
        let mut o = [a as f32 * eps - s as f32 * x0];
        output_to_eps(Parameterization::V, &[x], time, &mut o).unwrap();
        assert!((o[0] - eps).abs() < 1e-6);
    }
}

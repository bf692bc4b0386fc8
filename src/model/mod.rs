//! Denoisers: batched model calls at one time t, and the one place where a model's output
//! parameterisation (ε, x0, v or the flow velocity) is converted to the noise and data
//! predictions ε and x0 the solvers use.

pub mod gmm;

pub use gmm::GaussianMixture;

use crate::error::{Result, S3Error};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// What a network's output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parameterization {
    /// The noise ε.
    Eps,
    /// The clean sample x0.
    X0,
    /// The velocity v = α·ε − σ·x0 (diffusers' `v_prediction`, for VP schedules).
    V,
    /// The flow velocity v = dx/dt = ε − x0 of x_t = (1 − t)·x0 + t·ε (diffusers'
    /// `flow_prediction`: SD3, Flux). The conversion is written for any α, σ.
    Velocity,
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

    /// Both predictions, ε into `eps` and x0 into `x0`, for models that compute them
    /// directly; `None` (the default) means: call [`Denoiser::forward`] and convert
    /// ([`output_to_predictions`]). Exact models use it where the conversion loses accuracy:
    /// x0 = (x − σ·ε)/α amplifies the rounding of ε by σ/α (10⁶ at flow's t = 1 − 10⁻⁶) and is
    /// 0/0 at pure noise (α = 0).
    fn predictions(
        &self,
        x: &[f32],
        time: TimePoint,
        eps: &mut [f32],
        x0: &mut [f32],
    ) -> Option<Result<()>> {
        let _ = (x, time, eps, x0);
        None
    }

    /// [`Denoiser::predictions`] in f64.
    fn predictions_f64(
        &self,
        x: &[f64],
        time: TimePoint,
        eps: &mut [f64],
        x0: &mut [f64],
    ) -> Option<Result<()>> {
        let _ = (x, time, eps, x0);
        None
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
    /// Calls the model's direct predictions of this precision, if it has them.
    fn predictions(
        model: &dyn Denoiser,
        x: &[Self],
        time: TimePoint,
        eps: &mut [Self],
        x0: &mut [Self],
    ) -> Option<Result<()>>;
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
    fn predictions(
        model: &dyn Denoiser,
        x: &[f32],
        time: TimePoint,
        eps: &mut [f32],
        x0: &mut [f32],
    ) -> Option<Result<()>> {
        model.predictions(x, time, eps, x0)
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
    fn predictions(
        model: &dyn Denoiser,
        x: &[f64],
        time: TimePoint,
        eps: &mut [f64],
        x0: &mut [f64],
    ) -> Option<Result<()>> {
        model.predictions_f64(x, time, eps, x0)
    }
}

/// Converts a model output, in place, into the noise prediction ε at (x, time). With
/// x = α·x0 + σ·ε: x0 gives ε = (x − α·x0)/σ; v = α·ε − σ·x0 gives ε = α·v + σ·x (VP);
/// the flow velocity v = ε − x0 gives ε = (x + α·v)/(α + σ).
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
        Parameterization::Velocity => {
            let inv = velocity_denominator(time)?;
            for (o, &xi) in out.iter_mut().zip(x) {
                *o = T::from_f64((xi.to_f64() + a * o.to_f64()) * inv);
            }
        }
    }
    Ok(())
}

/// 1/(α + σ) for the flow-velocity conversions (never 0 on a schedule: α, σ ≥ 0, not both 0).
fn velocity_denominator(time: TimePoint) -> Result<f64> {
    let d = time.alpha + time.sigma;
    if d.is_nan() || d <= 0.0 {
        return Err(S3Error::Numerical(format!(
            "cannot convert a velocity output at α + σ = {d} (t = {})",
            time.t
        )));
    }
    Ok(1.0 / d)
}

/// Elements per parallel block of the conversions.
const CONVERT_BLOCK: usize = 1 << 14;

/// Converts a model output, in place, into ε and writes the data prediction x0 at (x, time):
/// both predictions come from the model's own output, so x0 stays defined at pure noise
/// (α = 0) for models that return x0 or the flow velocity there, where x0 = (x − σ·ε)/α is
/// 0/0. For ε and v outputs x0 = (x − σ·ε)/α, which needs α > 0; for velocity
/// x0 = (x − σ·v)/(α + σ).
pub fn output_to_predictions<T: Real>(
    param: Parameterization,
    x: &[T],
    time: TimePoint,
    out: &mut [T],
    x0: &mut [T],
) -> Result<()> {
    let (a, s) = (time.alpha, time.sigma);
    let needs_alpha = matches!(param, Parameterization::Eps | Parameterization::V);
    if needs_alpha && a <= 0.0 {
        return Err(S3Error::Numerical(format!(
            "a model predicting {} gives no x0 at α = {a} (t = {}, pure noise); a model called there must predict x0 or the flow velocity",
            match param {
                Parameterization::Eps => "ε",
                _ => "v = α·ε − σ·x0",
            },
            time.t
        )));
    }
    if param == Parameterization::X0 && s <= 0.0 {
        return Err(S3Error::Numerical(format!(
            "cannot convert an x0 output to ε at σ = 0 (t = {})",
            time.t
        )));
    }
    let inv_v = match param {
        Parameterization::Velocity => velocity_denominator(time)?,
        _ => 0.0,
    };
    let (inv_a, inv_s) = (1.0 / a, 1.0 / s);
    out.par_chunks_mut(CONVERT_BLOCK)
        .zip(x0.par_chunks_mut(CONVERT_BLOCK))
        .zip(x.par_chunks(CONVERT_BLOCK))
        .for_each(|((o, x0), x)| {
            for ((o, x0), &xi) in o.iter_mut().zip(x0).zip(x) {
                let (xi, raw) = (xi.to_f64(), o.to_f64());
                let (eps, data) = match param {
                    Parameterization::Eps => (raw, (xi - s * raw) * inv_a),
                    Parameterization::X0 => ((xi - a * raw) * inv_s, raw),
                    Parameterization::V => {
                        let eps = a * raw + s * xi;
                        (eps, (xi - s * eps) * inv_a)
                    }
                    Parameterization::Velocity => ((xi + a * raw) * inv_v, (xi - s * raw) * inv_v),
                };
                *o = T::from_f64(eps);
                *x0 = T::from_f64(data);
            }
        });
    Ok(())
}

fn check_batch(model: &dyn Denoiser, x: usize, out: usize) -> Result<()> {
    let dim = model.dim();
    if !x.is_multiple_of(dim) || out != x {
        return Err(S3Error::Shape(format!(
            "model expects batches of {dim}-value samples; got {x} input and {out} output values"
        )));
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
    check_batch(model, x.len(), out.len())?;
    T::forward(model, x, time, out)?;
    output_to_eps(model.parameterization(), x, time, out)
}

/// Evaluates both predictions at (x, t): ε into `eps` and x0 into `x0`, from the model's
/// direct predictions if it has them ([`Denoiser::predictions`]), else converted from its
/// output ([`output_to_predictions`]).
pub fn eval_predictions<T: Real>(
    model: &dyn Denoiser,
    x: &[T],
    time: TimePoint,
    eps: &mut [T],
    x0: &mut [T],
) -> Result<()> {
    check_batch(model, x.len(), eps.len())?;
    check_batch(model, x.len(), x0.len())?;
    if let Some(r) = T::predictions(model, x, time, eps, x0) {
        return r;
    }
    T::forward(model, x, time, eps)?;
    output_to_predictions(model.parameterization(), x, time, eps, x0)
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

    /// v = ε − x0 with x = α·x0 + σ·ε: x + α·v = (α + σ)·ε and x − σ·v = (α + σ)·x0, for the
    /// flow's α = 1 − t, σ = t and for any other α, σ (the conversion is general).
    #[test]
    fn velocity_converts_to_both_predictions_for_any_alpha_and_sigma() {
        let (x0, eps) = (0.7f64, -1.3f64);
        for (a, s) in [(0.3, 0.7), (0.6, 0.8), (1.0, 0.002), (0.0, 1.0)] {
            let x = a * x0 + s * eps;
            let time = TimePoint {
                t: s,
                alpha: a,
                sigma: s,
            };
            let mut o = [eps - x0];
            output_to_eps(Parameterization::Velocity, &[x], time, &mut o).unwrap();
            assert!((o[0] - eps).abs() < 1e-14, "α={a} σ={s}: {}", o[0]);
            let (mut o, mut d) = ([eps - x0], [0.0]);
            output_to_predictions(Parameterization::Velocity, &[x], time, &mut o, &mut d).unwrap();
            assert!(
                (o[0] - eps).abs() < 1e-14 && (d[0] - x0).abs() < 1e-14,
                "α={a} σ={s}"
            );
        }
    }

    /// Every parameterisation gives the same (ε, x0) pair where it is defined, and an ε
    /// output at α = 0 is an error that says why.
    #[test]
    fn predictions_agree_across_parameterisations_and_eps_fails_at_pure_noise() {
        let (x0, eps) = (0.7f64, -1.3f64);
        let (a, s) = (0.6f64, 0.8f64);
        let x = a * x0 + s * eps;
        let time = TimePoint {
            t: 0.5,
            alpha: a,
            sigma: s,
        };
        for (param, raw) in [
            (Parameterization::Eps, eps),
            (Parameterization::X0, x0),
            (Parameterization::V, a * eps - s * x0),
        ] {
            let (mut o, mut d) = ([raw], [0.0]);
            output_to_predictions(param, &[x], time, &mut o, &mut d).unwrap();
            assert!(
                (o[0] - eps).abs() < 1e-14 && (d[0] - x0).abs() < 1e-14,
                "{param:?}"
            );
        }
        let noise = TimePoint {
            t: 1.0,
            alpha: 0.0,
            sigma: 1.0,
        };
        let e = output_to_predictions(Parameterization::Eps, &[x], noise, &mut [eps], &mut [0.0])
            .unwrap_err()
            .to_string();
        assert!(e.contains("α = 0") && e.contains("pure noise"), "{e}");
        let (mut o, mut d) = ([x0], [0.0]);
        output_to_predictions(Parameterization::X0, &[eps], noise, &mut o, &mut d).unwrap();
        assert_eq!((o[0], d[0]), (eps, x0));
    }
}

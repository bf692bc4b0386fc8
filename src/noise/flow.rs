//! The flow-matching (rectified-flow) schedule of SD3, Flux and diffusers' flow schedulers:
//! x_t = (1 − t)·x0 + t·ε on t ∈ (0, 1], so α(t) = 1 − t and σ(t) = t (diffusers calls t the
//! flow "sigma"). t = 1 is pure noise: α = 0 and λ = log((1 − t)/t) = −∞ there, which is where
//! `FlowMatchEulerDiscreteScheduler` starts.
//!
//! `shift` is diffusers' time shift (`shift` of `FlowMatchEulerDiscreteScheduler`, `flow_shift`
//! of the multistep schedulers): a time u of the unshifted grid becomes
//! σ' = shift·u / (1 + (shift − 1)·u). It does not change α or σ as functions of t — a model
//! trained with shift is still called at t = σ — it moves the time grids the classic spacings
//! lay out (see `solver::spacing`) and the smallest training time.

use crate::error::{Result, S3Error};

/// diffusers' `num_train_timesteps` of flow models: the training sigmas are shift(i/1000),
/// i = 1 … 1000.
pub const FLOW_TRAIN_TIMESTEPS: usize = 1000;

/// The flow-matching schedule with diffusers' time shift.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowMatch {
    shift: f64,
}

impl FlowMatch {
    /// The schedule with time shift `shift` (finite, > 0; 1 is no shift).
    pub fn new(shift: f64) -> Result<Self> {
        if !(shift.is_finite() && shift > 0.0) {
            return Err(S3Error::field(
                "noise schedule flow",
                "shift",
                format!("{shift} is not a finite positive number"),
            ));
        }
        Ok(Self { shift })
    }

    /// The time shift.
    pub fn shift(&self) -> f64 {
        self.shift
    }

    /// diffusers' shift of an unshifted time u ∈ [0, 1]: shift·u / (1 + (shift − 1)·u).
    pub fn shifted(&self, u: f64) -> f64 {
        self.shift * u / (1.0 + (self.shift - 1.0) * u)
    }

    /// The inverse of [`FlowMatch::shifted`]: u = t / (shift − (shift − 1)·t).
    pub fn unshifted(&self, t: f64) -> f64 {
        t / (self.shift - (self.shift - 1.0) * t)
    }

    /// The smallest training time, shift(1/1000): the last model-call time of diffusers' flow
    /// schedulers' training grid.
    pub fn sigma_min(&self) -> f64 {
        self.shifted(1.0 / FLOW_TRAIN_TIMESTEPS as f64)
    }

    /// log α = log(1 − t); −∞ at t = 1.
    pub fn log_alpha(&self, t: f64) -> f64 {
        (-t).ln_1p()
    }

    /// λ = log((1 − t)/t); −∞ at t = 1, +∞ at t = 0.
    pub fn lambda(&self, t: f64) -> f64 {
        (-t).ln_1p() - t.ln()
    }

    /// t(λ) = 1/(1 + e^λ), written so that e^λ never overflows: e^{−λ}/(1 + e^{−λ}) for λ > 0.
    /// t(−∞) = 1 exactly.
    pub fn t_of_lambda(&self, lambda: f64) -> f64 {
        if lambda > 0.0 {
            let e = (-lambda).exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + lambda.exp())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_matches_diffusers_and_inverts() {
        let f = FlowMatch::new(3.0).unwrap();
        // diffusers: 3·0.5/(1 + 2·0.5) = 0.75; shift(1) = 1; shift(0) = 0.
        assert_eq!(f.shifted(0.5), 0.75);
        assert_eq!(f.shifted(1.0), 1.0);
        assert_eq!(f.shifted(0.0), 0.0);
        for &u in &[1e-3, 0.2, 0.5, 0.9, 1.0] {
            assert!((f.unshifted(f.shifted(u)) - u).abs() < 1e-15);
        }
        assert!((f.sigma_min() - 0.003 / 1.002).abs() < 1e-15);
        assert_eq!(FlowMatch::new(1.0).unwrap().sigma_min(), 1e-3);
    }

    #[test]
    fn lambda_inverse_is_exact_at_the_ends_and_never_overflows() {
        let f = FlowMatch::new(1.0).unwrap();
        assert_eq!(f.lambda(1.0), f64::NEG_INFINITY);
        assert_eq!(f.t_of_lambda(f64::NEG_INFINITY), 1.0);
        assert_eq!(f.t_of_lambda(0.0), 0.5);
        assert_eq!(f.t_of_lambda(f64::INFINITY), 0.0);
        // Far beyond exp's range: e^{800} overflows, the formula does not.
        let t = f.t_of_lambda(800.0);
        assert!(t.is_finite() && t >= 0.0);
        let t = f.t_of_lambda(50.0);
        assert!((t - (-50.0f64).exp()).abs() < 1e-35);
        for &t in &[1e-6, 1e-3, 0.3, 0.5, 0.97, 1.0 - 1e-9] {
            let back = f.t_of_lambda(f.lambda(t));
            assert!((back - t).abs() <= 1e-12 * t, "t={t} back={back}");
        }
    }

    #[test]
    fn bad_shifts_are_named() {
        for s in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let e = FlowMatch::new(s).unwrap_err().to_string();
            assert!(e.contains("shift"), "{e}");
        }
    }
}

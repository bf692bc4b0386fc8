//! Noise schedules: α(t), σ(t), λ(t) = log α − log σ and the exact inverse t(λ).
//!
//! Time is continuous `f64` everywhere. `t = 0` is clean data (σ = 0 for the continuous VP
//! schedules and EDM); a sampler treats a final target time of exactly 0 as "denoise".

mod discrete;

pub use discrete::{BetaSchedule, DiscreteVp};

use crate::error::{Result, S3Error};
use serde::{Deserialize, Serialize};

/// ScoreSDE's linear VP SDE: β(t) = β0 + t(β1 − β0) on t ∈ [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearVp {
    pub beta_0: f64,
    pub beta_1: f64,
}

/// The cosine VP schedule of improved DDPM with s = 0.008, defined on t ∈ [0, 0.9946].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineVp {
    pub s: f64,
    log_alpha_0: f64,
}

/// A forward noising process x_t = α(t)·x0 + σ(t)·z.
#[derive(Debug, Clone, PartialEq)]
pub enum NoiseSchedule {
    /// `vp-linear`: ScoreSDE continuous VP, β0 = 0.1, β1 = 20, T = 1.
    VpLinear(LinearVp),
    /// `vp-discrete`: a DDPM training schedule of N betas, log α piecewise linear in t.
    VpDiscrete(DiscreteVp),
    /// `vp-cosine`: improved-DDPM cosine schedule, s = 0.008, T = 0.9946.
    VpCosine(CosineVp),
    /// `edm`: α = 1, σ = t (Karras et al. 2022), t ∈ [0.002, 80].
    Edm,
}

/// The names accepted by `--noise-schedule`.
pub const NOISE_SCHEDULE_NAMES: &str = "vp-linear, vp-discrete, vp-cosine, edm";

/// A noise schedule chosen by name (plus the beta schedule for `vp-discrete`), as it appears on
/// the command line and in dataset files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseScheduleSpec {
    pub name: NoiseScheduleName,
    /// Only meaningful for `vp-discrete`.
    #[serde(default)]
    pub betas: BetaSchedule,
}

/// The four schedule families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoiseScheduleName {
    #[serde(rename = "vp-linear")]
    VpLinear,
    #[serde(rename = "vp-discrete")]
    VpDiscrete,
    #[serde(rename = "vp-cosine")]
    VpCosine,
    #[serde(rename = "edm")]
    Edm,
}

impl NoiseScheduleName {
    /// Parses a `--noise-schedule` value.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "vp-linear" => Ok(Self::VpLinear),
            "vp-discrete" => Ok(Self::VpDiscrete),
            "vp-cosine" => Ok(Self::VpCosine),
            "edm" => Ok(Self::Edm),
            _ => Err(S3Error::UnknownName {
                kind: "noise schedule",
                name: name.to_string(),
                expected: NOISE_SCHEDULE_NAMES.to_string(),
            }),
        }
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VpLinear => "vp-linear",
            Self::VpDiscrete => "vp-discrete",
            Self::VpCosine => "vp-cosine",
            Self::Edm => "edm",
        }
    }
}

impl NoiseScheduleSpec {
    /// A spec for `name` with the default (linear) betas.
    pub fn new(name: NoiseScheduleName) -> Self {
        Self {
            name,
            betas: BetaSchedule::Linear,
        }
    }

    /// Builds the schedule.
    pub fn build(self) -> NoiseSchedule {
        match self.name {
            NoiseScheduleName::VpLinear => NoiseSchedule::vp_linear(),
            NoiseScheduleName::VpDiscrete => {
                NoiseSchedule::VpDiscrete(DiscreteVp::new(self.betas, 1000))
            }
            NoiseScheduleName::VpCosine => NoiseSchedule::vp_cosine(),
            NoiseScheduleName::Edm => NoiseSchedule::Edm,
        }
    }

    /// A human-readable label, e.g. `vp-discrete (scaled_linear betas)`.
    pub fn label(self) -> String {
        match self.name {
            NoiseScheduleName::VpDiscrete => {
                format!("vp-discrete ({} betas)", self.betas.as_str())
            }
            n => n.as_str().to_string(),
        }
    }
}

/// The smallest time of continuous VP schedules (ScoreSDE's training ε).
pub const CONTINUOUS_VP_T_FLOOR: f64 = 1e-5;

/// log(1 + e^x) without overflow.
fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// log α of a VP schedule with half-log-SNR λ: α² = 1 / (1 + e^{−2λ}).
pub fn vp_log_alpha_of_lambda(lambda: f64) -> f64 {
    -0.5 * softplus(-2.0 * lambda)
}

impl NoiseSchedule {
    /// ScoreSDE's linear VP schedule (β0 = 0.1, β1 = 20).
    pub fn vp_linear() -> Self {
        NoiseSchedule::VpLinear(LinearVp {
            beta_0: 0.1,
            beta_1: 20.0,
        })
    }

    /// The cosine VP schedule with s = 0.008.
    pub fn vp_cosine() -> Self {
        let s = 0.008;
        NoiseSchedule::VpCosine(CosineVp {
            s,
            log_alpha_0: (s / (1.0 + s) * std::f64::consts::FRAC_PI_2).cos().ln(),
        })
    }

    /// The schedule's family name.
    pub fn name(&self) -> &'static str {
        match self {
            NoiseSchedule::VpLinear(_) => "vp-linear",
            NoiseSchedule::VpDiscrete(_) => "vp-discrete",
            NoiseSchedule::VpCosine(_) => "vp-cosine",
            NoiseSchedule::Edm => "edm",
        }
    }

    /// Whether α² + σ² = 1 (variance preserving).
    pub fn is_vp(&self) -> bool {
        !matches!(self, NoiseSchedule::Edm)
    }

    /// The largest time the schedule defines (where sampling starts by default).
    pub fn t_max(&self) -> f64 {
        match self {
            NoiseSchedule::VpLinear(_) | NoiseSchedule::VpDiscrete(_) => 1.0,
            NoiseSchedule::VpCosine(_) => 0.9946,
            NoiseSchedule::Edm => 80.0,
        }
    }

    /// The default final time of a solve: 1e-3 (continuous VP), 1/N (discrete), 0.002 (EDM).
    pub fn t_min(&self) -> f64 {
        match self {
            NoiseSchedule::VpLinear(_) | NoiseSchedule::VpCosine(_) => 1e-3,
            NoiseSchedule::VpDiscrete(d) => 1.0 / d.len() as f64,
            NoiseSchedule::Edm => 0.002,
        }
    }

    /// The smallest time a solve may end at: where the schedule (and a model trained on it)
    /// is still defined. ScoreSDE trains continuous VP models down to 1e-5; a discrete
    /// schedule starts at its first training time 1/N; EDM models are trained down to
    /// σ = 0.002. Search spaces clamp their final-time ranges to [t_floor, t_max).
    pub fn t_floor(&self) -> f64 {
        match self {
            NoiseSchedule::VpLinear(_) | NoiseSchedule::VpCosine(_) => CONTINUOUS_VP_T_FLOOR,
            NoiseSchedule::VpDiscrete(_) | NoiseSchedule::Edm => self.t_min(),
        }
    }

    /// log α(t).
    pub fn log_alpha(&self, t: f64) -> f64 {
        match self {
            NoiseSchedule::VpLinear(p) => {
                -0.25 * t * t * (p.beta_1 - p.beta_0) - 0.5 * t * p.beta_0
            }
            NoiseSchedule::VpDiscrete(d) => d.log_alpha(t),
            NoiseSchedule::VpCosine(c) => {
                ((t + c.s) / (1.0 + c.s) * std::f64::consts::FRAC_PI_2)
                    .cos()
                    .ln()
                    - c.log_alpha_0
            }
            NoiseSchedule::Edm => 0.0,
        }
    }

    /// α(t).
    pub fn alpha(&self, t: f64) -> f64 {
        self.log_alpha(t).exp()
    }

    /// σ(t).
    pub fn sigma(&self, t: f64) -> f64 {
        match self {
            NoiseSchedule::Edm => t,
            _ => (-(2.0 * self.log_alpha(t)).exp_m1()).max(0.0).sqrt(),
        }
    }

    /// λ(t) = log α(t) − log σ(t) (half log-SNR); +∞ at σ = 0.
    pub fn lambda(&self, t: f64) -> f64 {
        match self {
            NoiseSchedule::Edm => -t.ln(),
            _ => {
                let la = self.log_alpha(t);
                la - 0.5 * (-(2.0 * la).exp_m1()).ln()
            }
        }
    }

    /// The exact inverse of [`NoiseSchedule::lambda`].
    pub fn t_of_lambda(&self, lambda: f64) -> f64 {
        match self {
            NoiseSchedule::VpLinear(p) => {
                let tmp = 2.0 * (p.beta_1 - p.beta_0) * softplus(-2.0 * lambda);
                let delta = p.beta_0 * p.beta_0 + tmp;
                tmp / (delta.sqrt() + p.beta_0) / (p.beta_1 - p.beta_0)
            }
            NoiseSchedule::VpDiscrete(d) => d.t_of_log_alpha(vp_log_alpha_of_lambda(lambda)),
            NoiseSchedule::VpCosine(c) => {
                let log_alpha = vp_log_alpha_of_lambda(lambda);
                (log_alpha + c.log_alpha_0).exp().acos() * 2.0 * (1.0 + c.s) / std::f64::consts::PI
                    - c.s
            }
            NoiseSchedule::Edm => (-lambda).exp(),
        }
    }

    /// σ/α, the noise level of the equivalent variance-exploding process (k-diffusion's σ).
    pub fn ve_sigma(&self, t: f64) -> f64 {
        if t == 0.0 {
            return 0.0;
        }
        (-self.lambda(t)).exp()
    }

    /// The time whose VE noise level σ/α equals `ve_sigma`.
    pub fn t_of_ve_sigma(&self, ve_sigma: f64) -> f64 {
        self.t_of_lambda(-ve_sigma.ln())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<NoiseSchedule> {
        vec![
            NoiseSchedule::vp_linear(),
            NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::Linear, 1000)),
            NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::ScaledLinear, 1000)),
            NoiseSchedule::vp_cosine(),
            NoiseSchedule::Edm,
        ]
    }

    #[test]
    fn inverse_lambda_round_trips_over_the_whole_range() {
        for ns in all() {
            let (lo, hi) = (ns.t_min(), ns.t_max());
            for i in 0..=200 {
                let t = lo + (hi - lo) * i as f64 / 200.0;
                let back = ns.t_of_lambda(ns.lambda(t));
                assert!(
                    (back - t).abs() <= 1e-9 * t.max(1.0),
                    "{}: t={t} back={back}",
                    ns.name()
                );
            }
        }
    }

    #[test]
    fn vp_schedules_preserve_variance_and_edm_is_identity() {
        for ns in all() {
            for &t in &[ns.t_min(), 0.3 * ns.t_max(), ns.t_max()] {
                let (a, s) = (ns.alpha(t), ns.sigma(t));
                if ns.is_vp() {
                    assert!((a * a + s * s - 1.0).abs() < 1e-12);
                } else {
                    assert_eq!((a, s), (1.0, t));
                }
                assert!((ns.lambda(t) - (a.ln() - s.ln())).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn the_floor_is_a_valid_end_time_below_t_min() {
        for ns in all() {
            let f = ns.t_floor();
            assert!(f > 0.0 && f <= ns.t_min(), "{}", ns.name());
            assert!(
                ns.lambda(f).is_finite() && ns.sigma(f) > 0.0,
                "{}",
                ns.name()
            );
        }
    }

    #[test]
    fn vp_linear_matches_scoresde_closed_form() {
        let ns = NoiseSchedule::vp_linear();
        // log α(1) = −(20 − 0.1)/4 − 0.1/2 = −5.025
        assert!((ns.log_alpha(1.0) + 5.025).abs() < 1e-12);
        assert!((ns.log_alpha(0.5) + (0.25 * 0.25 * 19.9 + 0.025)).abs() < 1e-12);
    }

    #[test]
    fn unknown_name_is_a_clear_error() {
        let e = NoiseScheduleName::parse("vp-quadratic")
            .unwrap_err()
            .to_string();
        assert!(e.contains("vp-quadratic") && e.contains("vp-linear"), "{e}");
    }
}

//! Noise schedules: α(t), σ(t), λ(t) = log α − log σ and the exact inverse t(λ).
//!
//! Time is continuous `f64` everywhere. `t = 0` is clean data (σ = 0 for the continuous VP
//! schedules, EDM and flow); a sampler treats a final target time of exactly 0 as "denoise".
//! `flow` reaches pure noise at t = 1 (α = 0, λ = −∞); the solver treats such a point as a
//! start only (see `SolverSchedule::validate_on`).

mod discrete;
mod flow;

pub use discrete::{BetaSchedule, DiscreteVp};
pub use flow::{FLOW_TRAIN_TIMESTEPS, FlowMatch};

use crate::error::{Result, S3Error};
use crate::names::Named;
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
    /// `flow`: α = 1 − t, σ = t (flow matching), t ∈ (0, 1], with diffusers' time shift.
    Flow(FlowMatch),
}

/// The time shift of a spec that gives none (no shift).
pub const DEFAULT_SHIFT: f64 = 1.0;

fn is_default_shift(shift: &f64) -> bool {
    *shift == DEFAULT_SHIFT
}

/// A noise schedule chosen by name (plus the beta schedule for `vp-discrete` and the time
/// shift for `flow`), as it appears on the command line, in dataset files and model configs:
/// `{"name": "vp-discrete", "betas": "linear"}`, `{"name": "flow", "shift": 3.0}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawSpec")]
pub struct NoiseScheduleSpec {
    pub name: NoiseScheduleName,
    /// Only meaningful for `vp-discrete`.
    #[serde(default)]
    pub betas: BetaSchedule,
    /// diffusers' time shift; only `flow` takes one (finite, > 0). Omitted when 1 (and 1
    /// when omitted).
    #[serde(skip_serializing_if = "is_default_shift")]
    pub shift: f64,
}

/// The JSON form of a spec before its values are checked.
#[derive(Deserialize)]
struct RawSpec {
    name: NoiseScheduleName,
    #[serde(default)]
    betas: BetaSchedule,
    #[serde(default)]
    shift: Option<f64>,
}

impl TryFrom<RawSpec> for NoiseScheduleSpec {
    type Error = S3Error;

    fn try_from(raw: RawSpec) -> Result<Self> {
        let spec = NoiseScheduleSpec {
            name: raw.name,
            betas: raw.betas,
            shift: DEFAULT_SHIFT,
        };
        match raw.shift {
            Some(shift) => spec.with_shift(shift),
            None => Ok(spec),
        }
    }
}

/// The schedule families.
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
    #[serde(rename = "flow")]
    Flow,
}

impl Named for NoiseScheduleName {
    const KIND: &'static str = "noise schedule";
    const ALL: &'static [Self] = &[
        Self::VpLinear,
        Self::VpDiscrete,
        Self::VpCosine,
        Self::Edm,
        Self::Flow,
    ];
}

impl NoiseScheduleName {
    /// Parses a `--noise-schedule` value.
    pub fn parse(name: &str) -> Result<Self> {
        <Self as Named>::from_name(name)
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        self.name()
    }
}

impl NoiseScheduleSpec {
    /// A spec for `name` with the default (linear) betas and no shift.
    pub fn new(name: NoiseScheduleName) -> Self {
        Self {
            name,
            betas: BetaSchedule::Linear,
            shift: DEFAULT_SHIFT,
        }
    }

    /// The same spec under another family name; the shift goes back to 1 unless the new
    /// family is `flow` (only flow has one), the betas are kept.
    pub fn with_name(self, name: NoiseScheduleName) -> Self {
        Self {
            name,
            shift: if name == NoiseScheduleName::Flow {
                self.shift
            } else {
                DEFAULT_SHIFT
            },
            ..self
        }
    }

    /// The same spec with time shift `shift`: an error unless the family is `flow` and the
    /// shift is finite and positive.
    pub fn with_shift(self, shift: f64) -> Result<Self> {
        if self.name != NoiseScheduleName::Flow {
            return Err(S3Error::field(
                format!("noise schedule {}", self.name.as_str()),
                "shift",
                "only the flow noise schedule takes a time shift",
            ));
        }
        FlowMatch::new(shift)?;
        Ok(Self { shift, ..self })
    }

    /// Reads a spec from a JSON value: a family name (`"flow"`) or an object
    /// (`{"name": "flow", "shift": 3.0}`, `{"name": "vp-discrete", "betas": "scaled_linear"}`).
    /// The error says what was wrong, for the caller to put after the file and field.
    pub fn from_json_value(v: &serde_json::Value) -> Result<Self> {
        match v {
            serde_json::Value::String(name) => Ok(Self::new(NoiseScheduleName::parse(name)?)),
            serde_json::Value::Object(_) => serde_json::from_value(v.clone()).map_err(|e| {
                S3Error::field(
                    "noise schedule",
                    "noise_schedule",
                    format!("expected a name or {{\"name\", \"betas\"?, \"shift\"?}}: {e}"),
                )
            }),
            other => Err(S3Error::field(
                "noise schedule",
                "noise_schedule",
                format!(
                    "expected a name such as \"flow\" or an object {{\"name\": \"flow\", \"shift\": 3.0}}, got {other}"
                ),
            )),
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
            NoiseScheduleName::Flow => NoiseSchedule::Flow(
                FlowMatch::new(self.shift).expect("specs hold only valid shifts"),
            ),
        }
    }

    /// A human-readable label, e.g. `vp-discrete (scaled_linear betas)` or `flow (shift 3)`.
    pub fn label(self) -> String {
        match self.name {
            NoiseScheduleName::VpDiscrete => {
                format!("vp-discrete ({} betas)", self.betas.as_str())
            }
            NoiseScheduleName::Flow if self.shift != DEFAULT_SHIFT => {
                format!("flow (shift {})", self.shift)
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
            NoiseSchedule::Flow(_) => "flow",
        }
    }

    /// Whether α² + σ² = 1 (variance preserving).
    pub fn is_vp(&self) -> bool {
        !matches!(self, NoiseSchedule::Edm | NoiseSchedule::Flow(_))
    }

    /// The largest time the schedule defines (where sampling starts by default). For `flow`
    /// it is t = 1, pure noise, where diffusers' `FlowMatchEulerDiscreteScheduler` starts.
    pub fn t_max(&self) -> f64 {
        match self {
            NoiseSchedule::VpLinear(_) | NoiseSchedule::VpDiscrete(_) | NoiseSchedule::Flow(_) => {
                1.0
            }
            NoiseSchedule::VpCosine(_) => 0.9946,
            NoiseSchedule::Edm => 80.0,
        }
    }

    /// The default final time of a solve: 1e-3 (continuous VP), 1/N (discrete), 0.002 (EDM),
    /// the smallest training sigma shift(1/1000) (flow).
    pub fn t_min(&self) -> f64 {
        match self {
            NoiseSchedule::VpLinear(_) | NoiseSchedule::VpCosine(_) => 1e-3,
            NoiseSchedule::VpDiscrete(d) => 1.0 / d.len() as f64,
            NoiseSchedule::Edm => 0.002,
            NoiseSchedule::Flow(f) => f.sigma_min(),
        }
    }

    /// The smallest time a solve may end at: where the schedule (and a model trained on it)
    /// is still defined. ScoreSDE trains continuous VP models down to 1e-5; a discrete
    /// schedule starts at its first training time 1/N; EDM models are trained down to
    /// σ = 0.002; flow models down to their smallest training sigma shift(1/1000).
    /// Search spaces clamp their final-time ranges to [t_floor, t_max).
    pub fn t_floor(&self) -> f64 {
        match self {
            NoiseSchedule::VpLinear(_) | NoiseSchedule::VpCosine(_) => CONTINUOUS_VP_T_FLOOR,
            NoiseSchedule::VpDiscrete(_) | NoiseSchedule::Edm | NoiseSchedule::Flow(_) => {
                self.t_min()
            }
        }
    }

    /// Whether t is pure noise (α = 0, λ = −∞): `flow` at t = 1. A solve may start there
    /// (with an order-1 step) but no finite difference in λ may use such a point.
    pub fn is_pure_noise(&self, t: f64) -> bool {
        t > 0.0 && self.lambda(t) == f64::NEG_INFINITY
    }

    /// A finite λ at which grids uniform in λ (and normalised λ coordinates) start: λ(t_start),
    /// or, where t_start is pure noise (λ = −∞: flow at t = 1), the mirror image −λ(t_end) of
    /// the end — for flow, λ at t = 1 − t_end. Callers check that it lies below λ(t_end).
    pub fn finite_lambda_start(&self, t_start: f64, t_end: f64) -> f64 {
        let l = self.lambda(t_start);
        if l == f64::NEG_INFINITY {
            -self.lambda(t_end)
        } else {
            l
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
            NoiseSchedule::Flow(f) => f.log_alpha(t),
        }
    }

    /// α(t).
    pub fn alpha(&self, t: f64) -> f64 {
        match self {
            NoiseSchedule::Flow(_) => 1.0 - t,
            _ => self.log_alpha(t).exp(),
        }
    }

    /// σ(t).
    pub fn sigma(&self, t: f64) -> f64 {
        match self {
            NoiseSchedule::Edm | NoiseSchedule::Flow(_) => t,
            _ => (-(2.0 * self.log_alpha(t)).exp_m1()).max(0.0).sqrt(),
        }
    }

    /// λ(t) = log α(t) − log σ(t) (half log-SNR); +∞ at σ = 0, −∞ at α = 0 (flow at t = 1).
    pub fn lambda(&self, t: f64) -> f64 {
        match self {
            NoiseSchedule::Edm => -t.ln(),
            NoiseSchedule::Flow(f) => f.lambda(t),
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
            NoiseSchedule::Flow(f) => f.t_of_lambda(lambda),
        }
    }

    /// σ/α, the noise level of the equivalent variance-exploding process (k-diffusion's σ);
    /// +∞ at pure noise.
    pub fn ve_sigma(&self, t: f64) -> f64 {
        if t == 0.0 {
            return 0.0;
        }
        (-self.lambda(t)).exp()
    }

    /// The noise level that sigma-list tools take for time t: σ/α (k-diffusion's and
    /// ComfyUI's σ for VP models, diffusers' Euler sigmas), EDM's σ = t exactly, and for `flow`
    /// the flow σ = t that ComfyUI's and diffusers' flow samplers use (x = (1 − σ)·x0 + σ·ε);
    /// 0 at t = 0.
    pub fn sampler_sigma(&self, t: f64) -> f64 {
        match self {
            NoiseSchedule::Edm | NoiseSchedule::Flow(_) => t,
            _ => self.ve_sigma(t),
        }
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
            NoiseSchedule::Flow(FlowMatch::new(1.0).unwrap()),
            NoiseSchedule::Flow(FlowMatch::new(3.0).unwrap()),
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
                } else if let NoiseSchedule::Flow(_) = ns {
                    assert_eq!((a, s), (1.0 - t, t));
                } else {
                    assert_eq!((a, s), (1.0, t));
                }
                let (l, want) = (ns.lambda(t), a.ln() - s.ln());
                assert!(l == want || (l - want).abs() < 1e-9, "{}: t={t}", ns.name());
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
    fn flow_starts_at_pure_noise_and_ends_at_the_smallest_training_sigma() {
        let ns = NoiseSchedule::Flow(FlowMatch::new(3.0).unwrap());
        assert_eq!((ns.t_max(), ns.alpha(1.0), ns.sigma(1.0)), (1.0, 0.0, 1.0));
        assert!(ns.is_pure_noise(1.0) && !ns.is_pure_noise(0.999) && !ns.is_pure_noise(0.0));
        assert_eq!(ns.t_min(), 3.0 * 1e-3 / (1.0 + 2.0 * 1e-3));
        assert_eq!(ns.t_floor(), ns.t_min());
        // λ-grids from pure noise start at the mirror image of the end: t = 1 − t_end.
        let l0 = ns.finite_lambda_start(1.0, 0.01);
        assert!((ns.t_of_lambda(l0) - 0.99).abs() < 1e-12);
        assert_eq!(ns.finite_lambda_start(0.8, 0.01), ns.lambda(0.8));
        assert_eq!(ns.sampler_sigma(1.0), 1.0);
        assert_eq!(ns.ve_sigma(1.0), f64::INFINITY);
        assert!(!NoiseSchedule::vp_linear().is_pure_noise(1.0));
    }

    #[test]
    fn specs_read_names_and_objects_and_check_the_shift() {
        use serde_json::json;
        let flow =
            NoiseScheduleSpec::from_json_value(&json!({"name": "flow", "shift": 3.0})).unwrap();
        assert_eq!((flow.name, flow.shift), (NoiseScheduleName::Flow, 3.0));
        assert_eq!(flow.label(), "flow (shift 3)");
        assert_eq!(flow.build().t_min(), 3.0 * 1e-3 / 1.002);
        let plain = NoiseScheduleSpec::from_json_value(&json!("flow")).unwrap();
        assert_eq!((plain.shift, plain.label().as_str()), (1.0, "flow"));
        let d = NoiseScheduleSpec::from_json_value(
            &json!({"name": "vp-discrete", "betas": "scaled_linear"}),
        )
        .unwrap();
        assert_eq!(d.betas, BetaSchedule::ScaledLinear);
        // The shift is written only when it is not 1, so older records read back unchanged.
        let text =
            serde_json::to_string(&NoiseScheduleSpec::new(NoiseScheduleName::VpLinear)).unwrap();
        assert!(!text.contains("shift"), "{text}");
        let back: NoiseScheduleSpec =
            serde_json::from_str(&serde_json::to_string(&flow).unwrap()).unwrap();
        assert_eq!(back, flow);
        for (bad, what) in [
            (json!({"name": "flow", "shift": -1.0}), "shift"),
            (json!({"name": "vp-linear", "shift": 3.0}), "only the flow"),
            (json!({"name": "flux"}), "flux"),
            (json!(3), "expected a name"),
        ] {
            let e = NoiseScheduleSpec::from_json_value(&bad)
                .unwrap_err()
                .to_string();
            assert!(e.contains(what), "{e}");
        }
        // Leaving flow drops the shift; only flow takes one.
        let vp = flow.with_name(NoiseScheduleName::VpLinear);
        assert_eq!(vp.shift, 1.0);
        assert!(vp.with_shift(2.0).is_err());
    }

    #[test]
    fn unknown_name_is_a_clear_error() {
        let e = NoiseScheduleName::parse("vp-quadratic")
            .unwrap_err()
            .to_string();
        assert!(e.contains("vp-quadratic") && e.contains("vp-linear"), "{e}");
    }
}

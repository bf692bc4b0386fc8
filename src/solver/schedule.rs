//! The solver schedule: every per-step decision of a few-step sampler, explicit and versioned.
//!
//! A schedule with N steps has N + 1 strictly decreasing timesteps t_0 > … > t_N. Step i goes
//! from t_i to t_{i+1}, always starting from the newest history point (multistep form). A final
//! timestep of exactly 0 means "denoise": that last step returns the newest x0 prediction.
//! The model is called at t_0 (unless an analytical first step replaces that call) and after
//! every step but the last, so NFE = N − [afs ≠ none].

use crate::error::{Result, S3Error};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The value of the `format` field.
pub const SCHEDULE_FORMAT: &str = "s3-schedule";
/// The schema version this build reads and writes.
pub const SCHEDULE_VERSION: u32 = 1;
/// Relative slack on the schedule's end T when checking times, for values written in decimal.
const T_MAX_SLACK: f64 = 1e-9;
/// The highest Taylor order a step may use.
pub const MAX_ORDER: usize = 4;

/// Which model output a step's Taylor expansion is built on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Prediction {
    /// Expand the noise prediction ε (DPM-Solver, DEIS).
    Noise,
    /// Expand the data prediction x0 (DPM-Solver++, UniPC's default).
    Data,
}

/// Analytical first step: replaces the model call at t_0 (saves one NFE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Afs {
    /// Call the model at t_0.
    #[default]
    None,
    /// Take x0(x_T) = 0, hence ε = x_T/σ_T.
    ZeroX0,
    /// Take x0(x_T) = the data mean, hence ε = (x_T − α_T·mean)/σ_T.
    AverageX0,
}

/// A multiplier r(h) applied to an estimated derivative ("relaxation" in USF). With data
/// prediction the named types are evaluated at −h, as in USF; `linear` and `scale` are not.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Relaxation {
    /// r = 1.
    #[default]
    #[serde(rename = "none")]
    None,
    /// r = 1 + c·h.
    #[serde(rename = "linear")]
    Linear { c: f64 },
    /// r = k (a constant; DPM-Solver's third-order multistep uses k = 0.5 on F″).
    #[serde(rename = "scale")]
    Scale { k: f64 },
    /// r = (h/2)(e^h − 1)/(e^h − 1 − h): DPM-Solver-2's midpoint form, equal to UniPC's B2(h).
    #[serde(rename = "dpmsolver-2")]
    DpmSolver2,
    /// r = (h²/2)/(e^h − 1 − h): UniPC with B1(h) = h.
    #[serde(rename = "unipc-bh1")]
    UnipcBh1,
    /// r = (h/2)(e^h − 1)/(e^h − 1 − h): UniPC with B2(h) = e^h − 1.
    #[serde(rename = "unipc-bh2")]
    UnipcBh2,
    /// r = 1 + (e^h − 1)/2.
    #[serde(rename = "0.5exp")]
    HalfExp,
    /// r = 1 − (e^h − 1)/2.
    #[serde(rename = "-0.5exp")]
    NegHalfExp,
}

/// How one derivative F^(d) at the start point is estimated: a finite-difference (Taylor
/// system) solve in λ over the listed history points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Derivative {
    /// History points as negative indices (−1 is the newest point). The d-th derivative needs
    /// at least d points; fewer than the Taylor order minus one is USF's "low-order" estimate.
    pub points: Vec<i32>,
    #[serde(default)]
    pub relaxation: Relaxation,
}

/// A corrector that reuses the model call at the step's target (no extra NFE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Corrector {
    /// USF's pseudo corrector (UniC-like): after the model call at t_{i+1}, redo the step from
    /// t_i (history point −2) with this order and these derivatives, whose points may include
    /// the new point −1. Only x is replaced; the stored model outputs stay those of the
    /// uncorrected x, as in UniPC.
    #[serde(rename = "pseudo")]
    Pseudo {
        order: usize,
        derivatives: Vec<Derivative>,
    },
}

/// All decisions of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub prediction: Prediction,
    /// Taylor order K (1–4).
    pub order: usize,
    /// K − 1 entries: derivative d = 1 … K − 1.
    #[serde(default)]
    pub derivatives: Vec<Derivative>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrector: Option<Corrector>,
}

/// A complete per-step solver schedule (the JSON document `format: "s3-schedule"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SolverSchedule {
    pub format: String,
    pub version: u32,
    /// A label, e.g. `dpm-solver++(2M) logSNR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The number of model calls; checked against the count implied by the decisions.
    pub nfe: usize,
    #[serde(default)]
    pub afs: Afs,
    /// t_0 > t_1 > … > t_N (continuous time; a final 0 means denoise).
    pub timesteps: Vec<f64>,
    pub steps: Vec<Step>,
    /// Informational: the noise schedule the timesteps were written for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise_schedule: Option<String>,
    /// Informational, written on save and ignored on load: the plain noise levels of the
    /// timesteps (ending in 0 when the schedule denoises) as sigma-list tools take them — σ/α
    /// (k-diffusion) for VP and EDM, the flow σ = t for flow
    /// ([`crate::noise::NoiseSchedule::sampler_sigma`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigmas: Option<Vec<f64>>,
    /// Optional per-step offsets δ_i (one per step, i = 0 … N − 1) to the time fed to the
    /// model: the call at `timesteps[i]` asks the model for its noise prediction at
    /// t_i + δ_i, while the solver keeps t_i for α, σ, λ and converts that ε to x0 at t_i
    /// (the "time shift" of LD3 and the exposure-bias literature). Found by continuous
    /// refinement; absent means all zero. An offset where no call is made (t_0 under an
    /// analytical first step) must be 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_offsets: Option<Vec<f64>>,
}

impl Derivative {
    /// A derivative over `points` without relaxation.
    pub fn new(points: Vec<i32>) -> Self {
        Self {
            points,
            relaxation: Relaxation::None,
        }
    }
}

impl Corrector {
    /// The corrector's Taylor order.
    pub fn order(&self) -> usize {
        match self {
            Corrector::Pseudo { order, .. } => *order,
        }
    }

    /// The corrector's derivative estimates.
    pub fn derivatives(&self) -> &[Derivative] {
        match self {
            Corrector::Pseudo { derivatives, .. } => derivatives,
        }
    }

    /// USF's rule for a pseudo corrector built from a predictor: order K + 1, each predictor
    /// derivative's points shifted back by one with the new point −1 appended, and one extra
    /// derivative over the same points as the last one (over [−1] for a first-order
    /// predictor, which gives UniC-1). Relaxation is dropped.
    pub fn from_predictor(step: &Step) -> Self {
        let shifted = |d: &Derivative| {
            let mut points: Vec<i32> = d.points.iter().map(|p| p - 1).collect();
            points.push(-1);
            Derivative::new(points)
        };
        let mut derivatives: Vec<Derivative> = step.derivatives.iter().map(shifted).collect();
        // The last shifted derivative has ≥ K points, enough for derivative K as well.
        let extra = derivatives
            .last()
            .map(|d| d.points.clone())
            .unwrap_or_else(|| vec![-1]);
        derivatives.push(Derivative::new(extra));
        Corrector::Pseudo {
            order: step.order + 1,
            derivatives,
        }
    }
}

impl Relaxation {
    /// r(h) for a step of size h > 0 in λ, with `data` prediction using −h for named types.
    pub fn factor(&self, h: f64, data: bool) -> f64 {
        let hr = if data { -h } else { h };
        // e^x − 1 − x = x² φ2(x), accurate for small x.
        let em1_minus = |x: f64| x * x * super::phi::phi(2, x);
        match *self {
            Relaxation::None => 1.0,
            Relaxation::Linear { c } => 1.0 + c * h,
            Relaxation::Scale { k } => k,
            Relaxation::DpmSolver2 | Relaxation::UnipcBh2 => 0.5 * hr * hr.exp_m1() / em1_minus(hr),
            Relaxation::UnipcBh1 => 0.5 * hr * hr / em1_minus(hr),
            Relaxation::HalfExp => 1.0 + 0.5 * hr.exp_m1(),
            Relaxation::NegHalfExp => 1.0 - 0.5 * hr.exp_m1(),
        }
    }
}

impl SolverSchedule {
    /// An empty-named schedule with the current format and version; `nfe` is computed.
    pub fn new(afs: Afs, timesteps: Vec<f64>, steps: Vec<Step>) -> Self {
        let mut s = Self {
            format: SCHEDULE_FORMAT.to_string(),
            version: SCHEDULE_VERSION,
            name: None,
            nfe: 0,
            afs,
            timesteps,
            steps,
            noise_schedule: None,
            sigmas: None,
            time_offsets: None,
        };
        s.nfe = s.counted_nfe();
        s
    }

    /// Sets the label.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The NFE implied by the decisions: one call at t_0 unless AFS, one after each step but
    /// the last, and one more if the last step had a corrector (which `validate` forbids).
    pub fn counted_nfe(&self) -> usize {
        let n = self.steps.len();
        let first = usize::from(self.afs == Afs::None);
        let last_corrector = self.steps.last().is_some_and(|s| s.corrector.is_some());
        first + n.saturating_sub(1) + usize::from(last_corrector)
    }

    /// The offset δ_i to the model's time at `timesteps[i]` (0 without offsets).
    pub fn time_offset(&self, i: usize) -> f64 {
        self.time_offsets
            .as_ref()
            .and_then(|o| o.get(i).copied())
            .unwrap_or(0.0)
    }

    /// The time the model is told at `timesteps[i]`: t_i + δ_i.
    pub fn model_time(&self, i: usize) -> f64 {
        self.timesteps[i] + self.time_offset(i)
    }

    /// Whether any time offset is non-zero.
    pub fn has_time_offsets(&self) -> bool {
        self.time_offsets
            .as_ref()
            .is_some_and(|o| o.iter().any(|&d| d != 0.0))
    }

    /// Whether the last step denoises (final timestep 0).
    pub fn denoises(&self) -> bool {
        self.timesteps.last() == Some(&0.0)
    }

    /// The largest history depth any step reads (predictor: from −1; corrector: from −2).
    pub fn history_depth(&self) -> usize {
        let mut depth = 2;
        for s in &self.steps {
            let ders = s
                .derivatives
                .iter()
                .chain(s.corrector.iter().flat_map(|c| c.derivatives().iter()));
            for d in ders {
                for &p in &d.points {
                    depth = depth.max(p.unsigned_abs() as usize);
                }
            }
        }
        depth
    }

    /// Checks every rule; the error names the step and the rule broken.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(S3Error::InvalidSchedule(m));
        if self.format != SCHEDULE_FORMAT {
            return bad(format!(
                "field `format` is {:?}; expected {SCHEDULE_FORMAT:?}",
                self.format
            ));
        }
        if self.version != SCHEDULE_VERSION {
            return bad(format!(
                "field `version` is {}; this build reads version {SCHEDULE_VERSION}",
                self.version
            ));
        }
        let n = self.steps.len();
        if n == 0 {
            return bad("field `steps` is empty; a schedule needs at least one step".into());
        }
        if self.timesteps.len() != n + 1 {
            return bad(format!(
                "field `timesteps` has {} values for {n} steps; expected {}",
                self.timesteps.len(),
                n + 1
            ));
        }
        for (i, t) in self.timesteps.iter().enumerate() {
            if !t.is_finite() || *t < 0.0 || (*t == 0.0 && i != n) {
                return bad(format!(
                    "timesteps[{i}] = {t}; expected a finite positive time (only the last may be 0, meaning denoise)"
                ));
            }
        }
        for (i, w) in self.timesteps.windows(2).enumerate() {
            if w[1] >= w[0] {
                return bad(format!(
                    "timesteps must strictly decrease: timesteps[{}] = {} is not below timesteps[{i}] = {}",
                    i + 1,
                    w[1],
                    w[0]
                ));
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            self.validate_step(i, step)?;
        }
        self.validate_offsets()?;
        let counted = self.counted_nfe();
        if counted == 0 {
            return bad("the schedule never calls the model (NFE 0)".into());
        }
        if self.nfe != counted {
            return bad(format!(
                "field `nfe` is {} but the decisions make {counted} model calls ({n} steps{})",
                self.nfe,
                if self.afs != Afs::None {
                    ", one saved by the analytical first step"
                } else {
                    ""
                }
            ));
        }
        Ok(())
    }

    /// [`SolverSchedule::validate`] plus the rules that depend on the noise schedule: the
    /// first time lies within `ns` (t_0 ≤ T), every positive time has a finite log-SNR except
    /// a pure-noise start (α = 0, λ = −∞: flow at t = 1), and a pure-noise t_0 only starts the
    /// first step — that step takes no corrector (it would redo the step from t_0 with
    /// finite differences) and no later derivative or corrector uses t_0 as a point, since
    /// divided differences in λ are undefined at λ = −∞.
    pub fn validate_on(&self, ns: &crate::noise::NoiseSchedule) -> Result<()> {
        self.validate()?;
        let bad = |m: String| Err(S3Error::InvalidSchedule(m));
        let t_max = ns.t_max();
        if self.timesteps[0] > t_max * (1.0 + T_MAX_SLACK) {
            return bad(format!(
                "timesteps[0] = {} is beyond the {} schedule's end T = {t_max}",
                self.timesteps[0],
                ns.name()
            ));
        }
        let pure_start = ns.is_pure_noise(self.timesteps[0]);
        for (i, &t) in self.timesteps.iter().enumerate() {
            if t > 0.0 && !(i == 0 && pure_start) && !ns.lambda(t).is_finite() {
                return bad(format!(
                    "timesteps[{i}] = {t} has no finite log-SNR under {}",
                    ns.name()
                ));
            }
        }
        self.validate_offsets_on(ns, pure_start)?;
        if !pure_start {
            return Ok(());
        }
        let t0 = self.timesteps[0];
        let why = format!(
            "t_0 = {t0} is pure noise under {} (α = 0, λ = −∞), where finite differences in λ are undefined",
            ns.name()
        );
        if self.steps[0].corrector.is_some() {
            return bad(format!(
                "step 0: a corrector would redo the step from t_0 with finite differences through it; {why}, so the first step takes no corrector"
            ));
        }
        for (i, step) in self.steps.iter().enumerate().skip(1) {
            // t_0 is history point −(i + 1) before step i and −(i + 2) after its model call.
            let p0 = -(i as i32 + 1);
            let uses = |ders: &[Derivative], p: i32| {
                ders.iter()
                    .enumerate()
                    .find(|(_, d)| d.points.contains(&p))
                    .map(|(k, _)| k + 1)
            };
            if let Some(d) = uses(&step.derivatives, p0) {
                return bad(format!(
                    "step {i}: predictor: derivative {d} uses point {p0}; {why}"
                ));
            }
            if let Some(c) = &step.corrector
                && let Some(d) = uses(c.derivatives(), p0 - 1)
            {
                return bad(format!(
                    "step {i}: corrector: derivative {d} uses point {}; {why}",
                    p0 - 1
                ));
            }
        }
        Ok(())
    }

    /// The rules of `time_offsets` that need no noise schedule: one finite value per step,
    /// a positive model time, and 0 where no model call is made.
    fn validate_offsets(&self) -> Result<()> {
        let Some(offsets) = &self.time_offsets else {
            return Ok(());
        };
        let bad = |m: String| {
            Err(S3Error::InvalidSchedule(format!(
                "field `time_offsets`: {m}"
            )))
        };
        if offsets.len() != self.steps.len() {
            return bad(format!(
                "{} values for {} steps; expected one per step",
                offsets.len(),
                self.steps.len()
            ));
        }
        for (i, &d) in offsets.iter().enumerate() {
            let t = self.timesteps[i];
            if !d.is_finite() || t + d <= 0.0 {
                return bad(format!(
                    "time_offsets[{i}] = {d} gives the model time {} at timesteps[{i}] = {t}; expected a finite offset with a positive model time",
                    t + d
                ));
            }
        }
        if self.afs != Afs::None && offsets[0] != 0.0 {
            return bad(format!(
                "time_offsets[0] = {}, but the analytical first step makes no model call at t_0; expected 0",
                offsets[0]
            ));
        }
        Ok(())
    }

    /// The rules of `time_offsets` under `ns`: every model time lies within the schedule
    /// (≤ T, finite log-SNR), and a pure-noise t_0 takes no offset (its x0 is the model's).
    fn validate_offsets_on(
        &self,
        ns: &crate::noise::NoiseSchedule,
        pure_start: bool,
    ) -> Result<()> {
        if !self.has_time_offsets() {
            return Ok(());
        }
        let bad = |m: String| {
            Err(S3Error::InvalidSchedule(format!(
                "field `time_offsets`: {m}"
            )))
        };
        if pure_start && self.time_offset(0) != 0.0 {
            return bad(format!(
                "time_offsets[0] = {}, but t_0 is pure noise under {} (α = 0), where x0 cannot be converted from a shifted ε; expected 0",
                self.time_offset(0),
                ns.name()
            ));
        }
        // A pure-noise t_0 keeps δ_0 = 0 (checked above) and its λ = −∞ is allowed there.
        for i in usize::from(pure_start)..self.steps.len() {
            let m = self.model_time(i);
            if m > ns.t_max() * (1.0 + T_MAX_SLACK) || !ns.lambda(m).is_finite() {
                return bad(format!(
                    "time_offsets[{i}] = {} puts the model time {m} outside the {} schedule (0, {}] or where its log-SNR is not finite",
                    self.time_offset(i),
                    ns.name(),
                    ns.t_max()
                ));
            }
        }
        Ok(())
    }

    fn validate_step(&self, i: usize, step: &Step) -> Result<()> {
        let bad = |m: String| Err(S3Error::InvalidSchedule(format!("step {i}: {m}")));
        let last = i + 1 == self.steps.len();
        if !(1..=MAX_ORDER).contains(&step.order) {
            return bad(format!("order {} is outside 1..={MAX_ORDER}", step.order));
        }
        if step.order > i + 1 {
            return bad(format!(
                "order {} needs {} history points but only {} exist before step {i} (order_i ≤ i + 1)",
                step.order,
                step.order,
                i + 1
            ));
        }
        // Before step i the history holds i + 1 points; the start point is −1.
        check_derivatives(step.order, &step.derivatives, i + 1, -1)
            .or_else(|m| bad(format!("predictor: {m}")))?;
        if last && self.denoises() && step.order != 1 {
            return bad(format!(
                "the final step denoises (timestep 0) and must have order 1, got {}",
                step.order
            ));
        }
        if let Some(c) = &step.corrector {
            if last {
                return bad(
                    "the last step cannot have a corrector (it would need one more model call)"
                        .into(),
                );
            }
            if !(1..=MAX_ORDER + 1).contains(&c.order()) {
                return bad(format!(
                    "corrector order {} is outside 1..={}",
                    c.order(),
                    MAX_ORDER + 1
                ));
            }
            // After the model call at t_{i+1} the history holds i + 2 points; start is −2.
            check_derivatives(c.order(), c.derivatives(), i + 2, -2)
                .or_else(|m| bad(format!("corrector: {m}")))?;
        }
        Ok(())
    }

    /// Reads and validates a schedule file; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| S3Error::io(path, e))?;
        let s: SolverSchedule = serde_json::from_str(&text).map_err(|e| S3Error::Json {
            path: path.into(),
            message: format!("not a valid s3 schedule: {e}"),
        })?;
        s.validate().map_err(|e| S3Error::Json {
            path: path.into(),
            message: e.to_string(),
        })?;
        Ok(s)
    }

    /// Writes the schedule as pretty JSON, adding the plain σ list for `ns`.
    pub fn save(&self, path: &Path, ns: &crate::noise::NoiseSchedule) -> Result<()> {
        let text = self.to_json(ns);
        std::fs::write(path, text).map_err(|e| S3Error::io(path, e))
    }

    /// The JSON text, with the informational noise-schedule name and σ list for `ns` filled in.
    pub fn to_json(&self, ns: &crate::noise::NoiseSchedule) -> String {
        let mut s = self.clone();
        s.noise_schedule = Some(ns.name().to_string());
        s.sigmas = Some(
            self.timesteps
                .iter()
                .map(|&t| ns.sampler_sigma(t))
                .collect(),
        );
        serde_json::to_string_pretty(&s).expect("schedules serialise") + "\n"
    }
}

/// Checks `order − 1` derivative estimates over a history of `available` points where the
/// start point is `start` (−1 for a predictor, −2 for a corrector).
fn check_derivatives(
    order: usize,
    derivatives: &[Derivative],
    available: usize,
    start: i32,
) -> std::result::Result<(), String> {
    if derivatives.len() != order - 1 {
        return Err(format!(
            "order {order} needs {} derivative entries (d = 1..{}), got {}",
            order - 1,
            order - 1,
            derivatives.len()
        ));
    }
    for (k, d) in derivatives.iter().enumerate() {
        let deriv = k + 1;
        if d.points.len() < deriv {
            return Err(format!(
                "derivative {deriv} uses {} point(s); the {deriv}-th derivative needs at least {deriv}",
                d.points.len()
            ));
        }
        for (j, &p) in d.points.iter().enumerate() {
            if p >= 0 || p.unsigned_abs() as usize > available {
                return Err(format!(
                    "derivative {deriv}: point {p} is not in the history ({available} points: -1 … -{available})"
                ));
            }
            if p == start {
                return Err(format!(
                    "derivative {deriv}: point {p} is the start point itself"
                ));
            }
            if d.points[..j].contains(&p) {
                return Err(format!("derivative {deriv}: point {p} is listed twice"));
            }
        }
        let relax_ok = match d.relaxation {
            Relaxation::Linear { c } => c.is_finite(),
            Relaxation::Scale { k } => k.is_finite(),
            _ => true,
        };
        if !relax_ok {
            return Err(format!(
                "derivative {deriv}: relaxation coefficient is not finite"
            ));
        }
    }
    Ok(())
}

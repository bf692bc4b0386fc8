//! The continuous parameters of one schedule as a flat vector θ, and back.
//!
//! The discrete decisions (prediction, orders, derivative points, correctors) stay as the
//! parent has them; θ holds
//! - the timesteps after t_0 as log-gaps in λ, g_i = ln(λ_i − λ_{i−1}), so every θ keeps
//!   them strictly ordered; the last positive time is t_end, refined with the rest (t_0 stays:
//!   the cheap tier solves from T). From a pure-noise t_0 (λ = −∞) λ_1 itself is the entry;
//! - a coefficient per derivative estimate: `linear` c and `scale` k as they are, an
//!   unrelaxed estimate (r = 1) as `scale` with k = 1, and a named relaxation as `scale` with
//!   its factor at the parent's step, so θ_0 is the parent exactly;
//! - a time offset per model call, as a fraction of the parent's step from that time
//!   (δ_i = θ·(t_i − t_{i+1})), so the entries share one scale.
//!
//! θ_0 always reproduces the parent; [`Params::schedule`] returns None for a θ that gives no
//! valid schedule (a time outside the noise schedule, a non-finite value).

use crate::noise::NoiseSchedule;
use crate::solver::{Afs, Derivative, Prediction, Relaxation, SolverSchedule};
use serde::{Deserialize, Serialize};

/// Which continuous parameters are refined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Knobs {
    /// The timesteps after t_0, t_end included.
    pub times: bool,
    /// The derivative estimates' relaxation coefficients.
    pub coefficients: bool,
    /// The time fed to the model at each call.
    pub offsets: bool,
}

impl Knobs {
    /// Everything.
    pub const ALL: Knobs = Knobs {
        times: true,
        coefficients: true,
        offsets: true,
    };
}

/// The first simplex step of a log-gap (about ±10 % of a step in λ).
const GAP_STEP: f64 = 0.1;
/// The first simplex step of a relaxation coefficient.
const COEFFICIENT_STEP: f64 = 0.1;
/// The first simplex step of a time offset, as a fraction of the parent's step: towards less
/// noise, the direction that stays inside the schedule at t_0 = T.
const OFFSET_STEP: f64 = -0.05;

/// Where each entry of θ goes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    /// λ of timesteps[i] (from a pure-noise t_0: the first point after it).
    Lambda(usize),
    /// ln(λ_i − λ_{i−1}) of timesteps[i].
    LogGap(usize),
    /// The coefficient of derivative d of step i (corrector: `corrector` true).
    Coefficient {
        step: usize,
        corrector: bool,
        d: usize,
    },
    /// The time offset at timesteps[i], in units of the parent's t_i − t_{i+1}.
    Offset(usize),
}

/// The map between θ and schedules for one parent.
#[derive(Debug, Clone)]
pub struct Params<'a> {
    parent: SolverSchedule,
    ns: &'a NoiseSchedule,
    slots: Vec<Slot>,
    /// The parent's θ.
    start: Vec<f64>,
}

impl<'a> Params<'a> {
    /// The parameters of `parent` under `ns` that `knobs` selects.
    pub fn new(parent: &SolverSchedule, ns: &'a NoiseSchedule, knobs: Knobs) -> Self {
        let parent = with_scale_coefficients(parent, ns, knobs);
        let mut slots = Vec::new();
        if knobs.times {
            slots.extend(time_slots(&parent, ns));
        }
        if knobs.coefficients {
            slots.extend(coefficient_slots(&parent));
        }
        if knobs.offsets {
            slots.extend(offset_slots(&parent, ns));
        }
        let start = slots.iter().map(|&s| read(&parent, ns, s)).collect();
        Self {
            parent,
            ns,
            slots,
            start,
        }
    }

    /// How many parameters.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is nothing to refine.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The parent's θ.
    pub fn start(&self) -> &[f64] {
        &self.start
    }

    /// The first simplex: the start and one vertex per parameter, moved by its step.
    pub fn simplex(&self) -> Vec<Vec<f64>> {
        let mut vertices = vec![self.start.clone()];
        for (k, slot) in self.slots.iter().enumerate() {
            let mut v = self.start.clone();
            v[k] += match slot {
                Slot::Lambda(_) | Slot::LogGap(_) => GAP_STEP,
                Slot::Coefficient { .. } => COEFFICIENT_STEP,
                Slot::Offset(_) => OFFSET_STEP,
            };
            vertices.push(v);
        }
        vertices
    }

    /// The schedule at θ, or None when θ gives no valid schedule under the noise schedule.
    pub fn schedule(&self, theta: &[f64]) -> Option<SolverSchedule> {
        if theta.len() != self.slots.len() || theta.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut s = self.parent.clone();
        let mut lambda = start_lambda(&s, self.ns);
        for (&slot, &v) in self.slots.iter().zip(theta) {
            match slot {
                Slot::Lambda(i) => {
                    lambda = v;
                    s.timesteps[i] = self.ns.t_of_lambda(lambda);
                }
                Slot::LogGap(i) => {
                    lambda += v.exp();
                    s.timesteps[i] = self.ns.t_of_lambda(lambda);
                }
                Slot::Coefficient { step, corrector, d } => {
                    derivative_mut(&mut s, step, corrector, d).relaxation =
                        match derivative(&self.parent, step, corrector, d).relaxation {
                            Relaxation::Linear { .. } => Relaxation::Linear { c: v },
                            _ => Relaxation::Scale { k: v },
                        }
                }
                Slot::Offset(i) => {
                    let gap = self.parent.timesteps[i] - self.parent.timesteps[i + 1];
                    s.time_offsets
                        .get_or_insert_with(|| vec![0.0; s.steps.len()])[i] = v * gap;
                }
            }
        }
        if !s.has_time_offsets() {
            s.time_offsets = None;
        }
        s.name = self.parent.name.as_ref().map(|n| format!("{n} refined"));
        s.validate_on(self.ns).ok().map(|_| s)
    }
}

/// The parent with every derivative's relaxation written as a coefficient, when
/// coefficients are refined: an unrelaxed one as `scale` k = 1, a named one (`dpmsolver-2`,
/// `unipc-bh1`, …, whose factor depends on the step h) as `scale` with its factor at the
/// parent's h. Both give the parent's update exactly; the named factor is then a constant
/// that the refinement tunes instead of recomputing it from the refined h.
fn with_scale_coefficients(
    parent: &SolverSchedule,
    ns: &NoiseSchedule,
    knobs: Knobs,
) -> SolverSchedule {
    let mut s = parent.clone();
    if !knobs.coefficients {
        return s;
    }
    let lambdas: Vec<f64> = s.timesteps.iter().map(|&t| ns.lambda(t)).collect();
    for (i, step) in s.steps.iter_mut().enumerate() {
        let h = lambdas[i + 1] - lambdas[i];
        let data = step.prediction == Prediction::Data;
        let correctors = step.corrector.iter_mut().flat_map(|c| match c {
            crate::solver::Corrector::Pseudo { derivatives, .. } => derivatives.iter_mut(),
        });
        for d in step.derivatives.iter_mut().chain(correctors) {
            let k = match d.relaxation {
                Relaxation::Linear { .. } | Relaxation::Scale { .. } => continue,
                named => named.factor(h, data),
            };
            if k.is_finite() {
                d.relaxation = Relaxation::Scale { k };
            }
        }
    }
    s
}

/// λ before the first time entry: λ(t_0), −∞ at a pure-noise t_0.
fn start_lambda(s: &SolverSchedule, ns: &NoiseSchedule) -> f64 {
    ns.lambda(s.timesteps[0])
}

/// The positive timesteps after t_0, as λ (after a pure-noise t_0) or log-gaps.
fn time_slots(s: &SolverSchedule, ns: &NoiseSchedule) -> Vec<Slot> {
    let positive = s.timesteps.iter().filter(|&&t| t > 0.0).count();
    let pure = ns.is_pure_noise(s.timesteps[0]);
    (1..positive)
        .map(|i| {
            if i == 1 && pure {
                Slot::Lambda(i)
            } else {
                Slot::LogGap(i)
            }
        })
        .collect()
}

/// Every derivative whose relaxation has a coefficient (`linear`, `scale`).
fn coefficient_slots(s: &SolverSchedule) -> Vec<Slot> {
    let mut slots = Vec::new();
    for (i, step) in s.steps.iter().enumerate() {
        let correctors = step.corrector.iter().flat_map(|c| c.derivatives());
        let tagged = step
            .derivatives
            .iter()
            .enumerate()
            .map(|(d, x)| (false, d, x))
            .chain(correctors.enumerate().map(|(d, x)| (true, d, x)));
        for (corrector, d, x) in tagged {
            if matches!(
                x.relaxation,
                Relaxation::Linear { .. } | Relaxation::Scale { .. }
            ) {
                slots.push(Slot::Coefficient {
                    step: i,
                    corrector,
                    d,
                });
            }
        }
    }
    slots
}

/// Every model call that may be told another time: not an analytical first step, not a
/// pure-noise t_0.
fn offset_slots(s: &SolverSchedule, ns: &NoiseSchedule) -> Vec<Slot> {
    let first_fixed = s.afs != Afs::None || ns.is_pure_noise(s.timesteps[0]);
    (usize::from(first_fixed)..s.steps.len())
        .filter(|&i| s.timesteps[i + 1] < s.timesteps[i])
        .map(Slot::Offset)
        .collect()
}

/// The parent's value of one slot.
fn read(s: &SolverSchedule, ns: &NoiseSchedule, slot: Slot) -> f64 {
    match slot {
        Slot::Lambda(i) => ns.lambda(s.timesteps[i]),
        Slot::LogGap(i) => (ns.lambda(s.timesteps[i]) - ns.lambda(s.timesteps[i - 1])).ln(),
        Slot::Coefficient { step, corrector, d } => {
            match derivative(s, step, corrector, d).relaxation {
                Relaxation::Linear { c } => c,
                Relaxation::Scale { k } => k,
                _ => unreachable!("coefficient slots hold linear or scale relaxations"),
            }
        }
        Slot::Offset(i) => s.time_offset(i) / (s.timesteps[i] - s.timesteps[i + 1]),
    }
}

fn derivative(s: &SolverSchedule, step: usize, corrector: bool, d: usize) -> &Derivative {
    let st = &s.steps[step];
    if corrector {
        &st.corrector
            .as_ref()
            .expect("a corrector slot has one")
            .derivatives()[d]
    } else {
        &st.derivatives[d]
    }
}

fn derivative_mut(
    s: &mut SolverSchedule,
    step: usize,
    corrector: bool,
    d: usize,
) -> &mut Derivative {
    let st = &mut s.steps[step];
    if corrector {
        match st.corrector.as_mut().expect("a corrector slot has one") {
            crate::solver::Corrector::Pseudo { derivatives, .. } => &mut derivatives[d],
        }
    } else {
        &mut st.derivatives[d]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::{ClassicSolver, Spacing};

    fn parent(ns: &NoiseSchedule) -> SolverSchedule {
        let ts = Spacing::LogSnr.timesteps(ns, 5, ns.t_max(), 1e-3).unwrap();
        ClassicSolver::UniPc {
            variant: crate::solver::UniPcVariant::Bh2,
            order: 3,
        }
        .build(ts, true)
        .unwrap()
    }

    #[test]
    fn the_start_reproduces_the_parent_and_every_knob_moves_it() {
        let ns = NoiseSchedule::vp_linear();
        let p = parent(&ns);
        let params = Params::new(&p, &ns, Knobs::ALL);
        let back = params.schedule(params.start()).unwrap();
        for (a, b) in back.timesteps.iter().zip(&p.timesteps) {
            assert!((a - b).abs() < 1e-12 * a.max(1e-3), "{a} vs {b}");
        }
        assert_eq!(back.time_offsets, None);
        for (k, v) in params.simplex().iter().enumerate().skip(1) {
            let moved = params.schedule(v).unwrap();
            assert_ne!(moved, back, "parameter {} changes nothing", k - 1);
        }
    }

    #[test]
    fn times_stay_ordered_for_any_gaps() {
        let ns = NoiseSchedule::vp_linear();
        let p = parent(&ns);
        let params = Params::new(
            &p,
            &ns,
            Knobs {
                times: true,
                coefficients: false,
                offsets: false,
            },
        );
        let mut theta = params.start().to_vec();
        theta.iter_mut().for_each(|g| *g -= 3.0);
        let s = params.schedule(&theta).unwrap();
        assert!(s.timesteps.windows(2).all(|w| w[1] < w[0]));
        // A θ that gives no schedule is refused, not clamped.
        theta[0] = f64::NAN;
        assert!(params.schedule(&theta).is_none());
        let offsets = Params::new(
            &p,
            &ns,
            Knobs {
                times: false,
                coefficients: false,
                offsets: true,
            },
        );
        // Telling the model a time beyond T at t_0 = T is outside the schedule.
        let mut theta = offsets.start().to_vec();
        theta[0] = 0.5;
        assert!(offsets.schedule(&theta).is_none());
    }
}

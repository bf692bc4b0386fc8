//! The classic solvers as schedule builders: each emits an ordinary [`SolverSchedule`] that the
//! sampler runs like any searched one. Warm-up and final-order rules follow diffusers.

use super::schedule::{Afs, Corrector, Derivative, Prediction, Relaxation, SolverSchedule, Step};
use crate::error::{Result, S3Error};
use crate::noise::NoiseSchedule;
use serde::{Deserialize, Serialize};

/// UniPC's B(h) choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UniPcVariant {
    /// B(h) = h.
    Bh1,
    /// B(h) = e^h − 1.
    Bh2,
}

/// A hand-designed solver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "solver", rename_all = "kebab-case")]
pub enum ClassicSolver {
    /// DDIM (first order; identical in noise and data prediction).
    Ddim,
    /// Multistep DPM-Solver++ (data prediction), order 2 (2M) or 3 (3M), midpoint form.
    DpmSolverPp { order: usize },
    /// Multistep DPM-Solver (noise prediction), order 2 or 3, midpoint form.
    DpmSolver { order: usize },
    /// UniPC (data prediction) with UniC on every step but the last.
    UniPc { variant: UniPcVariant, order: usize },
}

impl ClassicSolver {
    /// Every classic solver s3 compares against.
    pub fn all() -> Vec<ClassicSolver> {
        use ClassicSolver::*;
        vec![
            Ddim,
            DpmSolverPp { order: 2 },
            DpmSolverPp { order: 3 },
            DpmSolver { order: 2 },
            DpmSolver { order: 3 },
            UniPc {
                variant: UniPcVariant::Bh1,
                order: 2,
            },
            UniPc {
                variant: UniPcVariant::Bh1,
                order: 3,
            },
            UniPc {
                variant: UniPcVariant::Bh2,
                order: 2,
            },
            UniPc {
                variant: UniPcVariant::Bh2,
                order: 3,
            },
        ]
    }

    /// A label such as `dpm-solver++(3M)` or `unipc-bh2(2)`.
    pub fn label(&self) -> String {
        match self {
            ClassicSolver::Ddim => "ddim".into(),
            ClassicSolver::DpmSolverPp { order } => format!("dpm-solver++({order}M)"),
            ClassicSolver::DpmSolver { order } => format!("dpm-solver({order}M)"),
            ClassicSolver::UniPc { variant, order } => format!(
                "unipc-{}({order})",
                match variant {
                    UniPcVariant::Bh1 => "bh1",
                    UniPcVariant::Bh2 => "bh2",
                }
            ),
        }
    }

    /// The solver named `name`: its label (`dpm-solver++(2M)`, `unipc-bh2(2)`, `ddim`) or the
    /// same with the brackets written as dashes (`dpm-solver++-2M`, `unipc-bh2-2`, the form of
    /// `s3 baselines --emit` file names), in any case.
    pub fn parse(name: &str) -> Result<Self> {
        let key = name_key(name);
        Self::all()
            .into_iter()
            .find(|s| name_key(&s.label()) == key)
            .ok_or_else(|| S3Error::UnknownName {
                kind: "solver",
                name: name.to_string(),
                expected: Self::all()
                    .iter()
                    .map(|s| s.label())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Whether the solver expands the data prediction (it may then end by denoising to σ = 0).
    pub fn prediction(&self) -> Prediction {
        match self {
            ClassicSolver::DpmSolver { .. } => Prediction::Noise,
            ClassicSolver::Ddim => Prediction::Noise,
            _ => Prediction::Data,
        }
    }

    fn max_order(&self) -> usize {
        match self {
            ClassicSolver::Ddim => 1,
            ClassicSolver::DpmSolverPp { order }
            | ClassicSolver::DpmSolver { order }
            | ClassicSolver::UniPc { order, .. } => *order,
        }
    }

    /// The schedule over `timesteps` (N + 1 values; a final 0 denoises), none of which may be
    /// pure noise (use [`ClassicSolver::build_for`] for a flow grid from t = 1).
    /// `lower_order_final` lowers the last orders as diffusers does: DPM-Solver(++) uses
    /// order 1 on the last step and at most 2 on the one before when N < 15 (and always
    /// order 1 into σ = 0); UniPC uses min(order, N − i) at step i.
    pub fn build(&self, timesteps: Vec<f64>, lower_order_final: bool) -> Result<SolverSchedule> {
        self.build_with(timesteps, lower_order_final, false)
    }

    /// [`ClassicSolver::build`] for the noise schedule `ns`, validated on it. When t_0 is pure
    /// noise under `ns` (flow at t = 1: α = 0, λ = −∞) the solver starts as it would from a
    /// finite point with t_0 left out of its history: the first step is order 1 without a
    /// corrector (its exact limit, see `update`), and step i ≥ 1 uses at most order i, so no
    /// finite difference reaches back to t_0. Otherwise it is [`ClassicSolver::build`].
    pub fn build_for(
        &self,
        ns: &NoiseSchedule,
        timesteps: Vec<f64>,
        lower_order_final: bool,
    ) -> Result<SolverSchedule> {
        let pure = timesteps.first().is_some_and(|&t| ns.is_pure_noise(t));
        let s = self.build_with(timesteps, lower_order_final, pure)?;
        s.validate_on(ns)?;
        Ok(s)
    }

    fn build_with(
        &self,
        timesteps: Vec<f64>,
        lower_order_final: bool,
        pure_start: bool,
    ) -> Result<SolverSchedule> {
        let max = self.max_order();
        if !(1..=3).contains(&max) {
            return Err(S3Error::field(
                self.label(),
                "order",
                format!("{max} is not supported; expected 2 or 3"),
            ));
        }
        let n = timesteps.len().saturating_sub(1);
        let denoise = timesteps.last() == Some(&0.0);
        let mut steps = Vec::with_capacity(n);
        // Finite history points before step i: i + 1, less a pure-noise t_0.
        let usable = |i: usize| (i + 1 - usize::from(pure_start)).max(1);
        for i in 0..n {
            let mut order = max.min(usable(i));
            match self {
                ClassicSolver::UniPc { .. } => {
                    if lower_order_final {
                        order = order.min(n - i);
                    }
                }
                _ => {
                    let last = i + 1 == n;
                    if last && ((lower_order_final && n < 15) || denoise) {
                        order = 1;
                    }
                    if i + 2 == n && lower_order_final && n < 15 {
                        order = order.min(2);
                    }
                }
            }
            let mut step = self.step(order);
            if let ClassicSolver::UniPc { variant, .. } = self
                && i + 1 < n
                && !(pure_start && i == 0)
            {
                step.corrector = Some(unic(order, *variant));
            }
            steps.push(step);
        }
        let s = SolverSchedule::new(Afs::None, timesteps, steps).with_name(self.label());
        s.validate()?;
        Ok(s)
    }

    /// The predictor step of the given (possibly lowered) order.
    fn step(&self, order: usize) -> Step {
        let derivatives = match (self, order) {
            (_, 1) => vec![],
            (ClassicSolver::DpmSolverPp { .. } | ClassicSolver::DpmSolver { .. }, 2) => {
                vec![Derivative {
                    points: vec![-2],
                    relaxation: Relaxation::DpmSolver2,
                }]
            }
            (ClassicSolver::DpmSolverPp { .. } | ClassicSolver::DpmSolver { .. }, _) => vec![
                Derivative::new(vec![-2, -3]),
                // DPM-Solver's D2 = (D1_0 − D1_1)/(r0 + r1) ≈ h²F″/2 enters with the φ₃
                // coefficient: half the Taylor weight of the second derivative.
                Derivative {
                    points: vec![-2, -3],
                    relaxation: Relaxation::Scale { k: 0.5 },
                },
            ],
            (ClassicSolver::UniPc { variant, .. }, 2) => vec![Derivative {
                points: vec![-2],
                relaxation: bh(*variant),
            }],
            // UniP-p with p ≥ 3 solves its linear system, which is the exact Taylor estimate.
            (_, p) => (1..p)
                .map(|_| Derivative::new((2..=p as i32).map(|j| -j).collect()))
                .collect(),
        };
        Step {
            prediction: self.prediction(),
            order,
            derivatives,
            corrector: None,
        }
    }
}

/// A solver name compared without case, brackets or separators: `dpm-solver++(2M)`,
/// `DPM-Solver++-2M` and `dpm-solver++ 2m` all read `dpm-solver++-2m`.
fn name_key(name: &str) -> String {
    name.to_ascii_lowercase()
        .split(['(', ')', '-', '_', ' '])
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn bh(variant: UniPcVariant) -> Relaxation {
    match variant {
        UniPcVariant::Bh1 => Relaxation::UnipcBh1,
        UniPcVariant::Bh2 => Relaxation::UnipcBh2,
    }
}

/// UniC after a UniP step of order p: order p + 1 over the p − 1 older points and the new one.
/// For p = 1 UniPC fixes ρ = 1/2, which is the B(h) relaxation on the single derivative.
fn unic(p: usize, variant: UniPcVariant) -> Corrector {
    if p == 1 {
        return Corrector::Pseudo {
            order: 2,
            derivatives: vec![Derivative {
                points: vec![-1],
                relaxation: bh(variant),
            }],
        };
    }
    // Corrector history: −1 new point, −2 start, −3 … −(p + 1) the older points.
    let mut points: Vec<i32> = (3..=(p as i32 + 1)).map(|j| -j).collect();
    points.push(-1);
    Corrector::Pseudo {
        order: p + 1,
        derivatives: (0..p).map(|_| Derivative::new(points.clone())).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(n: usize, denoise: bool) -> Vec<f64> {
        let mut v: Vec<f64> = (0..=n).map(|i| 1.0 - 0.9 * i as f64 / n as f64).collect();
        if denoise {
            *v.last_mut().unwrap() = 0.0;
        }
        v
    }

    #[test]
    fn every_builder_emits_a_valid_schedule_with_n_steps_of_nfe() {
        for solver in ClassicSolver::all() {
            for n in 1..=12 {
                for denoise in [false, true] {
                    if denoise && solver.prediction() == Prediction::Noise && n == 1 {
                        continue;
                    }
                    let s = solver.build(ts(n, denoise), true).unwrap();
                    assert_eq!(s.nfe, n, "{}", solver.label());
                }
            }
        }
    }

    /// From flow's t = 1 every builder starts with an order-1 step without corrector and never
    /// uses t_0 in a derivative: the schedules validate on flow and orders lag by one step.
    #[test]
    fn builders_skip_a_pure_noise_start_in_their_history() {
        let ns = NoiseSchedule::Flow(crate::noise::FlowMatch::new(3.0).unwrap());
        let orders = |s: &SolverSchedule| s.steps.iter().map(|x| x.order).collect::<Vec<_>>();
        for solver in ClassicSolver::all() {
            for n in 1..=12 {
                for denoise in [false, true] {
                    let s = solver.build_for(&ns, ts(n, denoise), true).unwrap();
                    assert_eq!(s.nfe, n, "{}", solver.label());
                    assert!(s.steps[0].corrector.is_none() && s.steps[0].order == 1);
                    // Without the pure start the plain builder's schedule is invalid on flow
                    // as soon as a derivative or corrector would reach t_0.
                    let plain = solver.build(ts(n, denoise), true).unwrap();
                    let needs = plain.steps.iter().any(|x| x.order > 1)
                        || plain.steps[0].corrector.is_some();
                    assert_eq!(plain.validate_on(&ns).is_err(), needs, "{}", solver.label());
                }
            }
        }
        let dpm3 = ClassicSolver::DpmSolverPp { order: 3 };
        assert_eq!(
            orders(&dpm3.build_for(&ns, ts(6, true), true).unwrap()),
            [1, 1, 2, 3, 2, 1]
        );
        let uni = ClassicSolver::UniPc {
            variant: UniPcVariant::Bh2,
            order: 3,
        };
        let s = uni.build_for(&ns, ts(6, true), true).unwrap();
        assert_eq!(orders(&s), [1, 1, 2, 3, 2, 1]);
        let corrected: Vec<bool> = s.steps.iter().map(|x| x.corrector.is_some()).collect();
        assert_eq!(corrected, [false, true, true, true, true, false]);
        // On a grid that does not start at pure noise build_for is build.
        let vp = NoiseSchedule::vp_linear();
        assert_eq!(
            uni.build_for(&vp, ts(6, true), true).unwrap(),
            uni.build(ts(6, true), true).unwrap()
        );
    }

    #[test]
    fn solvers_parse_from_their_labels_and_file_names() {
        for solver in ClassicSolver::all() {
            assert_eq!(ClassicSolver::parse(&solver.label()).unwrap(), solver);
        }
        assert_eq!(
            ClassicSolver::parse("dpm-solver++-2M").unwrap(),
            ClassicSolver::DpmSolverPp { order: 2 }
        );
        assert_eq!(
            ClassicSolver::parse("UniPC-bh2-2").unwrap(),
            ClassicSolver::UniPc {
                variant: UniPcVariant::Bh2,
                order: 2
            }
        );
        let e = ClassicSolver::parse("dpm-solver++-4M")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dpm-solver++-4M") && e.contains("dpm-solver++(3M)"),
            "{e}"
        );
    }

    #[test]
    fn orders_follow_diffusers_rules() {
        let orders = |s: &SolverSchedule| s.steps.iter().map(|x| x.order).collect::<Vec<_>>();
        let dpm3 = ClassicSolver::DpmSolverPp { order: 3 };
        assert_eq!(
            orders(&dpm3.build(ts(6, true), true).unwrap()),
            [1, 2, 3, 3, 2, 1]
        );
        assert_eq!(
            orders(&dpm3.build(ts(20, true), true).unwrap())[17..],
            [3, 3, 1]
        );
        let uni3 = ClassicSolver::UniPc {
            variant: UniPcVariant::Bh2,
            order: 3,
        };
        let s = uni3.build(ts(20, true), true).unwrap();
        assert_eq!(orders(&s)[17..], [3, 2, 1]);
        assert!(s.steps[..19].iter().all(|x| x.corrector.is_some()));
        assert!(s.steps[19].corrector.is_none());
    }
}

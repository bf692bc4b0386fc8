//! Time spacings: where the N + 1 timesteps of a classic solver go.
//!
//! Besides the continuous rules there are diffusers' own grids: the integer-timestep spacings
//! of discrete VP schedules and the three flow-sigma grids of its flow schedulers, which lay
//! out an unshifted grid u and apply the schedule's shift t = shift·u/(1 + (shift − 1)·u):
//!
//! | spacing | diffusers | N model-call times |
//! |---|---|---|
//! | `flow-euler` | `FlowMatchEulerDiscreteScheduler` (default grid) | shift(linspace(1, σ_min, N)), σ_min = shift(1/1000) — diffusers shifts the already-shifted σ_min a second time |
//! | `flow-unipc` | `UniPCMultistepScheduler(use_flow_sigmas=True)` | shift(linspace(1, 1/1000, N + 1)[:N]), a first value within 1e-6 of 1 lowered by 1e-6 |
//! | `flow-dpm` | `DPMSolverMultistepScheduler(use_flow_sigmas=True)` | shift(1 − linspace(1, 1/1000, N + 1)) reversed, without its final 0: shift(0.999·(N − i)/N) |
//!
//! diffusers stores these sigmas as float32, so the grids are rounded to f32 as well (as the
//! betas of discrete schedules are); the final time t_end (0 for `final_sigmas_type="zero"`)
//! is appended. linspace follows numpy (start + i·step, the last value set to stop).

use crate::error::{Result, S3Error};
use crate::noise::{FLOW_TRAIN_TIMESTEPS, FlowMatch, NoiseSchedule};
use serde::{Deserialize, Serialize};

/// A rule for placing timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Spacing {
    /// Uniform in t.
    TimeUniform,
    /// Uniform in λ (log-SNR), DPM-Solver's default.
    LogSnr,
    /// Uniform in √t (DPM-Solver's `time_quadratic`).
    TimeQuadratic,
    /// Karras et al.: uniform in (σ/α)^{1/ρ}; ρ = 7 is EDM's schedule.
    Karras { rho: f64 },
    /// diffusers `timestep_spacing="linspace"` (discrete schedules only).
    DiffusersLinspace,
    /// diffusers `timestep_spacing="leading"` with `steps_offset` (discrete schedules only;
    /// diffusers' default offset is 0, Stable Diffusion's configs use 1).
    DiffusersLeading { offset: usize },
    /// diffusers `timestep_spacing="trailing"` (discrete schedules only).
    DiffusersTrailing,
    /// `FlowMatchEulerDiscreteScheduler`'s default sigmas (flow only; see the module table).
    DiffusersFlowEuler,
    /// `UniPCMultistepScheduler`'s sigmas with `use_flow_sigmas=True` (flow only).
    DiffusersFlowUnipc,
    /// `DPMSolverMultistepScheduler`'s sigmas with `use_flow_sigmas=True` (flow only).
    DiffusersFlowDpm,
}

/// The names accepted by `--spacing`.
pub const SPACING_NAMES: &str = "time-uniform, logsnr, time-quadratic, karras, linspace, leading, trailing, flow-euler, flow-unipc, flow-dpm";

/// The offset diffusers' UniPC subtracts from a first flow sigma of 1 ("to avoid inf
/// torch.log(alpha_si)"), and the distance from 1 within which it does so.
pub const UNIPC_FLOW_EPS: f64 = 1e-6;

impl Spacing {
    /// Parses a spacing name (`karras` takes ρ = 7).
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "time-uniform" => Spacing::TimeUniform,
            "logsnr" => Spacing::LogSnr,
            "time-quadratic" => Spacing::TimeQuadratic,
            "karras" => Spacing::Karras { rho: 7.0 },
            "linspace" => Spacing::DiffusersLinspace,
            "leading" => Spacing::DiffusersLeading { offset: 0 },
            "trailing" => Spacing::DiffusersTrailing,
            "flow-euler" => Spacing::DiffusersFlowEuler,
            "flow-unipc" => Spacing::DiffusersFlowUnipc,
            "flow-dpm" => Spacing::DiffusersFlowDpm,
            _ => {
                return Err(S3Error::UnknownName {
                    kind: "spacing",
                    name: name.into(),
                    expected: SPACING_NAMES.into(),
                });
            }
        })
    }

    /// A short label for tables.
    pub fn label(&self) -> String {
        match self {
            Spacing::TimeUniform => "time-uniform".into(),
            Spacing::LogSnr => "logsnr".into(),
            Spacing::TimeQuadratic => "time-quadratic".into(),
            Spacing::Karras { rho } => format!("karras(rho={rho})"),
            Spacing::DiffusersLinspace => "linspace".into(),
            Spacing::DiffusersLeading { offset } => format!("leading(offset={offset})"),
            Spacing::DiffusersTrailing => "trailing".into(),
            Spacing::DiffusersFlowEuler => "flow-euler".into(),
            Spacing::DiffusersFlowUnipc => "flow-unipc".into(),
            Spacing::DiffusersFlowDpm => "flow-dpm".into(),
        }
    }

    /// Whether the spacing is one of diffusers' own grids: N model-call times fixed by the
    /// scheduler's configuration (`t_start` is ignored, `t_end` appended; diffusers ends them
    /// at σ = 0). These are the integer-timestep spacings of vp-discrete and the flow-sigma
    /// grids of flow.
    pub fn is_discrete(&self) -> bool {
        matches!(
            self,
            Spacing::DiffusersLinspace
                | Spacing::DiffusersLeading { .. }
                | Spacing::DiffusersTrailing
                | Spacing::DiffusersFlowEuler
                | Spacing::DiffusersFlowUnipc
                | Spacing::DiffusersFlowDpm
        )
    }

    /// Whether the spacing is a diffusers flow-sigma grid (needs the flow schedule).
    pub fn is_flow(&self) -> bool {
        matches!(
            self,
            Spacing::DiffusersFlowEuler | Spacing::DiffusersFlowUnipc | Spacing::DiffusersFlowDpm
        )
    }

    /// The spacings that apply to `ns`.
    pub fn all_for(ns: &NoiseSchedule) -> Vec<Spacing> {
        let mut v = vec![
            Spacing::TimeUniform,
            Spacing::LogSnr,
            Spacing::TimeQuadratic,
            Spacing::Karras { rho: 7.0 },
        ];
        if matches!(ns, NoiseSchedule::VpDiscrete(_)) {
            v.extend([
                Spacing::DiffusersLinspace,
                Spacing::DiffusersLeading { offset: 0 },
                Spacing::DiffusersTrailing,
            ]);
        }
        if matches!(ns, NoiseSchedule::Flow(_)) {
            v.extend([
                Spacing::DiffusersFlowEuler,
                Spacing::DiffusersFlowUnipc,
                Spacing::DiffusersFlowDpm,
            ]);
        }
        v
    }

    /// N + 1 decreasing timesteps for `n` steps from `t_start` down to `t_end`. For diffusers'
    /// spacings the first N are the integer training timesteps k mapped to t = (k + 1)/N_train
    /// or the flow sigmas of the module table (`t_start` is ignored) and `t_end` is appended:
    /// 0 for diffusers' `final_sigmas_type = "zero"`, 1/N_train for `"sigma_min"`.
    /// From a pure-noise `t_start` (flow at t = 1) the λ-based rules (`logsnr`, `karras`)
    /// lay out their grid from the mirror image of the end, λ = −λ(t_end)
    /// ([`NoiseSchedule::finite_lambda_start`]), and then put t_start first.
    pub fn timesteps(
        &self,
        ns: &NoiseSchedule,
        n: usize,
        t_start: f64,
        t_end: f64,
    ) -> Result<Vec<f64>> {
        if n == 0 {
            return Err(S3Error::field(
                "spacing",
                "steps",
                "at least one step is needed",
            ));
        }
        let lin = |a: f64, b: f64| -> Vec<f64> {
            (0..=n).map(|i| a + (b - a) * i as f64 / n as f64).collect()
        };
        let continuous_end = || -> Result<()> {
            if !(t_end > 0.0 && t_end < t_start) {
                return Err(S3Error::field(
                    "spacing",
                    "t_end",
                    format!(
                        "{} needs 0 < t_end < t_start, got t_end = {t_end}",
                        self.label()
                    ),
                ));
            }
            Ok(())
        };
        let ts = match *self {
            Spacing::TimeUniform => {
                continuous_end()?;
                lin(t_start, t_end)
            }
            Spacing::LogSnr => {
                continuous_end()?;
                let (l0, l1) = self.lambda_range(ns, t_start, t_end)?;
                lin(l0, l1).into_iter().map(|l| ns.t_of_lambda(l)).collect()
            }
            Spacing::TimeQuadratic => {
                continuous_end()?;
                lin(t_start.sqrt(), t_end.sqrt())
                    .into_iter()
                    .map(|r| r * r)
                    .collect()
            }
            Spacing::Karras { rho } => {
                continuous_end()?;
                // σ/α = e^{−λ}
                let (l0, l1) = self.lambda_range(ns, t_start, t_end)?;
                let (hi, lo) = ((-l0 / rho).exp(), (-l1 / rho).exp());
                lin(hi, lo)
                    .into_iter()
                    .map(|s| ns.t_of_ve_sigma(s.powf(rho)))
                    .collect()
            }
            Spacing::DiffusersLinspace
            | Spacing::DiffusersLeading { .. }
            | Spacing::DiffusersTrailing => {
                let NoiseSchedule::VpDiscrete(d) = ns else {
                    return Err(S3Error::field(
                        "spacing",
                        "noise schedule",
                        format!("{} needs the vp-discrete noise schedule", self.label()),
                    ));
                };
                let train = d.len();
                let ks = diffusers_timesteps(*self, train, n);
                let mut ts: Vec<f64> = ks.iter().map(|&k| d.t_of_timestep(k)).collect();
                if !(t_end >= 0.0 && t_end < *ts.last().expect("n ≥ 1")) {
                    return Err(S3Error::field(
                        "spacing",
                        "t_end",
                        format!("must lie below the last timestep {}", ts[n - 1]),
                    ));
                }
                ts.push(t_end);
                ts
            }
            Spacing::DiffusersFlowEuler
            | Spacing::DiffusersFlowUnipc
            | Spacing::DiffusersFlowDpm => {
                let NoiseSchedule::Flow(f) = ns else {
                    return Err(S3Error::field(
                        "spacing",
                        "noise schedule",
                        format!("{} needs the flow noise schedule", self.label()),
                    ));
                };
                let mut ts = self.flow_sigmas(f, n);
                if !(t_end >= 0.0 && t_end < *ts.last().expect("n ≥ 1")) {
                    return Err(S3Error::field(
                        "spacing",
                        "t_end",
                        format!(
                            "{} must end below its last sigma {}, got t_end = {t_end}",
                            self.label(),
                            ts[n - 1]
                        ),
                    ));
                }
                ts.push(t_end);
                ts
            }
        };
        // Pin the ends exactly (the inverse maps are exact only to rounding).
        let mut ts = ts;
        if !self.is_discrete() {
            ts[0] = t_start;
            ts[n] = t_end;
        }
        if ts.windows(2).any(|w| w[1] >= w[0]) {
            return Err(S3Error::field(
                "spacing",
                "steps",
                format!(
                    "{} with {n} steps gives repeated timesteps (too many steps for {} training steps?)",
                    self.label(),
                    match ns {
                        NoiseSchedule::VpDiscrete(d) => d.len(),
                        _ => FLOW_TRAIN_TIMESTEPS,
                    }
                ),
            ));
        }
        Ok(ts)
    }

    /// λ at both ends of a λ-based grid, the start finite even from pure noise.
    fn lambda_range(&self, ns: &NoiseSchedule, t_start: f64, t_end: f64) -> Result<(f64, f64)> {
        let (l0, l1) = (ns.finite_lambda_start(t_start, t_end), ns.lambda(t_end));
        if l0.is_nan() || l1.is_nan() || l0 >= l1 {
            return Err(S3Error::field(
                "spacing",
                "t_end",
                format!(
                    "{} from pure noise at t_start = {t_start} lays out λ from −λ(t_end) to λ(t_end), which needs λ(t_end) > 0 under {}; got t_end = {t_end} (λ = {l1})",
                    self.label(),
                    ns.name()
                ),
            ));
        }
        Ok((l0, l1))
    }

    /// The N model-call sigmas of a diffusers flow scheduler (module table), as float32.
    fn flow_sigmas(&self, f: &FlowMatch, n: usize) -> Vec<f64> {
        let train = FLOW_TRAIN_TIMESTEPS as f64;
        let to_f32 = |v: f64| v as f32 as f64;
        let unshifted: Vec<f64> = match self {
            Spacing::DiffusersFlowEuler => {
                // sigma_max/min of the training grid, float32 as diffusers keeps them.
                let (hi, lo) = (to_f32(f.shifted(1.0)), to_f32(f.sigma_min()));
                numpy_linspace(hi * train, lo * train, n)
                    .into_iter()
                    .map(|t| t / train)
                    .collect()
            }
            Spacing::DiffusersFlowUnipc => numpy_linspace(1.0, 1.0 / train, n + 1)[..n].to_vec(),
            Spacing::DiffusersFlowDpm => {
                let mut v: Vec<f64> = numpy_linspace(1.0, 1.0 / train, n + 1)
                    .into_iter()
                    .map(|a| 1.0 - a)
                    .collect();
                v.reverse();
                v.pop();
                v
            }
            _ => unreachable!("flow grids only"),
        };
        let mut ts: Vec<f64> = unshifted.into_iter().map(|u| f.shifted(u)).collect();
        if *self == Spacing::DiffusersFlowUnipc && (ts[0] - 1.0).abs() < UNIPC_FLOW_EPS {
            ts[0] -= UNIPC_FLOW_EPS;
        }
        ts.into_iter().map(to_f32).collect()
    }
}

/// numpy's `linspace(start, stop, num)`: start + i·step with step = (stop − start)/(num − 1),
/// the last value exactly `stop` (a single value is `start`).
fn numpy_linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// diffusers' integer timesteps (descending, N of them) for `train` training steps.
fn diffusers_timesteps(spacing: Spacing, train: usize, n: usize) -> Vec<usize> {
    match spacing {
        Spacing::DiffusersLinspace => {
            // np.linspace(0, train - 1, n + 1).round()[::-1][:-1]
            let mut v: Vec<usize> = (0..=n)
                .map(|i| round_half_even((train - 1) as f64 * i as f64 / n as f64) as usize)
                .collect();
            v.reverse();
            v.pop();
            v
        }
        Spacing::DiffusersLeading { offset } => {
            // step_ratio = train // (n + 1); (arange(0, n + 1) * step_ratio).round()[::-1][:-1] + offset
            let ratio = train / (n + 1);
            let mut v: Vec<usize> = (0..=n).map(|i| i * ratio + offset).collect();
            v.reverse();
            v.pop();
            v
        }
        Spacing::DiffusersTrailing => {
            // step_ratio = train / n; np.arange(train, 0, -step_ratio).round() - 1
            let ratio = train as f64 / n as f64;
            (0..n)
                .map(|i| round_half_even(train as f64 - i as f64 * ratio) as usize - 1)
                .collect()
        }
        _ => unreachable!("continuous spacing"),
    }
}

/// numpy's round (half to even).
fn round_half_even(x: f64) -> f64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
        r - x.signum()
    } else {
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::{BetaSchedule, DiscreteVp};

    #[test]
    fn diffusers_integer_timesteps_match_numpy() {
        assert_eq!(
            diffusers_timesteps(Spacing::DiffusersLinspace, 1000, 5),
            vec![999, 799, 599, 400, 200]
        );
        assert_eq!(
            diffusers_timesteps(Spacing::DiffusersLeading { offset: 1 }, 1000, 5),
            vec![831, 665, 499, 333, 167]
        );
        assert_eq!(
            diffusers_timesteps(Spacing::DiffusersTrailing, 1000, 5),
            vec![999, 799, 599, 399, 199]
        );
    }

    #[test]
    fn logsnr_spacing_is_uniform_in_lambda() {
        let ns = NoiseSchedule::vp_linear();
        let ts = Spacing::LogSnr.timesteps(&ns, 6, 1.0, 1e-3).unwrap();
        let l: Vec<f64> = ts.iter().map(|&t| ns.lambda(t)).collect();
        for w in l.windows(3) {
            assert!(((w[2] - w[1]) - (w[1] - w[0])).abs() < 1e-9);
        }
    }

    #[test]
    fn karras_spacing_is_uniform_in_sigma_root() {
        let ns = NoiseSchedule::Edm;
        let ts = Spacing::Karras { rho: 7.0 }
            .timesteps(&ns, 4, 80.0, 0.002)
            .unwrap();
        let r: Vec<f64> = ts.iter().map(|t| t.powf(1.0 / 7.0)).collect();
        for w in r.windows(3) {
            assert!(((w[2] - w[1]) - (w[1] - w[0])).abs() < 1e-9);
        }
    }

    /// The flow grids against diffusers 0.42.1's `scheduler.sigmas` after `set_timesteps(4)`
    /// (shift 3; `use_flow_sigmas=True, flow_shift=3.0` for UniPC and DPM-Solver).
    #[test]
    fn flow_grids_match_diffusers() {
        let ns = NoiseSchedule::Flow(FlowMatch::new(3.0).unwrap());
        let cases = [
            (
                Spacing::DiffusersFlowEuler,
                [
                    1.0,
                    0.857692301273346,
                    0.602150559425354,
                    0.008928571827709675,
                    0.0,
                ],
            ),
            (
                Spacing::DiffusersFlowUnipc,
                [
                    0.9999989867210388,
                    0.900119960308075,
                    0.7503747940063477,
                    0.5009989738464355,
                    0.0,
                ],
            ),
            (
                Spacing::DiffusersFlowDpm,
                [
                    0.9996664524078369,
                    0.8996397852897644,
                    0.7496247887611389,
                    0.4996665418148041,
                    0.0,
                ],
            ),
        ];
        for (sp, want) in cases {
            let got = sp.timesteps(&ns, 4, 1.0, 0.0).unwrap();
            assert_eq!(got, want, "{}", sp.label());
        }
        let e = Spacing::DiffusersFlowEuler
            .timesteps(&NoiseSchedule::vp_linear(), 4, 1.0, 0.0)
            .unwrap_err();
        assert!(e.to_string().contains("flow"), "{e}");
    }

    /// λ-based spacings from flow's t = 1 start at t = 1 and continue uniformly from the
    /// mirror point λ = −λ(t_end).
    #[test]
    fn lambda_spacings_start_at_pure_noise() {
        let ns = NoiseSchedule::Flow(FlowMatch::new(1.0).unwrap());
        for sp in [Spacing::LogSnr, Spacing::Karras { rho: 7.0 }] {
            let ts = sp.timesteps(&ns, 5, 1.0, 0.01).unwrap();
            assert_eq!((ts[0], ts[5]), (1.0, 0.01));
            assert!(ts.iter().all(|t| t.is_finite()), "{ts:?}");
        }
        let ts = Spacing::LogSnr.timesteps(&ns, 4, 1.0, 0.01).unwrap();
        let l: Vec<f64> = ts[1..].iter().map(|&t| ns.lambda(t)).collect();
        let step = (2.0 * ns.lambda(0.01)) / 4.0;
        for w in l.windows(2) {
            assert!(((w[1] - w[0]) - step).abs() < 1e-9);
        }
        let e = Spacing::LogSnr.timesteps(&ns, 4, 1.0, 0.7).unwrap_err();
        assert!(e.to_string().contains("λ(t_end) > 0"), "{e}");
    }

    #[test]
    fn diffusers_spacing_needs_a_discrete_schedule() {
        let e = Spacing::DiffusersLinspace
            .timesteps(&NoiseSchedule::vp_linear(), 5, 1.0, 0.0)
            .unwrap_err();
        assert!(e.to_string().contains("vp-discrete"));
        let d = NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::Linear, 1000));
        let ts = Spacing::DiffusersLinspace
            .timesteps(&d, 5, 1.0, 0.0)
            .unwrap();
        assert_eq!(ts, vec![1.0, 0.8, 0.6, 0.401, 0.201, 0.0]);
    }
}

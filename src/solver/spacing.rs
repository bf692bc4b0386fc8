//! Time spacings: where the N + 1 timesteps of a classic solver go.

use crate::error::{Result, S3Error};
use crate::noise::NoiseSchedule;
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
}

/// The names accepted by `--spacing`.
pub const SPACING_NAMES: &str =
    "time-uniform, logsnr, time-quadratic, karras, linspace, leading, trailing";

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
        }
    }

    /// Whether the spacing needs a discrete (vp-discrete) schedule.
    pub fn is_discrete(&self) -> bool {
        matches!(
            self,
            Spacing::DiffusersLinspace
                | Spacing::DiffusersLeading { .. }
                | Spacing::DiffusersTrailing
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
        v
    }

    /// N + 1 decreasing timesteps for `n` steps from `t_start` down to `t_end`. For diffusers'
    /// spacings the first N are the integer training timesteps k mapped to t = (k + 1)/N_train
    /// (`t_start` is ignored) and `t_end` is appended: 0 for diffusers' `final_sigmas_type =
    /// "zero"`, 1/N_train for `"sigma_min"`.
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
                lin(ns.lambda(t_start), ns.lambda(t_end))
                    .into_iter()
                    .map(|l| ns.t_of_lambda(l))
                    .collect()
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
                let (hi, lo) = (
                    ns.ve_sigma(t_start).powf(1.0 / rho),
                    ns.ve_sigma(t_end).powf(1.0 / rho),
                );
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
                        _ => 0,
                    }
                ),
            ));
        }
        Ok(ts)
    }
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

//! The discrete-time VP schedule (DDPM): N training betas, read in continuous time as in
//! DPM-Solver: t_i = (i + 1)/N and log α piecewise linear between grid points, so that at a grid
//! point α(t_i)² equals `alphas_cumprod[i]` exactly.

use crate::names::Named;
use serde::{Deserialize, Serialize};

/// How the N training betas are laid out (as DDPM / diffusers define them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum BetaSchedule {
    /// `linear`: β = linspace(1e-4, 0.02, N) (DDPM, diffusers' default).
    #[default]
    #[serde(rename = "linear")]
    Linear,
    /// `scaled_linear`: β = linspace(√0.00085, √0.012, N)² (Stable Diffusion).
    #[serde(rename = "scaled_linear")]
    ScaledLinear,
}

impl Named for BetaSchedule {
    const KIND: &'static str = "beta schedule";
    const ALL: &'static [Self] = &[Self::Linear, Self::ScaledLinear];
}

impl BetaSchedule {
    /// Parses a `--betas` value.
    pub fn parse(name: &str) -> crate::Result<Self> {
        <Self as Named>::from_name(name)
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        self.name()
    }

    /// The N betas. They are rounded to f32 as diffusers stores them, then used in f64.
    pub fn betas(self, n: usize) -> Vec<f64> {
        let linspace = |a: f64, b: f64| -> Vec<f64> {
            (0..n)
                .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
                .collect()
        };
        let raw = match self {
            Self::Linear => linspace(1e-4, 0.02),
            Self::ScaledLinear => linspace(0.00085f64.sqrt(), 0.012f64.sqrt())
                .into_iter()
                .map(|b| b * b)
                .collect(),
        };
        raw.into_iter().map(|b| b as f32 as f64).collect()
    }
}

/// A discrete VP schedule on the continuous grid t_i = (i + 1)/N.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteVp {
    betas: BetaSchedule,
    /// t_i = (i + 1)/N, increasing.
    t_grid: Vec<f64>,
    /// ½ log alphas_cumprod[i], decreasing.
    log_alpha_grid: Vec<f64>,
}

impl DiscreteVp {
    /// The schedule of `n` training steps with the given betas.
    pub fn new(betas: BetaSchedule, n: usize) -> Self {
        let mut acc = 0.0;
        let log_alpha_grid = betas
            .betas(n)
            .into_iter()
            .map(|b| {
                acc += (-b).ln_1p();
                0.5 * acc
            })
            .collect();
        let t_grid = (0..n).map(|i| (i + 1) as f64 / n as f64).collect();
        Self {
            betas,
            t_grid,
            log_alpha_grid,
        }
    }

    /// The beta layout.
    pub fn beta_schedule(&self) -> BetaSchedule {
        self.betas
    }

    /// The number of training steps N.
    pub fn len(&self) -> usize {
        self.t_grid.len()
    }

    /// Always false: a schedule has at least two steps.
    pub fn is_empty(&self) -> bool {
        self.t_grid.is_empty()
    }

    /// `alphas_cumprod[i]` of the training schedule.
    pub fn alphas_cumprod(&self, i: usize) -> f64 {
        (2.0 * self.log_alpha_grid[i]).exp()
    }

    /// The continuous time of the integer training timestep `k` (0-based): (k + 1)/N.
    pub fn t_of_timestep(&self, k: usize) -> f64 {
        (k + 1) as f64 / self.len() as f64
    }

    /// The integer training timestep nearest to continuous time `t`: k = round(t·N − 1) (the
    /// inverse of [`DiscreteVp::t_of_timestep`]), clamped into 0..N. Also returns whether it
    /// was clamped (t outside the training range).
    pub fn nearest_timestep(&self, t: f64) -> (usize, bool) {
        let r = (t * self.len() as f64 - 1.0).round();
        let k = r.clamp(0.0, (self.len() - 1) as f64);
        (k as usize, r != k)
    }

    /// log α(t), piecewise linear through the grid and extended linearly beyond its ends.
    pub fn log_alpha(&self, t: f64) -> f64 {
        interp_extrapolate(t, &self.t_grid, &self.log_alpha_grid)
    }

    /// The time at which log α equals `log_alpha` (inverse of the interpolation above).
    pub fn t_of_log_alpha(&self, log_alpha: f64) -> f64 {
        // log α decreases with t: search on the reversed (increasing) sequence.
        let xs: Vec<f64> = self.log_alpha_grid.iter().rev().copied().collect();
        let ys: Vec<f64> = self.t_grid.iter().rev().copied().collect();
        interp_extrapolate(log_alpha, &xs, &ys)
    }
}

/// Piecewise-linear interpolation through (xp, yp) with xp strictly increasing; outside the
/// range the outermost segment is extended (as DPM-Solver's `interpolate_fn`).
fn interp_extrapolate(x: f64, xp: &[f64], yp: &[f64]) -> f64 {
    let n = xp.len();
    let i = match xp.partition_point(|&v| v < x) {
        0 => 0,
        k if k >= n => n - 2,
        k => k - 1,
    };
    let (x0, x1, y0, y1) = (xp[i], xp[i + 1], yp[i], yp[i + 1]);
    y0 + (y1 - y0) * (x - x0) / (x1 - x0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_points_reproduce_alphas_cumprod() {
        let d = DiscreteVp::new(BetaSchedule::Linear, 1000);
        let betas = BetaSchedule::Linear.betas(1000);
        let mut prod = 1.0;
        for (k, b) in betas.iter().enumerate() {
            prod *= 1.0 - b;
            let a2 = (2.0 * d.log_alpha(d.t_of_timestep(k))).exp();
            assert!((a2 - prod).abs() < 1e-12 * prod.max(1e-3), "k={k}");
        }
        // The DDPM linear schedule ends near alphas_cumprod = 4.04e-5.
        assert!((d.alphas_cumprod(999) - 4.036e-5).abs() < 1e-7);
    }

    #[test]
    fn scaled_linear_betas_end_at_0_012() {
        let b = BetaSchedule::ScaledLinear.betas(1000);
        assert!((b[0] - 0.00085).abs() < 1e-9 && (b[999] - 0.012).abs() < 1e-9);
    }

    #[test]
    fn interpolation_extends_the_outer_segments() {
        let xp = [0.0, 1.0, 3.0];
        let yp = [0.0, 2.0, 3.0];
        assert_eq!(interp_extrapolate(-1.0, &xp, &yp), -2.0);
        assert_eq!(interp_extrapolate(2.0, &xp, &yp), 2.5);
        assert_eq!(interp_extrapolate(5.0, &xp, &yp), 4.0);
    }
}

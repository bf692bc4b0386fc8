//! The DPM-Solver-v3 runner (official `DPM_Solver_v3.sample`, ScoreSDE codebase).
//!
//! With N_θ = σ_λ ε_θ − l_λ x_λ the model is reparameterised as
//! f_θ = N_θ/α and g_θ(λ; s) = e^{−∫_s^λ s_τ dτ} f_θ − ∫_s^λ e^{−∫_s^r s_τ dτ} b_r dr
//! (`get_g`: g_i = e^{S_s − S_i} f_i − e^{S_s}(B_i − B_s)), and one step from s to t is
//!
//! x_t = (α_t/α_s) e^{L_s−L_t} x_s − α_t e^{−L_t−S_s}(I_t−I_s) g_s
//!       − α_t e^{−L_t}(C_t − C_s − B_s(I_t − I_s)) − Σ_{k≥1} α_t e^{L_s−L_t} E_k(s,t) g_s^{(k)}
//!
//! where the derivatives g^{(k)} come from the newest points in λ: the full Taylor system
//! (`compute_high_order_derivatives(pseudo=False)`) or Newton divided differences times k!
//! (`pseudo=True`, the "pseudo-order" option). Every quantity is linear in the cached x_i and
//! ε_i with per-element coefficients, so each update is planned once per run in f64 as
//! x_t = Z + Σ_i (X_i ⊙ x_i + E_i ⊙ ε_i) and applied in one fused pass (f32 or f64 buffers).
//!
//! The corrector (`multistep_corrector_update`) reruns the step into the newest point with
//! that point's fresh ε included, then replaces its cached ε so that the non-linear part
//! N = σε − l x stays fixed: ε ← (N_old + l·x_new)/σ.

use super::ems::{Ems, EmsIntegrals};
use crate::error::{Result, S3Error};
use crate::model::{Denoiser, Real, TimePoint, eval_eps};
use crate::noise::NoiseSchedule;
use crate::solver::sampler::DEFAULT_SUB_BATCH;
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The highest predictor order DPM-Solver-v3 uses (the official multistep solver's 3).
pub const MAX_V3_ORDER: usize = 3;

/// The most points an update reads: a pseudo corrector of order `MAX_V3_ORDER + 1`.
const MAX_HISTORY: usize = MAX_V3_ORDER + 1;

/// How far λ(t) of the noise schedule may lie from the EMS grid's ends (relative) before the
/// EMS are taken to belong to another schedule.
const GRID_MATCH_TOL: f64 = 1e-9;

/// The solver's options (official `sample(order, p_pseudo, use_corrector, c_pseudo,
/// lower_order_final)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct V3Settings {
    /// Predictor order, 1..=3 (lower during warm-up).
    pub order: usize,
    /// Derivatives by divided differences (pseudo-order) in the predictor.
    pub predictor_pseudo: bool,
    /// Correct each new point with its own model call (no extra NFE).
    pub use_corrector: bool,
    /// A pseudo corrector of order p + 1 instead of order p.
    pub corrector_pseudo: bool,
    /// Lower the last steps' orders: step i (1-based) of N uses at most N + 1 − i.
    pub lower_order_final: bool,
}

impl V3Settings {
    /// The ScoreSDE (CIFAR-10) settings of the official `sample.sh` for `nfe` steps: order 3
    /// without a pseudo corrector everywhere; NFE ≤ 5: pseudo-order predictor, corrector, no
    /// lower-order final step; 6–8: corrector and lower-order final; 9–10: lower-order final
    /// without corrector; > 10: corrector and lower-order final (the paper also moves t_end
    /// to 1e-4 there, which is a property of the EMS grid here).
    pub fn score_sde(nfe: usize) -> Self {
        let (predictor_pseudo, use_corrector, lower_order_final) = match nfe {
            0..=5 => (true, true, false),
            6..=8 => (false, true, true),
            9..=10 => (false, false, true),
            _ => (false, true, true),
        };
        Self {
            order: MAX_V3_ORDER,
            predictor_pseudo,
            use_corrector,
            corrector_pseudo: false,
            lower_order_final,
        }
    }
}

/// One timestep of a run: its EMS grid index and the schedule's values there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct V3Point {
    pub index: usize,
    pub t: f64,
    pub lambda: f64,
    pub alpha: f64,
    pub sigma: f64,
}

/// x_target = Z + Σ_i (X_i ⊙ x_{points[i]} + E_i ⊙ ε_{points[i]}), per-element coefficients.
#[derive(Debug, Clone)]
struct LinearUpdate {
    points: Vec<usize>,
    x_coef: Vec<Vec<f64>>,
    eps_coef: Vec<Vec<f64>>,
    constant: Vec<f64>,
}

/// What happens in one step: an optional correction of the newest point, then the predictor.
#[derive(Debug, Clone)]
struct StepPlan {
    corrector: Option<LinearUpdate>,
    predictor: LinearUpdate,
}

/// The orders a run uses: (predictor order, corrector order or 0) per step, 1-based steps
/// as in the official loop (step i predicts point i from points < i).
pub fn step_orders(nfe: usize, settings: &V3Settings) -> Vec<(usize, usize)> {
    let mut prev_p = 0;
    (1..=nfe)
        .map(|step| {
            let c = if settings.use_corrector {
                prev_p + usize::from(settings.corrector_pseudo)
            } else {
                0
            };
            let mut p = step.min(settings.order);
            if settings.lower_order_final {
                p = p.min(nfe + 1 - step);
            }
            prev_p = p;
            (p, if c > 1 { c } else { 0 })
        })
        .collect()
}

/// Weights w[k − 1][i] with g^{(k)} ≈ Σ_i w[k−1][i]·g_i from values at λ_0..λ_n (λ_0 the
/// expansion point): the Taylor system Σ_k c_k (λ_j − λ_0)^k = g_j − g_0, g^{(k)} = k!·c_k,
/// or (pseudo) the k-th Newton divided difference over λ_0..λ_k times k!.
fn derivative_weights(lams: &[f64], pseudo: bool) -> Result<Vec<Vec<f64>>> {
    let n = lams.len() - 1;
    let fact = |k: usize| (1..=k).map(|i| i as f64).product::<f64>();
    if pseudo {
        // dd[i][j]: the divided difference over λ_j..λ_{j+i}, as weights on g_0..g_n.
        let mut dd: Vec<Vec<Vec<f64>>> = vec![
            (0..=n)
                .map(|j| (0..=n).map(|i| f64::from(u8::from(i == j))).collect())
                .collect(),
        ];
        for i in 1..=n {
            let row = (0..=n - i)
                .map(|j| {
                    let den = lams[j] - lams[i + j];
                    (0..=n)
                        .map(|m| (dd[i - 1][j][m] - dd[i - 1][j + 1][m]) / den)
                        .collect()
                })
                .collect();
            dd.push(row);
        }
        return Ok((1..=n)
            .map(|k| dd[k][0].iter().map(|w| w * fact(k)).collect())
            .collect());
    }
    let r = DMatrix::from_fn(n, n, |j, i| (lams[j + 1] - lams[0]).powi(i as i32 + 1));
    let inv = r.try_inverse().ok_or_else(|| {
        S3Error::Numerical(format!(
            "DPM-Solver-v3: singular derivative system at λ = {lams:?}"
        ))
    })?;
    Ok((1..=n)
        .map(|k| {
            let mut w = vec![0.0; n + 1];
            for j in 0..n {
                w[j + 1] = fact(k) * inv[(k - 1, j)];
                w[0] -= w[j + 1];
            }
            w
        })
        .collect())
}

/// The coefficients of one update from `sources` (point indices, `sources[0]` the start s)
/// into `target`, with derivatives by `pseudo` divided differences or the Taylor system.
fn plan_update(
    ems: &Ems,
    int: &EmsIntegrals,
    pts: &[V3Point],
    sources: &[usize],
    target: usize,
    pseudo: bool,
) -> Result<LinearUpdate> {
    let dim = ems.dim();
    let (s, t) = (pts[sources[0]], pts[target]);
    let (i_s, i_t) = (s.index, t.index);
    let lams: Vec<f64> = sources.iter().map(|&p| pts[p].lambda).collect();
    let weights = derivative_weights(&lams, pseudo)?;
    let e_k: Vec<Vec<f64>> = (1..sources.len()).map(|k| int.e_k(i_s, i_t, k)).collect();
    let (ls, lt) = (int.row(&int.big_l, i_s), int.row(&int.big_l, i_t));
    let ss = int.row(&int.big_s, i_s);
    let (is, it) = (int.row(&int.big_i, i_s), int.row(&int.big_i, i_t));
    let (bs, cs, ct) = (
        int.row(&int.big_b, i_s),
        int.row(&int.big_c, i_s),
        int.row(&int.big_c, i_t),
    );
    let mut up = LinearUpdate {
        points: sources.to_vec(),
        x_coef: vec![vec![0.0; dim]; sources.len()],
        eps_coef: vec![vec![0.0; dim]; sources.len()],
        constant: vec![0.0; dim],
    };
    for d in 0..dim {
        let decay = (ls[d] - lt[d]).exp();
        let p = t.alpha / s.alpha * decay;
        let q = t.alpha * (-lt[d] - ss[d]).exp() * (it[d] - is[d]);
        let r = t.alpha * (-lt[d]).exp() * (ct[d] - cs[d] - bs[d] * (it[d] - is[d]));
        up.constant[d] = -r;
        for (i, &src) in sources.iter().enumerate() {
            let pi = pts[src];
            let j = pi.index;
            // g_i = a ε_i + b x_i + c (get_g applied to f_i = (σ_i ε_i − l_i x_i)/α_i).
            let es = (ss[d] - int.row(&int.big_s, j)[d]).exp();
            let a = es * pi.sigma / pi.alpha;
            let b = -es * ems.l_at(j)[d] / pi.alpha;
            let c = -ss[d].exp() * (int.row(&int.big_b, j)[d] - bs[d]);
            let mut m = if i == 0 { -q } else { 0.0 };
            for (w, e) in weights.iter().zip(&e_k) {
                m -= t.alpha * decay * e[d] * w[i];
            }
            up.x_coef[i][d] = m * b + if i == 0 { p } else { 0.0 };
            up.eps_coef[i][d] = m * a;
            up.constant[d] += m * c;
        }
    }
    Ok(up)
}

/// Runs DPM-Solver-v3 for one model, noise schedule and EMS at a fixed NFE and settings.
pub struct V3Sampler<'a> {
    model: &'a dyn Denoiser,
    ems: &'a Ems,
    points: Vec<V3Point>,
    plans: Vec<StepPlan>,
    sub_batch: usize,
}

impl<'a> V3Sampler<'a> {
    /// Plans a run of `nfe` steps uniform in λ over the EMS grid, snapped to it (official
    /// `skip_type="logSNR"` with `convert_to_indexes` / `convert_to_timesteps`). Errors if the
    /// EMS were built for another noise schedule or sample shape, if the grid is too coarse
    /// for `nfe` distinct points, or if the settings are out of range.
    pub fn new(
        model: &'a dyn Denoiser,
        ns: &NoiseSchedule,
        ems: &'a Ems,
        nfe: usize,
        settings: V3Settings,
    ) -> Result<Self> {
        check_inputs(model, ns, ems, nfe, &settings)?;
        let grid = ems.grid;
        let indices = grid.uniform_indices(nfe);
        if indices.windows(2).any(|w| w[0] >= w[1]) {
            return Err(S3Error::field(
                "DPM-Solver-v3",
                "nfe",
                format!(
                    "{nfe} steps do not fit the EMS grid of {} intervals; expected at most {}",
                    grid.intervals, grid.intervals
                ),
            ));
        }
        let points: Vec<V3Point> = indices
            .iter()
            .map(|&index| {
                let lambda = grid.lambda(index);
                let t = ns.t_of_lambda(lambda);
                V3Point {
                    index,
                    t,
                    lambda,
                    alpha: ns.alpha(t),
                    sigma: ns.sigma(t),
                }
            })
            .collect();
        let int = EmsIntegrals::new(ems);
        let mut plans = Vec::with_capacity(nfe);
        for (i, (p, c)) in step_orders(nfe, &settings).into_iter().enumerate() {
            let step = i + 1;
            let corrector = if c > 0 {
                // Official order of the corrector's points: s, t, then older ones.
                let mut src = vec![step - 2, step - 1];
                src.extend((3..=c).map(|j| step - j));
                Some(plan_update(
                    ems,
                    &int,
                    &points,
                    &src,
                    step - 1,
                    settings.corrector_pseudo,
                )?)
            } else {
                None
            };
            let src: Vec<usize> = (1..=p).map(|j| step - j).collect();
            let predictor = plan_update(ems, &int, &points, &src, step, settings.predictor_pseudo)?;
            plans.push(StepPlan {
                corrector,
                predictor,
            });
        }
        Ok(Self {
            model,
            ems,
            points,
            plans,
            sub_batch: DEFAULT_SUB_BATCH,
        })
    }

    /// Sets the sub-batch size (samples run together).
    pub fn with_sub_batch(mut self, n: usize) -> Self {
        self.sub_batch = n.max(1);
        self
    }

    /// The run's N + 1 timesteps, snapped to the EMS grid.
    pub fn timesteps(&self) -> Vec<f64> {
        self.points.iter().map(|p| p.t).collect()
    }

    /// The run's points (grid indices and α, σ, λ).
    pub fn points(&self) -> &[V3Point] {
        &self.points
    }

    /// Runs from the initial noise `x_t0` (`batch × dim`, drawn at the first timestep) and
    /// returns the samples at the last timestep.
    pub fn sample(&self, x_t0: &[f32]) -> Result<Vec<f32>> {
        self.sample_real(x_t0)
    }

    /// [`V3Sampler::sample`] in f64 throughout (model calls included, where the model
    /// supports it), for golden and convergence checks.
    pub fn sample_f64(&self, x_t0: &[f64]) -> Result<Vec<f64>> {
        self.sample_real(x_t0)
    }

    fn sample_real<T: Real>(&self, x_t0: &[T]) -> Result<Vec<T>> {
        let dim = self.ems.dim();
        if x_t0.is_empty() || !x_t0.len().is_multiple_of(dim) {
            return Err(S3Error::Shape(format!(
                "initial noise has {} values; expected a positive multiple of the sample size {dim}",
                x_t0.len()
            )));
        }
        let mut out = Vec::with_capacity(x_t0.len());
        for chunk in x_t0.chunks(self.sub_batch * dim) {
            out.extend(self.run_batch(chunk)?);
        }
        Ok(out)
    }

    fn run_batch<T: Real>(&self, x_t0: &[T]) -> Result<Vec<T>> {
        let len = x_t0.len();
        let zero = T::from_f64(0.0);
        // Per point: (x, ε); points no update can reach any more are dropped.
        let mut cache: Vec<Option<(Vec<T>, Vec<T>)>> = vec![None; self.points.len()];
        cache[0] = Some((x_t0.to_vec(), vec![zero; len]));
        for (i, plan) in self.plans.iter().enumerate() {
            let step = i + 1;
            let pt = self.points[step - 1];
            let (x, eps) = cache[step - 1]
                .as_mut()
                .expect("the newest point is cached");
            let time = TimePoint {
                t: pt.t,
                alpha: pt.alpha,
                sigma: pt.sigma,
            };
            eval_eps(self.model, x, time, eps)?;
            if let Some(j) = eps.iter().position(|v| !v.to_f64().is_finite()) {
                return Err(S3Error::Numerical(format!(
                    "DPM-Solver-v3 step {step}: the model returned a non-finite value at t = {} (element {j})",
                    pt.t
                )));
            }
            if let Some(c) = &plan.corrector {
                let mut x_new = vec![zero; len];
                apply(c, &cache, &mut x_new, len);
                let (x, eps) = cache[step - 1].as_mut().expect("cached");
                replace_cache(x, eps, x_new, self.ems.l_at(pt.index), pt.sigma);
            }
            let mut x_next = vec![zero; len];
            apply(&plan.predictor, &cache, &mut x_next, len);
            cache[step] = Some((x_next, vec![zero; len]));
            if step >= MAX_HISTORY {
                cache[step - MAX_HISTORY] = None;
            }
        }
        let last = cache.pop().flatten().expect("the final point is cached");
        Ok(last.0)
    }
}

/// Checks the sample shape, the noise schedule against the grid, the NFE and the settings.
fn check_inputs(
    model: &dyn Denoiser,
    ns: &NoiseSchedule,
    ems: &Ems,
    nfe: usize,
    settings: &V3Settings,
) -> Result<()> {
    if model.dim() != ems.dim() {
        return Err(S3Error::Shape(format!(
            "the EMS have {} values per sample (shape {:?}); the model's samples have {}",
            ems.dim(),
            ems.shape,
            model.dim()
        )));
    }
    let g = ems.grid;
    for (t, l, field) in [
        (g.t_start, g.lambda_start, "t_start"),
        (g.t_end, g.lambda_end, "t_end"),
    ] {
        let here = ns.lambda(t);
        if (here - l).abs() > GRID_MATCH_TOL * l.abs().max(1.0) {
            return Err(S3Error::field(
                "DPM-Solver-v3 EMS grid",
                field,
                format!(
                    "λ({t}) = {l} on the grid but {here} under {}; the EMS were computed for another noise schedule",
                    ns.name()
                ),
            ));
        }
    }
    if nfe == 0 {
        return Err(S3Error::field(
            "DPM-Solver-v3",
            "nfe",
            "expected at least 1",
        ));
    }
    if !(1..=MAX_V3_ORDER).contains(&settings.order) {
        return Err(S3Error::field(
            "DPM-Solver-v3",
            "order",
            format!("{}; expected 1 to {MAX_V3_ORDER}", settings.order),
        ));
    }
    Ok(())
}

/// out = Z + Σ_i (X_i ⊙ x_i + E_i ⊙ ε_i), the coefficients broadcast over the samples,
/// accumulated in f64.
fn apply<T: Real>(u: &LinearUpdate, cache: &[Option<(Vec<T>, Vec<T>)>], out: &mut [T], len: usize) {
    let dim = u.constant.len();
    let srcs: Vec<(&[T], &[T])> = u
        .points
        .iter()
        .map(|&p| {
            let (x, e) = cache[p]
                .as_ref()
                .expect("an update reads only cached points");
            debug_assert_eq!(x.len(), len);
            (x.as_slice(), e.as_slice())
        })
        .collect();
    out.par_chunks_mut(dim)
        .enumerate()
        .with_min_len(64)
        .for_each(|(n, o)| {
            let base = n * dim;
            for (d, o) in o.iter_mut().enumerate() {
                let mut acc = u.constant[d];
                for (i, (x, e)) in srcs.iter().enumerate() {
                    acc += u.x_coef[i][d] * x[base + d].to_f64()
                        + u.eps_coef[i][d] * e[base + d].to_f64();
                }
                *o = T::from_f64(acc);
            }
        });
}

/// The corrector's cache replacement: with N_old = σε − l·x_old, set x ← x_new and
/// ε ← (N_old + l·x_new)/σ (official `sample`, after `multistep_corrector_update`).
fn replace_cache<T: Real>(x: &mut Vec<T>, eps: &mut [T], x_new: Vec<T>, l: &[f64], sigma: f64) {
    let dim = l.len();
    for (n, ((e, xo), xn)) in eps.iter_mut().zip(x.iter()).zip(&x_new).enumerate() {
        let li = l[n % dim];
        let n_old = sigma * e.to_f64() - li * xo.to_f64();
        *e = T::from_f64((n_old + li * xn.to_f64()) / sigma);
    }
    *x = x_new;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_sde_orders_follow_the_official_loop() {
        let s5 = V3Settings::score_sde(5);
        assert!(s5.predictor_pseudo && s5.use_corrector && !s5.lower_order_final);
        assert_eq!(
            step_orders(5, &s5),
            [(1, 0), (2, 0), (3, 2), (3, 3), (3, 3)]
        );
        let s6 = V3Settings::score_sde(6);
        assert_eq!(
            step_orders(6, &s6),
            [(1, 0), (2, 0), (3, 2), (3, 3), (2, 3), (1, 2)]
        );
        let s10 = V3Settings::score_sde(10);
        assert!(!s10.use_corrector && s10.lower_order_final);
        assert!(step_orders(10, &s10).iter().all(|&(_, c)| c == 0));
    }

    /// Both derivative estimates are exact on a polynomial of their order; for two points
    /// they agree.
    #[test]
    fn derivative_weights_differentiate_polynomials() {
        let lams = [0.3, 0.1, -0.4];
        let g = |l: f64| 2.0 + 3.0 * (l - 0.3) - 1.5 * (l - 0.3).powi(2);
        for pseudo in [false, true] {
            let w = derivative_weights(&lams, pseudo).unwrap();
            let d: Vec<f64> = w
                .iter()
                .map(|w| w.iter().zip(&lams).map(|(w, &l)| w * g(l)).sum())
                .collect();
            // The 2nd divided difference is g''/2; ×2! it is g'' = −3 either way; the first
            // derivative differs: Taylor gives g'(λ_0) = 3, the divided difference does not.
            assert!((d[1] + 3.0).abs() < 1e-12, "{pseudo}: {d:?}");
            if !pseudo {
                assert!((d[0] - 3.0).abs() < 1e-12, "{d:?}");
            }
        }
        let a = derivative_weights(&lams[..2], true).unwrap();
        let b = derivative_weights(&lams[..2], false).unwrap();
        assert!(a[0].iter().zip(&b[0]).all(|(x, y)| (x - y).abs() < 1e-12));
    }
}

//! The USF sampler: an interpreter of a [`SolverSchedule`]. It keeps a short history of
//! (x, ε, x0) at visited times, plans each update in f64 (`update`) and applies it in one fused
//! pass over preallocated buffers: f32 in production, f64 for verification runs
//! ([`Sampler::sample_f64`]), where f32 rounding would hide high-order convergence.

use super::schedule::{Afs, Prediction, SolverSchedule, Step};
use super::update::{PointMeta, UpdatePlan, plan_update};
use crate::error::{Result, S3Error};
use crate::model::{Denoiser, Real, TimePoint, eval_predictions};
use crate::noise::NoiseSchedule;
use rayon::prelude::*;
use std::collections::VecDeque;

/// Samples are processed in independent sub-batches of at most this many (bounds memory).
pub const DEFAULT_SUB_BATCH: usize = 2048;

/// Runs schedules for one model under one noise schedule.
pub struct Sampler<'a> {
    model: &'a dyn Denoiser,
    ns: &'a NoiseSchedule,
    data_mean: Option<Vec<f64>>,
    sub_batch: usize,
}

/// What a run returns.
#[derive(Debug, Clone)]
pub struct SampleOutput<T = f32> {
    /// Final samples, `batch × dim`.
    pub samples: Vec<T>,
    /// Model calls made per sample (equals the schedule's NFE).
    pub nfe: usize,
}

/// One visited point: where it is, x there, and the model outputs there (if evaluated).
struct Point<T> {
    meta: PointMeta,
    x: Vec<T>,
    eps: Vec<T>,
    x0: Vec<T>,
}

impl<'a> Sampler<'a> {
    /// A sampler for `model` under `ns`.
    pub fn new(model: &'a dyn Denoiser, ns: &'a NoiseSchedule) -> Self {
        Self {
            model,
            ns,
            data_mean: None,
            sub_batch: DEFAULT_SUB_BATCH,
        }
    }

    /// Sets the data mean used by the `average_x0` analytical first step.
    pub fn with_data_mean(mut self, mean: Vec<f64>) -> Self {
        self.data_mean = Some(mean);
        self
    }

    /// Sets the sub-batch size (samples run together).
    pub fn with_sub_batch(mut self, n: usize) -> Self {
        self.sub_batch = n.max(1);
        self
    }

    /// Checks that the schedule is valid and its times lie on this noise schedule
    /// ([`SolverSchedule::validate_on`]).
    pub fn check(&self, schedule: &SolverSchedule) -> Result<()> {
        schedule.validate_on(self.ns)?;
        if schedule.afs == Afs::AverageX0 && self.data_mean.is_none() {
            return Err(S3Error::InvalidSchedule(
                "afs `average_x0` needs the data mean, which this model does not provide".into(),
            ));
        }
        Ok(())
    }

    /// Runs `schedule` from the initial noise `x_t0` (`batch × dim`, drawn at t_0: for VP
    /// schedules x_T ~ N(0, I), for EDM x_T ~ N(0, T² I), for flow from t = 1 x_T ~ N(0, I)).
    pub fn sample(&self, schedule: &SolverSchedule, x_t0: &[f32]) -> Result<SampleOutput> {
        self.sample_real(schedule, x_t0)
    }

    /// [`Sampler::sample`] in f64 throughout (model calls included, where the model supports
    /// it): for convergence and golden checks below f32 precision.
    pub fn sample_f64(&self, schedule: &SolverSchedule, x_t0: &[f64]) -> Result<SampleOutput<f64>> {
        self.sample_real(schedule, x_t0)
    }

    fn sample_real<T: Real>(
        &self,
        schedule: &SolverSchedule,
        x_t0: &[T],
    ) -> Result<SampleOutput<T>> {
        self.check(schedule)?;
        let dim = self.model.dim();
        if x_t0.is_empty() || !x_t0.len().is_multiple_of(dim) {
            return Err(S3Error::Shape(format!(
                "initial noise has {} values; expected a positive multiple of the sample size {dim}",
                x_t0.len()
            )));
        }
        let mut samples = Vec::with_capacity(x_t0.len());
        let mut nfe = 0;
        for chunk in x_t0.chunks(self.sub_batch * dim) {
            let (x, n) = self.run_batch(schedule, chunk)?;
            samples.extend_from_slice(&x);
            nfe = n;
        }
        if nfe != schedule.nfe {
            return Err(S3Error::Numerical(format!(
                "internal: made {nfe} model calls for a schedule of NFE {}",
                schedule.nfe
            )));
        }
        Ok(SampleOutput { samples, nfe })
    }

    /// Calls the model at point `p`, telling it the time t + `offset` (the schedule's
    /// `time_offsets`). With an offset, the ε it predicts there is taken as the ε at the
    /// point's own t, and x0 is converted from it at t: x0 = (x − σ_t ε)/α_t.
    fn eval_model<T: Real>(&self, p: &mut Point<T>, offset: f64) -> Result<()> {
        let m = p.meta;
        let told = if offset == 0.0 {
            m
        } else {
            PointMeta::at(self.ns, m.t + offset)
        };
        let time = TimePoint {
            t: told.t,
            alpha: told.alpha,
            sigma: told.sigma,
        };
        eval_predictions(self.model, &p.x, time, &mut p.eps, &mut p.x0)?;
        if offset != 0.0 {
            let (inv_a, s) = (1.0 / m.alpha, m.sigma);
            for ((x0, &x), &e) in p.x0.iter_mut().zip(&p.x).zip(&p.eps) {
                *x0 = T::from_f64((x.to_f64() - s * e.to_f64()) * inv_a);
            }
        }
        let bad = |v: &T| !v.to_f64().is_finite();
        if let Some(i) = p.eps.par_iter().position_any(bad) {
            return Err(S3Error::Numerical(format!(
                "the model returned a non-finite value at t = {} (element {i})",
                told.t
            )));
        }
        if let Some(i) = p.x0.par_iter().position_any(bad) {
            return Err(S3Error::Numerical(format!(
                "the x0 prediction is not finite at t = {} (element {i})",
                m.t
            )));
        }
        Ok(())
    }

    fn run_batch<T: Real>(&self, schedule: &SolverSchedule, x_t0: &[T]) -> Result<(Vec<T>, usize)> {
        let len = x_t0.len();
        let depth = schedule.history_depth();
        let zero = T::from_f64(0.0);
        let mut pool: Vec<Vec<T>> = Vec::new();
        let take = |pool: &mut Vec<Vec<T>>| pool.pop().unwrap_or_else(|| vec![zero; len]);
        let mut history: VecDeque<Point<T>> = VecDeque::with_capacity(depth + 1);
        let mut nfe = 0;

        let meta0 = PointMeta::at(self.ns, schedule.timesteps[0]);
        let mut first = Point {
            meta: meta0,
            x: x_t0.to_vec(),
            eps: take(&mut pool),
            x0: take(&mut pool),
        };
        match schedule.afs {
            Afs::None => {
                self.eval_model(&mut first, schedule.time_offset(0))?;
                nfe += 1;
            }
            Afs::ZeroX0 => {
                first.x0.fill(zero);
                let inv = 1.0 / meta0.sigma;
                for (e, &x) in first.eps.iter_mut().zip(&first.x) {
                    *e = T::from_f64(x.to_f64() * inv);
                }
            }
            Afs::AverageX0 => {
                let mean = self.data_mean.as_deref().expect("checked above");
                for o in first.x0.chunks_mut(mean.len()) {
                    for (oi, &m) in o.iter_mut().zip(mean) {
                        *oi = T::from_f64(m);
                    }
                }
                let (a, inv) = (meta0.alpha, 1.0 / meta0.sigma);
                for ((e, &x), &m) in first.eps.iter_mut().zip(&first.x).zip(&first.x0) {
                    *e = T::from_f64((x.to_f64() - a * m.to_f64()) * inv);
                }
            }
        }
        history.push_back(first);

        let n = schedule.steps.len();
        for (i, step) in schedule.steps.iter().enumerate() {
            let t = schedule.timesteps[i + 1];
            if t == 0.0 {
                // Denoise: the last step returns the newest x0 prediction.
                let newest = history.back().expect("history is never empty");
                return Ok((newest.x0.clone(), nfe));
            }
            let target = PointMeta::at(self.ns, t);
            let metas: Vec<PointMeta> = history.iter().map(|p| p.meta).collect();
            let plan = plan_update(
                &metas,
                -1,
                &target,
                step.prediction,
                step.order,
                &step.derivatives,
            )
            .map_err(|e| step_error(i, e))?;
            let mut x_new = take(&mut pool);
            apply(&plan, &history, &mut x_new);

            // Recycle points no later step can reach.
            while history.len() >= depth {
                let old = history.pop_front().expect("non-empty");
                pool.extend([old.x, old.eps, old.x0]);
            }
            let mut point = Point {
                meta: target,
                x: x_new,
                eps: take(&mut pool),
                x0: take(&mut pool),
            };
            let last = i + 1 == n;
            if !last || step.corrector.is_some() {
                self.eval_model(&mut point, schedule.time_offset(i + 1))?;
                nfe += 1;
            }
            history.push_back(point);
            if let Some(c) = &step.corrector {
                self.correct(&mut history, step, c, &mut pool)
                    .map_err(|e| step_error(i, e))?;
            }
        }
        let newest = history.pop_back().expect("history is never empty");
        Ok((newest.x, nfe))
    }

    /// Replaces the newest x by the pseudo-corrector's update from the point before it.
    fn correct<T: Real>(
        &self,
        history: &mut VecDeque<Point<T>>,
        step: &Step,
        corrector: &super::schedule::Corrector,
        pool: &mut Vec<Vec<T>>,
    ) -> Result<()> {
        let metas: Vec<PointMeta> = history.iter().map(|p| p.meta).collect();
        let target = *metas.last().expect("non-empty");
        let plan = plan_update(
            &metas,
            -2,
            &target,
            step.prediction,
            corrector.order(),
            corrector.derivatives(),
        )?;
        let len = history.back().expect("non-empty").x.len();
        let mut x_corr = pool.pop().unwrap_or_else(|| vec![T::from_f64(0.0); len]);
        apply(&plan, history, &mut x_corr);
        let newest = history.back_mut().expect("non-empty");
        let old = std::mem::replace(&mut newest.x, x_corr);
        pool.push(old);
        Ok(())
    }
}

fn step_error(i: usize, e: S3Error) -> S3Error {
    match e {
        S3Error::InvalidSchedule(m) => S3Error::InvalidSchedule(format!("step {i}: {m}")),
        S3Error::Numerical(m) => S3Error::Numerical(format!("step {i}: {m}")),
        other => other,
    }
}

/// Applies a plan: out = c·x_s + Σ w_j F_j with F the ε or x0 history of the plan's source.
fn apply<T: Real>(plan: &UpdatePlan, history: &VecDeque<Point<T>>, out: &mut [T]) {
    let prediction = plan.source;
    fn model_of<T>(p: &Point<T>, prediction: Prediction) -> &[T] {
        match prediction {
            Prediction::Noise => &p.eps,
            Prediction::Data => &p.x0,
        }
    }
    let mut terms: Vec<(f64, &[T])> = Vec::with_capacity(plan.model_terms.len() + 1);
    terms.push((plan.x_coef, &history[plan.start].x));
    for &(slot, w) in &plan.model_terms {
        terms.push((w, model_of(&history[slot], prediction)));
    }
    combine_into(out, &terms);
}

/// out = Σ_k w_k · src_k over equally long buffers, accumulated in f64 and stored as T.
/// Works block by block so every source is streamed from memory once; parallel for large
/// buffers.
pub fn combine_into<T: Real>(out: &mut [T], terms: &[(f64, &[T])]) {
    const BLOCK: usize = 2048;
    let block = |(bi, o): (usize, &mut [T])| {
        let base = bi * BLOCK;
        let mut acc = [0.0f64; BLOCK];
        let acc = &mut acc[..o.len()];
        let (w0, s0) = terms[0];
        for (a, &v) in acc.iter_mut().zip(&s0[base..base + o.len()]) {
            *a = w0 * v.to_f64();
        }
        for &(w, s) in &terms[1..] {
            for (a, &v) in acc.iter_mut().zip(&s[base..base + o.len()]) {
                *a += w * v.to_f64();
            }
        }
        for (o, &a) in o.iter_mut().zip(acc.iter()) {
            *o = T::from_f64(a);
        }
    };
    if out.len() >= 1 << 16 {
        out.par_chunks_mut(BLOCK).enumerate().for_each(block);
    } else {
        out.chunks_mut(BLOCK).enumerate().for_each(block);
    }
}

//! Candidate operators over schedules at one NFE: sample, mutate, cross over, repair,
//! canonicalise, hash.
//!
//! Internally a candidate is a genome — the analytical first step, the final time, interior
//! times in a normalised coordinate u ∈ (0, 1), and one gene per step (prediction, order,
//! first-derivative point count, linear relaxation, corrector) — that `repair` turns into an
//! always-valid [`SolverSchedule`] with exactly the target NFE.
//!
//! Schedules start at the noise schedule's t_max. Where that is pure noise (flow at t = 1:
//! α = 0, λ = −∞) it is left out of every step's usable history — the first step is order 1
//! without corrector and no derivative reaches back to it, as `validate_on` requires — and
//! the λ coordinate measures u from the mirror image of the smallest final time,
//! λ = −λ(t_ref) ([`NoiseSchedule::finite_lambda_start`]).

use super::config::{SearchSpace, TimeCoordinate};
use super::fixed;
use crate::error::{Result, S3Error};
use crate::noise::NoiseSchedule;
use crate::solver::{
    Afs, ClassicSolver, Corrector, Derivative, Prediction, Relaxation, SolverSchedule, Step,
};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use std::collections::BTreeMap;

/// The per-step decisions of a genome.
#[derive(Debug, Clone, PartialEq)]
struct Gene {
    prediction: Prediction,
    order: usize,
    /// Points used by the first derivative.
    first_points: usize,
    /// Linear relaxation coefficient c of the first derivative, if any.
    relax: Option<f64>,
    corrector: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct Genome {
    afs: Afs,
    t_end: f64,
    /// Interior times in u, increasing (t decreasing).
    interior: Vec<f64>,
    genes: Vec<Gene>,
}

/// Samples and transforms candidate schedules for one search space, noise schedule and NFE.
pub struct Candidates<'a> {
    space: &'a SearchSpace,
    ns: &'a NoiseSchedule,
    nfe: usize,
    t_start: f64,
    /// The smallest final time the space allows; u = 1 there.
    t_ref: f64,
    t_end_range: (f64, f64),
    /// λ at u = 0 and u = 1 of the λ coordinate (finite).
    lambda_range: (f64, f64),
    /// Whether t_start is pure noise (then it never enters a derivative or corrector).
    pure_start: bool,
    /// A classic solver whose decisions every candidate takes (only times are searched).
    fixed: Option<ClassicSolver>,
}

fn draw<R: Rng>(prior: &BTreeMap<String, f64>, rng: &mut R) -> String {
    let total: f64 = prior.values().sum();
    let mut x = rng.random::<f64>() * total;
    for (k, w) in prior {
        if x < *w {
            return k.clone();
        }
        x -= w;
    }
    prior
        .keys()
        .next_back()
        .expect("validated non-empty")
        .clone()
}

impl<'a> Candidates<'a> {
    /// Operators for schedules of exactly `nfe` model calls.
    pub fn new(space: &'a SearchSpace, ns: &'a NoiseSchedule, nfe: usize) -> Result<Self> {
        if nfe == 0 {
            return Err(S3Error::field("search", "--nfe", "must be at least 1"));
        }
        let (t_min, t_floor, t_start) = (ns.t_min(), ns.t_floor(), ns.t_max());
        let [a, b] = space.time.t_end_relative;
        // The range is relative to the schedule's t_min and clamped to where the schedule
        // is defined, so one space serves every noise schedule (USF's [0.1, 1]·t_min becomes
        // [t_min, t_min] on a discrete schedule, whose first training time is t_min).
        let (lo, hi) = ((a * t_min).max(t_floor), (b * t_min).max(t_floor));
        if hi >= t_start {
            return Err(S3Error::field(
                &space.name,
                "time.t_end_relative",
                format!(
                    "[{a}, {b}] × t_min = {t_min} reaches {hi} ≥ {}'s start time {t_start}",
                    ns.name()
                ),
            ));
        }
        let lambda_range = (ns.finite_lambda_start(t_start, lo), ns.lambda(lo));
        if space.time.coordinate == TimeCoordinate::Lambda && lambda_range.0 >= lambda_range.1 {
            return Err(S3Error::field(
                &space.name,
                "time.coordinate",
                format!(
                    "lambda from {}'s pure-noise start needs a smallest final time with λ > 0; t = {lo} has λ = {}",
                    ns.name(),
                    lambda_range.1
                ),
            ));
        }
        let ops = Self {
            space,
            ns,
            nfe,
            t_start,
            t_ref: lo,
            t_end_range: (lo, hi),
            lambda_range,
            pure_start: ns.is_pure_noise(t_start),
            fixed: None,
        };
        ops.check_room(hi)?;
        Ok(ops)
    }

    /// Refuses a `time.min_gap` that leaves no room for the schedule's times: every step
    /// (NFE, one more with AFS) needs `min_gap` of the time coordinate up to the latest
    /// final time `t_end_max`.
    fn check_room(&self, t_end_max: f64) -> Result<()> {
        let gap = self.space.time.min_gap;
        let steps = self.nfe + 1;
        let room = self.u_of_t(t_end_max);
        if (steps + 1) as f64 * gap > room {
            return Err(S3Error::field(
                &self.space.name,
                "time.min_gap",
                format!(
                    "{gap} leaves no room for {} model calls (up to {steps} steps with AFS need {} of the time coordinate, which spans {room:.4} up to the latest final time); use a smaller min_gap or NFE",
                    self.nfe,
                    (steps + 1) as f64 * gap,
                ),
            ));
        }
        Ok(())
    }

    /// The same operators for one fixed classic solver (`s3 search --solver`): every
    /// candidate is `solver` over searched model-call times (see `fixed`), without an
    /// analytical first step.
    pub fn with_solver(mut self, solver: ClassicSolver) -> Result<Self> {
        let end = fixed::final_time(solver, self.ns);
        let gap = self.space.time.min_gap;
        if end > 0.0 && self.u_of_t(end) <= gap * (self.nfe + 1) as f64 {
            return Err(S3Error::field(
                "search",
                "--solver",
                format!(
                    "{} ends at t = {end} on {}, which leaves no room for {} model calls between t = {} and there",
                    solver.label(),
                    self.ns.name(),
                    self.nfe,
                    self.t_start
                ),
            ));
        }
        self.fixed = Some(solver);
        Ok(self)
    }

    /// The fixed solver, if any.
    pub fn solver(&self) -> Option<ClassicSolver> {
        self.fixed
    }

    /// The target NFE.
    pub fn nfe(&self) -> usize {
        self.nfe
    }

    fn u_of_t(&self, t: f64) -> f64 {
        match self.space.time.coordinate {
            TimeCoordinate::T => (self.t_start - t) / (self.t_start - self.t_ref),
            TimeCoordinate::Lambda => {
                let (l0, l1) = self.lambda_range;
                (self.ns.lambda(t) - l0) / (l1 - l0)
            }
        }
    }

    fn t_of_u(&self, u: f64) -> f64 {
        match self.space.time.coordinate {
            TimeCoordinate::T => self.t_start - u * (self.t_start - self.t_ref),
            TimeCoordinate::Lambda => {
                let (l0, l1) = self.lambda_range;
                self.ns.t_of_lambda(l0 + u * (l1 - l0))
            }
        }
    }

    fn random_gene<R: Rng>(&self, rng: &mut R) -> Gene {
        let p = &self.space.priors;
        let relax = (rng.random::<f64>() < p.linear_relaxation).then(|| {
            let v = p.relaxation_values[rng.random_range(0..p.relaxation_values.len())];
            v + jitter(rng, p.relaxation_std)
        });
        Gene {
            prediction: if draw(&p.prediction, rng) == "noise" {
                Prediction::Noise
            } else {
                Prediction::Data
            },
            order: draw(&p.order, rng).parse().expect("validated key"),
            first_points: draw(&p.first_derivative_points, rng)
                .parse()
                .expect("validated key"),
            relax,
            corrector: rng.random::<f64>() < p.corrector,
        }
    }

    fn random_afs<R: Rng>(&self, rng: &mut R) -> Afs {
        match draw(&self.space.priors.afs, rng).as_str() {
            "zero_x0" => Afs::ZeroX0,
            "average_x0" => Afs::AverageX0,
            _ => Afs::None,
        }
    }

    fn random_t_end<R: Rng>(&self, rng: &mut R) -> f64 {
        let (a, b) = self.t_end_range;
        if a == b { a } else { rng.random_range(a..=b) }
    }

    /// A random schedule with the target NFE.
    pub fn random<R: Rng>(&self, rng: &mut R) -> SolverSchedule {
        let afs = self.random_afs(rng);
        let steps = self.nfe + usize::from(afs != Afs::None);
        let g = Genome {
            afs,
            t_end: self.random_t_end(rng),
            interior: (1..steps).map(|_| rng.random::<f64>()).collect(),
            genes: (0..steps).map(|_| self.random_gene(rng)).collect(),
        };
        self.build(g, rng)
    }

    /// A mutated copy of `parent` (USF's operators: step insertion and deletion, per-step
    /// resampling of each decision, timestep jitter, AFS resampling), repaired to the NFE.
    pub fn mutate<R: Rng>(&self, parent: &SolverSchedule, rng: &mut R) -> SolverSchedule {
        let m = &self.space.mutation;
        let mut g = self.genome_of(parent);
        if rng.random::<f64>() < m.add_step {
            let u = rng.random::<f64>();
            let pos = g.interior.partition_point(|&v| v < u);
            g.interior.insert(pos, u);
            g.genes.insert(pos + 1, self.random_gene(rng));
        }
        if rng.random::<f64>() < m.delete_step && !g.interior.is_empty() {
            let pos = rng.random_range(0..g.interior.len());
            g.interior.remove(pos);
            g.genes.remove(pos + 1);
        }
        let std = self.space.time.jitter_std;
        for i in 0..g.genes.len() {
            if rng.random::<f64>() < m.per_step {
                if i < g.interior.len() {
                    let old = g.interior[i];
                    let new = old + jitter(rng, std);
                    // As USF: revert a move that lands at either end.
                    if new > self.space.time.min_gap && new < 1.0 - self.space.time.min_gap {
                        g.interior[i] = new;
                    }
                } else {
                    g.t_end = self.random_t_end(rng);
                }
            }
            let fresh = self.random_gene(rng);
            let gene = &mut g.genes[i];
            if rng.random::<f64>() < m.per_step {
                gene.order = fresh.order;
            }
            if rng.random::<f64>() < m.per_step {
                gene.prediction = fresh.prediction;
            }
            if rng.random::<f64>() < m.per_step {
                let p = &self.space.priors;
                gene.relax = Some(gene.relax.unwrap_or(0.0) + jitter(rng, p.relaxation_std));
            }
            if rng.random::<f64>() < m.per_step {
                gene.first_points = fresh.first_points;
            }
            if rng.random::<f64>() < m.per_step {
                gene.corrector = fresh.corrector;
            }
        }
        if rng.random::<f64>() < m.afs {
            g.afs = self.random_afs(rng);
        }
        self.build(g, rng)
    }

    /// A child of two parents with the same number of steps (None otherwise): timesteps,
    /// AFS and the per-step decisions each come from one parent — with probability `deep`
    /// chosen step by step, else as whole lists.
    pub fn crossover<R: Rng>(
        &self,
        a: &SolverSchedule,
        b: &SolverSchedule,
        rng: &mut R,
    ) -> Option<SolverSchedule> {
        if a.steps.len() != b.steps.len() {
            return None;
        }
        let (ga, gb) = (self.genome_of(a), self.genome_of(b));
        let pick = |rng: &mut R| rng.random::<bool>();
        let times = if pick(rng) { &ga } else { &gb };
        let mut child = Genome {
            afs: if pick(rng) { ga.afs } else { gb.afs },
            t_end: times.t_end,
            interior: times.interior.clone(),
            genes: if pick(rng) {
                ga.genes.clone()
            } else {
                gb.genes.clone()
            },
        };
        if rng.random::<f64>() < self.space.crossover.deep {
            for (i, gene) in child.genes.iter_mut().enumerate() {
                *gene = if pick(rng) {
                    ga.genes[i].clone()
                } else {
                    gb.genes[i].clone()
                };
            }
        }
        Some(self.build(child, rng))
    }

    /// Brings any schedule onto this space's grid of rules at the target NFE: times sorted
    /// and separated, orders and derivative points within the history, correctors rebuilt
    /// by USF's rule and never on the last step, and steps added or removed to hit the NFE.
    pub fn repair<R: Rng>(&self, s: &SolverSchedule, rng: &mut R) -> SolverSchedule {
        let g = self.genome_of(s);
        self.build(g, rng)
    }

    fn genome_of(&self, s: &SolverSchedule) -> Genome {
        let n = s.steps.len();
        let t_end = match s.timesteps.last() {
            Some(&t) if t > 0.0 => t.clamp(self.t_end_range.0, self.t_end_range.1),
            _ => self.t_end_range.1,
        };
        let interior = s.timesteps[1..n.max(1)]
            .iter()
            .map(|&t| self.u_of_t(t))
            .collect();
        let genes = s
            .steps
            .iter()
            .map(|st| {
                let d1 = st.derivatives.first();
                Gene {
                    prediction: st.prediction,
                    order: st.order,
                    first_points: d1.map_or(1, |d| d.points.len()),
                    relax: d1.and_then(|d| match d.relaxation {
                        Relaxation::Linear { c } => Some(c),
                        _ => None,
                    }),
                    corrector: st.corrector.is_some(),
                }
            })
            .collect();
        Genome {
            afs: s.afs,
            t_end,
            interior,
            genes,
        }
    }

    fn build<R: Rng>(&self, mut g: Genome, rng: &mut R) -> SolverSchedule {
        if let Some(solver) = self.fixed {
            return self.build_fixed(solver, &g, rng);
        }
        let gap = self.space.time.min_gap;
        let u_end = self.u_of_t(g.t_end);
        let steps = self.nfe + usize::from(g.afs != Afs::None);
        // Interior times strictly inside (0, u_end) with gaps; genes follow their steps.
        let mut pairs: Vec<(f64, Gene)> = g
            .interior
            .iter()
            .copied()
            .zip(g.genes.iter().skip(1).cloned())
            .filter(|(u, _)| u.is_finite() && *u > gap && *u < u_end - gap)
            .collect();
        pairs.sort_by(|x, y| x.0.total_cmp(&y.0));
        pairs.dedup_by(|x, y| x.0 - y.0 < gap);
        let first = g
            .genes
            .first()
            .cloned()
            .unwrap_or_else(|| self.random_gene(rng));
        while pairs.len() > steps - 1 {
            pairs.remove(rng.random_range(0..pairs.len()));
        }
        while pairs.len() < steps - 1 {
            let taken: Vec<f64> = pairs.iter().map(|(v, _)| *v).collect();
            let u = draw_spaced(&taken, gap, u_end - gap, gap, rng);
            let pos = pairs.partition_point(|(v, _)| *v < u);
            pairs.insert(pos, (u, self.random_gene(rng)));
        }
        let mut timesteps = vec![self.t_start];
        timesteps.extend(pairs.iter().map(|(u, _)| self.t_of_u(*u)));
        timesteps.push(g.t_end);
        g.genes = std::iter::once(first)
            .chain(pairs.into_iter().map(|(_, gene)| gene))
            .collect();
        let steps: Vec<Step> = g
            .genes
            .iter()
            .enumerate()
            .map(|(i, gene)| self.step_of(gene, i, i + 1 == steps))
            .collect();
        let s = SolverSchedule::new(g.afs, timesteps, steps);
        canonical(&s)
    }

    /// A fixed-solver candidate: the genome's interior times (all NFE − 1 model calls after
    /// t_0, down to the smallest time the space allows) under the solver's own decisions.
    fn build_fixed<R: Rng>(
        &self,
        solver: ClassicSolver,
        g: &Genome,
        rng: &mut R,
    ) -> SolverSchedule {
        let gap = self.space.time.min_gap;
        let end = fixed::final_time(solver, self.ns);
        let u_max = if end > 0.0 {
            self.u_of_t(end) - gap
        } else {
            1.0
        };
        let mut us: Vec<f64> = g
            .interior
            .iter()
            .copied()
            .filter(|u| u.is_finite() && *u > gap && *u <= u_max)
            .collect();
        us.sort_by(f64::total_cmp);
        us.dedup_by(|x, y| *x - *y < gap);
        while us.len() > self.nfe - 1 {
            us.remove(rng.random_range(0..us.len()));
        }
        while us.len() < self.nfe - 1 {
            let u = draw_spaced(&us, gap, u_max, gap, rng);
            let pos = us.partition_point(|v| *v < u);
            us.insert(pos, u);
        }
        let mut times = vec![self.t_start];
        times.extend(us.iter().map(|&u| self.t_of_u(u)));
        fixed::snap_to_training_grid(self.ns, &mut times, end);
        times.push(end);
        fixed::build(solver, self.ns, times)
    }

    fn step_of(&self, gene: &Gene, i: usize, last: bool) -> Step {
        // History points before step i that a derivative may use: all i + 1 (the start −1
        // included) but a pure-noise t_0.
        let usable = (i + 1 - usize::from(self.pure_start)).max(1);
        let order = gene.order.clamp(1, usable);
        let mut derivatives: Vec<Derivative> = (1..order)
            .map(|_| Derivative::new((2..=order as i32).map(|j| -j).collect()))
            .collect();
        if let Some(d1) = derivatives.first_mut() {
            let m = gene.first_points.clamp(1, usable - 1);
            d1.points = (2..=(m as i32 + 1)).map(|j| -j).collect();
            if let Some(c) = gene.relax {
                d1.relaxation = Relaxation::Linear { c };
            }
        }
        let mut step = Step {
            prediction: gene.prediction,
            order,
            derivatives,
            corrector: None,
        };
        if gene.corrector && !last && !(self.pure_start && i == 0) {
            step.corrector = Some(Corrector::from_predictor(&step));
        }
        step
    }
}

fn jitter<R: Rng>(rng: &mut R, std: f64) -> f64 {
    if std == 0.0 {
        return 0.0;
    }
    Normal::new(0.0, std)
        .expect("std validated ≥ 0")
        .sample(rng)
}

/// The canonical form of a schedule: labels and informational fields dropped, derivative
/// points sorted (the estimate does not depend on their order), relaxations that do nothing
/// (`linear` with c = 0, `scale` with k = 1) written as `none`.
pub fn canonical(s: &SolverSchedule) -> SolverSchedule {
    let mut c = s.clone();
    c.name = None;
    c.noise_schedule = None;
    c.sigmas = None;
    let fix = |d: &mut Derivative| {
        d.points.sort_unstable_by(|a, b| b.cmp(a));
        if matches!(d.relaxation, Relaxation::Linear { c } if c == 0.0)
            || matches!(d.relaxation, Relaxation::Scale { k } if k == 1.0)
        {
            d.relaxation = Relaxation::None;
        }
    };
    for st in &mut c.steps {
        st.derivatives.iter_mut().for_each(fix);
        if let Some(Corrector::Pseudo { derivatives, .. }) = &mut st.corrector {
            derivatives.iter_mut().for_each(fix);
        }
    }
    c
}

/// A stable identity of a schedule: the blake3 hash (32 hex digits) of its canonical JSON.
/// Identical decisions give the same hash in every process and build.
pub fn schedule_hash(s: &SolverSchedule) -> String {
    let json = serde_json::to_vec(&canonical(s)).expect("schedules serialise");
    blake3::hash(&json).to_hex()[..32].to_string()
}

/// Random draws [`draw_spaced`] makes for a time `gap` away from the others. `Candidates::new`
/// checks that the space leaves room for every step, so running out is practically
/// impossible at the gaps and NFEs it accepts.
const SPACED_DRAWS: usize = 1000;

/// A uniform time in `[lo, hi)` at least `gap` from every time in `taken`; after
/// [`SPACED_DRAWS`] misses the last draw is kept (a time a little closer than `gap` rather
/// than no candidate).
fn draw_spaced<R: Rng>(taken: &[f64], lo: f64, hi: f64, gap: f64, rng: &mut R) -> f64 {
    let mut u = rng.random_range(lo..hi);
    for _ in 1..SPACED_DRAWS {
        if taken.iter().all(|v| (v - u).abs() >= gap) {
            break;
        }
        u = rng.random_range(lo..hi);
    }
    u
}

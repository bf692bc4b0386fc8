//! Export of solver schedules to other tools (`s3 export RUN --format …`).
//!
//! | format | file | contents |
//! |---|---|---|
//! | `s3` | `.json` | the full schedule ([`SolverSchedule::to_json`]): every per-step decision |
//! | `diffusers` | `.json` | `timesteps` (N integers, descending, no trailing 0) for `vp-discrete`; `sigmas` (N flow sigmas, no trailing 0) for `flow`; else `sigmas` (N + 1 values ending in 0); plus a `scheduler_hint`, `usage` lines and the notes |
//! | `k-diffusion` | `.json` | a plain list of N + 1 descending sigmas ending in 0 |
//! | `comfyui` | `.txt` | one line for the `ManualSigmas` node: the same N + 1 sigmas, comma-separated |
//!
//! Conventions (reference/peers-and-interop.md §6): every target takes only the noise levels
//! of the model calls and runs its own single solver over them. A schedule with N steps calls
//! the model at t_0 … t_{N−1} (t_0 is skipped by an analytical first step) and never at t_N,
//! so the exported lists hold those N model-call times, and the sigma lists end in 0 because
//! every target finishes by stepping to σ = 0 (returning the model's x0 prediction). The
//! sigmas are σ/α ([`NoiseSchedule::ve_sigma`]), the noise level of the equivalent VE process
//! that k-diffusion, ComfyUI and diffusers' Euler schedulers use; they are independent of the
//! model's own time parametrisation. For `flow` they are the flow σ = t itself
//! ([`NoiseSchedule::sampler_sigma`]; 1 at pure noise), as ComfyUI's flow models (SD3, Flux)
//! and diffusers' flow schedulers take them. Integer diffusers timesteps index the training schedule:
//! training timestep k is continuous time t = (k + 1)/N_train, so t maps to
//! k = round(t·N_train − 1).
//!
//! The schedule's optional `time_offsets` (the model is told t_i + δ_i while the solver keeps
//! t_i) live only in the `s3` format (serde carries them) and in what runs it (the
//! s3schedule package in python/); the plain lists hold the solver's times, so their notes
//! list the offsets among the dropped decisions.
//!
//! [`Exported::notes`] says, for every target, which per-step decisions are dropped, which
//! solver the target runs instead (and when it reproduces the schedule exactly), what happens
//! at the two ends of the schedule, and any rounding done.

mod diffusers;
mod plain;
mod sigmas;

pub use plain::{PlainSampler, plain_samplers};

use crate::error::{Result, S3Error};
use crate::names::Named;
use crate::noise::NoiseSchedule;
use crate::solver::{Afs, ClassicSolver, Prediction, Relaxation, SolverSchedule, Step};

/// The targets of `s3 export --format` (named by their serde names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportFormat {
    /// The full s3 schedule JSON (what the sampler core consumes).
    S3,
    /// diffusers: `timesteps` for discrete models, `sigmas` otherwise.
    Diffusers,
    /// k-diffusion: a JSON list of sigmas ending in 0.
    KDiffusion,
    /// ComfyUI: a `ManualSigmas` string.
    #[serde(rename = "comfyui")]
    ComfyUi,
}

impl Named for ExportFormat {
    const KIND: &'static str = "export format";
    const ALL: &'static [Self] = &[Self::S3, Self::Diffusers, Self::KDiffusion, Self::ComfyUi];
}

impl ExportFormat {
    /// Parses a `--format` value.
    pub fn parse(s: &str) -> Result<Self> {
        <Self as Named>::from_name(s)
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        self.name()
    }

    /// The file extension (without the dot) of the exported text.
    pub fn extension(self) -> &'static str {
        match self {
            Self::ComfyUi => "txt",
            _ => "json",
        }
    }
}

/// An exported schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// The file content.
    pub text: String,
    /// Human-readable: what the target cannot express, what it will run instead, any rounding
    /// done. Empty for the `s3` format, which loses nothing.
    pub notes: Vec<String>,
}

/// What the caller knows about a schedule beyond its decisions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExportContext {
    /// The classic solver the times were searched for (`s3 search --solver`): said in the
    /// notes and recorded in the diffusers file.
    pub searched_for: Option<ClassicSolver>,
    /// The plain sampler measured best over the exported times (one of [`plain_samplers`]):
    /// the hint when the tool cannot run the schedule exactly.
    pub prefer: Option<ClassicSolver>,
}

/// Exports `schedule` (written for the noise schedule `ns`) in `format`.
pub fn export(
    schedule: &SolverSchedule,
    ns: &NoiseSchedule,
    format: ExportFormat,
) -> Result<Exported> {
    export_with(schedule, ns, format, ExportContext::default())
}

/// [`export`] with what the caller knows about the schedule.
pub fn export_with(
    schedule: &SolverSchedule,
    ns: &NoiseSchedule,
    format: ExportFormat,
    context: ExportContext,
) -> Result<Exported> {
    schedule.validate_on(ns)?;
    if let Some(name) = &schedule.noise_schedule
        && name != ns.name()
    {
        return Err(S3Error::field(
            format!("export --format {}", format.as_str()),
            "noise_schedule",
            format!(
                "the schedule was written for `{name}` but the export uses `{}`; its timesteps only mean something under its own noise schedule",
                ns.name()
            ),
        ));
    }
    let plan = Plan::new(schedule, ns, context);
    let mut out = match format {
        ExportFormat::S3 => {
            return Ok(Exported {
                text: schedule.to_json(ns),
                notes: Vec::new(),
            });
        }
        ExportFormat::Diffusers => diffusers::export(&plan)?,
        ExportFormat::KDiffusion => sigmas::k_diffusion(&plan)?,
        ExportFormat::ComfyUi => sigmas::comfyui(&plan)?,
    };
    // The diffusers file carries the note itself (its notes are part of the file).
    if let (Some(solver), false) = (context.searched_for, format == ExportFormat::Diffusers) {
        out.notes.insert(0, searched_for_note(solver));
    }
    Ok(out)
}

/// The note of a schedule whose times were searched for one solver.
pub(crate) fn searched_for_note(solver: ClassicSolver) -> String {
    format!(
        "These times were searched for {} (`s3 search --solver`): run them with that solver to get what the search measured.",
        solver.label()
    )
}

/// What every target needs to know about a (validated) schedule.
pub(crate) struct Plan<'a> {
    pub schedule: &'a SolverSchedule,
    pub ns: &'a NoiseSchedule,
    /// The number of steps N.
    pub n: usize,
    /// The most common prediction type (ties: data).
    pub prediction: Prediction,
    /// The most common Taylor order (ties: the higher).
    pub order: usize,
    /// Steps with a corrector.
    pub corrector_steps: Vec<usize>,
    /// What the caller knows (searched-for solver, measured best plain sampler).
    pub context: ExportContext,
}

impl<'a> Plan<'a> {
    fn new(schedule: &'a SolverSchedule, ns: &'a NoiseSchedule, context: ExportContext) -> Self {
        let steps = &schedule.steps;
        let data = steps
            .iter()
            .filter(|s| s.prediction == Prediction::Data)
            .count();
        let prediction = if 2 * data >= steps.len() {
            Prediction::Data
        } else {
            Prediction::Noise
        };
        let mut counts = [0usize; 8];
        for s in steps {
            counts[s.order.min(7)] += 1;
        }
        // `max_by_key` keeps the last maximum: ties go to the higher order.
        let order = (1..8).max_by_key(|&k| counts[k]).unwrap_or(1);
        let corrector_steps = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.corrector.is_some())
            .map(|(i, _)| i)
            .collect();
        Self {
            schedule,
            ns,
            n: steps.len(),
            prediction,
            order,
            corrector_steps,
            context,
        }
    }

    /// t_0 … t_{N−1}: where the targets call the model.
    pub fn call_times(&self) -> &[f64] {
        &self.schedule.timesteps[..self.n]
    }

    /// t_N.
    pub fn t_end(&self) -> f64 {
        self.schedule.timesteps[self.n]
    }

    /// The targets' sigmas ([`NoiseSchedule::sampler_sigma`]: σ/α, or the flow σ = t) at the
    /// model-call times followed by 0: N + 1 strictly decreasing values.
    pub fn sigmas(&self, context: &str) -> Result<Vec<f64>> {
        let mut v: Vec<f64> = self
            .call_times()
            .iter()
            .map(|&t| ve_sigma(self.ns, t))
            .collect();
        for (i, (&t, &s)) in self.call_times().iter().zip(&v).enumerate() {
            if !(s.is_finite() && s > 0.0) {
                return Err(S3Error::field(
                    context,
                    "sigmas",
                    format!(
                        "timesteps[{i}] = {t} has noise level {s} under {}; expected a finite positive value",
                        self.ns.name()
                    ),
                ));
            }
        }
        for (i, w) in v.windows(2).enumerate() {
            if w[1] >= w[0] {
                return Err(S3Error::field(
                    context,
                    "sigmas",
                    format!(
                        "the sigma at timesteps[{}] ({}) is not below the sigma at timesteps[{i}] ({}); the targets need strictly decreasing sigmas",
                        i + 1,
                        w[1],
                        w[0]
                    ),
                ));
            }
        }
        v.push(0.0);
        Ok(v)
    }

    /// The note that per-step decisions are lost, listing the ones this schedule makes.
    pub fn dropped_note(&self, tool: &str) -> String {
        let s = self.schedule;
        let mut dropped = vec![
            format!(
                "prediction per step ({})",
                join(s.steps.iter().map(|x| pred_name(x.prediction)))
            ),
            format!(
                "Taylor order per step ({})",
                join(s.steps.iter().map(|x| x.order))
            ),
        ];
        let relaxed = s
            .steps
            .iter()
            .flat_map(|x| x.derivatives.iter())
            .filter(|d| d.relaxation != Relaxation::None)
            .count();
        dropped.push(if relaxed > 0 {
            format!("the derivative estimates (history points; {relaxed} relaxed)")
        } else {
            "the derivative estimates (history points)".to_string()
        });
        if !self.corrector_steps.is_empty() {
            dropped.push(format!(
                "the correctors (steps {})",
                join(self.corrector_steps.iter())
            ));
        }
        if s.afs != Afs::None {
            dropped.push(format!("the analytical first step ({})", afs_name(s.afs)));
        }
        let shifted = self.shifted_calls();
        if !shifted.is_empty() {
            dropped.push(format!(
                "the model-time offsets (steps {}: s3 tells the model t + δ there while its solver keeps t; the tool tells it t, so the gain they bring is lost)",
                join(shifted.iter())
            ));
        }
        format!(
            "{tool} cannot express per-step solver decisions: it takes only the noise levels and applies one solver with global settings at every step. Dropped: {}.",
            dropped.join(", ")
        )
    }

    /// The note on the model call at t_0 that AFS saves and the targets cannot skip.
    pub fn afs_note(&self, tool: &str) -> Option<String> {
        (self.schedule.afs != Afs::None).then(|| {
            format!(
                "The analytical first step ({}) replaces the model call at t_0 in s3 (NFE {}); {tool} cannot skip that call and calls the model at all {} times (NFE {}).",
                afs_name(self.schedule.afs),
                self.schedule.nfe,
                self.n,
                self.n
            )
        })
    }

    /// The note for a schedule that stops at t_N > 0 when the target ends at σ = 0.
    pub fn end_note(&self, tool: &str) -> Option<String> {
        (!self.schedule.denoises()).then(|| {
            let t = self.t_end();
            format!(
                "The schedule stops at t_N = {} (sigma {}) without denoising; {tool} ends at σ = 0 instead: its last step goes from t_{} = {} to σ = 0 and returns the model's x0 prediction.",
                fmt_num(t),
                fmt_num(ve_sigma(self.ns, t)),
                self.n - 1,
                fmt_num(self.schedule.timesteps[self.n - 1])
            )
        })
    }

    /// The steps i whose model call at t_i is told t_i + δ_i with δ_i ≠ 0 (`time_offsets`,
    /// which no plain list can carry).
    pub fn shifted_calls(&self) -> Vec<usize> {
        (0..self.n)
            .filter(|&i| self.schedule.time_offset(i) != 0.0)
            .collect()
    }

    /// Whether `candidate` (a classic solver over the target's times) is this schedule. Never
    /// with non-zero time offsets: the targets tell the model t itself.
    pub fn same_as(&self, candidate: &SolverSchedule) -> bool {
        let s = self.schedule;
        !s.has_time_offsets()
            && !candidate.has_time_offsets()
            && s.afs == Afs::None
            && candidate.afs == Afs::None
            && s.timesteps.len() == candidate.timesteps.len()
            && s.timesteps
                .iter()
                .zip(&candidate.timesteps)
                .all(|(a, b)| (a - b).abs() <= 1e-12 * a.abs().max(1.0))
            && s.steps.len() == candidate.steps.len()
            && s.steps
                .iter()
                .zip(&candidate.steps)
                .all(|(a, b)| same_step(a, b))
    }

    /// "1, 2, 2, 1": the per-step orders of a classic solver over the target's times.
    pub fn orders_of(candidate: &SolverSchedule) -> String {
        join(candidate.steps.iter().map(|x| x.order))
    }

    /// A classic solver over `times` on this noise schedule, if its builder accepts them.
    pub fn classic(
        &self,
        solver: ClassicSolver,
        times: Vec<f64>,
        lower_order_final: bool,
    ) -> Option<SolverSchedule> {
        solver.build_for(self.ns, times, lower_order_final).ok()
    }
}

/// The targets' sigma at t: [`NoiseSchedule::sampler_sigma`] (σ/α; EDM's and flow's σ = t
/// exactly, so that 80 stays 80 and flow's 1 stays 1).
pub(crate) fn ve_sigma(ns: &NoiseSchedule, t: f64) -> f64 {
    ns.sampler_sigma(t)
}

/// Two steps do the same thing (an order-1 step without corrector is DDIM in either
/// prediction).
fn same_step(a: &Step, b: &Step) -> bool {
    a.order == b.order
        && a.derivatives == b.derivatives
        && a.corrector == b.corrector
        && (a.prediction == b.prediction || (a.order == 1 && a.corrector.is_none()))
}

pub(crate) fn pred_name(p: Prediction) -> &'static str {
    match p {
        Prediction::Noise => "noise",
        Prediction::Data => "data",
    }
}

fn afs_name(a: Afs) -> &'static str {
    match a {
        Afs::None => "none",
        Afs::ZeroX0 => "zero_x0",
        Afs::AverageX0 => "average_x0",
    }
}

pub(crate) fn join<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A number for notes: 6 significant digits.
pub fn fmt_num(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let digits = (5 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{x:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for f in [
            ExportFormat::S3,
            ExportFormat::Diffusers,
            ExportFormat::KDiffusion,
            ExportFormat::ComfyUi,
        ] {
            assert_eq!(ExportFormat::parse(f.as_str()).unwrap(), f);
            assert!(ExportFormat::names().contains(f.as_str()));
        }
        let e = ExportFormat::parse("onnx").unwrap_err().to_string();
        assert!(
            e.contains("export format") && e.contains("onnx") && e.contains(&ExportFormat::names())
        );
    }

    /// Offsets are no plain-list decision: the notes say they are lost, a classic solver
    /// with offsets is no longer "run exactly", and the `s3` format keeps them.
    #[test]
    fn time_offsets_are_dropped_from_plain_lists_and_kept_in_s3() {
        let ns = NoiseSchedule::vp_linear();
        let times = vec![1.0, 0.5, 0.2, 0.05, 0.0];
        let plain = ClassicSolver::Ddim.build(times, true).unwrap();
        let mut shifted = plain.clone();
        shifted.time_offsets = Some(vec![0.0, 0.03, 0.0, -0.01]);
        for format in [
            ExportFormat::Diffusers,
            ExportFormat::KDiffusion,
            ExportFormat::ComfyUi,
        ] {
            let notes = export(&plain, &ns, format).unwrap().notes;
            assert!(
                notes
                    .iter()
                    .any(|n| n.contains("runs this schedule exactly"))
                    && !notes.iter().any(|n| n.contains("offsets")),
                "{notes:?}"
            );
            let notes = export(&shifted, &ns, format).unwrap().notes;
            let want = "the model-time offsets (steps 1, 3: s3 tells the model t + δ there while its solver keeps t; the tool tells it t, so the gain they bring is lost)";
            assert!(
                notes
                    .iter()
                    .any(|n| n.contains("Dropped: ") && n.contains(want)),
                "{}: {notes:?}",
                format.as_str()
            );
            assert!(
                !notes.iter().any(|n| n.contains("Nothing is lost")),
                "{notes:?}"
            );
        }
        // All-zero offsets change nothing.
        let mut zeros = plain.clone();
        zeros.time_offsets = Some(vec![0.0; 4]);
        let notes = export(&zeros, &ns, ExportFormat::KDiffusion).unwrap().notes;
        assert!(!notes.iter().any(|n| n.contains("Dropped")), "{notes:?}");
        let text = export(&shifted, &ns, ExportFormat::S3).unwrap().text;
        let back: SolverSchedule = serde_json::from_str(&text).unwrap();
        assert_eq!(back.time_offsets, shifted.time_offsets);
    }

    #[test]
    fn note_numbers_are_short() {
        assert_eq!(fmt_num(0.001), "0.001");
        assert_eq!(fmt_num(14.614641501), "14.6146");
        assert_eq!(fmt_num(80.0), "80");
        assert_eq!(fmt_num(0.000123456789), "0.000123457");
    }
}

//! The predictor-guided `s3` strategy: the S³ search proper.
//!
//! After the classic seeds (which the runner proposes), it proposes `s3.warmup` random
//! schedules; from then on every stage trains the predictor
//! on the whole archive (fresh weights, or the `--predictor` warm start), generates a pool of
//! `s3.pool` candidates (evolved from the best and random), and proposes the best-scored
//! ones plus a share of random picks from the pool (exploration). The runner evaluates them
//! with the true metric, so the budget counts exactly as for the other strategies.
//!
//! Training from the same starting weights each stage makes a stage's proposals a function
//! of the archive and the stage's seed alone, so a resumed run proposes what the uninterrupted
//! run would have.

use super::evolution::{Made, evolve};
use super::source::{Pick, TrialSource};
use super::strategy::{Evaluated, PredictorStats, Proposal, StageProposal, Strategy};
use crate::error::{Result, S3Error};
use crate::noise::NoiseSchedule;
use crate::predictor::{Encoder, Predictor, TrainConfig};
use crate::space::{Candidates, S3Settings, schedule_hash};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The smallest number of step slots of the encoding: every schedule up to NFE 10 (11 steps
/// with AFS) fits, so one predictor can warm-start searches at any NFE in s3's target range.
pub const MIN_ENCODER_STEPS: usize = 11;

/// Where the strategy saves its predictor and what it records with it.
#[derive(Debug, Clone)]
pub struct PredictorFiles {
    /// The predictor of the latest stage is saved as `<stem>.safetensors` + `<stem>.json`.
    pub save_stem: PathBuf,
    /// Written into the predictor's JSON (dataset, metric, NFE, run).
    pub meta: serde_json::Value,
    /// A saved predictor to start from instead of fresh weights.
    pub warm_start: Option<PathBuf>,
}

/// The predictor-guided strategy.
pub struct S3Search {
    /// How many classic seeds the runner evaluates first (the warm-up counts after them).
    seed_count: usize,
    rank_bar: usize,
    crossover: f64,
    settings: S3Settings,
    ns: NoiseSchedule,
    encoder: Encoder,
    files: PredictorFiles,
}

/// Checks that `stem` is a loadable predictor whose encoding fits schedules of `nfe` calls;
/// returns its encoder. Errors name the file.
pub fn check_warm_start(stem: &Path, nfe: usize) -> Result<Encoder> {
    let (_, doc) = Predictor::load(stem)?;
    let context =
        |e: S3Error| S3Error::Predictor(format!("warm-start predictor {}: {e}", stem.display()));
    let encoder = doc
        .get("encoder")
        .ok_or_else(|| {
            S3Error::Predictor(format!(
                "warm-start predictor {}.json has no `encoder` field; it was not saved by a search",
                stem.display()
            ))
        })
        .and_then(Encoder::from_meta)
        .map_err(context)?;
    if encoder.max_steps < nfe + 1 {
        return Err(S3Error::Predictor(format!(
            "warm-start predictor {}: its encoding has room for {} steps, but NFE {nfe} \
             schedules can have {}",
            stem.display(),
            encoder.max_steps,
            nfe + 1
        )));
    }
    Ok(encoder)
}

impl S3Search {
    /// A strategy for schedules of `nfe` calls under `ns`, after `seed_count` classic seeds.
    pub fn new(
        seed_count: usize,
        rank_bar: usize,
        crossover: f64,
        settings: S3Settings,
        ns: NoiseSchedule,
        nfe: usize,
        files: PredictorFiles,
    ) -> Result<Self> {
        let encoder = match &files.warm_start {
            Some(stem) => check_warm_start(stem, nfe)?,
            None => Encoder::new(MIN_ENCODER_STEPS.max(nfe + 1)),
        };
        Ok(Self {
            seed_count,
            rank_bar,
            crossover,
            settings,
            ns,
            encoder,
            files,
        })
    }

    /// The starting weights: the warm start as loaded, or fresh ones seeded by `seed`.
    fn initial_predictor(&self, seed: u64) -> Result<Predictor> {
        match &self.files.warm_start {
            Some(stem) => Ok(Predictor::load(stem)?.0),
            None => Predictor::new(
                self.encoder.dim(),
                &TrainConfig {
                    seed,
                    ..TrainConfig::default()
                },
            ),
        }
    }

    /// A predictor for this stage, or None while the archive is too small and there is no
    /// warm start. Trains on every finite, positive trial of the archive.
    fn stage_predictor(
        &mut self,
        archive: &[Evaluated],
        seed: u64,
    ) -> Result<Option<(Predictor, usize)>> {
        let usable: Vec<&Evaluated> = archive
            .iter()
            .filter(|e| e.value.is_finite() && e.value > 0.0)
            .collect();
        let enough = usable.len() >= 2 && archive.len() >= self.seed_count + self.settings.warmup;
        if !enough && self.files.warm_start.is_none() {
            return Ok(None);
        }
        let mut predictor = self.initial_predictor(seed)?;
        if !enough {
            return Ok(Some((predictor, 0)));
        }
        let features = usable
            .iter()
            .map(|e| self.encoder.encode(&e.schedule, &self.ns))
            .collect::<Result<Vec<_>>>()?;
        let metrics: Vec<f64> = usable.iter().map(|e| e.value).collect();
        predictor.train(&features, &metrics, self.settings.holdout)?;
        let mut meta = self.files.meta.clone();
        if let Some(obj) = meta.as_object_mut() {
            obj.insert("encoder".into(), self.encoder.meta());
            obj.insert(
                "warm_start".into(),
                serde_json::json!(
                    self.files
                        .warm_start
                        .as_ref()
                        .map(|p| p.display().to_string())
                ),
            );
        }
        predictor.save(&self.files.save_stem, meta)?;
        Ok(Some((predictor, usable.len())))
    }

    /// `count` new candidates for the pool, distinct from each other and from `taken`.
    fn pool(
        &self,
        ops: &Candidates,
        archive: &[Evaluated],
        taken: &mut HashSet<String>,
        rng: &mut StdRng,
    ) -> Vec<Made> {
        let count = self.settings.pool;
        let n_evolve = (count as f64 * self.settings.evolve_fraction).round() as usize;
        let mut raw = evolve(ops, archive, n_evolve, self.rank_bar, self.crossover, rng);
        raw.extend((n_evolve..count).map(|_| Made::random(ops, rng)));
        raw.into_iter()
            .filter(|m| taken.insert(schedule_hash(&m.schedule)))
            .collect()
    }
}

impl Strategy for S3Search {
    fn propose(
        &mut self,
        ops: &Candidates,
        archive: &[Evaluated],
        n: usize,
        rng: &mut StdRng,
    ) -> Result<StageProposal> {
        let start = std::time::Instant::now();
        if n == 0 {
            return Ok(StageProposal::default());
        }
        let seed: u64 = rng.random();
        let Some((predictor, trials)) = self.stage_predictor(archive, seed)? else {
            return Ok(StageProposal::plain(
                (0..n).map(|_| Made::random(ops, rng).proposal()).collect(),
            ));
        };
        let mut taken: HashSet<String> = archive.iter().map(|e| e.hash.clone()).collect();
        let pool = self.pool(ops, archive, &mut taken, rng);
        let features = pool
            .iter()
            .map(|m| self.encoder.encode(&m.schedule, &self.ns))
            .collect::<Result<Vec<_>>>()?;
        let scores = predictor.score(&features)?;
        let proposals = self.pick(&pool, &scores, n, rng);
        let report = predictor.report().filter(|_| trials > 0);
        Ok(StageProposal {
            proposals,
            report: Some(PredictorStats {
                trials,
                train_tau: report.map(|r| r.train_tau),
                holdout_tau: report.and_then(|r| r.holdout_tau),
                scored: pool.len(),
                seconds: start.elapsed().as_secs_f64(),
            }),
        })
    }
}

impl S3Search {
    /// Up to `n` of the scored pool: the best scores (exploitation), then a share
    /// `s3.exploration` of random picks from the rest (exploration).
    fn pick(&self, pool: &[Made], scores: &[f64], n: usize, rng: &mut StdRng) -> Vec<Proposal> {
        let mut order: Vec<usize> = (0..pool.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let n_explore = (n as f64 * self.settings.exploration).round() as usize;
        let n_exploit = n - n_explore.min(n);
        let (best, others) = order.split_at(n_exploit.min(order.len()));
        let mut others = others.to_vec();
        others.shuffle(rng);
        let explore = others.iter().take(n - best.len());
        best.iter()
            .map(|&i| (i, Pick::Predicted))
            .chain(explore.map(|&i| (i, Pick::Explore)))
            .map(|(i, pick)| Proposal {
                schedule: pool[i].schedule.clone(),
                source: TrialSource::S3 {
                    pick,
                    origin: pool[i].origin,
                },
            })
            .collect()
    }
}

//! Criterion benchmark of the exact Gaussian-mixture denoiser on the `digits` preset (1797
//! isotropic components in 64 dimensions), through the path the sampler takes each step:
//! `s3::model::eval_predictions` on an f32 batch (ε and x0 of every sample). Run it with
//!
//! ```text
//! cargo bench --bench mixture_eps                  # everything (about a minute on 2 cores)
//! cargo bench --bench mixture_eps -- batch1000     # one batch size (criterion's name filter)
//! ```
//!
//! Groups `digits_eps_batch<N>/t=<t>`: a batch of N noised data samples x_t = α·x0 + σ·z
//! (x0 drawn from the mixture, z standard normal: the inputs the model sees in a run) at
//! three times of `vp-linear`, the digits preset's schedule:
//!
//! * `t=1` — pure noise end (α ≈ 0.007): every component has a similar responsibility, the
//!   softmax over components is flat;
//! * `t=0.5` — the middle (α ≈ 0.28, σ ≈ 0.96);
//! * `t=0.001` — the data end, t_min (σ ≈ 0.01, comparable to the component std 0.01): the
//!   softmax is extremely peaked, one component dominates.
//!
//! Throughput is in elements = samples, so criterion prints samples per second next to the
//! time per call. The binary uses mimalloc as its global allocator, as the CLI does.

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use s3::dataset::Dataset;
use s3::model::{Denoiser, TimePoint, eval_predictions};
use s3::noise::NoiseSchedule;
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The batch sizes measured: the search's per-call batch is a few thousand samples.
const BATCHES: [usize; 2] = [1000, 4000];
/// Near T, the middle, and t_min of `vp-linear`.
const TIMES: [f64; 3] = [1.0, 0.5, 1e-3];
/// Seed of the data draws x0.
const DATA_SEED: u64 = 7;
/// Seed of the noise z.
const NOISE_SEED: u64 = 8;

/// `batch` noised data samples of `mixture` at `time`, in f32.
fn noised_batch(mixture: &s3::model::GaussianMixture, batch: usize, time: TimePoint) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(DATA_SEED);
    let x0 = mixture.sample_data(batch, &mut rng);
    let mut rng = StdRng::seed_from_u64(NOISE_SEED);
    x0.iter()
        .map(|&d| {
            let z: f64 = rng.sample(StandardNormal);
            (time.alpha * d as f64 + time.sigma * z) as f32
        })
        .collect()
}

/// ε and x0 of `digits` for each batch size and time. Throughput = samples.
fn bench_digits(c: &mut Criterion) {
    let ns = NoiseSchedule::vp_linear();
    let ds = Dataset::load("digits").unwrap();
    let mixture = ds.mixture().expect("digits is an analytic preset");
    for batch in BATCHES {
        let mut group = c.benchmark_group(format!("digits_eps_batch{batch}"));
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(4));
        group.throughput(Throughput::Elements(batch as u64));
        for t in TIMES {
            let time = TimePoint {
                t,
                alpha: ns.alpha(t),
                sigma: ns.sigma(t),
            };
            let x = noised_batch(mixture, batch, time);
            let (mut eps, mut x0) = (vec![0f32; x.len()], vec![0f32; x.len()]);
            let model: &dyn Denoiser = mixture;
            group.bench_function(BenchmarkId::from_parameter(format!("t={t}")), |b| {
                b.iter(|| {
                    eval_predictions(model, black_box(&x), time, &mut eps, &mut x0).unwrap();
                    black_box((&mut eps, &mut x0));
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench_digits);
criterion_main!(benches);

//! Criterion benchmarks of the sampler's real code paths. Run them with
//!
//! ```text
//! cargo bench --bench sampler                 # everything (about 2–3 minutes on 2 cores)
//! cargo bench --bench sampler -- stream       # one group (criterion's name filter)
//! ```
//!
//! Three groups:
//!
//! * `sampler_1000x3072/<solver>/<N>-steps` — whole `Sampler::sample` runs of a classic solver
//!   schedule (DDIM, DPM-Solver++(3M), UniPC-bh2(3); log-SNR spacing on vp-linear, diffusers'
//!   lower-order-final rule) on a CIFAR-10-sized batch, 1000 × 3·32·32 f32, with a trivial
//!   memory-bound ε model (`out = 0.5·x`), so the time is the sampler's own overhead: buffer
//!   management, the x0 conversion, the finiteness check and the fused update. Each solver is
//!   run at 1 and at 10 steps. Criterion cannot divide two measurements, so the **per-step
//!   time is derived by hand: (t(10 steps) − t(1 step)) / 9**. The difference cancels the
//!   fixed cost of a run (copying the initial noise, the first model call, the first buffer
//!   allocations) and leaves 9 steps of "update + model call" (+ a corrector update for UniPC,
//!   which corrects every step but the last, so it does more work per step).
//! * `stream_1000x3072/...` — the memory-bandwidth baseline to compare the per-step time with:
//!   `copy` is a plain `copy_from_slice` of one 1000 × 3072 f32 buffer (12.3 MB), and
//!   `combine_into/<n>-terms` is the fused kernel the sampler applies each update with
//!   (out = Σ w_k·src_k over n sources). Throughput is set to bytes read + written, so
//!   criterion prints the streaming rate (GiB/s). A 3rd-order data-prediction step reads x_s and
//!   three x0 buffers and writes one (`combine_into/4-terms`); with the model call (read x,
//!   write ε), the finiteness scan of ε and the x0 conversion (read x and ε, write x0) a step
//!   touches roughly 11 buffers' worth of traffic, about 135 MB.
//! * `eps_t0.5_batch1000/<dataset>` — ε of the analytic Gaussian-mixture models (`digits`,
//!   `gmm32`, `toy2d`) through `s3::model::eval_eps`, at t = 0.5 on vp-linear, for a batch of
//!   1000 noised data samples. Throughput is in elements = samples, so criterion prints
//!   samples per second.
//!
//! Sample counts and times are kept small so the whole run stays short; on a small, shared VM
//! expect run-to-run noise of several percent. The binary uses mimalloc as its global
//! allocator, and so does this benchmark, so buffer allocation costs match production.

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use s3::dataset::Dataset;
use s3::model::{Denoiser, Parameterization, TimePoint, eval_eps};
use s3::noise::NoiseSchedule;
use s3::solver::sampler::combine_into;
use s3::solver::{ClassicSolver, Sampler, Spacing, UniPcVariant};
use std::hint::black_box;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Samples per batch.
const BATCH: usize = 1000;
/// Values per CIFAR-10-sized sample (3 × 32 × 32).
const DIM: usize = 3 * 32 * 32;
/// Values in one batch buffer.
const LEN: usize = BATCH * DIM;
/// Bytes in one batch buffer (12.3 MB).
const BUF_BYTES: u64 = (LEN * std::mem::size_of::<f32>()) as u64;

/// A trivial ε model, ε = 0.5·x: as cheap as a model can be (one read, one write per value),
/// so a sampler run measures the sampler, not the model.
struct HalfModel {
    shape: Vec<usize>,
}

impl HalfModel {
    fn new() -> Self {
        Self {
            shape: vec![3, 32, 32],
        }
    }
}

impl Denoiser for HalfModel {
    fn sample_shape(&self) -> &[usize] {
        &self.shape
    }

    fn parameterization(&self) -> Parameterization {
        Parameterization::Eps
    }

    fn forward(&self, x: &[f32], _time: TimePoint, out: &mut [f32]) -> s3::Result<()> {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = 0.5 * v;
        }
        Ok(())
    }
}

/// `n` deterministic standard-normal f32 values.
fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.sample::<f32, _>(StandardNormal))
        .collect()
}

/// Whole sampler runs at 1 and 10 steps; per-step time = (t(10) − t(1)) / 9.
fn bench_sampler(c: &mut Criterion) {
    let model = HalfModel::new();
    let ns = NoiseSchedule::vp_linear();
    let x = gaussian(LEN, 1);
    let solvers = [
        ("ddim", ClassicSolver::Ddim),
        ("dpm-solver++(3M)", ClassicSolver::DpmSolverPp { order: 3 }),
        (
            "unipc-bh2(3)",
            ClassicSolver::UniPc {
                variant: UniPcVariant::Bh2,
                order: 3,
            },
        ),
    ];

    let mut group = c.benchmark_group("sampler_1000x3072");
    // A 10-step run takes a good fraction of a second here: flat sampling (the same iteration
    // count in every sample) keeps the group short.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    for (label, solver) in solvers {
        for steps in [1usize, 10] {
            let ts = Spacing::LogSnr
                .timesteps(&ns, steps, ns.t_max(), ns.t_min())
                .unwrap();
            let sched = solver.build(ts, true).unwrap();
            let sampler = Sampler::new(&model, &ns);
            group.bench_with_input(
                BenchmarkId::new(label, format!("{steps}-steps")),
                &sched,
                |b, sched| b.iter(|| black_box(sampler.sample(sched, black_box(&x)).unwrap())),
            );
        }
    }
    group.finish();
}

/// The time to stream one batch buffer: a plain copy, and the sampler's fused update kernel
/// over 2, 4 and 6 sources. Throughput = bytes read + written.
fn bench_stream(c: &mut Criterion) {
    let srcs: Vec<Vec<f32>> = (0..6).map(|k| gaussian(LEN, 100 + k)).collect();
    let mut out = vec![0f32; LEN];

    let mut group = c.benchmark_group("stream_1000x3072");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));

    group.throughput(Throughput::Bytes(2 * BUF_BYTES));
    group.bench_function("copy", |b| {
        b.iter(|| {
            out.copy_from_slice(black_box(&srcs[0]));
            black_box(&mut out);
        })
    });

    for n in [2usize, 4, 6] {
        let weights = [0.9, -0.3, 0.2, -0.1, 0.05, -0.02];
        let terms: Vec<(f64, &[f32])> = srcs[..n]
            .iter()
            .zip(weights)
            .map(|(s, w)| (w, s.as_slice()))
            .collect();
        group.throughput(Throughput::Bytes((n as u64 + 1) * BUF_BYTES));
        group.bench_with_input(
            BenchmarkId::new("combine_into", format!("{n}-terms")),
            &terms,
            |b, terms| {
                b.iter(|| {
                    combine_into(&mut out, black_box(terms));
                    black_box(&mut out);
                })
            },
        );
    }
    group.finish();
}

/// ε of the analytic mixtures on 1000 noised data samples at t = 0.5. Throughput = samples.
fn bench_eps(c: &mut Criterion) {
    let ns = NoiseSchedule::vp_linear();
    let t = 0.5;
    let time = TimePoint {
        t,
        alpha: ns.alpha(t),
        sigma: ns.sigma(t),
    };

    let mut group = c.benchmark_group("eps_t0.5_batch1000");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(BATCH as u64));
    for name in ["digits", "gmm32", "toy2d"] {
        let ds = Dataset::load(name).unwrap();
        let mixture = ds.mixture().expect("an analytic preset");
        let dim = Denoiser::dim(mixture);
        // x_t = α·x0 + σ·z with x0 drawn from the mixture: the inputs the model sees in a run.
        let mut rng = StdRng::seed_from_u64(7);
        let x0 = mixture.sample_data(BATCH, &mut rng);
        let z = gaussian(BATCH * dim, 8);
        let x: Vec<f32> = x0
            .iter()
            .zip(&z)
            .map(|(&d, &n)| (time.alpha * d as f64 + time.sigma * n as f64) as f32)
            .collect();
        let mut out = vec![0f32; x.len()];
        group.bench_function(
            BenchmarkId::from_parameter(format!("{name}(dim {dim})")),
            |b| {
                b.iter(|| {
                    eval_eps(mixture, black_box(&x), time, &mut out).unwrap();
                    black_box(&mut out);
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_sampler, bench_stream, bench_eps);
criterion_main!(benches);

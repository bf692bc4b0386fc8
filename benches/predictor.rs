//! Criterion benchmarks of the learned predictor. Run them with
//!
//! ```text
//! cargo bench --bench predictor                 # both groups (about a minute on 2 cores)
//! cargo bench --bench predictor -- score        # one group (criterion's name filter)
//! ```
//!
//! * `predictor_train/1000-trials` — one `Predictor::train` call with the default
//!   [`TrainConfig`] (ranking loss, 150 epochs of batch 128, hidden [128, 64]) on 1,000
//!   synthetic trials of the width a search uses up to NFE 10 (`Encoder::new(11).dim()` = 290),
//!   20 % held out: the cost of refitting the predictor once per search stage.
//! * `predictor_score/batch-4096` — `Predictor::score` on 4,096 encoded candidates; the
//!   throughput is in elements = candidates, so criterion prints candidates/s.
//!
//! The binary uses mimalloc like the `s3` binary (candle allocates a fresh buffer per op).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use s3::predictor::{Encoder, Predictor, TrainConfig};
use std::hint::black_box;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `n` feature vectors in [0, 1] with metric = exp(a random linear function + a kink).
fn synthetic(n: usize, dim: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let w: Vec<f64> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut xs = Vec::with_capacity(n);
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let x: Vec<f32> = (0..dim).map(|_| rng.random::<f32>()).collect();
        let lin = x
            .iter()
            .zip(&w)
            .map(|(a, b)| f64::from(*a) * b)
            .sum::<f64>();
        let lin = lin / (dim as f64).sqrt();
        ms.push((lin + 0.5 * lin.abs()).exp());
        xs.push(x);
    }
    (xs, ms)
}

fn train(c: &mut Criterion) {
    let dim = Encoder::new(s3::search::MIN_ENCODER_STEPS).dim();
    let (xs, ms) = synthetic(1000, dim, 1);
    let mut g = c.benchmark_group("predictor_train");
    g.sample_size(10);
    g.bench_function("1000-trials", |b| {
        b.iter(|| {
            let mut p = Predictor::new(dim, &TrainConfig::default()).unwrap();
            black_box(p.train(&xs, &ms, 0.2).unwrap())
        })
    });
    g.finish();
}

fn score(c: &mut Criterion) {
    let dim = Encoder::new(s3::search::MIN_ENCODER_STEPS).dim();
    let (xs, ms) = synthetic(1000, dim, 1);
    let cfg = TrainConfig {
        epochs: 5,
        ..TrainConfig::default()
    };
    let mut p = Predictor::new(dim, &cfg).unwrap();
    p.train(&xs, &ms, 0.0).unwrap();
    let (candidates, _) = synthetic(4096, dim, 2);
    let mut g = c.benchmark_group("predictor_score");
    g.throughput(Throughput::Elements(candidates.len() as u64));
    g.bench_function("batch-4096", |b| {
        b.iter(|| black_box(p.score(&candidates).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, train, score);
criterion_main!(benches);

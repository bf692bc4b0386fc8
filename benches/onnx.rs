//! Criterion benchmarks of model evaluation through ONNX Runtime, on the committed tiny
//! random-weight CIFAR-10 U-Net (tests/fixtures/models/cifar10; 45k parameters, 3×32×32).
//! Needs ONNX Runtime (`bash scripts/install_onnxruntime.sh`).
//!
//! ```text
//! cargo bench --bench onnx
//! ```
//!
//! * `onnx_model/batch-N` — one `Denoiser::forward` of N samples (N = 1, 16, 64, 256 with the
//!   session batch size = N); throughput in samples/s.
//! * `onnx_search_step/fid-eval-nfe5-64` — one true evaluation as the search pays it: a
//!   DPM-Solver++(2M) NFE-5 run on 64 samples, 8-bit quantisation, features through the
//!   extractor and the Fréchet distance to the reference statistics. Before it, the share of
//!   that evaluation's wall time spent outside the network (solver arithmetic, feature
//!   extraction, statistics) is printed; the network time is measured by wrapping the model.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use s3::dataset::{Dataset, LoadOptions};
use s3::metric::{Moments, frechet_distance, prior_std, standard_noise};
use s3::model::{Denoiser, Parameterization, TimePoint};
use s3::onnx::{Images, OnnxModel, RunOptions};
use s3::solver::{ClassicSolver, Sampler, Spacing};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const MODELS: &str = "tests/fixtures/models";

/// A model that counts the wall time spent inside it.
struct Timed<'a> {
    inner: &'a dyn Denoiser,
    nanos: AtomicU64,
}

impl Denoiser for Timed<'_> {
    fn sample_shape(&self) -> &[usize] {
        self.inner.sample_shape()
    }
    fn parameterization(&self) -> Parameterization {
        self.inner.parameterization()
    }
    fn forward(&self, x: &[f32], t: TimePoint, out: &mut [f32]) -> s3::Result<()> {
        let start = Instant::now();
        let r = self.inner.forward(x, t, out);
        self.nanos
            .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        r
    }
}

fn model_config() -> PathBuf {
    Path::new(MODELS).join("cifar10/model.json")
}

fn forward(c: &mut Criterion) {
    let mut g = c.benchmark_group("onnx_model");
    g.sample_size(20);
    for batch in [1usize, 16, 64, 256] {
        let model = OnnxModel::load(
            &model_config(),
            RunOptions {
                batch_size: batch,
                ..RunOptions::default()
            },
        )
        .expect("the fixture model loads (is ONNX Runtime installed?)");
        let x = standard_noise(batch, model.dim(), 1);
        let mut out = vec![0f32; x.len()];
        let t = TimePoint {
            t: 0.5,
            alpha: 0.3,
            sigma: 0.95,
        };
        g.throughput(Throughput::Elements(batch as u64));
        g.bench_function(format!("batch-{batch}"), |b| {
            b.iter(|| model.forward(black_box(&x), t, &mut out).unwrap())
        });
    }
    g.finish();
}

fn search_step(c: &mut Criterion) {
    let options = LoadOptions {
        models_dir: Some(MODELS.into()),
        ..LoadOptions::default()
    };
    let ds = Dataset::load_with("cifar10", &options).expect("cifar10 fixture");
    let net = ds.network().expect("a network");
    let ns = ds.noise.build();
    let ts = Spacing::all_for(&ns)[0]
        .timesteps(&ns, 5, ns.t_max(), ns.t_min())
        .unwrap();
    let schedule = ClassicSolver::all()[1].build(ts, true).unwrap();
    let n = 64;
    let scale = prior_std(&ns, schedule.timesteps[0]) as f32;
    let x_t: Vec<f32> = standard_noise(n, ds.dim(), 0)
        .iter()
        .map(|v| v * scale)
        .collect();
    let evaluate = |model: &dyn Denoiser| {
        let x = Sampler::new(model, &ns)
            .sample(&schedule, &x_t)
            .unwrap()
            .samples;
        let images = Images::from_samples(&x, ds.sample_shape()).unwrap();
        let fid = net.fid.as_ref().expect("the cifar10 preset has FID files");
        let f = fid.extractor.features(&images).unwrap();
        let m = Moments::from_rows(&f, fid.extractor.dims()).unwrap();
        frechet_distance(&m, &fid.stats).unwrap()
    };
    // The share of one evaluation spent outside the network, best of 5.
    let timed = Timed {
        inner: ds.model(),
        nanos: AtomicU64::new(0),
    };
    let mut best = f64::INFINITY;
    let mut share = 0.0;
    for _ in 0..5 {
        timed.nanos.store(0, Ordering::Relaxed);
        let start = Instant::now();
        black_box(evaluate(&timed));
        let total = start.elapsed().as_secs_f64();
        if total < best {
            best = total;
            share = 1.0 - timed.nanos.load(Ordering::Relaxed) as f64 * 1e-9 / total;
        }
    }
    eprintln!(
        "onnx_search_step: one evaluation {:.1} ms, {:.1} % of it outside the network",
        best * 1e3,
        share * 100.0
    );
    let mut g = c.benchmark_group("onnx_search_step");
    g.sample_size(10);
    g.bench_function("fid-eval-nfe5-64", |b| {
        b.iter(|| black_box(evaluate(ds.model())))
    });
    g.finish();
}

criterion_group!(benches, forward, search_step);
criterion_main!(benches);

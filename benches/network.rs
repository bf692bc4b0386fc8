//! Criterion benchmarks of the metrics a search pays on a learned network, on the shipped
//! `digits-net` (851k-parameter residual MLP, 1×8×8). Needs ONNX Runtime
//! (`bash scripts/install_onnxruntime.sh`).
//!
//! ```text
//! cargo bench --bench network
//! ```
//!
//! * `teacher/reference-nfe200-500` — the teacher reference of 500 samples: RK4 with 200
//!   model calls plus the half solve of the doubling check (what `--metric mse` pays once
//!   per model, noise and sample count; later runs read it from the store).
//! * `evaluation/fd-nfe5-5000` — one FD evaluation as `s3 search --dataset digits-net` pays
//!   it: UniPC-bh1(3) at NFE 5 on 5,000 samples, FD on the pixels against the exact digits
//!   moments.
//! * `evaluation/mse-nfe5-500` — one teacher-MSE evaluation on 500 samples (reference
//!   computed beforehand).

use criterion::{Criterion, criterion_group, criterion_main};
use s3::dataset::{Dataset, LoadOptions};
use s3::eval::Evaluator;
use s3::metric::MetricKind;
use s3::solver::classic_grid;
use std::hint::black_box;

fn dataset() -> Dataset {
    Dataset::load_with("digits-net", &LoadOptions::default()).expect("digits-net loads")
}

fn teacher(c: &mut Criterion) {
    let ds = dataset();
    let ns = ds.noise.build();
    let mut g = c.benchmark_group("teacher");
    g.sample_size(10);
    g.bench_function("reference-nfe200-500", |b| {
        b.iter(|| {
            // A fresh evaluator each time: no cache, the whole solve.
            let ev = Evaluator::new(&ds, &ns, MetricKind::Mse, 500, 0)
                .unwrap()
                .with_reference_nfe(200)
                .unwrap();
            black_box(ev.reference_info().unwrap().doubling_mse)
        })
    });
    g.finish();
}

fn evaluation(c: &mut Criterion) {
    let ds = dataset();
    let ns = ds.noise.build();
    let schedule = classic_grid(&ns, 5)
        .into_iter()
        .next()
        .expect("a grid")
        .schedule
        .expect("the best-known classic solver builds");
    let fd = Evaluator::new(&ds, &ns, MetricKind::Fd, 5000, 0).unwrap();
    let mse = Evaluator::new(&ds, &ns, MetricKind::Mse, 500, 0).unwrap();
    mse.reference().unwrap();
    let mut g = c.benchmark_group("evaluation");
    g.sample_size(10);
    g.bench_function("fd-nfe5-5000", |b| {
        b.iter(|| black_box(fd.evaluate(&schedule).unwrap().value))
    });
    g.bench_function("mse-nfe5-500", |b| {
        b.iter(|| black_box(mse.evaluate(&schedule).unwrap().value))
    });
    g.finish();
}

criterion_group!(benches, teacher, evaluation);
criterion_main!(benches);

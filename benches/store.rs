//! Criterion benchmarks of the sled store on the paths a search takes per trial. Run with
//!
//! ```text
//! cargo bench --bench store
//! ```
//!
//! * `store/write-1000-trials` — 1,000 trials of a realistic schedule JSON, each recorded as
//!   running (`begin_trial`) and then finished with its evaluation (`finish_trial`, which
//!   also fills the evaluation cache), into a fresh store: what a search pays around its
//!   evaluations.
//! * `store/read-1000-trials` — `trials(run)` of a run holding 1,000 finished trials: what a
//!   resume, `runs show` and the runner's archive rebuild pay.
//! * `store/cache-lookup` — one `cached_eval` hit: paid before every evaluation.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use s3::dataset::Dataset;
use s3::space::{Candidates, SearchSpace, schedule_hash};
use s3::store::{CachedEval, EvalKey, Store};
use std::hint::black_box;

const TRIALS: usize = 1000;

/// 1,000 distinct NFE-5 schedules from the USF space, as the runner stores them.
fn schedules() -> Vec<(String, serde_json::Value)> {
    let ds = Dataset::load("digits").expect("digits");
    let ns = ds.noise.build();
    let space = SearchSpace::load("usf").expect("usf");
    let ops = Candidates::new(&space, &ns, 5).expect("operators");
    let mut rng = StdRng::seed_from_u64(0);
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while out.len() < TRIALS {
        let s = ops.random(&mut rng);
        let h = schedule_hash(&s);
        if seen.insert(h.clone()) {
            out.push((h, serde_json::to_value(&s).expect("serialises")));
        }
    }
    out
}

fn key(hash: &str) -> EvalKey {
    EvalKey {
        schedule_hash: hash.into(),
        model: "digits@vp-linear#0123456789abcdef".into(),
        metric: "fd/identity(64)".into(),
        samples: 5000,
        noise_seed: 0,
    }
}

/// Records every schedule as a finished trial of run `r`.
fn fill(store: &Store, trials: &[(String, serde_json::Value)]) {
    store
        .create_run("r", serde_json::json!({"bench": true}))
        .expect("run");
    for (i, (h, json)) in trials.iter().enumerate() {
        let t = store
            .begin_trial("r", h, json.clone(), (i / 20) as u32, "mutation")
            .expect("begin");
        let eval = CachedEval {
            value: 0.01 + i as f64 * 1e-5,
            nfe: 5,
            seconds: 0.5,
        };
        store
            .finish_trial("r", t.number, &key(h), &eval, false)
            .expect("finish");
    }
}

fn bench(c: &mut Criterion) {
    let trials = schedules();
    let mut g = c.benchmark_group("store");
    g.sample_size(10);
    g.throughput(Throughput::Elements(TRIALS as u64));
    g.bench_function("write-1000-trials", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp dir"),
            |dir| {
                let store = Store::open(dir.path()).expect("open");
                fill(&store, &trials);
                dir
            },
            BatchSize::PerIteration,
        )
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path()).expect("open");
    fill(&store, &trials);
    g.bench_function("read-1000-trials", |b| {
        b.iter(|| {
            let t = store.trials("r").expect("read");
            assert_eq!(t.len(), TRIALS);
            black_box(t)
        })
    });
    g.throughput(Throughput::Elements(1));
    let k = key(&trials[TRIALS / 2].0);
    g.bench_function("cache-lookup", |b| {
        b.iter(|| black_box(store.cached_eval(black_box(&k)).expect("lookup")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

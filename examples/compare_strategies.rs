//! Equal-budget comparison of the search strategies (`s3`, `evolution`, `random`): the best
//! metric found against the number of true evaluations spent, over several seeds, NFEs and
//! datasets. Every run goes through the real `SearchRunner` and one shared store per dataset
//! (so a schedule evaluated by one strategy is served from the cache to another, which does
//! not change any strategy's budget: cached evaluations count).
//!
//! ```text
//! cargo run --release --example compare_strategies -- \
//!     [--datasets digits,gmm32] [--nfes 4,5,6] [--seeds 0,1,2] [--budget 200] \
//!     [--samples 500] [--strategies s3,evolution,random] [--space usf] [--metric fd|mse]
//!     [--out DIR]
//! ```
//!
//! Prints a Markdown table and writes `DIR/curves.jsonl` (one line per run: best-so-far after
//! every evaluation) and `DIR/table.md`. Values are the speed-up over the best classic solver
//! on the same samples (best classic metric / best searched metric; higher is better).

use s3::dataset::Dataset;
use s3::metric::MetricKind;
use s3::search::{Event, Run, SearchConfig, SearchRunner, SearchSetup, StrategyKind};
use s3::space::SearchSpace;
use s3::store::Store;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

struct Args {
    datasets: Vec<String>,
    nfes: Vec<usize>,
    seeds: Vec<u64>,
    strategies: Vec<StrategyKind>,
    budget: usize,
    samples: usize,
    space: String,
    metric: MetricKind,
    out: PathBuf,
}

fn list<T: std::str::FromStr>(s: &str, flag: &str) -> Vec<T> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{flag}: cannot parse `{x}`"))
        })
        .collect()
}

fn parse_args() -> Args {
    let mut a = Args {
        datasets: vec!["digits".into(), "gmm32".into()],
        nfes: vec![4, 5, 6],
        seeds: vec![0, 1, 2],
        strategies: vec![
            StrategyKind::S3,
            StrategyKind::Evolution,
            StrategyKind::Random,
        ],
        budget: 200,
        samples: 500,
        space: "usf".into(),
        metric: MetricKind::Fd,
        out: PathBuf::from("target/compare-strategies"),
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let [flag, value] = pair else {
            panic!("flags come in pairs: --flag VALUE (got {pair:?})");
        };
        match flag.as_str() {
            "--datasets" => a.datasets = list(value, flag),
            "--nfes" => a.nfes = list(value, flag),
            "--seeds" => a.seeds = list(value, flag),
            "--strategies" => {
                a.strategies = value
                    .split(',')
                    .map(|s| StrategyKind::parse(s).expect("--strategies"))
                    .collect()
            }
            "--budget" => a.budget = value.parse().expect("--budget"),
            "--samples" => a.samples = value.parse().expect("--samples"),
            "--space" => a.space = value.clone(),
            "--metric" => a.metric = MetricKind::parse(value).expect("--metric"),
            "--out" => a.out = PathBuf::from(value),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// One run's result.
struct RunResult {
    best_classic: f64,
    /// Best metric after 1, 2, … evaluations.
    curve: Vec<f64>,
    seconds: f64,
}

fn run_one(
    store: &Store,
    dataset: &str,
    nfe: usize,
    seed: u64,
    strategy: StrategyKind,
    a: &Args,
) -> RunResult {
    let ds = Dataset::load(dataset).expect("dataset");
    let cfg = SearchConfig {
        dataset: dataset.into(),
        noise: ds.noise,
        nfe,
        strategy,
        space: a.space.clone(),
        budget: a.budget,
        seed,
        metric: a.metric,
        samples: a.samples,
        stage_size: 20,
        final_top: 1,
        final_samples: a.samples,
        predictor: None,
        models_dir: None,
        reference_nfe: None,
        // The strategies compare on the search alone.
        refine: None,
        solver: None,
        dataset_identity: None,
        space_hash: None,
    };
    let id = format!("{dataset}-nfe{nfe}-{}-seed{seed}", strategy.as_str());
    let run = match Run::load(store, &id).expect("store") {
        Some(run) => run,
        None => Run::create(store, &id, cfg.clone()).expect("create run"),
    };
    let setup = SearchSetup::new(&cfg, ds, SearchSpace::load(&a.space).expect("space"))
        .expect("search setup");
    let start = std::time::Instant::now();
    let mut best_classic = f64::NAN;
    let mut curve = Vec::new();
    let mut best = f64::INFINITY;
    SearchRunner::new(store, run, setup)
        .run(&mut |e| match e {
            Event::Baselines { value, .. } => best_classic = *value,
            Event::Trial { value, .. } => {
                if let Some(v) = value {
                    best = best.min(*v);
                }
                curve.push(best);
            }
            _ => {}
        })
        .expect("search");
    RunResult {
        best_classic,
        curve,
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn main() {
    let a = parse_args();
    std::fs::create_dir_all(&a.out).expect("--out");
    let mut curves = std::fs::File::create(a.out.join("curves.jsonl")).expect("curves.jsonl");
    let marks: Vec<usize> = [0.25, 0.5, 0.75, 1.0]
        .iter()
        .map(|f| ((a.budget as f64 * f).round() as usize).max(1))
        .collect();
    let mut table = String::new();
    table.push_str(&format!(
        "Speed-up over the best classic solver (best classic / best searched {}, {} samples, \
         mean ± std over seeds {:?}) after E true evaluations; `reach` = mean evaluations until \
         the run's best is within 1 % of evolution's final mean best (runs that never get there \
         count as the budget, `n/N` = how many got there).\n\n",
        a.metric.as_str(),
        a.samples,
        a.seeds
    ));
    table.push_str("| dataset | NFE | strategy |");
    for m in &marks {
        table.push_str(&format!(" E={m} |"));
    }
    table.push_str(" reach | s/run |\n|---|---|---|");
    for _ in &marks {
        table.push_str("---|");
    }
    table.push_str("---|---|\n");
    for dataset in &a.datasets {
        let store = Store::open(&a.out.join(format!("store-{dataset}"))).expect("store");
        for &nfe in &a.nfes {
            let mut results: BTreeMap<&str, Vec<RunResult>> = BTreeMap::new();
            for &strategy in &a.strategies {
                for &seed in &a.seeds {
                    let r = run_one(&store, dataset, nfe, seed, strategy, &a);
                    eprintln!(
                        "{dataset} nfe {nfe} {} seed {seed}: best {:.5} (classic {:.5}) in {:.0} s",
                        strategy.as_str(),
                        r.curve.last().copied().unwrap_or(f64::NAN),
                        r.best_classic,
                        r.seconds
                    );
                    writeln!(
                        curves,
                        "{}",
                        serde_json::json!({
                            "dataset": dataset, "nfe": nfe, "strategy": strategy.as_str(),
                            "seed": seed, "best_classic": r.best_classic, "curve": r.curve,
                            "seconds": r.seconds,
                        })
                    )
                    .expect("write curves");
                    results.entry(strategy.as_str()).or_default().push(r);
                }
            }
            let target = results.get("evolution").map(|rs| {
                1.01 * mean(
                    &rs.iter()
                        .map(|r| *r.curve.last().unwrap())
                        .collect::<Vec<_>>(),
                )
            });
            for (name, rs) in &results {
                table.push_str(&format!("| {dataset} | {nfe} | {name} |"));
                for &m in &marks {
                    let f: Vec<f64> = rs
                        .iter()
                        .map(|r| r.best_classic / r.curve[(m - 1).min(r.curve.len() - 1)])
                        .collect();
                    let mu = mean(&f);
                    let sd = (f.iter().map(|x| (x - mu).powi(2)).sum::<f64>()
                        / (f.len().max(2) - 1) as f64)
                        .sqrt();
                    table.push_str(&format!(" {mu:.2} ± {sd:.2} |"));
                }
                match target {
                    Some(t) => {
                        let hits: Vec<Option<usize>> = rs
                            .iter()
                            .map(|r| r.curve.iter().position(|&v| v <= t).map(|i| i + 1))
                            .collect();
                        let n_hit = hits.iter().filter(|h| h.is_some()).count();
                        let evals: Vec<f64> =
                            hits.iter().map(|h| h.unwrap_or(a.budget) as f64).collect();
                        table.push_str(&format!(" {:.0} ({n_hit}/{}) |", mean(&evals), rs.len()));
                    }
                    None => table.push_str(" - |"),
                }
                let secs: Vec<f64> = rs.iter().map(|r| r.seconds).collect();
                table.push_str(&format!(" {:.0} |\n", mean(&secs)));
            }
        }
    }
    println!("{table}");
    std::fs::write(a.out.join("table.md"), &table).expect("table.md");
}

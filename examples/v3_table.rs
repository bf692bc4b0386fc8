//! DPM-Solver-v3 next to the classic solvers on a mixture dataset, NFE 5–10: the table in
//! docs/dpm-solver-v3.md.
//!
//! ```text
//! cargo run --release --example v3_table -- [DATASET] [EMS_DIR]
//! ```
//!
//! DATASET defaults to `digits`, EMS_DIR (the EMS cache folder) to `s3-store/ems`. The
//! metric, sample count and noise seed (0) are the dataset's defaults, as in
//! `s3 baselines --dataset DATASET --nfe N`; the classic columns are the same schedules that
//! command runs.

use s3::dataset::Dataset;
use s3::eval::Evaluator;
use s3::solver::classic_grid;
use s3::solver::v3::{EmsCache, EmsSettings, V3_LABEL, dpm_solver_v3};
use std::time::Instant;

/// The classic solvers shown as their own columns (solver and spacing labels).
const COLUMNS: [&str; 3] = [
    "dpm-solver++(3M) logsnr",
    "unipc-bh1(3) logsnr",
    "unipc-bh1(3) time-quadratic",
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("digits", String::as_str);
    let dir = args.get(1).map_or("s3-store/ems", String::as_str);
    let ds = Dataset::load(name)?;
    let ns = ds.noise.build();
    let mixture = ds
        .mixture()
        .ok_or_else(|| anyhow::anyhow!("{name} is not a mixture: its EMS need the exact model"))?;
    let settings = EmsSettings::for_schedule(&ns);
    let (ems, origin) = EmsCache::new(dir).mixture(&ds.identity(), mixture, &ns, &settings)?;
    println!(
        "EMS of {} ({}): N = {}, K = {}, {} in {:.1} s",
        ds.name,
        ds.noise.label(),
        settings.intervals,
        settings.draws,
        if origin.cached {
            "read from the cache, computed"
        } else {
            "computed"
        },
        origin.seconds
    );
    let ev = Evaluator::new(&ds, &ns, ds.metric, ds.samples, 0)?;
    println!(
        "{} on {} samples, seed 0; floor {}\n",
        ev.metric_label(),
        ev.samples(),
        ev.floor()?.map_or("-".into(), |f| f.to_string())
    );
    println!(
        "| NFE | {V3_LABEL} | {} | best classic (solver, spacing) |",
        COLUMNS.join(" | ")
    );
    println!("|---:|---:|{}---|", "---:|".repeat(COLUMNS.len()));
    for nfe in 5..=10 {
        let start = Instant::now();
        let x = ev.initial_noise(ems.grid.t_start);
        let v3 = ev.value_of(&dpm_solver_v3(ds.model(), &ns, &ems, nfe, &x)?)?;
        let v3_secs = start.elapsed().as_secs_f64();
        let mut classic: Vec<(String, f64)> = Vec::new();
        for entry in classic_grid(&ns, nfe) {
            let label = entry.label();
            if let Ok(s) = entry.schedule
                && let Ok(e) = ev.evaluate(&s)
            {
                classic.push((label, e.value));
            }
        }
        let cell = |label: &str| {
            classic
                .iter()
                .find(|(l, _)| l == label)
                .map_or("-".into(), |(_, v)| format!("{v:.4}"))
        };
        let best = classic
            .iter()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .ok_or_else(|| anyhow::anyhow!("no classic solver ran at NFE {nfe}"))?;
        let cols: Vec<String> = COLUMNS.iter().map(|c| cell(c)).collect();
        println!(
            "| {nfe} | **{v3:.4}** | {} | {:.4} ({}) |",
            cols.join(" | "),
            best.1,
            best.0
        );
        eprintln!("NFE {nfe}: DPM-Solver-v3 sampled and measured in {v3_secs:.2} s");
    }
    Ok(())
}

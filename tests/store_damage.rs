//! Byte flips in a store: every flip is detected (a writing open refuses, or `check`
//! reports it) or harmless (everything reads back intact); a read after a flip errors
//! clearly or returns every trial intact; `repair` recovers every trial.
//!
//! The store is built through the real `Store` API: three runs, 45 trials (finished, failed
//! and cache hits), checkpoints and evaluations cached outside trials. Each case flips
//! bytes in a fresh copy: spread evenly over sled's `db` file, inside trial records in
//! `db` (the measured failure: 3 changed bytes in one record), and spread over the journals.

mod common;
use common::copy_tree;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use s3::store::{CachedEval, EvalKey, Store, StoreView, Trial, check, repair};
use serde_json::json;

/// Trials per run of the test store.
const RUNS: [(&str, u64); 3] = [("alpha", 20), ("beta", 15), ("gamma", 10)];
/// Cases spread evenly over the `db` file.
const DB_SPREAD_CASES: usize = 20;
/// Cases that change 3 bytes inside one trial record in `db`.
const DB_RECORD_CASES: usize = 10;
/// Cases spread evenly over the journals.
const JOURNAL_CASES: usize = 18;
/// Bytes changed per case, and the mask they are changed with.
const FLIP_BYTES: usize = 3;
const FLIP_MASK: u8 = 0x5a;

fn key(hash: &str) -> EvalKey {
    EvalKey {
        schedule_hash: hash.into(),
        model: "toy@vp-linear".into(),
        metric: "fd/identity(2)".into(),
        samples: 200,
        noise_seed: 0,
    }
}

/// Everything the test store holds, to compare with what a damaged copy reads back.
#[derive(Debug, PartialEq)]
struct Contents {
    trials: BTreeMap<String, Vec<Trial>>,
    states: BTreeMap<String, serde_json::Value>,
    evals: BTreeMap<String, Option<CachedEval>>,
}

/// Builds the test store in `dir` and returns what it holds.
fn build(dir: &Path) -> Contents {
    let store = Store::open(dir).unwrap();
    let mut hashes = Vec::new();
    for (r, (run, n)) in RUNS.iter().enumerate() {
        store
            .create_run(run, json!({"nfe": 3, "budget": n}))
            .unwrap();
        for i in 0..*n {
            // Runs share hashes 0..5, so later runs hit the cache.
            let hash = if i < 5 {
                format!("shared-{i}")
            } else {
                format!("{run}-{i:04}")
            };
            let t = store
                .begin_trial(
                    run,
                    &hash,
                    json!({"i": i, "steps": [0.5, 0.25]}),
                    (i / 5) as u32,
                    "random",
                )
                .unwrap();
            if i % 7 == 6 {
                store.fail_trial(run, t.number, "diverged").unwrap();
                continue;
            }
            let k = key(&hash);
            match store.cached_eval(&k).unwrap() {
                Some(e) => store.finish_trial(run, t.number, &k, &e, true).unwrap(),
                None => {
                    let e = CachedEval {
                        value: 1.0 / (1.0 + i as f64 + r as f64),
                        nfe: 3,
                        seconds: 0.01,
                    };
                    store.finish_trial(run, t.number, &k, &e, false).unwrap()
                }
            };
            hashes.push(hash);
            if i % 5 == 4 {
                store
                    .checkpoint(run, json!({"stage": i / 5, "best": 0.1}))
                    .unwrap();
            }
        }
        let classic = format!("classic-{run}");
        store
            .put_eval(
                &key(&classic),
                &CachedEval {
                    value: 0.5,
                    nfe: 3,
                    seconds: 0.02,
                },
                run,
            )
            .unwrap();
        hashes.push(classic);
    }
    read(&store, &hashes)
}

/// What an open store holds.
fn read(store: &Store, hashes: &[String]) -> Contents {
    let mut c = Contents {
        trials: BTreeMap::new(),
        states: BTreeMap::new(),
        evals: BTreeMap::new(),
    };
    for (run, _) in RUNS {
        c.trials.insert(run.into(), store.trials(run).unwrap());
        c.states
            .insert(run.into(), store.run(run).unwrap().unwrap().state);
    }
    for h in hashes {
        c.evals
            .insert(h.clone(), store.cached_eval(&key(h)).unwrap());
    }
    c
}

/// Whether a read-only view of the store holds every trial and state of `want`.
fn view_intact(view: &StoreView, want: &Contents) -> bool {
    RUNS.iter().all(|(run, _)| {
        view.trials(run).unwrap() == want.trials[*run]
            && view.run(run).unwrap().map(|r| r.state) == Some(want.states[*run].clone())
    })
}

/// One case: a file (relative to the store) and the byte positions to change.
struct Case {
    file: PathBuf,
    positions: Vec<usize>,
}

/// The journals of the store, relative to it.
fn journals() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("evals.jsonl")];
    for (run, _) in RUNS {
        out.push(Path::new("runs").join(run).join("trials.jsonl"));
    }
    out
}

/// Every case: spread over `db`, inside trial records of `db`, spread over the journals.
fn cases(dir: &Path) -> Vec<Case> {
    let db = std::fs::read(dir.join("db")).unwrap();
    let mut out: Vec<Case> = (0..DB_SPREAD_CASES)
        .map(|i| {
            let p = (db.len() - FLIP_BYTES) * i / DB_SPREAD_CASES + 17;
            Case {
                file: "db".into(),
                positions: (p..p + FLIP_BYTES).collect(),
            }
        })
        .collect();
    // Trial records: find each finished record's value field in the log.
    let needle = br#""status":"finished""#;
    let hits: Vec<usize> = db
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert!(
        hits.len() >= DB_RECORD_CASES,
        "only {} trial records found in db",
        hits.len()
    );
    for i in 0..DB_RECORD_CASES {
        let p = hits[hits.len() * i / DB_RECORD_CASES] + 11;
        out.push(Case {
            file: "db".into(),
            positions: (p..p + FLIP_BYTES).collect(),
        });
    }
    let files = journals();
    let sizes: Vec<usize> = files
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len() as usize)
        .collect();
    let total: usize = sizes.iter().sum();
    for i in 0..JOURNAL_CASES {
        let mut p = total * i / JOURNAL_CASES + (i * 37) % 101;
        let mut f = 0;
        while p >= sizes[f] {
            p -= sizes[f];
            f += 1;
        }
        out.push(Case {
            file: files[f].clone(),
            positions: vec![p],
        });
    }
    // The end of line of a journal's last line, and a run journal's first line.
    out.push(Case {
        file: files[1].clone(),
        positions: vec![sizes[1] - 1],
    });
    out.push(Case {
        file: files[2].clone(),
        positions: vec![10],
    });
    out
}

/// Changes the bytes at `positions` of `path`.
fn flip(path: &Path, positions: &[usize]) {
    let mut bytes = std::fs::read(path).unwrap();
    for &p in positions {
        bytes[p] ^= FLIP_MASK;
    }
    std::fs::write(path, bytes).unwrap();
}

/// What happened in one case.
#[derive(Default, Debug)]
struct Outcome {
    detected: bool,
    harmless: bool,
    recovered: bool,
}

fn run_case(template: &Path, case: &Case, want: &Contents, hashes: &[String]) -> Outcome {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("store");
    copy_tree(template, &dir);
    flip(&dir.join(&case.file), &case.positions);
    let name = format!("{} @ {:?}", case.file.display(), case.positions);
    let mut out = Outcome::default();

    // A read-only view errors clearly or returns everything intact.
    match StoreView::open(&dir) {
        Ok(view) => assert!(
            view_intact(&view, want),
            "{name}: the view lost data silently"
        ),
        Err(e) => {
            let text = e.to_string();
            assert!(
                text.contains("s3 store check") && text.contains("store"),
                "{name}: {text}"
            );
            out.detected = true;
        }
    }
    // `check` writes nothing, and reports.
    let checked = check(&dir).map(|r| r.is_damaged()).unwrap_or(true);
    out.detected |= checked;
    // A writing open refuses (detected) or reads everything intact.
    match Store::open(&dir) {
        Ok(store) => {
            let got = read(&store, hashes);
            assert_eq!(&got, want, "{name}: opened but data was lost");
            out.harmless = !out.detected;
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.contains("s3 store repair"), "{name}: {text}");
            out.detected = true;
        }
    }
    if out.detected {
        repair(&dir, false).unwrap_or_else(|e| panic!("{name}: repair failed: {e}"));
        let store = Store::open(&dir).unwrap_or_else(|e| panic!("{name}: open after repair: {e}"));
        assert_eq!(&read(&store, hashes), want, "{name}: repair lost data");
        drop(store);
        let report = check(&dir).unwrap();
        assert!(
            !report.is_damaged(),
            "{name}: damaged after repair: {:?}",
            report.findings
        );
        out.recovered = true;
    }
    out
}

#[test]
fn byte_flips_are_detected_or_harmless_and_repair_recovers_every_trial() {
    let start = std::time::Instant::now();
    let root = tempfile::tempdir().unwrap();
    let template = root.path().join("template");
    let want = build(&template);
    let trials: usize = want.trials.values().map(Vec::len).sum();
    assert!(trials >= 40);
    let hashes: Vec<String> = want.evals.keys().cloned().collect();
    assert!(!check(&template).unwrap().is_damaged());
    let cases = cases(&template);
    let mut counts = [0usize; 3];
    for case in &cases {
        let o = run_case(&template, case, &want, &hashes);
        assert!(
            o.detected || o.harmless,
            "{}: neither detected nor harmless",
            case.file.display()
        );
        counts[0] += o.detected as usize;
        counts[1] += o.harmless as usize;
        counts[2] += o.recovered as usize;
    }
    eprintln!(
        "store_damage: {} cases ({} flipped bytes) over db and journals of a store of {trials} \
         trials: {} detected, {} harmless, {} repaired with every trial recovered, 0 silent \
         losses ({:.1} s)",
        cases.len(),
        cases.iter().map(|c| c.positions.len()).sum::<usize>(),
        counts[0],
        counts[1],
        counts[2],
        start.elapsed().as_secs_f64()
    );
    assert!(cases.len() >= 40);
}

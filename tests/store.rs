//! Integration tests of the sled result store: round trips, schema versions, the trial
//! lifecycle, crash recovery (a SIGKILLed child process), the shared evaluation cache and bad
//! input.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use s3::S3Error;
use s3::store::{CachedEval, EvalKey, STORE_SCHEMA_VERSION, Store, TrialStatus};
use serde_json::json;

fn key(hash: &str) -> EvalKey {
    EvalKey {
        schedule_hash: hash.into(),
        model: "digits@vp-linear".into(),
        metric: "fd/identity(64)".into(),
        samples: 5000,
        noise_seed: 0,
    }
}

fn eval(value: f64) -> CachedEval {
    CachedEval {
        value,
        nfe: 5,
        seconds: 1.5,
    }
}

/// The message of a store error, checking it is one and names `dir`.
fn store_message(error: S3Error, dir: &Path) -> String {
    let text = error.to_string();
    match error {
        S3Error::Store { path, message } => {
            assert_eq!(path, dir, "{text}");
            message
        }
        other => panic!("expected a store error, got {other:?}"),
    }
}

#[test]
fn create_open_reopen_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert_eq!(store.recovered_trials(), 0);
        assert!(store.runs().unwrap().is_empty());
        let run = store
            .create_run("r1", json!({"nfe": 5, "dataset": "digits"}))
            .unwrap();
        assert_eq!(run.state, serde_json::Value::Null);
        store.create_run("r2", json!({"nfe": 6})).unwrap();
        store
            .checkpoint("r1", json!({"generation": 3, "population": [1, 2]}))
            .unwrap();
        let t = store
            .begin_trial("r1", "h0", json!({"steps": []}), 1, "random")
            .unwrap();
        store
            .finish_trial("r1", t.number, &key("h0"), &eval(0.25), false)
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.recovered_trials(), 0);
    let runs = store.runs().unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2"]);
    let r1 = store.run("r1").unwrap().unwrap();
    assert_eq!(r1.config, json!({"nfe": 5, "dataset": "digits"}));
    assert_eq!(r1.state, json!({"generation": 3, "population": [1, 2]}));
    assert!(r1.updated_unix >= r1.created_unix);
    assert_eq!(store.run("nope").unwrap(), None);
    let trials = store.trials("r1").unwrap();
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0].status, TrialStatus::Finished);
    assert_eq!(trials[0].value, Some(0.25));
    assert_eq!(trials[0].schedule, json!({"steps": []}));
    assert_eq!(store.cached_eval(&key("h0")).unwrap(), Some(eval(0.25)));
    assert_eq!(store.eval_count().unwrap(), 1);
    // Checkpoints replace the state only.
    store.checkpoint("r1", json!({"generation": 4})).unwrap();
    let r1b = store.run("r1").unwrap().unwrap();
    assert_eq!(r1b.config, r1.config);
    assert_eq!(r1b.state, json!({"generation": 4}));
    assert_eq!(r1b.created_unix, r1.created_unix);
}

#[test]
fn duplicate_and_invalid_runs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_run("r", json!({"a": 1})).unwrap();
    let msg = store_message(
        store.create_run("r", json!({"a": 2})).unwrap_err(),
        dir.path(),
    );
    assert!(msg.contains("already exists"), "{msg}");
    assert_eq!(store.run("r").unwrap().unwrap().config, json!({"a": 1}));
    for bad in ["", "a\0b", "tab\there"] {
        let msg = store_message(store.create_run(bad, json!(null)).unwrap_err(), dir.path());
        assert!(msg.contains("run id"), "{msg}");
    }
    let msg = store_message(
        store.checkpoint("missing", json!(1)).unwrap_err(),
        dir.path(),
    );
    assert!(msg.contains("no run `missing`"), "{msg}");
    let msg = store_message(
        store
            .begin_trial("missing", "h", json!(null), 0, "random")
            .unwrap_err(),
        dir.path(),
    );
    assert!(msg.contains("no run `missing`"), "{msg}");
    assert_eq!(store.runs().unwrap().len(), 1);
}

#[test]
fn schema_version_mismatch_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        assert_eq!(
            &meta.get("schema_version").unwrap().unwrap()[..],
            STORE_SCHEMA_VERSION.to_string().as_bytes()
        );
        meta.insert("schema_version", &b"7"[..]).unwrap();
        db.flush().unwrap();
    }
    let err = Store::open(dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    let msg = store_message(err, dir.path());
    assert!(msg.contains("schema version 7 found"), "{msg}");
    assert!(
        msg.contains(&format!("reads version {STORE_SCHEMA_VERSION}")),
        "{msg}"
    );
}

#[test]
fn foreign_directories_are_not_written_into() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let msg = store_message(Store::open(dir.path()).unwrap_err(), dir.path());
    assert!(msg.contains("not an s3 store"), "{msg}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    let file = dir.path().join("notes.txt");
    let msg = store_message(Store::open(&file).unwrap_err(), &file);
    assert!(msg.contains("not a directory"), "{msg}");

    // A sled database with someone else's trees.
    let other = dir.path().join("other");
    {
        let db = sled::open(&other).unwrap();
        db.open_tree("theirs").unwrap().insert("k", "v").unwrap();
        db.flush().unwrap();
    }
    let msg = store_message(Store::open(&other).unwrap_err(), &other);
    assert!(msg.contains("unknown tree"), "{msg}");
}

#[test]
fn a_store_open_elsewhere_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path()).unwrap();
    // sled's lock is per process (fcntl), so take it from a child process.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_opens_the_store", "--nocapture"])
        .env("S3_STORE_OPEN_CHILD_DIR", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("OPEN-ERROR"), "{stdout}");
    assert!(stdout.contains("another s3 process"), "{stdout}");
}

/// Child half of `a_store_open_elsewhere_is_refused`; does nothing in a normal test run.
#[test]
fn child_opens_the_store() {
    let Some(dir) = std::env::var_os("S3_STORE_OPEN_CHILD_DIR") else {
        return;
    };
    match Store::open(Path::new(&dir)) {
        Ok(_) => println!("OPENED"),
        Err(e) => println!("OPEN-ERROR {e}"),
    }
}

#[test]
fn trial_lifecycle_and_numbering() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_run("a", json!({})).unwrap();
    store.create_run("ab", json!({})).unwrap();
    let mut numbers = Vec::new();
    for i in 0..5u64 {
        let t = store
            .begin_trial("a", &format!("h{i}"), json!({"i": i}), 2, "mutation")
            .unwrap();
        assert_eq!(t.status, TrialStatus::Running);
        assert_eq!((t.stage, t.source.as_str()), (2, "mutation"));
        numbers.push(t.number);
    }
    assert_eq!(numbers, [0, 1, 2, 3, 4]);
    // Numbers are per run: run "ab" starts at 0 (and its keys do not mix with "a"'s).
    assert_eq!(
        store
            .begin_trial("ab", "x", json!(null), 0, "random")
            .unwrap()
            .number,
        0
    );
    assert_eq!(
        store
            .begin_trial("ab", "y", json!(null), 0, "random")
            .unwrap()
            .number,
        1
    );

    let finished = store
        .finish_trial("a", 1, &key("h1"), &eval(0.5), false)
        .unwrap();
    assert_eq!(finished.status, TrialStatus::Finished);
    assert_eq!(finished.value, Some(0.5));
    assert!(!finished.cached);
    assert!(finished.finished_unix.unwrap() >= finished.created_unix);
    let failed = store.fail_trial("a", 2, "diverged: NaN at step 3").unwrap();
    assert_eq!(failed.status, TrialStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("diverged: NaN at step 3"));
    assert_eq!(failed.value, None);

    // Finished and failed trials are immutable.
    for err in [
        store
            .finish_trial("a", 1, &key("h1"), &eval(0.4), false)
            .unwrap_err(),
        store.fail_trial("a", 1, "again").unwrap_err(),
        store
            .finish_trial("a", 2, &key("h2"), &eval(0.4), false)
            .unwrap_err(),
        store.fail_trial("a", 2, "again").unwrap_err(),
    ] {
        let msg = store_message(err, dir.path());
        assert!(msg.contains("immutable"), "{msg}");
    }
    let msg = store_message(store.fail_trial("a", 99, "x").unwrap_err(), dir.path());
    assert!(
        msg.contains("trials/a#99") && msg.contains("no such trial"),
        "{msg}"
    );

    let trials = store.trials("a").unwrap();
    assert_eq!(
        trials.iter().map(|t| t.number).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    let statuses: Vec<TrialStatus> = trials.iter().map(|t| t.status).collect();
    use TrialStatus::*;
    assert_eq!(statuses, [Running, Finished, Failed, Running, Running]);
    assert_eq!(trials[1], finished);
    assert_eq!(trials[2], failed);
    assert_eq!(store.trial("a", 1).unwrap(), Some(finished));
    assert_eq!(store.trial("a", 9).unwrap(), None);
    assert_eq!(store.trials("ab").unwrap().len(), 2);
    assert!(store.trials("zzz").unwrap().is_empty());
    // The eval cache got the finished value only.
    assert_eq!(store.eval_count().unwrap(), 1);
    assert_eq!(store.cached_eval(&key("h2")).unwrap(), None);
}

#[test]
fn bad_finishes_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_run("r", json!({})).unwrap();
    let t = store
        .begin_trial("r", "h", json!(null), 0, "random")
        .unwrap();
    let bad = [
        (key("h"), eval(f64::NAN), false, "finite"),
        (key("h"), eval(f64::INFINITY), false, "finite"),
        (
            key("h"),
            CachedEval {
                seconds: -1.0,
                ..eval(1.0)
            },
            false,
            "finite",
        ),
        (key("other"), eval(1.0), false, "schedule hash"),
        (key("h"), eval(1.0), true, "holds nothing"),
    ];
    for (k, e, cached, expected) in bad {
        let msg = store_message(
            store
                .finish_trial("r", t.number, &k, &e, cached)
                .unwrap_err(),
            dir.path(),
        );
        assert!(msg.contains(expected), "{msg}");
        assert!(msg.contains("trials/r#0"), "{msg}");
    }
    assert_eq!(store.eval_count().unwrap(), 0);
    assert_eq!(
        store.trial("r", t.number).unwrap().unwrap().status,
        TrialStatus::Running
    );
    // It can still be finished properly.
    store
        .finish_trial("r", t.number, &key("h"), &eval(1.0), false)
        .unwrap();
}

#[test]
fn running_trials_become_failed_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_run("r", json!({})).unwrap();
        store.create_run("s", json!({})).unwrap();
        for i in 0..4 {
            store
                .begin_trial("r", &format!("h{i}"), json!(i), 0, "random")
                .unwrap();
        }
        store
            .begin_trial("s", "x", json!(null), 0, "random")
            .unwrap();
        store
            .finish_trial("r", 0, &key("h0"), &eval(0.1), false)
            .unwrap();
        store.fail_trial("r", 3, "bad schedule").unwrap();
        // Dropped with r#1, r#2 and s#0 still Running, as after a crash.
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.recovered_trials(), 3);
    let r = store.trials("r").unwrap();
    assert_eq!(r[0].status, TrialStatus::Finished);
    assert_eq!(r[0].value, Some(0.1));
    for t in [&r[1], &r[2], &store.trials("s").unwrap()[0]] {
        assert_eq!(t.status, TrialStatus::Failed);
        assert_eq!(
            t.error.as_deref(),
            Some("interrupted: still running when the store was reopened")
        );
        assert!(t.finished_unix.is_some());
    }
    assert_eq!(r[3].error.as_deref(), Some("bad schedule"));
    // Recovered trials are final; numbering continues after them.
    assert!(store.fail_trial("r", 1, "x").is_err());
    assert_eq!(
        store
            .begin_trial("r", "h4", json!(4), 0, "random")
            .unwrap()
            .number,
        4
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.recovered_trials(), 1);
    drop(store);
    assert_eq!(Store::open(dir.path()).unwrap().recovered_trials(), 0);
}

#[test]
fn eval_cache_is_shared_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_run("first", json!({})).unwrap();
        let t = store
            .begin_trial("first", "abc", json!({"s": 1}), 0, "seed:ddim")
            .unwrap();
        store
            .finish_trial("first", t.number, &key("abc"), &eval(0.125), false)
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    store.create_run("second", json!({})).unwrap();
    let hit = store.cached_eval(&key("abc")).unwrap().unwrap();
    assert_eq!(hit, eval(0.125));
    let t = store
        .begin_trial("second", "abc", json!({"s": 1}), 0, "seed:ddim")
        .unwrap();
    let t = store
        .finish_trial("second", t.number, &key("abc"), &hit, true)
        .unwrap();
    assert!(t.cached);
    assert_eq!(t.value, Some(0.125));
    assert_eq!(store.eval_count().unwrap(), 1);
    // Any change of the key is a miss.
    let mut other = key("abc");
    other.noise_seed = 1;
    assert_eq!(store.cached_eval(&other).unwrap(), None);
    // Claiming a cached value the cache does not hold is refused.
    let t2 = store
        .begin_trial("second", "abc", json!({"s": 1}), 0, "seed:ddim")
        .unwrap();
    let msg = store_message(
        store
            .finish_trial("second", t2.number, &key("abc"), &eval(0.5), true)
            .unwrap_err(),
        dir.path(),
    );
    assert!(msg.contains("the cache holds 0.125"), "{msg}");
    // A fresh evaluation of a cached key keeps the first cache entry.
    store
        .finish_trial("second", t2.number, &key("abc"), &eval(0.5), false)
        .unwrap();
    assert_eq!(store.cached_eval(&key("abc")).unwrap(), Some(eval(0.125)));
}

#[test]
fn corrupt_index_records_are_refused_naming_the_key_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let digest = key("h").digest();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_run("r", json!({})).unwrap();
        store
            .begin_trial("r", "h", json!(null), 0, "random")
            .unwrap();
        store
            .finish_trial("r", 0, &key("h"), &eval(1.0), false)
            .unwrap();
    }
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("runs")
            .unwrap()
            .insert("r", &b"{\"id\": \"r\", truncated"[..])
            .unwrap();
        db.open_tree("evals")
            .unwrap()
            .insert(digest.as_bytes(), &b"not json"[..])
            .unwrap();
        db.flush().unwrap();
    }
    // The index no longer matches the journals: a writing open is refused, naming the
    // records and pointing to check / repair, and changes nothing.
    let msg = store_message(Store::open(dir.path()).unwrap_err(), dir.path());
    assert!(msg.contains("run `r`"), "{msg}");
    assert!(
        msg.contains("s3 store check") && msg.contains("s3 store repair"),
        "{msg}"
    );
    let report = s3::store::check(dir.path()).unwrap();
    assert!(report.is_damaged());
    let places: Vec<&str> = report.findings.iter().map(|f| f.place.as_str()).collect();
    assert!(
        places.iter().any(|p| p.contains("index runs/r")),
        "{places:?}"
    );
    assert!(
        places
            .iter()
            .any(|p| p.contains(&format!("index evals/{digest}"))),
        "{places:?}"
    );
    // The journals still hold everything: the read-only view reads it, repair restores it.
    let view = s3::store::StoreView::open(dir.path()).unwrap();
    assert_eq!(view.trials("r").unwrap().len(), 1);
    let repaired = s3::store::repair(dir.path(), false).unwrap();
    assert_eq!((repaired.runs, repaired.trials, repaired.evals), (1, 1, 1));
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.run("r").unwrap().unwrap().config, json!({}));
    assert_eq!(store.cached_eval(&key("h")).unwrap(), Some(eval(1.0)));
    drop(store);

    // A corrupt trial record is found too.
    {
        let db = sled::open(dir.path()).unwrap();
        let mut k = b"r\0".to_vec();
        k.extend_from_slice(&0u64.to_be_bytes());
        db.open_tree("trials")
            .unwrap()
            .insert(k, &b"{"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let msg = store_message(Store::open(dir.path()).unwrap_err(), dir.path());
    assert!(msg.contains("index trials/r#0"), "{msg}");
}

#[test]
fn store_is_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Store>();
}

#[test]
fn concurrent_begins_get_unique_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_run("r", json!({})).unwrap();
    let mut numbers: Vec<u64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let store = &store;
                s.spawn(move || {
                    (0..25)
                        .map(|i| {
                            store
                                .begin_trial("r", &format!("h{w}-{i}"), json!(null), 0, "random")
                                .unwrap()
                                .number
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    numbers.sort();
    assert_eq!(numbers, (0..100).collect::<Vec<u64>>());
    assert_eq!(store.trials("r").unwrap().len(), 100);
}

/// Awkward f64 values: ones that need 17 significant digits, extremes, and a deterministic
/// spread over many magnitudes.
fn awkward_floats() -> Vec<f64> {
    let mut values = vec![
        0.1 + 0.2,
        1.0 / 3.0,
        1_795_317_302.300_526_1,
        2f64.sqrt() * 1e-7,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        -0.0,
        123_456_789.123_456_79,
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..2000 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
        values.push(unit * 10f64.powi(i % 24 - 8));
    }
    values
}

#[test]
fn floats_round_trip_bit_exactly() {
    // A value read back must be the value written, to the bit: a resumed search must rank
    // and mutate exactly as the uninterrupted one would. serde_json parses floats
    // correctly rounded only with its `float_roundtrip` feature (without it, ~9% of random
    // f64 come back 1 ULP off).
    let dir = tempfile::tempdir().unwrap();
    let floats = awkward_floats();
    let as_json = serde_json::Value::from(floats.clone());
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_run("r", as_json.clone()).unwrap();
        store.checkpoint("r", json!({ "values": as_json })).unwrap();
        for (i, &v) in floats.iter().take(40).enumerate() {
            let hash = format!("h{i}");
            let t = store
                .begin_trial(
                    "r",
                    &hash,
                    json!({ "timesteps": [v, v / 2.0] }),
                    0,
                    "random",
                )
                .unwrap();
            let e = CachedEval {
                value: v,
                nfe: 5,
                seconds: v.abs().min(1e300),
            };
            store
                .finish_trial("r", t.number, &key(&hash), &e, false)
                .unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    let bits = |value: &serde_json::Value| -> Vec<u64> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap().to_bits())
            .collect()
    };
    let expected: Vec<u64> = floats.iter().map(|v| v.to_bits()).collect();
    let hint =
        "serde_json lost float precision: enable its `float_roundtrip` feature in Cargo.toml";
    let run = store.run("r").unwrap().unwrap();
    assert_eq!(bits(&run.config), expected, "{hint}");
    assert_eq!(bits(&run.state["values"]), expected, "{hint}");
    for (i, t) in store.trials("r").unwrap().iter().enumerate() {
        let v = floats[i];
        assert_eq!(t.value.unwrap().to_bits(), v.to_bits(), "trial {i}: {hint}");
        let steps = bits(&t.schedule["timesteps"]);
        assert_eq!(
            steps,
            [v.to_bits(), (v / 2.0).to_bits()],
            "trial {i}: {hint}"
        );
        let c = store.cached_eval(&key(&t.schedule_hash)).unwrap().unwrap();
        assert_eq!(c.value.to_bits(), v.to_bits(), "trial {i}: {hint}");
    }
}

/// Env var that turns `crash_child_writes_trials` into the writer of the crash test.
const CRASH_DIR_VAR: &str = "S3_STORE_CRASH_CHILD_DIR";
const CRASH_RUN_VAR: &str = "S3_STORE_CRASH_CHILD_RUN";

/// The value the crash test's writer stores for schedule hash `h{i}`.
fn crash_value(i: u64) -> f64 {
    0.5 + i as f64 / 64.0
}

/// Child half of `sigkill_leaves_finished_trials_intact`: writes trials in a loop (begin,
/// cache lookup, finish, checkpoint), printing `finished=N` after each finish returns, until
/// it is killed. Does nothing in a normal test run.
#[test]
fn crash_child_writes_trials() {
    let Some(dir) = std::env::var_os(CRASH_DIR_VAR) else {
        return;
    };
    let run = std::env::var(CRASH_RUN_VAR).unwrap();
    let store = Store::open(Path::new(&dir)).unwrap();
    store.create_run(&run, json!({"crash": true})).unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nrecovered={}", store.recovered_trials()).unwrap();
    out.flush().unwrap();
    for i in 0..100_000u64 {
        // Every child uses hashes h0, h1, …, so later children hit earlier children's cache.
        let hash = format!("h{i}");
        let t = store
            .begin_trial(
                &run,
                &hash,
                json!({"i": i, "pad": "x".repeat(200)}),
                1,
                "crash",
            )
            .unwrap();
        let k = key(&hash);
        let (e, cached) = match store.cached_eval(&k).unwrap() {
            Some(e) => (e, true),
            None => (eval(crash_value(i)), false),
        };
        store.finish_trial(&run, t.number, &k, &e, cached).unwrap();
        writeln!(out, "\nfinished={}", t.number).unwrap();
        out.flush().unwrap();
        store.checkpoint(&run, json!({"done": i})).unwrap();
    }
}

#[test]
fn sigkill_leaves_finished_trials_intact() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // Five children in turn, each killed after a different number of finished trials and
    // with a different delay after that report, so the kill lands at different points of
    // the write loop. Later children find the earlier ones' evaluations of h0, h1, … in the
    // cache.
    let rounds = [(20usize, 0u64), (33, 150), (47, 400), (21, 900), (60, 2000)];
    let mut cached_before = 0;
    for (round, (kill_after, delay_us)) in rounds.into_iter().enumerate() {
        let run = format!("crash-{round}");
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child_writes_trials", "--nocapture"])
            .env(CRASH_DIR_VAR, dir.path())
            .env(CRASH_RUN_VAR, &run)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut reported = Vec::new();
        let mut recovered = None;
        for line in stdout.lines() {
            let line = line.unwrap();
            for token in line.split_whitespace() {
                if let Some(n) = token.strip_prefix("finished=") {
                    reported.push(n.parse::<u64>().unwrap());
                } else if let Some(n) = token.strip_prefix("recovered=") {
                    recovered = Some(n.parse::<usize>().unwrap());
                }
            }
            if reported.len() >= kill_after {
                std::thread::sleep(Duration::from_micros(delay_us));
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "the child must have been killed");
        // The previous child left at most one trial Running.
        assert!(recovered.unwrap() <= 1, "recovered {recovered:?}");

        let store = Store::open(dir.path()).unwrap();
        assert!(store.recovered_trials() <= 1);
        let trials = store.trials(&run).unwrap();
        assert_eq!(
            reported,
            (0..reported.len() as u64).collect::<Vec<_>>(),
            "round {round}"
        );
        assert!(trials.len() >= reported.len());
        for (i, t) in trials.iter().enumerate() {
            assert_eq!(t.number, i as u64);
            let expected = crash_value(i as u64);
            if (i as u64) < reported.len() as u64 || t.status == TrialStatus::Finished {
                assert_eq!(t.status, TrialStatus::Finished, "round {round} trial {i}");
                assert_eq!(t.value, Some(expected));
                if i < cached_before {
                    assert!(t.cached, "round {round} trial {i} should be a cache hit");
                }
                let c = store.cached_eval(&key(&t.schedule_hash)).unwrap().unwrap();
                assert_eq!(c.value, expected);
            } else {
                assert_eq!(t.status, TrialStatus::Failed);
            }
        }
        cached_before = cached_before.max(reported.len());
        // Every run so far (the earlier rounds included) reads back whole.
        for r in store.runs().unwrap() {
            for t in store.trials(&r.id).unwrap() {
                assert_ne!(t.status, TrialStatus::Running);
            }
        }
        println!(
            "round {round}: killed {delay_us} µs after report {}; {} trials stored, {} recovered",
            reported.len(),
            trials.len(),
            store.recovered_trials()
        );
    }
}

#[test]
fn timing_of_begin_finish_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_run("t", json!({})).unwrap();
    let n = 1000u64;
    let start = Instant::now();
    for i in 0..n {
        let hash = format!("{i:016x}");
        let t = store
            .begin_trial("t", &hash, json!({"i": i}), 0, "random")
            .unwrap();
        store
            .finish_trial("t", t.number, &key(&hash), &eval(i as f64), false)
            .unwrap();
    }
    let elapsed = start.elapsed();
    let scan = Instant::now();
    assert_eq!(store.trials("t").unwrap().len(), n as usize);
    let scan = scan.elapsed();
    drop(store);
    let reopen = Instant::now();
    let store = Store::open(dir.path()).unwrap();
    let reopen = reopen.elapsed();
    assert_eq!(store.eval_count().unwrap(), n as usize);
    println!(
        "{n} begin+finish pairs (flush per call): {:.3} s ({:.2} ms per pair); \
         scan of {n} trials {:.1} ms; reopen {:.1} ms",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e3 / n as f64,
        scan.as_secs_f64() * 1e3,
        reopen.as_secs_f64() * 1e3
    );
}

/// Every file under `dir` with its length and modification time, to show nothing changed.
fn snapshot_files(dir: &Path) -> Vec<(std::path::PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            out.extend(snapshot_files(&e.path()));
        } else {
            out.push((e.path(), m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn the_read_only_view_reads_while_a_writer_holds_the_store_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_run("w", json!({"nfe": 3})).unwrap();
    let t = store
        .begin_trial("w", "h0", json!(null), 0, "random")
        .unwrap();
    store
        .finish_trial("w", t.number, &key("h0"), &eval(0.5), false)
        .unwrap();
    store
        .begin_trial("w", "h1", json!(null), 0, "random")
        .unwrap();
    let files = snapshot_files(dir.path());
    // The writer still holds the store (and its lock).
    let view = s3::store::StoreView::open(dir.path()).unwrap();
    let trials = view.trials("w").unwrap();
    assert_eq!(trials, store.trials("w").unwrap());
    assert_eq!(trials[1].status, TrialStatus::Running);
    assert_eq!(view.runs().unwrap(), store.runs().unwrap());
    assert_eq!(snapshot_files(dir.path()), files);
    // A missing store is empty, and is not created.
    let missing = dir.path().join("nothing-here");
    let view = s3::store::StoreView::open(&missing).unwrap();
    assert!(view.runs().unwrap().is_empty() && !view.notes().is_empty());
    assert!(!missing.exists());
}

/// The sled files of a store, copied into `to` (a snapshot of the index alone).
fn copy_index(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for name in ["db", "conf"] {
        std::fs::copy(from.join(name), to.join(name)).unwrap();
    }
}

#[test]
fn a_journal_line_the_index_lacks_is_rolled_forward() {
    // A crash between a journal line and its transaction leaves the index one change
    // behind: modelled by putting back the index as it was before the last change.
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_run("c", json!({})).unwrap();
        let t = store
            .begin_trial("c", "h", json!(null), 0, "random")
            .unwrap();
        copy_index(dir.path(), saved.path()); // flushed: the index as it is on disk now
        store
            .finish_trial("c", t.number, &key("h"), &eval(0.75), false)
            .unwrap();
    }
    copy_index(saved.path(), dir.path());
    let report = s3::store::check(dir.path()).unwrap();
    assert!(!report.is_damaged(), "{:?}", report.findings);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.severity == s3::store::Severity::Pending)
    );
    let store = Store::open(dir.path()).unwrap();
    assert!(store.rolled_forward() > 0);
    assert_eq!(
        store.recovered_trials(),
        0,
        "the finished trial must not be failed"
    );
    let t = store.trial("c", 0).unwrap().unwrap();
    assert_eq!((t.status, t.value), (TrialStatus::Finished, Some(0.75)));
    assert_eq!(store.cached_eval(&key("h")).unwrap(), Some(eval(0.75)));
    drop(store);
    assert!(s3::store::check(dir.path()).unwrap().findings.is_empty());
}

#[test]
fn a_store_without_journals_is_refused_then_journaled_from_its_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_run("old", json!({"nfe": 4})).unwrap();
        let t = store
            .begin_trial("old", "h", json!(null), 0, "random")
            .unwrap();
        store
            .finish_trial("old", t.number, &key("h"), &eval(0.25), false)
            .unwrap();
        store.put_eval(&key("classic"), &eval(0.5), "old").unwrap();
    }
    // As written by an s3 before journals: no journal files.
    std::fs::remove_file(dir.path().join("evals.jsonl")).unwrap();
    std::fs::remove_file(dir.path().join("runs/old/trials.jsonl")).unwrap();
    let msg = store_message(Store::open(dir.path()).unwrap_err(), dir.path());
    assert!(
        msg.contains("no journals") && msg.contains("--from-index"),
        "{msg}"
    );
    let view = s3::store::StoreView::open(dir.path()).unwrap();
    assert_eq!(view.trials("old").unwrap().len(), 1);
    assert!(view.notes()[0].contains("--from-index"));
    let report = s3::store::check(dir.path()).unwrap();
    assert!(!report.journaled && !report.is_damaged());
    assert!(s3::store::repair(dir.path(), false).is_err());
    let r = s3::store::repair(dir.path(), true).unwrap();
    assert_eq!((r.runs, r.trials, r.evals), (1, 1, 2));
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.trials("old").unwrap()[0].value, Some(0.25));
    assert_eq!(store.cached_eval(&key("classic")).unwrap(), Some(eval(0.5)));
    drop(store);
    assert!(s3::store::check(dir.path()).unwrap().findings.is_empty());
}

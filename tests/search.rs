//! `s3 search` end to end on small problems: a run completes within its budget and beats the
//! best classic solver on the search noise; a SIGKILL mid-stage followed by `--resume`
//! completes without recomputing any finished evaluation and leaves the store intact; the
//! evaluation cache is shared across runs; runs list/show and export work.

mod common;
use common::{events, ok, s3};

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

fn search_args<'a>(store: &'a str, run: &'a str, budget: &'a str) -> Vec<&'a str> {
    vec![
        "search",
        "--dataset",
        "digits",
        "--nfe",
        "4",
        "--budget",
        budget,
        "--samples",
        "500",
        "--stage-size",
        "10",
        "--store",
        store,
        "--run-id",
        run,
        "--json",
        "--seed",
        "3",
        // The refinement has its own test (`refinement_…`); these measure the search.
        "--no-refine",
    ]
}

#[test]
fn search_beats_the_best_classic_solver_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    // MSE to the exact ODE solution on 200 samples: no sampling floor, so solver quality
    // decides (FD on few samples sits on its noise floor).
    let mse_args = |run: &'static str, budget: &'static str| {
        let mut args = search_args(store, run, budget);
        args[8] = "200";
        args.extend(["--metric", "mse"]);
        args
    };
    let ev = events(&ok(&mse_args("run-a", "120")));
    let base = ev
        .iter()
        .find(|e| e["event"] == "baselines")
        .expect("baselines event");
    let outcome = &ev.last().unwrap()["outcome"];
    assert_eq!(outcome["completed"], true);
    assert_eq!(outcome["evaluated"], 120);
    let best = outcome["best"].as_f64().unwrap();
    assert!(
        best < base["value"].as_f64().unwrap(),
        "search best {best} vs classic {base}"
    );
    let best_file = Path::new(store).join("runs/run-a/best.json");
    s3::solver::SolverSchedule::load(&best_file).unwrap();
    // The winner's final-ranking value, which the plain-list exports compare against.
    let final_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(store).join("runs/run-a/final.json")).unwrap(),
    )
    .unwrap();
    let winner = final_json["ranking"][0]["value"].as_f64().unwrap();
    for format in ["s3", "diffusers", "k-diffusion", "comfyui"] {
        let out = s3(&["export", "run-a", "--format", format, "--store", store]);
        let notes = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{format}: {notes}");
        assert!(!out.stdout.is_empty());
        if format == "s3" {
            assert!(!notes.contains("plain list"), "{notes}");
            continue;
        }
        // A plain list of a searched schedule loses its decisions: the loss is measured on
        // the run's final noise, the full schedule reading exactly its final-ranking value.
        let full: f64 = notes
            .split("the full schedule reads mse ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or_else(|| panic!("{format}: no loss note in {notes}"))
            .parse()
            .unwrap();
        assert!((full - winner).abs() <= 1e-5 * winner, "{full} vs {winner}");
        assert!(
            notes.contains("the best plain sampler over the exported times"),
            "{notes}"
        );
    }
    let list = ok(&["runs", "list", "--store", store]);
    assert!(list.contains("run-a"), "{list}");
    let show: serde_json::Value =
        serde_json::from_str(&ok(&["runs", "show", "run-a", "--store", store, "--json"])).unwrap();
    assert_eq!(show["finished"], 120);
    // The trial table: every trial once, in order, and its best value is the run's best.
    let csv = ok(&["runs", "trials", "run-a", "--store", store]);
    let mut lines = csv.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("number,stage,source,hash,status,value")
    );
    assert_eq!(lines.count(), 120, "{csv}");
    let rows: Vec<serde_json::Value> = ok(&[
        "runs", "trials", "run-a", "--store", store, "--format", "jsonl",
    ])
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, r)| r["number"] == i as u64 && r["nfe"] == 4)
    );
    let min = rows
        .iter()
        .filter_map(|r| r["value"].as_f64())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(min, best);
    let e = common::fails(&[
        "runs", "trials", "run-a", "--store", store, "--format", "xml",
    ]);
    assert!(e.contains("--format xml"), "{e}");
    // A second run with the same seed and budget proposes the same candidates: all served
    // by the cache, and the MSE reference comes from the store.
    let ev2 = events(&ok(&mse_args("run-b", "120")));
    let reference = ev2.iter().find(|e| e["event"] == "reference").unwrap();
    assert_eq!(reference["cached"], true, "{reference}");
    let trials: Vec<_> = ev2.iter().filter(|e| e["event"] == "trial").collect();
    assert_eq!(trials.len(), 120);
    assert!(trials.iter().all(|t| t["cached"] == true), "{trials:?}");
}

#[test]
fn sigkill_then_resume_loses_and_repays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_s3"))
        .args(search_args(store, "run-k", "80"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Read events until 25 trials have finished, then SIGKILL the process mid-stage.
    let mut finished_before: Vec<(u64, String, f64)> = Vec::new();
    let reader = BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        let e: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if e["event"] == "trial"
            && let Some(v) = e["value"].as_f64()
        {
            finished_before.push((
                e["number"].as_u64().unwrap(),
                e["hash"].as_str().unwrap().into(),
                v,
            ));
            if finished_before.len() == 25 {
                child.kill().unwrap();
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(finished_before.len(), 25);
    // Resume: completes the budget; no finished hash is evaluated again.
    let ev = events(&ok(&[
        "search", "--resume", "run-k", "--store", store, "--json",
    ]));
    let outcome = &ev.last().unwrap()["outcome"];
    assert_eq!(outcome["completed"], true);
    assert_eq!(outcome["evaluated"], 80);
    let before: std::collections::HashSet<&str> =
        finished_before.iter().map(|t| t.1.as_str()).collect();
    for e in ev.iter().filter(|e| e["event"] == "trial") {
        assert!(
            !before.contains(e["hash"].as_str().unwrap()),
            "re-evaluated {e}"
        );
    }
    // The store is intact: every trial finished before the kill is there with its value.
    let show: serde_json::Value =
        serde_json::from_str(&ok(&["runs", "show", "run-k", "--store", store, "--json"])).unwrap();
    assert_eq!(show["finished"], 80);
    let store = s3::store::Store::open(Path::new(store)).unwrap();
    let trials = store.trials("run-k").unwrap();
    for (number, hash, value) in &finished_before {
        let t = trials.iter().find(|t| t.number == *number).unwrap();
        assert_eq!(&t.schedule_hash, hash);
        assert_eq!(t.value, Some(*value));
        assert_eq!(t.status, s3::store::TrialStatus::Finished);
    }
}

#[test]
fn s3_strategy_trains_saves_and_warm_starts_its_predictor() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let mut args = search_args(store, "run-p", "90");
    args.extend(["--strategy", "s3"]);
    let ev = events(&ok(&args));
    let stages: Vec<_> = ev.iter().filter(|e| e["event"] == "stage").collect();
    // Seeds and the random warm-up come first; then every stage trains a predictor.
    let with_predictor: Vec<_> = stages
        .iter()
        .filter(|s| !s["predictor"].is_null())
        .collect();
    assert!(!with_predictor.is_empty(), "{stages:?}");
    let last = &with_predictor.last().unwrap()["predictor"];
    assert!(last["trials"].as_u64().unwrap() >= 60, "{last}");
    let tau = last["holdout_tau"].as_f64().expect("held-out τ");
    assert!((-1.0..=1.0).contains(&tau));
    assert!(last["scored"].as_u64().unwrap() > 100, "{last}");
    // Guided proposals are labelled as such in the trials.
    let sources: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "trial")
        .map(|e| e["source"].as_str().unwrap())
        .collect();
    assert!(sources.iter().any(|s| s.starts_with("s3-predicted:")));
    assert!(sources.iter().any(|s| s.starts_with("s3-explore:")));
    // The predictor is saved in the run directory, says what it was trained on, and loads.
    let stem = Path::new(store).join("runs/run-p/predictor");
    let (p, doc) = s3::predictor::Predictor::load(&stem).unwrap();
    assert_eq!(doc["run"], "run-p");
    assert_eq!(doc["nfe"], 4);
    assert_eq!(p.trained_on() as u64, last["trials"].as_u64().unwrap());
    // `runs show` reports the predictor's τ.
    let show = ok(&["runs", "show", "run-p", "--store", store]);
    assert!(show.contains("predictor: trained on"), "{show}");
    // A new run at another NFE warm-starts from it: the predictor guides the stage right
    // after the classic seeds, before any random warm-up.
    let stem_s = stem.to_str().unwrap();
    let mut args = search_args(store, "run-w", "60");
    args[4] = "5";
    args.extend(["--predictor", stem_s]);
    let ev = events(&ok(&args));
    let seeds = ev
        .iter()
        .filter(|e| e["event"] == "trial" && e["source"].as_str().unwrap().starts_with("seed:"))
        .count();
    let first_after_seeds = ev
        .iter()
        .filter(|e| e["event"] == "trial")
        .nth(seeds)
        .expect("trials after the seeds");
    let src = first_after_seeds["source"].as_str().unwrap();
    assert!(src.starts_with("s3-"), "{src}");
    let stored: serde_json::Value =
        serde_json::from_str(&ok(&["runs", "show", "run-w", "--store", store, "--json"])).unwrap();
    assert!(
        stored["run"]["config"]["predictor"]
            .as_str()
            .unwrap()
            .ends_with("predictor")
    );
}

#[test]
fn bad_predictor_flags_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store_s = store.to_str().unwrap();
    let missing = dir.path().join("nope");
    let mut args = search_args(store_s, "run-x", "10");
    args.extend(["--predictor", missing.to_str().unwrap()]);
    let out = s3(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--predictor") && err.contains("nope.json"),
        "{err}"
    );
    let mut args = search_args(store_s, "run-y", "10");
    args.extend(["--strategy", "evolution", "--predictor", "whatever"]);
    let out = s3(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--predictor"), "{err}");
    // Nothing was recorded for the refused runs.
    let list = ok(&["runs", "list", "--store", store_s]);
    assert!(!list.contains("run-x") && !list.contains("run-y"), "{list}");
}

#[test]
fn the_default_spaces_run_on_every_noise_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    for space in ["usf", "quick"] {
        for ns in <s3::noise::NoiseScheduleName as s3::names::Named>::ALL
            .iter()
            .map(|n| n.as_str())
        {
            let run = format!("{space}-{ns}");
            let ev = events(&ok(&[
                "search",
                "--dataset",
                "toy2d",
                "--noise-schedule",
                ns,
                "--space",
                space,
                "--nfe",
                "5",
                "--budget",
                "16",
                "--stage-size",
                "8",
                "--samples",
                "100",
                "--store",
                store,
                "--run-id",
                &run,
                "--json",
            ]));
            // The refinement's trials (source `refined`) are outside the budget.
            let trials: Vec<_> = ev
                .iter()
                .filter(|e| e["event"] == "trial" && e["source"] != "refined")
                .collect();
            assert_eq!(trials.len(), 16, "{run}");
            let failed: Vec<_> = trials.iter().filter(|t| !t["error"].is_null()).collect();
            assert!(failed.is_empty(), "{run}: {failed:?}");
            assert_eq!(ev.last().unwrap()["outcome"]["completed"], true, "{run}");
        }
    }
}

/// `--solver`: only that solver's classic seeds, every trial is the solver over its own
/// times, the winner lands on diffusers' integer grid and exports losslessly (from the run
/// and from its best.json file alike); an unknown solver is refused before anything runs.
#[test]
fn a_fixed_solver_search_searches_only_times_and_exports_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let mut args = search_args(store, "fixed", "24");
    args.extend([
        "--metric",
        "mse",
        "--noise-schedule",
        "vp-discrete",
        "--solver",
        "dpm-solver++-2M",
    ]);
    args[8] = "200";
    let ev = events(&ok(&args));
    let trials: Vec<_> = ev.iter().filter(|e| e["event"] == "trial").collect();
    assert_eq!(trials.len(), 24);
    let seeds: Vec<&str> = trials
        .iter()
        .filter_map(|t| t["source"].as_str().unwrap().strip_prefix("seed:"))
        .collect();
    assert!(!seeds.is_empty());
    assert!(
        seeds.iter().all(|s| s.contains("dpm-solver++(2M)")),
        "{seeds:?}"
    );
    let best_file = Path::new(store).join("runs/fixed/best.json");
    let best = s3::solver::SolverSchedule::load(&best_file).unwrap();
    let solver = s3::solver::ClassicSolver::parse("dpm-solver++(2M)").unwrap();
    let rebuilt = solver.build(best.timesteps.clone(), true).unwrap();
    assert_eq!(
        s3::space::canonical(&rebuilt),
        s3::space::canonical(&best),
        "{best:?}"
    );
    assert_eq!(*best.timesteps.last().unwrap(), 0.0);
    let from_run = s3(&["export", "fixed", "--format", "diffusers", "--store", store]);
    assert!(from_run.status.success());
    let notes = String::from_utf8_lossy(&from_run.stderr);
    assert!(notes.contains("Nothing is lost"), "{notes}");
    assert!(!notes.contains("rounded"), "{notes}");
    assert!(notes.contains("searched for dpm-solver++(2M)"), "{notes}");
    let run_json: serde_json::Value = serde_json::from_slice(&from_run.stdout).unwrap();
    assert_eq!(run_json["searched_for"], "dpm-solver++(2M)");
    // The same file exported on its own: the same list and hint (a file knows no search).
    let file = best_file.to_str().unwrap();
    let file_json: serde_json::Value =
        serde_json::from_str(&ok(&["export", file, "--format", "diffusers"])).unwrap();
    assert_eq!(file_json["timesteps"], run_json["timesteps"]);
    assert_eq!(file_json["scheduler_hint"], run_json["scheduler_hint"]);
    assert!(file_json.get("searched_for").is_none());
    // A file's noise schedule can be named, but a run's cannot be overridden.
    let e = common::fails(&[
        "export",
        "fixed",
        "--noise-schedule",
        "edm",
        "--store",
        store,
    ]);
    assert!(
        e.contains("--noise-schedule") && e.contains("schedule file"),
        "{e}"
    );
    let mut bad = search_args(store, "bad", "4");
    bad.extend(["--solver", "dpm-solver++-4M"]);
    let e = common::fails(&bad);
    assert!(
        e.contains("--solver") && e.contains("dpm-solver++(3M)"),
        "{e}"
    );
    assert!(!Path::new(store).join("runs/bad").exists());
}

/// Honest reports: with a budget of one, the only trial is the best-known classic solver, so
/// the final ranking and best.json name it as classic (never "searched"), and the summary
/// does not claim a search win.
#[test]
fn a_classic_winner_is_reported_as_classic() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let mut args = search_args(store, "one", "1");
    args.retain(|a| *a != "--json");
    let out = ok(&args);
    assert!(!out.contains("the search beat"), "{out}");
    let final_json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(store).join("runs/one/final.json")).unwrap(),
    )
    .unwrap();
    let rows = final_json["ranking"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{final_json}");
    let label = rows[0]["schedule"].as_str().unwrap();
    assert_eq!(rows[0]["kind"], "classic", "{final_json}");
    let best =
        s3::solver::SolverSchedule::load(&Path::new(store).join("runs/one/best.json")).unwrap();
    assert!(best.name.unwrap().contains(label), "{label}");
    assert!(out.contains(label), "{out}");
}

/// A resume (or an export measuring a run) refuses a mixture file or search space that
/// changed since the run was created, naming what changed; the unchanged files resume.
#[test]
fn a_changed_dataset_or_space_file_is_not_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let mixture = dir.path().join("mix.json");
    let text = r#"{"shape": [2], "weights": [0.5, 0.5], "means": [[1.0, 0.0], [-1.0, 0.0]], "stds": [0.1, 0.2]}"#;
    std::fs::write(&mixture, text).unwrap();
    let space = dir.path().join("space.json");
    std::fs::write(&space, include_str!("../search_spaces/quick.json")).unwrap();
    let (m, sp) = (mixture.to_str().unwrap(), space.to_str().unwrap());
    let base = [
        "search",
        "--dataset",
        m,
        "--space",
        sp,
        "--nfe",
        "3",
        "--budget",
        "8",
        "--samples",
        "100",
        "--stage-size",
        "4",
        "--store",
        store,
    ];
    let mut first = base.to_vec();
    first.extend(["--run-id", "r", "--max-time", "0"]);
    ok(&first);
    let resume = ["search", "--resume", "r", "--store", store];
    std::fs::write(&mixture, text.replace("0.2]", "0.3]")).unwrap();
    let e = common::fails(&resume);
    assert!(
        e.contains("run r") && e.contains("dataset") && e.contains("has changed"),
        "{e}"
    );
    std::fs::write(&mixture, text).unwrap();
    let changed = include_str!("../search_spaces/quick.json")
        .replace("\"min_gap\": 0.005", "\"min_gap\": 0.006");
    std::fs::write(&space, changed).unwrap();
    let e = common::fails(&resume);
    assert!(e.contains("space") && e.contains("has changed"), "{e}");
    std::fs::write(&space, include_str!("../search_spaces/quick.json")).unwrap();
    ok(&resume);
}

/// SIGTERM and SIGINT stop a search between trials: exit 143 / 130, the resume command on
/// stderr (text mode), every finished trial kept, and `--resume` completes the budget without
/// evaluating any of them again.
#[test]
fn sigterm_and_sigint_stop_resumably_with_their_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    for (signal, status, run) in [("-TERM", 143, "run-t"), ("-INT", 130, "run-i")] {
        let mut args = search_args(store, run, "120");
        args.retain(|a| *a != "--json");
        args.push("--quiet");
        let child = Command::new(env!("CARGO_BIN_EXE_s3"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until trials are being recorded, then signal.
        let log = Path::new(store).join("runs").join(run).join("events.jsonl");
        while std::fs::read_to_string(&log).map_or(0, |t| t.matches("\"trial\"").count()) < 3 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(status), "{signal}: {err}");
        assert!(
            err.contains(&format!("continue with: s3 search --resume {run}")),
            "{err}"
        );
        let show: serde_json::Value =
            serde_json::from_str(&ok(&["runs", "show", run, "--store", store, "--json"])).unwrap();
        let finished = show["finished"].as_u64().unwrap();
        assert!((3..120).contains(&finished), "{show}");
        let ev = events(&ok(&[
            "search", "--resume", run, "--store", store, "--json",
        ]));
        let computed = ev.iter().filter(|e| e["event"] == "trial").count() as u64;
        assert_eq!(computed, 120 - finished, "{run}: resumed trials");
        assert_eq!(ev.last().unwrap()["outcome"]["completed"], true);
    }
}

/// The refinement after the search: each refined schedule pays one true-metric trial
/// (outside the budget) and is kept only through it; a SIGTERM during the refinement stops
/// it resumably, and the resumed run ends with the same ranking as an uninterrupted one,
/// replaying the cheap measurements from the store instead of paying for them again.
#[test]
fn refinement_is_confirmed_on_the_true_metric_and_resumes_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let args = |store: &'static str, run: &'static str| -> Vec<String> {
        let store = dir.path().join(store).display().to_string();
        let flags = "search --dataset toy2d --nfe 3 --budget 30 --samples 300 --final-samples 600 \
                     --stage-size 10 --refine 1 --refine-samples 128 --refine-calls 768000 --json";
        let mut v: Vec<String> = flags.split(' ').map(String::from).collect();
        v.extend(["--store".into(), store, "--run-id".into(), run.into()]);
        v
    };
    let refined_of = |ev: &[serde_json::Value]| -> serde_json::Value {
        ev.iter()
            .find(|e| e["event"] == "refined")
            .expect("a refined event")
            .clone()
    };
    let whole_args = args("whole", "r");
    let whole = events(&ok(&whole_args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()));
    let r = refined_of(&whole);
    let outcome = &whole.last().unwrap()["outcome"];
    assert_eq!(
        outcome["evaluated"], 30,
        "refined trials are outside the budget"
    );
    assert!(r["tier_value"].as_f64() < r["tier_start"].as_f64(), "{r}");
    assert!(r["calls"].as_u64().unwrap() <= 768_000, "{r}");
    let trial_of_refined = whole
        .iter()
        .filter(|e| e["event"] == "trial" && e["source"] == "refined")
        .count();
    assert_eq!(trial_of_refined, usize::from(!r["value"].is_null()), "{r}");
    // Kept exactly when its true metric beats the parent's.
    let kept = r["value"]
        .as_f64()
        .is_some_and(|v| v < r["parent_value"].as_f64().unwrap());
    assert_eq!(r["accepted"], kept, "{r}");

    // Interrupted: SIGTERM once the search's last stage is logged (the refinement is next).
    let part_args = args("parts", "r");
    let child = Command::new(env!("CARGO_BIN_EXE_s3"))
        .args(&part_args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = dir.path().join("parts/runs/r/events.jsonl");
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("\"evaluated\":30,\"budget\":30"))
    {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143));
    let parts_store = dir.path().join("parts").display().to_string();
    let resumed = events(&ok(&[
        "search",
        "--resume",
        "r",
        "--store",
        &parts_store,
        "--json",
    ]));
    let again = refined_of(&resumed);
    for field in ["hash", "value", "tier_value", "calls", "measurements"] {
        assert_eq!(again[field], r[field], "{field}: {again} vs {r}");
    }
    assert!(
        again["paid_calls"].as_u64() < r["paid_calls"].as_u64(),
        "the resumed refinement replayed what was measured before the stop: {again}"
    );
    assert_eq!(
        resumed.last().unwrap()["outcome"]["final_ranking"],
        outcome["final_ranking"]
    );
}

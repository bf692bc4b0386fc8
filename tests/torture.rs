//! A bounded torture test of the store's contract under the real binary: a small search is
//! SIGKILLed at seeded random moments and resumed each time, then byte flips hit copies of
//! the finished store.
//!
//! Checked after every kill (through the read-only view, which needs no lock): every trial
//! finished before the kill is still there, unchanged; trial numbers are contiguous; no
//! evaluation was paid twice (a schedule hash is finished uncached at most once, and the
//! cache holds one entry per paid evaluation). At the end: the run completes, `check` finds
//! nothing, and each flip is detected or harmless and repaired without losing a trial.
//! The assertions hold whatever the timing; the counts printed depend on it.

mod common;
use common::copy_tree;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use s3::store::{Store, StoreView, Trial, TrialStatus, check, repair};

/// Kills to attempt (a resumed search that ends before its kill ends the loop early).
const KILLS: usize = 12;
/// Seed of the kill moments and flip positions.
const SEED: u64 = 0x5eed_2024;
/// Range of the delay before a kill, in milliseconds after the process starts.
const KILL_DELAY_MS: (u64, u64) = (20, 300);
/// Byte-flip cases on copies of the finished store.
const FLIPS: usize = 10;
const FLIP_MASK: u8 = 0x5a;
/// The longest a resumed search may take to finish (a hang is a failure).
const FINISH_TIMEOUT: Duration = Duration::from_secs(60);
const RUN: &str = "torture";

/// splitmix64: a seeded, portable random sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// The search command: a new run the first time, `--resume` afterwards.
fn search(store: &Path, first: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_s3"));
    c.arg("search");
    if first {
        let flags = "--dataset toy2d --nfe 3 --budget 60 --samples 300 --final-samples 600 \
                     --stage-size 5 --run-id";
        c.args(flags.split_whitespace()).arg(RUN);
    } else {
        c.args(["--resume", RUN]);
    }
    c.arg("--store").arg(store).arg("--quiet");
    let log = std::fs::File::create(store.with_extension("stderr")).unwrap();
    c.stdout(Stdio::null()).stderr(log);
    c
}

/// The run's trials as the read-only view sees them (empty before the run exists).
fn trials(store: &Path) -> Vec<Trial> {
    let view = StoreView::open(store).expect("a killed search leaves a readable store");
    view.trials(RUN).unwrap()
}

/// Checks the contract on the trials after a kill; returns how many evaluations were
/// repeated (finished uncached a second time), which must be 0.
fn check_contract(before: &[Trial], after: &[Trial], evals: usize, puts: usize) -> usize {
    for t in before.iter().filter(|t| t.status != TrialStatus::Running) {
        let now = after.iter().find(|a| a.number == t.number);
        assert_eq!(
            now,
            Some(t),
            "trial #{} changed or vanished after a kill",
            t.number
        );
    }
    let numbers: Vec<u64> = after.iter().map(|t| t.number).collect();
    assert_eq!(
        numbers,
        (0..after.len() as u64).collect::<Vec<_>>(),
        "trial numbers have gaps"
    );
    let mut paid: HashMap<&str, usize> = HashMap::new();
    for t in after
        .iter()
        .filter(|t| t.status == TrialStatus::Finished && !t.cached)
    {
        *paid.entry(&t.schedule_hash).or_default() += 1;
    }
    let repeated: usize = paid.values().map(|n| n - 1).sum();
    assert_eq!(repeated, 0, "evaluations paid twice: {paid:?}");
    assert_eq!(evals, paid.len() + puts, "cache entries ≠ paid evaluations");
    repeated
}

/// Cache entries in the store and those cached outside trials (`put_eval`).
fn eval_counts(store: &Path) -> (usize, usize) {
    let view = StoreView::open(store).unwrap();
    let total = view.eval_count().unwrap();
    let journal = std::fs::read_to_string(store.join("evals.jsonl")).unwrap_or_default();
    let puts = journal
        .lines()
        .filter(|l| l.contains(r#""kind":"eval""#))
        .count();
    (total, puts)
}

/// Runs the search to its end without a kill; returns whether it succeeded.
fn finish(store: &Path) -> bool {
    let mut child = search(store, false).spawn().unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(store.with_extension("stderr")).unwrap();
            assert!(
                status.success(),
                "the resumed search failed: {status}: {log}"
            );
            return true;
        }
        if start.elapsed() > FINISH_TIMEOUT {
            child.kill().unwrap();
            panic!("the resumed search did not finish within {FINISH_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the search `KILLS` times; returns (kills done, runs that ended before their kill).
fn kill_loop(store: &Path, rng: &mut Rng) -> (usize, bool) {
    let mut kills = 0;
    for round in 0..KILLS {
        let before = trials(store);
        // A kill before the run was created leaves nothing to resume: start it again.
        let created = StoreView::open(store).unwrap().run(RUN).unwrap().is_some();
        let mut child = search(store, !created).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(
            rng.range(KILL_DELAY_MS.0, KILL_DELAY_MS.1),
        ));
        let ended = child.try_wait().unwrap();
        if ended.is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let status = child.wait().unwrap();
        let (evals, puts) = eval_counts(store);
        check_contract(&before, &trials(store), evals, puts);
        if ended.is_some() {
            let log = std::fs::read_to_string(store.with_extension("stderr")).unwrap();
            assert!(
                status.success(),
                "round {round}: the search failed: {status}: {log}"
            );
            return (kills, true);
        }
    }
    (kills, false)
}

/// Flips one byte of the db or the run's journal in a copy of `store`; asserts it is
/// detected or harmless, and that repair keeps every trial. Returns whether it was detected.
fn flip_case(store: &Path, rng: &mut Rng, want: &[Trial]) -> bool {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("s");
    copy_tree(store, &dir);
    let file: PathBuf = if rng.next().is_multiple_of(2) {
        dir.join("db")
    } else {
        dir.join("runs").join(RUN).join("trials.jsonl")
    };
    let mut bytes = std::fs::read(&file).unwrap();
    let at = rng.range(0, bytes.len() as u64) as usize;
    bytes[at] ^= FLIP_MASK;
    std::fs::write(&file, bytes).unwrap();
    let name = format!("{} byte {at}", file.display());
    let viewed = StoreView::open(&dir).map(|v| v.trials(RUN).unwrap());
    let mut detected = match &viewed {
        Ok(t) => {
            assert_eq!(t, want, "{name}: the view lost data silently");
            false
        }
        Err(_) => true,
    };
    detected |= check(&dir).map(|r| r.is_damaged()).unwrap_or(true);
    match Store::open(&dir) {
        Ok(s) => assert_eq!(s.trials(RUN).unwrap(), want, "{name}: opened but lost data"),
        Err(_) => detected = true,
    }
    if detected {
        repair(&dir, false).unwrap_or_else(|e| panic!("{name}: repair: {e}"));
        let s = Store::open(&dir).unwrap_or_else(|e| panic!("{name}: open after repair: {e}"));
        assert_eq!(s.trials(RUN).unwrap(), want, "{name}: repair lost trials");
    }
    detected
}

#[test]
fn sigkills_and_byte_flips_keep_the_storage_contract() {
    let start = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let store = root.path().join("store");
    let mut rng = Rng(SEED);
    let (kills, ended_early) = kill_loop(&store, &mut rng);
    let before = trials(&store);
    if !ended_early {
        assert!(finish(&store), "the resumed search failed");
    }
    let after = trials(&store);
    let (evals, puts) = eval_counts(&store);
    let repeated = check_contract(&before, &after, evals, puts);
    assert!(
        store.join("runs").join(RUN).join("final.json").is_file(),
        "the run did not complete"
    );
    let report = check(&store).unwrap();
    assert!(!report.is_damaged(), "{:?}", report.findings);
    let interrupted = after
        .iter()
        .filter(|t| t.status == TrialStatus::Failed)
        .count();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for t in &after {
        *by_status.entry(format!("{:?}", t.status)).or_default() += 1;
    }
    let detected = (0..FLIPS)
        .filter(|_| flip_case(&store, &mut rng, &after))
        .count();
    eprintln!(
        "torture: {kills} SIGKILLs, then the run completed: {} trials {by_status:?} \
         ({interrupted} interrupted by kills), {evals} cache entries; 0 finished trials lost, \
         {repeated} repeated evaluations; {FLIPS} byte flips: {detected} detected, {} harmless, \
         0 silent losses, every trial recovered ({:.1} s)",
        after.len(),
        FLIPS - detected,
        start.elapsed().as_secs_f64()
    );
}

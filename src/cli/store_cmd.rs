//! `s3 store check|repair`: verifying a store's journals against its sled index, and
//! rebuilding the index from the journals (and whatever the index still holds).

use super::out::outln;
use super::store_arg::StoreArg;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use s3::store::{Finding, Severity};

/// The exit status of `check` when it finds damage (errors exit 1 too, through `main`).
const DAMAGED_EXIT: i32 = 1;
/// Most findings `check` prints per run before summarising the rest.
const SHOWN_PER_PLACE: usize = 20;

#[derive(Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Compare the journals with the index; list every damaged line or record. Writes
    /// nothing. Exit status 1 if anything is damaged.
    Check {
        #[command(flatten)]
        store: StoreArg,
    },
    /// Rebuild the index from the journals and the index's readable records, keeping the
    /// damaged index as db.damaged-UNIX/ and damaged journals as *.damaged-UNIX.
    Repair {
        #[command(flatten)]
        store: StoreArg,
        /// For a store written before journals existed: write its journals from its index
        /// (run `s3 store check` first; the index is left as it is).
        #[arg(long)]
        from_index: bool,
    },
}

/// `s3 store check|repair`; returns the exit status.
pub fn store(a: StoreArgs) -> Result<i32> {
    match a.command {
        StoreCommand::Check { store } => check(&store),
        StoreCommand::Repair { store, from_index } => repair(&store, from_index),
    }
}

/// Prints findings grouped by place prefix (the run's journal or record), at most
/// [`SHOWN_PER_PLACE`] per group.
fn print_findings(findings: &[Finding]) {
    let mut shown = std::collections::BTreeMap::<String, usize>::new();
    for f in findings {
        let group = f.place.split(':').next().unwrap_or("").to_string();
        let n = shown.entry(group).or_default();
        *n += 1;
        if *n <= SHOWN_PER_PLACE {
            let tag = match f.severity {
                Severity::Damage => "damaged",
                Severity::Pending => "pending",
            };
            outln!("  {tag:<8} {}: {}", f.place, f.message);
        }
    }
    for (group, n) in shown.into_iter().filter(|(_, n)| *n > SHOWN_PER_PLACE) {
        outln!("  … and {} more in {group}", n - SHOWN_PER_PLACE);
    }
}

fn check(store: &StoreArg) -> Result<i32> {
    let dir = store.path();
    let report =
        s3::store::check(&dir).with_context(|| format!("checking the store {}", dir.display()))?;
    if !report.journaled {
        outln!(
            "{}: no journals — the store was written by an s3 before journals existed, so \
             damage to it cannot be detected, and a search will not open it until it has them.",
            dir.display()
        );
        outln!(
            "  its index holds {} runs, {} trials, {} cached evaluations",
            report.runs,
            report.trials,
            report.evals
        );
        print_findings(&report.findings);
        outln!(
            "  write the journals from the index with: s3 store repair --from-index --store {}",
            dir.display()
        );
        return Ok(if report.is_damaged() { DAMAGED_EXIT } else { 0 });
    }
    outln!(
        "{}: journals hold {} runs, {} trials, {} cached evaluations",
        dir.display(),
        report.runs,
        report.trials,
        report.evals
    );
    print_findings(&report.findings);
    if report.is_damaged() {
        let n = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Damage)
            .count();
        outln!(
            "DAMAGED: {n} problems; rebuild with: s3 store repair --store {}",
            dir.display()
        );
        return Ok(DAMAGED_EXIT);
    }
    outln!("ok: every journaled record is in the index, and every indexed record is journaled");
    Ok(0)
}

fn repair(store: &StoreArg, from_index: bool) -> Result<i32> {
    let dir = store.path();
    let r = s3::store::repair(&dir, from_index)
        .with_context(|| format!("repairing the store {}", dir.display()))?;
    if r.nothing_to_do {
        outln!(
            "{}: nothing to repair (s3 store check finds no damage)",
            dir.display()
        );
        return Ok(0);
    }
    if !r.problems.is_empty() {
        outln!("damage found:");
        print_findings(&r.problems);
    }
    outln!(
        "recovered {} runs, {} trials ({} from the journals, {} only from the index), {} cached \
         evaluations",
        r.runs,
        r.trials,
        r.trials_from_journals,
        r.trials_from_index,
        r.evals
    );
    if let Some(b) = &r.index_backup {
        outln!("index rebuilt; the damaged one is kept in {}", b.display());
    }
    for (path, backup) in &r.journals_rewritten {
        match backup {
            Some(b) => outln!(
                "journal rewritten: {} (old one kept as {})",
                path.display(),
                b.display()
            ),
            None => outln!("journal written: {}", path.display()),
        }
    }
    for u in &r.unrecoverable {
        outln!("UNRECOVERABLE: {u}");
    }
    Ok(0)
}

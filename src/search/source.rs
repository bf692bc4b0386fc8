//! Where a trial's schedule came from, as data: a classic seed, or a schedule a strategy made
//! (random, mutated, crossed over) and, for the `s3` strategy, why its predictor picked it.
//!
//! The store keeps the source as text (its `Display` form, e.g. `seed:dpm-solver++(2M)
//! time-uniform` or `s3-predicted:mutation`), so runs written by any version read back the
//! same; everything above the store works with [`TrialSource`] and never matches on prefixes.

use std::fmt;

/// How a strategy made a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Drawn uniformly from the search space.
    Random,
    /// A parent from the archive's best, mutated.
    Mutation,
    /// Two parents crossed over, then mutated.
    CrossoverMutation,
}

/// Why the `s3` strategy proposed a candidate from its scored pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Among the best scores of the predictor (exploitation).
    Predicted,
    /// A random pick from the rest of the pool (exploration).
    Explore,
}

/// Where a trial's schedule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialSource {
    /// A classic solver on a classic spacing, proposed first by the runner; the label names
    /// both (e.g. `dpm-solver++(2M) logSNR`).
    Classic(String),
    /// Made by a strategy.
    Made(Origin),
    /// Made, then picked from the `s3` strategy's pool.
    S3 { pick: Pick, origin: Origin },
    /// One of the search's best with its continuous parameters refined on the cheap tier.
    Refined,
    /// A source text this version does not know (kept as written).
    Other(String),
}

const SEED: &str = "seed:";
const S3: &str = "s3-";
const REFINED: &str = "refined";

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Random => "random",
            Origin::Mutation => "mutation",
            Origin::CrossoverMutation => "crossover+mutation",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Origin::Random, Origin::Mutation, Origin::CrossoverMutation]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

impl Pick {
    fn as_str(self) -> &'static str {
        match self {
            Pick::Predicted => "predicted",
            Pick::Explore => "explore",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Pick::Predicted, Pick::Explore]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

impl TrialSource {
    /// Reads a source as the store keeps it; text this version does not know becomes
    /// [`TrialSource::Other`].
    pub fn parse(s: &str) -> Self {
        if let Some(label) = s.strip_prefix(SEED) {
            return TrialSource::Classic(label.to_string());
        }
        if let Some(origin) = Origin::parse(s) {
            return TrialSource::Made(origin);
        }
        if s == REFINED {
            return TrialSource::Refined;
        }
        let picked = s.strip_prefix(S3).and_then(|rest| {
            let (pick, origin) = rest.split_once(':')?;
            Some(TrialSource::S3 {
                pick: Pick::parse(pick)?,
                origin: Origin::parse(origin)?,
            })
        });
        picked.unwrap_or_else(|| TrialSource::Other(s.to_string()))
    }

    /// Whether a trial from this source spends the search's budget: all but the refined
    /// schedules, which the refinement's own model-call budget pays for (like the final
    /// ranking, they come after the search).
    pub fn counts_against_budget(&self) -> bool {
        *self != TrialSource::Refined
    }

    /// The classic solver's label when this is a classic seed.
    pub fn classic_label(&self) -> Option<&str> {
        match self {
            TrialSource::Classic(label) => Some(label),
            _ => None,
        }
    }
}

impl fmt::Display for TrialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrialSource::Classic(label) => write!(f, "{SEED}{label}"),
            TrialSource::Made(origin) => f.write_str(origin.as_str()),
            TrialSource::S3 { pick, origin } => {
                write!(f, "{S3}{}:{}", pick.as_str(), origin.as_str())
            }
            TrialSource::Refined => f.write_str(REFINED),
            TrialSource::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_reads_back_as_written() {
        let all = [
            TrialSource::Classic("dpm-solver++(2M) logSNR".into()),
            TrialSource::Made(Origin::Random),
            TrialSource::Made(Origin::Mutation),
            TrialSource::Made(Origin::CrossoverMutation),
            TrialSource::S3 {
                pick: Pick::Predicted,
                origin: Origin::Mutation,
            },
            TrialSource::S3 {
                pick: Pick::Explore,
                origin: Origin::CrossoverMutation,
            },
            TrialSource::Refined,
            TrialSource::Other("hand-made".into()),
        ];
        for s in all {
            assert_eq!(TrialSource::parse(&s.to_string()), s, "{s}");
        }
    }

    #[test]
    fn the_texts_are_those_stores_already_hold() {
        assert_eq!(
            TrialSource::parse("seed:unipc-bh1(3) time-quadratic").classic_label(),
            Some("unipc-bh1(3) time-quadratic")
        );
        assert_eq!(
            TrialSource::parse("s3-explore:random"),
            TrialSource::S3 {
                pick: Pick::Explore,
                origin: Origin::Random
            }
        );
        assert_eq!(
            TrialSource::parse("s3-oops:random"),
            TrialSource::Other("s3-oops:random".into())
        );
    }
}

//! The names of s3's unit-variant enums (metrics, strategies, noise schedules, beta
//! schedules, export formats) come from one table: their serde names. Parsing a flag,
//! printing a label and reading a stored record all go through it, so they never disagree.

use crate::error::{Result, S3Error};
use serde::Serialize;

/// A unit-variant enum named by its serde names.
pub trait Named: Serialize + Copy + 'static {
    /// What the names name, in errors (e.g. "metric").
    const KIND: &'static str;
    /// Every variant, in the order errors list them.
    const ALL: &'static [Self];

    /// The variant's name (its serde name).
    fn name(self) -> &'static str {
        serde_variant::to_variant_name(&self).expect("a unit variant has a serde name")
    }

    /// The variant named `s`; an unknown name is an error listing the known ones.
    fn from_name(s: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.name() == s)
            .ok_or_else(|| S3Error::UnknownName {
                kind: Self::KIND,
                name: s.to_string(),
                expected: Self::names(),
            })
    }

    /// Every name, comma-separated (for help texts and errors).
    fn names() -> String {
        Self::ALL
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExportFormat;
    use crate::metric::MetricKind;
    use crate::noise::{BetaSchedule, NoiseScheduleName};
    use crate::search::StrategyKind;

    /// Every variant reads back from its name, and the name is what serde writes.
    fn round_trips<T: Named + PartialEq + std::fmt::Debug>() {
        for &v in T::ALL {
            assert_eq!(T::from_name(v.name()).unwrap(), v);
            let json = serde_json::to_value(v).unwrap();
            assert_eq!(json.as_str(), Some(v.name()), "{v:?}");
        }
        let e = T::from_name("no-such-name").unwrap_err().to_string();
        assert!(e.contains(T::KIND) && e.contains(&T::names()), "{e}");
    }

    #[test]
    fn every_named_enum_round_trips_through_its_serde_names() {
        round_trips::<MetricKind>();
        round_trips::<StrategyKind>();
        round_trips::<BetaSchedule>();
        round_trips::<NoiseScheduleName>();
        round_trips::<ExportFormat>();
        assert_eq!(
            NoiseScheduleName::names(),
            "vp-linear, vp-discrete, vp-cosine, edm, flow"
        );
        assert_eq!(BetaSchedule::names(), "linear, scaled_linear");
    }
}

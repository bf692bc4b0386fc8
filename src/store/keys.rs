//! Keys of the sled trees: the evaluation-cache key and its digest, trial keys that sort by
//! (run id, number), and the rule for run ids that makes those keys unambiguous.

use serde::{Deserialize, Serialize};

/// Identifies one true-metric evaluation: everything that changes its value. Two
/// evaluations with equal keys are interchangeable, so the cache may answer the second.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EvalKey {
    /// Hex hash of the canonical schedule (computed elsewhere).
    pub schedule_hash: String,
    /// Model identity, e.g. "digits@vp-linear".
    pub model: String,
    /// Metric configuration, e.g. "fd/identity(64)".
    pub metric: String,
    /// Number of samples the metric is computed on.
    pub samples: usize,
    /// Seed of the initial noise.
    pub noise_seed: u64,
}

/// Tag and version of the canonical serialisation behind [`EvalKey::digest`]; changing the
/// serialisation must change this tag, so old and new digests never collide.
const EVAL_KEY_TAG: &str = "s3-eval-key/v1";

impl EvalKey {
    /// The blake3 hex digest of a canonical serialisation of the key, used as the sled key
    /// of the evaluation cache. The serialisation is a JSON array in a fixed order
    /// (`[tag, schedule_hash, model, metric, samples, noise_seed]`), so the digest depends
    /// only on the field values — not on the process, the platform or any map order.
    pub fn digest(&self) -> String {
        blake3::hash(&self.canonical()).to_hex().to_string()
    }

    /// The canonical serialisation the digest hashes.
    fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(&(
            EVAL_KEY_TAG,
            &self.schedule_hash,
            &self.model,
            &self.metric,
            self.samples as u64,
            self.noise_seed,
        ))
        .expect("a tuple of strings and integers always serialises")
    }
}

/// Longest accepted run id, in bytes.
pub(crate) const MAX_RUN_ID_BYTES: usize = 200;

/// Checks that `id` can name a run: non-empty, at most [`MAX_RUN_ID_BYTES`] bytes and free
/// of control characters. Excluding NUL is what makes `id + 0u8` an unambiguous prefix of
/// the run's trial keys.
pub(crate) fn check_run_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("run id is empty".into());
    }
    if id.len() > MAX_RUN_ID_BYTES {
        return Err(format!(
            "run id is {} bytes long; at most {MAX_RUN_ID_BYTES} are allowed",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(format!(
            "run id {id:?} contains the control character {c:?}; use printable characters"
        ));
    }
    Ok(())
}

/// The prefix every trial key of run `run_id` starts with: the id's bytes and a 0 byte.
pub(crate) fn trial_prefix(run_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(run_id.len() + 1);
    key.extend_from_slice(run_id.as_bytes());
    key.push(0);
    key
}

/// The key of trial `number` of run `run_id`: [`trial_prefix`] followed by the number as a
/// big-endian u64, so keys sort by (run id, number) and a run's trials are a prefix scan.
pub(crate) fn trial_key(run_id: &str, number: u64) -> Vec<u8> {
    let mut key = trial_prefix(run_id);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// Splits a trial key back into (run id, number); `None` if it is not one.
pub(crate) fn parse_trial_key(key: &[u8]) -> Option<(&str, u64)> {
    if key.len() < 10 {
        return None;
    }
    let (head, number) = key.split_at(key.len() - 8);
    let (run, sep) = head.split_at(head.len() - 1);
    if sep != [0] || run.contains(&0) {
        return None;
    }
    let run = std::str::from_utf8(run).ok()?;
    Some((run, u64::from_be_bytes(number.try_into().ok()?)))
}

/// A readable name for a raw key of `tree`, for error messages: `trials/RUN#N` for trial
/// keys, `TREE/TEXT` for UTF-8 keys, `TREE/0x…` otherwise.
pub(crate) fn describe_key(tree: &str, key: &[u8]) -> String {
    if tree == "trials"
        && let Some((run, number)) = parse_trial_key(key)
    {
        return format!("trials/{run}#{number}");
    }
    match std::str::from_utf8(key) {
        Ok(text) if !text.chars().any(char::is_control) => format!("{tree}/{text}"),
        _ => {
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            format!("{tree}/0x{hex}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> EvalKey {
        EvalKey {
            schedule_hash: "0123456789abcdef".into(),
            model: "digits@vp-linear".into(),
            metric: "fd/identity(64)".into(),
            samples: 5000,
            noise_seed: 7,
        }
    }

    #[test]
    fn digest_is_a_fixed_hex_string() {
        // Computed once and hard-coded: the digest must never change for a fixed key.
        assert_eq!(
            key().digest(),
            "47ee84af3613bcdc74e6807146a5e6b86738517ddc52d460b5d1e496bb603271"
        );
    }

    #[test]
    fn canonical_serialisation_is_a_fixed_json_array() {
        assert_eq!(
            String::from_utf8(key().canonical()).unwrap(),
            r#"["s3-eval-key/v1","0123456789abcdef","digits@vp-linear","fd/identity(64)",5000,7]"#
        );
    }

    #[test]
    fn digest_changes_with_every_field() {
        let base = key().digest();
        let mut variants = Vec::new();
        let mut k = key();
        k.schedule_hash.push('0');
        variants.push(k);
        let mut k = key();
        k.model = "digits@vp-cosine".into();
        variants.push(k);
        let mut k = key();
        k.metric = "fd/identity(65)".into();
        variants.push(k);
        let mut k = key();
        k.samples += 1;
        variants.push(k);
        let mut k = key();
        k.noise_seed += 1;
        variants.push(k);
        // Moving text between fields must change the digest too (no ambiguous concatenation).
        let mut k = key();
        k.model = "digits@vp-linearfd/identity(64)".into();
        k.metric = String::new();
        variants.push(k);
        let mut digests: Vec<String> = variants.iter().map(EvalKey::digest).collect();
        assert!(digests.iter().all(|d| *d != base));
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), variants.len());
        assert_eq!(base.len(), 64);
        assert!(base.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn trial_keys_sort_by_run_then_number() {
        let mut keys = [
            trial_key("b", 0),
            trial_key("a", 256),
            trial_key("a", 1),
            trial_key("ab", 0),
            trial_key("a", 0),
        ];
        keys.sort();
        let parsed: Vec<(&str, u64)> = keys.iter().map(|k| parse_trial_key(k).unwrap()).collect();
        assert_eq!(
            parsed,
            vec![("a", 0), ("a", 1), ("a", 256), ("ab", 0), ("b", 0)]
        );
        // Run "a"'s prefix does not match run "ab"'s keys.
        assert!(!trial_key("ab", 0).starts_with(&trial_prefix("a")));
    }

    #[test]
    fn parse_rejects_non_trial_keys() {
        assert_eq!(parse_trial_key(b"short"), None);
        assert_eq!(parse_trial_key(b"abc\x01\0\0\0\0\0\0\0\0"), None);
        assert_eq!(
            parse_trial_key(&trial_key("r", u64::MAX)),
            Some(("r", u64::MAX))
        );
    }

    #[test]
    fn run_ids_are_checked() {
        assert!(check_run_id("run-2024_01").is_ok());
        assert!(check_run_id("ü 1").is_ok());
        assert!(check_run_id("").is_err());
        assert!(check_run_id("a\0b").is_err());
        assert!(check_run_id("a\nb").is_err());
        assert!(check_run_id(&"x".repeat(MAX_RUN_ID_BYTES + 1)).is_err());
    }

    #[test]
    fn keys_are_described_readably() {
        assert_eq!(describe_key("trials", &trial_key("r1", 3)), "trials/r1#3");
        assert_eq!(describe_key("runs", b"r1"), "runs/r1");
        assert_eq!(describe_key("runs", b"\x00\xff"), "runs/0x00ff");
    }
}

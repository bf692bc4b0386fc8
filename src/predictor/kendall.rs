//! Kendall's rank correlation, the predictor's quality measure: a search only needs the
//! predictor to *order* candidates correctly, so τ on held-out trials is what is reported.

/// Kendall's τ-b between `a` and `b` (paired values; only the shorter length is used).
///
/// τ-b = (C − D) / √((P − T_a)(P − T_b)) with P = n(n−1)/2 pairs, C concordant and D discordant
/// pairs, T_a the pairs tied in `a` and T_b the pairs tied in `b`. A pair tied in either list is
/// neither concordant nor discordant (a pair tied in both counts in T_a and in T_b), as in
/// `scipy.stats.kendalltau`. Exact float equality defines a tie. Degenerate cases with no
/// ranking information — fewer than two pairs' worth of values, every value of one list tied,
/// or a NaN anywhere in a pair (such pairs are skipped entirely) leaving nothing — return 0.0
/// (scipy returns NaN there). O(n²), which is fine for n up to a few thousand.
pub fn kendall_tau(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (mut concordant, mut discordant) = (0u64, 0u64);
    let (mut tied_a, mut tied_b, mut pairs) = (0u64, 0u64, 0u64);
    for i in 0..n {
        if a[i].is_nan() || b[i].is_nan() {
            continue;
        }
        for j in (i + 1)..n {
            if a[j].is_nan() || b[j].is_nan() {
                continue;
            }
            pairs += 1;
            let da = a[i] - a[j];
            let db = b[i] - b[j];
            let ta = da == 0.0;
            let tb = db == 0.0;
            if ta {
                tied_a += 1;
            }
            if tb {
                tied_b += 1;
            }
            if ta || tb {
                continue;
            }
            if (da > 0.0) == (db > 0.0) {
                concordant += 1;
            } else {
                discordant += 1;
            }
        }
    }
    let denom = ((pairs - tied_a) as f64 * (pairs - tied_b) as f64).sqrt();
    if denom == 0.0 {
        return 0.0;
    }
    (concordant as f64 - discordant as f64) / denom
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_and_reversed() {
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let r = [5.0, 4.0, 3.0, 2.0, 1.0];
        assert_eq!(kendall_tau(&a, &a), 1.0);
        assert_eq!(kendall_tau(&a, &r), -1.0);
        // Monotone transforms do not change τ.
        let e: Vec<f64> = a.iter().map(|x: &f64| x.exp()).collect();
        assert_eq!(kendall_tau(&a, &e), 1.0);
    }

    #[test]
    fn hand_computed_case_with_ties() {
        // a = [1, 2, 2, 3], b = [1, 3, 2, 2]. Pairs (i<j):
        // (0,1) +1,+2 C; (0,2) +1,+1 C; (0,3) +2,+1 C; (1,2) tie in a; (1,3) +1,−1 D;
        // (2,3) +1, tie in b. C = 3, D = 1, P = 6, T_a = 1, T_b = 1 → τ-b = 2/5.
        // scipy.stats.kendalltau([1,2,2,3],[1,3,2,2]) gives 0.4 as well.
        let a = [1.0, 2.0, 2.0, 3.0];
        let b = [1.0, 3.0, 2.0, 2.0];
        assert!((kendall_tau(&a, &b) - 0.4).abs() < 1e-12);
        assert!((kendall_tau(&b, &a) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn degenerate_inputs_give_zero() {
        assert_eq!(kendall_tau(&[], &[]), 0.0);
        assert_eq!(kendall_tau(&[1.0], &[2.0]), 0.0);
        assert_eq!(kendall_tau(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), 0.0);
        // NaN pairs are skipped.
        assert_eq!(kendall_tau(&[1.0, f64::NAN, 2.0], &[3.0, 0.0, 4.0]), 1.0);
    }
}

//! Branch-free loops over contiguous f64 slices for the mixture's softmax over components: a
//! maximum, sums, dot products and squared distances with [`LANES`] independent accumulators,
//! and an exp that the compiler can vectorise ([`exp_shifted`]).
//!
//! Why by hand: the compiler may not reorder a floating-point reduction, so a plain
//! `iter().sum()` or `fold(max)` runs one add (or compare) at a time, and `f64::exp` is a libm
//! call no loop around it can vectorise. Here every reduction keeps [`LANES`] partial results
//! (a fixed, documented summation order, so results are deterministic), and the exp is a short
//! polynomial with no calls and no data-dependent branches: both loops compile to SIMD code.

/// Independent partial results per reduction: enough to fill the SIMD registers and hide the
/// add latency on current x86-64 and ARM cores.
pub(super) const LANES: usize = 8;

/// Exp arguments below this are treated as −∞: e^−60 ≈ 9·10⁻²⁷ of the largest term, so even
/// summed over a million components such terms are far below f64 rounding of the result.
pub(super) const LOG_NEGLIGIBLE: f64 = -60.0;

/// Degree of the Taylor polynomial of e^f on |f| ≤ ln2/2: the first omitted term,
/// (ln2/2)¹⁴/14! ≈ 4·10⁻¹⁸, is below half an f64 ulp of the result.
const EXP_DEGREE: usize = 13;

/// 1/k! for k = 0..=[`EXP_DEGREE`].
const EXP_COEFFS: [f64; EXP_DEGREE + 1] = {
    let mut c = [1.0; EXP_DEGREE + 1];
    let mut k = 1;
    while k <= EXP_DEGREE {
        c[k] = c[k - 1] / k as f64;
        k += 1;
    }
    c
};

/// ln 2 split in two (fdlibm's `ln2_hi`, `ln2_lo`): `k·LN2_HI` is exact for the |k| < 2²⁰ used
/// here, so the reduced argument r − k·ln2 keeps full precision.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// 1.5·2⁵²: adding it rounds a value of magnitude < 2⁵¹ to an integer, which then sits in the
/// low bits of the sum's mantissa (no float-to-int conversion, which SSE2 cannot vectorise).
const ROUND_SHIFTER: f64 = (3u64 << 51) as f64;

/// The IEEE-754 f64 exponent bias and the position of the exponent field.
const EXP_BIAS: u64 = 1023;
const MANTISSA_BITS: u32 = f64::MANTISSA_DIGITS - 1;

/// Σ_k f^k/k! for k ≤ [`EXP_DEGREE`] in Estrin's scheme: pairs, then pairs of pairs with f²,
/// f⁴ and f⁸, a dependency chain of 5 multiply-adds instead of Horner's 13, so that
/// successive elements overlap in the pipeline.
#[inline(always)]
fn taylor_exp(f: f64) -> f64 {
    const {
        assert!(
            EXP_DEGREE == 13,
            "the pairing below is written for degree 13"
        )
    };
    let c = &EXP_COEFFS;
    let (f2, pair) = (f * f, |k: usize| c[k] + c[k + 1] * f);
    let f4 = f2 * f2;
    let quad0 = pair(0) + pair(2) * f2;
    let quad1 = pair(4) + pair(6) * f2;
    let quad2 = pair(8) + pair(10) * f2;
    let quad3 = pair(12);
    (quad0 + quad1 * f4) + (quad2 + quad3 * f4) * (f4 * f4)
}

/// e^r for r ≤ 0, and exactly 0 for r < [`LOG_NEGLIGIBLE`]: r = k·ln2 + f with |f| ≤ ln2/2,
/// e^f by its Taylor polynomial ([`taylor_exp`]), 2^k written straight into the exponent bits. The
/// argument is clamped first, so 2^k stays a normal number; NaN stays NaN. Within 2 ulps of
/// the correctly rounded e^r.
#[inline(always)]
fn exp_nonpositive(r: f64) -> f64 {
    let rc = if r < LOG_NEGLIGIBLE {
        LOG_NEGLIGIBLE
    } else {
        r
    };
    let kf = rc * std::f64::consts::LOG2_E + ROUND_SHIFTER;
    let k = kf - ROUND_SHIFTER;
    let f = (rc - k * LN2_HI) - k * LN2_LO;
    let p = taylor_exp(f);
    // The low 12 bits of kf's representation are k (mod 2¹²); the exponent field wraps them.
    let two_k = f64::from_bits(kf.to_bits().wrapping_add(EXP_BIAS) << MANTISSA_BITS);
    if r < LOG_NEGLIGIBLE { 0.0 } else { p * two_k }
}

/// Replaces each v by e^(v − shift) (0 where v − shift < [`LOG_NEGLIGIBLE`]); with `shift` the
/// maximum of `v` every argument is ≤ 0, the largest term is 1 and nothing overflows: the
/// stable softmax numerator. Returns the sum of the new values. Runs of [`LANES`] values all
/// below the cut-off (most of them where the softmax is peaked) are zeroed without the
/// polynomial: one branch per run, none per value.
pub(super) fn exp_shifted(v: &mut [f64], shift: f64) -> f64 {
    let mut chunks = v.chunks_exact_mut(LANES);
    for c in &mut chunks {
        let negligible = c
            .iter()
            .fold(true, |all, &e| all & (e - shift < LOG_NEGLIGIBLE));
        if negligible {
            c.fill(0.0);
        } else {
            for e in c.iter_mut() {
                *e = exp_nonpositive(*e - shift);
            }
        }
    }
    for e in chunks.into_remainder() {
        *e = exp_nonpositive(*e - shift);
    }
    sum(v)
}

/// The largest value of `v` (−∞ if empty; NaNs are skipped, as by `f64::max`).
pub(super) fn max(v: &[f64]) -> f64 {
    let pick = |a: f64, b: f64| if b > a { b } else { a };
    let mut acc = [f64::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = pick(*a, x);
        }
    }
    acc.iter()
        .chain(tail)
        .fold(f64::NEG_INFINITY, |m, &x| pick(m, x))
}

/// Σ f(a_i, b_i) with [`LANES`] partial sums, `f` inlined into the loop.
#[inline(always)]
fn lane_sum(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> f64 {
    let mut acc = [0.0; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
            *s += f(x, y);
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// Σ v_i.
pub(super) fn sum(v: &[f64]) -> f64 {
    lane_sum(v, v, |x, _| x)
}

/// Σ a_i·b_i.
pub(super) fn dot(a: &[f64], b: &[f64]) -> f64 {
    lane_sum(a, b, |x, y| x * y)
}

/// ‖x − α·m‖², each difference formed before squaring (no cancellation).
pub(super) fn scaled_distance(x: &[f64], alpha: f64, m: &[f64]) -> f64 {
    lane_sum(x, m, |xi, mi| {
        let r = xi - alpha * mi;
        r * r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorisable exp agrees with libm's to 2 ulps over the whole range it is used on,
    /// and cuts off to exactly 0 below [`LOG_NEGLIGIBLE`].
    #[test]
    fn exp_matches_libm_to_two_ulps() {
        let steps = 200_000;
        let mut v: Vec<f64> = (0..=steps)
            .map(|i| LOG_NEGLIGIBLE * i as f64 / steps as f64)
            .collect();
        v.extend([
            0.0,
            -0.0,
            -1e-300,
            -0.5 * std::f64::consts::LN_2,
            LOG_NEGLIGIBLE,
        ]);
        let want: Vec<f64> = v.iter().map(|r| r.exp()).collect();
        exp_shifted(&mut v, 0.0);
        for (got, want) in v.iter().zip(&want) {
            let ulps = (got - want).abs() / (want * f64::EPSILON);
            assert!(ulps <= 2.0, "{got} vs {want}: {ulps} ulps");
        }
        let mut below = [LOG_NEGLIGIBLE - 1e-9, -700.0, -1e300, f64::NEG_INFINITY];
        exp_shifted(&mut below, 0.0);
        assert_eq!(below, [0.0; 4]);
        let mut nan = [f64::NAN];
        exp_shifted(&mut nan, 0.0);
        assert!(nan[0].is_nan());
    }

    #[test]
    fn reductions_match_the_plain_loops() {
        for n in [0usize, 1, 7, 8, 9, 31, 1797] {
            let a: Vec<f64> = (0..n)
                .map(|i| ((i * 37 % 101) as f64 - 50.0) / 7.0)
                .collect();
            let b: Vec<f64> = (0..n)
                .map(|i| ((i * 53 % 89) as f64 - 40.0) / 3.0)
                .collect();
            let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * (1.0 + y.abs());
            assert_eq!(max(&a), a.iter().copied().fold(f64::NEG_INFINITY, f64::max));
            assert!(close(sum(&a), a.iter().sum()));
            assert!(close(
                dot(&a, &b),
                a.iter().zip(&b).map(|(x, y)| x * y).sum()
            ));
            let d: f64 = a.iter().zip(&b).map(|(x, y)| (x - 0.3 * y).powi(2)).sum();
            assert!(close(scaled_distance(&a, 0.3, &b), d));
        }
    }
}

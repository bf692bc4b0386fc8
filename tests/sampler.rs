//! Sampler behaviour: NFE accounting, the analytical first step, the final denoise, f32 vs f64,
//! and exactness against the closed-form ODE solution of a single Gaussian under every noise
//! schedule.

use s3::model::{Denoiser, GaussianMixture, Parameterization, TimePoint};
use s3::noise::{BetaSchedule, DiscreteVp, NoiseSchedule};
use s3::solver::{Afs, ClassicSolver, Corrector, Sampler, SolverSchedule, Spacing, UniPcVariant};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A mixture that counts its batch calls.
struct Counting {
    inner: GaussianMixture,
    calls: AtomicUsize,
}

impl Denoiser for Counting {
    fn sample_shape(&self) -> &[usize] {
        self.inner.sample_shape()
    }
    fn parameterization(&self) -> Parameterization {
        Parameterization::Eps
    }
    fn forward(&self, x: &[f32], time: TimePoint, out: &mut [f32]) -> s3::Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.forward(x, time, out)
    }
}

/// A model that returns x0 = m (a single point mass) in x0 parameterisation: its ε is exact
/// for data concentrated at m.
struct PointMassX0 {
    m: Vec<f32>,
}

impl Denoiser for PointMassX0 {
    fn sample_shape(&self) -> &[usize] {
        std::slice::from_ref(&2)
    }
    fn parameterization(&self) -> Parameterization {
        Parameterization::X0
    }
    fn forward(&self, x: &[f32], _time: TimePoint, out: &mut [f32]) -> s3::Result<()> {
        for (o, m) in out.chunks_mut(2).zip(std::iter::repeat(&self.m)) {
            o.copy_from_slice(m);
        }
        assert_eq!(x.len(), out.len());
        Ok(())
    }
}

fn gaussian() -> GaussianMixture {
    GaussianMixture::from_json_str(
        r#"{"shape":[3],"weights":[1.0],"means":[[0.7,-0.2,0.1]],"stds":[[0.3,0.8,0.05]]}"#,
        "gaussian",
    )
    .unwrap()
}

fn noise(n: usize) -> Vec<f32> {
    s3::metric::standard_noise(n, 3, 9)
}

#[test]
fn model_calls_match_the_schedule_nfe() {
    let ns = NoiseSchedule::vp_linear();
    let model = Counting {
        inner: gaussian(),
        calls: AtomicUsize::new(0),
    };
    for solver in ClassicSolver::all() {
        for n in [1, 2, 5, 8] {
            let ts = Spacing::LogSnr.timesteps(&ns, n, 1.0, 1e-3).unwrap();
            let mut s = solver.build(ts, true).unwrap();
            for afs in [Afs::None, Afs::ZeroX0, Afs::AverageX0] {
                if afs != Afs::None && n == 1 {
                    continue;
                }
                s.afs = afs;
                s.nfe = s.counted_nfe();
                model.calls.store(0, Ordering::SeqCst);
                let sampler = Sampler::new(&model, &ns).with_data_mean(vec![0.7, -0.2, 0.1]);
                let out = sampler.sample(&s, &noise(4)).unwrap();
                let calls = model.calls.load(Ordering::SeqCst);
                assert_eq!(out.nfe, s.nfe, "{}", solver.label());
                assert_eq!(calls, s.nfe, "{} n={n} {afs:?}", solver.label());
                assert_eq!(s.nfe, n - usize::from(afs != Afs::None));
            }
        }
    }
}

#[test]
fn zero_x0_first_step_is_a_pure_rescaling() {
    // With x0 := 0, a first-order data-prediction step gives x_1 = (σ_1/σ_0) x_T.
    let ns = NoiseSchedule::vp_linear();
    let mix = gaussian();
    let ts = vec![1.0, 0.5];
    let mut s = ClassicSolver::DpmSolverPp { order: 2 }
        .build(ts, true)
        .unwrap();
    s.afs = Afs::ZeroX0;
    s.steps[0].prediction = s3::solver::Prediction::Data;
    s.nfe = s.counted_nfe();
    // One step and AFS: no model call at all, which validate() rejects.
    assert!(
        s.validate()
            .unwrap_err()
            .to_string()
            .contains("never calls the model")
    );
    let ts = vec![1.0, 0.5, 0.2];
    // lower_order_final off: the second step is DPM-Solver++(2M) proper.
    let mut s = ClassicSolver::DpmSolverPp { order: 2 }
        .build(ts, false)
        .unwrap();
    s.afs = Afs::ZeroX0;
    s.nfe = s.counted_nfe();
    let x_t = noise(2);
    let sampler = Sampler::new(&mix, &ns);
    let out = sampler.sample(&s, &x_t).unwrap();
    assert_eq!(out.nfe, 1);
    // Independent computation: x_1 = σ_1/σ_0 x_T; then DPM-Solver++ order 2 from t=0.5 to 0.2
    // with the x0 history [0 at t=1, x0(x_1) at t=0.5].
    let (s0, s1, s2) = (ns.sigma(1.0), ns.sigma(0.5), ns.sigma(0.2));
    let (a1, a2) = (ns.alpha(0.5), ns.alpha(0.2));
    let x1: Vec<f64> = x_t.iter().map(|&v| v as f64 * s1 / s0).collect();
    let mut eps = vec![0f64; x1.len()];
    s3::model::eval_eps(
        &mix,
        &x1,
        TimePoint {
            t: 0.5,
            alpha: a1,
            sigma: s1,
        },
        &mut eps,
    )
    .unwrap();
    let x0_1: Vec<f64> = x1
        .iter()
        .zip(&eps)
        .map(|(x, e)| (x - s1 * e) / a1)
        .collect();
    let (l0, l1, l2) = (ns.lambda(1.0), ns.lambda(0.5), ns.lambda(0.2));
    let (h, h0) = (l2 - l1, l1 - l0);
    let r0 = h0 / h;
    for i in 0..x1.len() {
        let d1 = (x0_1[i] - 0.0) / r0;
        let want = s2 / s1 * x1[i] - a2 * (-h).exp_m1() * x0_1[i] - 0.5 * a2 * (-h).exp_m1() * d1;
        assert!(
            (out.samples[i] as f64 - want).abs() < 1e-5,
            "{i}: {} vs {want}",
            out.samples[i]
        );
    }
}

#[test]
fn final_zero_timestep_returns_the_last_x0_prediction() {
    // For data concentrated at one point, x0(x, t) = m for every x: the denoised output is m.
    let ns = NoiseSchedule::vp_linear();
    let model = PointMassX0 {
        m: vec![0.25, -0.75],
    };
    let ts = vec![1.0, 0.6, 0.3, 0.0];
    let s = ClassicSolver::UniPc {
        variant: UniPcVariant::Bh2,
        order: 3,
    }
    .build(ts, true)
    .unwrap();
    assert!(s.denoises());
    let out = Sampler::new(&model, &ns)
        .sample(&s, &[1.0, 2.0, -1.0, 0.5])
        .unwrap();
    for (o, w) in out.samples.iter().zip([0.25, -0.75, 0.25, -0.75]) {
        assert!((o - w).abs() < 1e-6, "{o} vs {w}");
    }
    assert_eq!(out.nfe, 3);
}

#[test]
fn f32_and_f64_runs_agree() {
    let ns = NoiseSchedule::vp_linear();
    let mix = gaussian();
    let ts = Spacing::LogSnr.timesteps(&ns, 8, 1.0, 1e-3).unwrap();
    let s = ClassicSolver::UniPc {
        variant: UniPcVariant::Bh1,
        order: 3,
    }
    .build(ts, true)
    .unwrap();
    let z = noise(32);
    let a = Sampler::new(&mix, &ns).sample(&s, &z).unwrap().samples;
    let z64: Vec<f64> = z.iter().map(|&v| v as f64).collect();
    let b = Sampler::new(&mix, &ns)
        .sample_f64(&s, &z64)
        .unwrap()
        .samples;
    let diff = a
        .iter()
        .zip(&b)
        .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y).abs()));
    assert!(diff < 1e-5, "{diff:e}");
}

#[test]
fn usf_corrector_rule_matches_unic_for_orders_two_and_three() {
    let ns = NoiseSchedule::vp_linear();
    let ts = Spacing::LogSnr.timesteps(&ns, 6, 1.0, 1e-3).unwrap();
    let s = ClassicSolver::UniPc {
        variant: UniPcVariant::Bh2,
        order: 3,
    }
    .build(ts, true)
    .unwrap();
    for step in s.steps.iter().filter(|st| st.order >= 2) {
        if let Some(c) = &step.corrector {
            assert_eq!(c, &Corrector::from_predictor(step), "order {}", step.order);
        }
    }
}

/// For a single Gaussian N(m, diag(s²)) the probability-flow ODE maps x_T to
/// x_t = α_t m + √(α_t² s² + σ_t²) · (x_T − α_T m)/√(α_T² s² + σ_T²) exactly.
#[test]
fn every_noise_schedule_converges_to_the_exact_gaussian_solution() {
    let mix = gaussian();
    let (m, s) = ([0.7, -0.2, 0.1], [0.3, 0.8, 0.05]);
    let schedules = [
        NoiseSchedule::vp_linear(),
        NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::Linear, 1000)),
        NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::ScaledLinear, 1000)),
        NoiseSchedule::vp_cosine(),
        NoiseSchedule::Edm,
    ];
    for ns in &schedules {
        let (t0, t1) = (ns.t_max(), ns.t_min());
        let z = noise(8);
        let scale = s3::metric::prior_std(ns, t0);
        let x_t: Vec<f64> = z.iter().map(|&v| v as f64 * scale).collect();
        let exact: Vec<f64> = x_t
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let d = i % 3;
                let (a0, s0, a1, s1) = (ns.alpha(t0), ns.sigma(t0), ns.alpha(t1), ns.sigma(t1));
                let std0 = (a0 * a0 * s[d] * s[d] + s0 * s0).sqrt();
                let std1 = (a1 * a1 * s[d] * s[d] + s1 * s1).sqrt();
                a1 * m[d] + std1 * (x - a0 * m[d]) / std0
            })
            .collect();
        let ts = Spacing::LogSnr.timesteps(ns, 200, t0, t1).unwrap();
        let sched: SolverSchedule = ClassicSolver::UniPc {
            variant: UniPcVariant::Bh2,
            order: 3,
        }
        .build(ts, true)
        .unwrap();
        let out = Sampler::new(&mix, ns)
            .sample_f64(&sched, &x_t)
            .unwrap()
            .samples;
        let err = out
            .iter()
            .zip(&exact)
            .fold(0.0f64, |a, (x, y)| a.max((x - y).abs()));
        eprintln!("{}: max error {err:e}", ns.name());
        assert!(err < 1e-4, "{}: max error {err:e}", ns.name());
    }
}

/// A time offset tells the model t + δ and keeps t for the update: one first-order
/// noise-prediction step from t_0 must equal x_1 = (α_1/α_0)·x − σ_1(e^h − 1)·ε(x, t_0 + δ),
/// and with a data-prediction step x0 must be converted from that ε at t_0, not at t_0 + δ.
#[test]
fn time_offsets_shift_only_the_time_the_model_is_told() {
    let ns = NoiseSchedule::vp_linear();
    let mix = gaussian();
    let (t0, t1, delta) = (0.8, 0.4, -0.05);
    let x = noise(5);
    let time = |t: f64| TimePoint {
        t,
        alpha: ns.alpha(t),
        sigma: ns.sigma(t),
    };
    let mut eps = vec![0.0f32; x.len()];
    mix.forward(&x, time(t0 + delta), &mut eps).unwrap();
    let (a0, s0, a1, s1) = (ns.alpha(t0), ns.sigma(t0), ns.alpha(t1), ns.sigma(t1));
    let h = ns.lambda(t1) - ns.lambda(t0);
    for prediction in [s3::solver::Prediction::Noise, s3::solver::Prediction::Data] {
        let mut s = ClassicSolver::Ddim.build(vec![t0, t1, 0.1], true).unwrap();
        s.steps[0].prediction = prediction;
        s.time_offsets = Some(vec![delta, 0.0]);
        s.validate_on(&ns).unwrap();
        // Stop after the first step: a one-step schedule ending at t_1.
        s.timesteps.truncate(2);
        s.steps.truncate(1);
        s.time_offsets = Some(vec![delta]);
        s.nfe = s.counted_nfe();
        let out = Sampler::new(&mix, &ns).sample(&s, &x).unwrap();
        for ((o, &xi), &e) in out.samples.iter().zip(&x).zip(&eps) {
            let (xi, e) = (xi as f64, e as f64);
            let want = match prediction {
                s3::solver::Prediction::Noise => a1 / a0 * xi - s1 * h.exp_m1() * e,
                s3::solver::Prediction::Data => {
                    let x0 = (xi - s0 * e) / a0;
                    s1 / s0 * xi - a1 * (-h).exp_m1() * x0
                }
            };
            assert!(
                (*o as f64 - want).abs() < 1e-5,
                "{prediction:?}: {o} vs {want}"
            );
        }
        // Without the offset the result differs: the offset is really used.
        let mut plain = s.clone();
        plain.time_offsets = None;
        let base = Sampler::new(&mix, &ns).sample(&plain, &x).unwrap();
        let diff: f32 = base
            .samples
            .iter()
            .zip(&out.samples)
            .map(|(a, b)| (a - b).abs())
            .sum();
        assert!(diff > 1e-3, "{prediction:?}: offset had no effect ({diff})");
        // All-zero offsets are the same schedule as none.
        plain.time_offsets = Some(vec![0.0]);
        let zero = Sampler::new(&mix, &ns).sample(&plain, &x).unwrap();
        assert_eq!(zero.samples, base.samples);
    }
}

#[test]
fn bad_time_offsets_are_refused_with_the_field_named() {
    let ns = NoiseSchedule::vp_linear();
    let base = ClassicSolver::DpmSolverPp { order: 2 }
        .build(vec![1.0, 0.5, 0.2, 0.0], true)
        .unwrap();
    let cases: Vec<(Vec<f64>, Afs, &str)> = vec![
        (vec![0.0, 0.0], Afs::None, "2 values for 3 steps"),
        (
            vec![0.0, f64::NAN, 0.0],
            Afs::None,
            "expected a finite offset",
        ),
        (vec![0.0, -0.6, 0.0], Afs::None, "positive model time"),
        (vec![0.01, 0.0, 0.0], Afs::None, "outside the"),
        (vec![-0.01, 0.0, 0.0], Afs::ZeroX0, "no model call at t_0"),
    ];
    for (offsets, afs, want) in cases {
        let mut s = base.clone();
        s.afs = afs;
        s.nfe = s.counted_nfe();
        s.time_offsets = Some(offsets.clone());
        let err = s.validate_on(&ns).unwrap_err().to_string();
        assert!(
            err.contains("time_offsets") && err.contains(want),
            "{offsets:?}: {err}"
        );
    }
}

/// From a flow's pure-noise t_0 = 1 (λ = −∞), offsets at the later calls are allowed (δ_0
/// stays 0) and change the result.
#[test]
fn time_offsets_work_after_a_pure_noise_start() {
    use s3::noise::{NoiseScheduleName, NoiseScheduleSpec};
    let ns = NoiseScheduleSpec::new(NoiseScheduleName::Flow).build();
    let mix = gaussian();
    let mut s = ClassicSolver::Ddim
        .build(vec![1.0, 0.6, 0.3, 0.0], true)
        .unwrap();
    let base = Sampler::new(&mix, &ns).sample(&s, &noise(3)).unwrap();
    s.time_offsets = Some(vec![0.0, -0.02, 0.01]);
    s.validate_on(&ns).unwrap();
    let shifted = Sampler::new(&mix, &ns).sample(&s, &noise(3)).unwrap();
    assert_ne!(base.samples, shifted.samples);
    s.time_offsets = Some(vec![-0.01, 0.0, 0.0]);
    let err = s.validate_on(&ns).unwrap_err().to_string();
    assert!(err.contains("pure noise"), "{err}");
}

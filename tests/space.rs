//! Search spaces and candidate operators: validation errors name the field; every sampled,
//! mutated, crossed or repaired candidate validates and has the requested NFE; hashes are
//! stable and identify canonical forms.

use rand::SeedableRng;
use rand::rngs::StdRng;
use s3::noise::{BetaSchedule, DiscreteVp, FlowMatch, NoiseSchedule};
use s3::solver::{Afs, ClassicSolver, Derivative, Prediction, SolverSchedule, Spacing, Step};
use s3::space::{Candidates, SearchSpace, canonical, schedule_hash};

fn schedules() -> Vec<NoiseSchedule> {
    vec![
        NoiseSchedule::vp_linear(),
        NoiseSchedule::VpDiscrete(DiscreteVp::new(BetaSchedule::Linear, 1000)),
        NoiseSchedule::vp_cosine(),
        NoiseSchedule::Edm,
        NoiseSchedule::Flow(FlowMatch::new(1.0).unwrap()),
        NoiseSchedule::Flow(FlowMatch::new(3.0).unwrap()),
    ]
}

#[test]
fn shipped_spaces_load() {
    for name in ["usf", "quick"] {
        let s = SearchSpace::load(name).unwrap();
        assert_eq!(s.name, name);
    }
    // The embedded copies are the files in search_spaces/.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/search_spaces/usf.json");
    assert_eq!(
        SearchSpace::load(path).unwrap(),
        SearchSpace::load("usf").unwrap()
    );
}

#[test]
fn invalid_spaces_name_the_field() {
    let base: serde_json::Value =
        serde_json::from_str(include_str!("../search_spaces/usf.json")).unwrap();
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "/priors/order",
            serde_json::json!({"5": 1.0}),
            "priors.order",
        ),
        (
            "/priors/corrector",
            serde_json::json!(1.5),
            "priors.corrector",
        ),
        (
            "/time/t_end_relative",
            serde_json::json!([1.0, 0.1]),
            "time.t_end_relative",
        ),
        ("/version", serde_json::json!(2), "version"),
        (
            "/mutation/add_step",
            serde_json::json!(-0.1),
            "mutation.add_step",
        ),
        (
            "/priors/relaxation_values",
            serde_json::json!([]),
            "priors.relaxation_values",
        ),
        ("/s3/pool", serde_json::json!(0), "s3.pool"),
        ("/s3/exploration", serde_json::json!(1.2), "s3.exploration"),
        ("/s3/holdout", serde_json::json!(0.95), "s3.holdout"),
    ];
    for (ptr, value, field) in cases {
        let mut v = base.clone();
        *v.pointer_mut(ptr).unwrap() = value;
        let e = SearchSpace::from_str(&v.to_string(), "my-space.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("my-space.json") && e.contains(field),
            "{ptr}: {e}"
        );
    }
    let mut v = base.clone();
    v["time"]["jitter"] = serde_json::json!(0.1);
    let e = SearchSpace::from_str(&v.to_string(), "my-space.json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `jitter`"), "{e}");
    // The s3 section is optional: without it the strategy's defaults apply.
    let mut v = base.clone();
    v.as_object_mut().unwrap().remove("s3");
    let s = SearchSpace::from_str(&v.to_string(), "my-space.json").unwrap();
    assert_eq!(s.s3, s3::space::S3Settings::default());
    let e = SearchSpace::load("nonexistent-space")
        .unwrap_err()
        .to_string();
    assert!(e.contains("usf, quick"), "{e}");
}

/// A `time.min_gap` that cannot fit the schedule's steps is refused when the candidates are
/// built (naming the field), instead of candidates that silently break the gap; every
/// candidate of a space that does fit keeps it.
#[test]
fn a_min_gap_without_room_for_the_steps_is_refused() {
    let ns = NoiseSchedule::vp_linear();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/quick.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["time"]["min_gap"] = serde_json::json!(0.09);
    let space = SearchSpace::from_str(&v.to_string(), "wide-gaps.json").unwrap();
    let e = Candidates::new(&space, &ns, 20).err().unwrap().to_string();
    assert!(
        e.contains("time.min_gap") && e.contains("20 model calls"),
        "{e}"
    );
    let ops = Candidates::new(&space, &ns, 4).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..200 {
        let s = ops.random(&mut rng);
        let us: Vec<f64> = s.timesteps.iter().map(|&t| ns.lambda(t)).collect();
        assert_eq!(s.nfe, 4);
        assert!(us.windows(2).all(|w| w[1] > w[0]), "{:?}", s.timesteps);
    }
}

#[test]
fn every_candidate_is_valid_with_the_requested_nfe() {
    let mut rng = StdRng::seed_from_u64(1);
    for space_name in ["usf", "quick"] {
        let space = SearchSpace::load(space_name).unwrap();
        for ns in schedules() {
            for nfe in [1, 2, 3, 4, 5, 6, 8, 10] {
                let ops = match Candidates::new(&space, &ns, nfe) {
                    Ok(ops) => ops,
                    Err(e) => {
                        // USF's t_end range [1e-4, 1e-3] lies below a discrete model's first
                        // training time 1e-3, where log α extrapolates above 0: refused.
                        assert!(space_name == "usf" && ns.name() == "vp-discrete", "{e}");
                        assert!(e.to_string().contains("time.t_end_relative"), "{e}");
                        continue;
                    }
                };
                let mut pool: Vec<SolverSchedule> = (0..20).map(|_| ops.random(&mut rng)).collect();
                for round in 0..200 {
                    let a = &pool[round % pool.len()];
                    let b = &pool[(round * 7 + 3) % pool.len()];
                    let child = match ops.crossover(a, b, &mut rng) {
                        Some(c) if round % 2 == 0 => c,
                        _ => ops.mutate(a, &mut rng),
                    };
                    pool.push(child);
                }
                for s in &pool {
                    s.validate_on(&ns).unwrap_or_else(|e| {
                        panic!("{space_name} {} nfe {nfe}: {e}\n{s:?}", ns.name())
                    });
                    assert_eq!(s.nfe, nfe);
                    // The sampler accepts it too (times on the noise schedule).
                    let check = s3::solver::Sampler::new(&NoOp, &ns).with_data_mean(vec![0.0]);
                    check.check(s).unwrap();
                }
            }
        }
    }
}

/// `--solver`: every candidate is the fixed classic solver over its own times (the builder
/// reproduces it exactly), with the NFE, no AFS, the solver's end (σ = 0, or the first
/// training time for noise-prediction DPM-Solver on a discrete schedule), and on a discrete
/// schedule model-call times on the integer training grid, distinct.
#[test]
fn fixed_solver_candidates_keep_the_solvers_decisions() {
    let mut rng = StdRng::seed_from_u64(2);
    let space = SearchSpace::load("quick").unwrap();
    for ns in schedules() {
        for solver in ClassicSolver::all() {
            for nfe in [1, 2, 3, 5, 8] {
                let ops = Candidates::new(&space, &ns, nfe)
                    .unwrap()
                    .with_solver(solver)
                    .unwrap();
                let mut pool: Vec<SolverSchedule> = (0..10).map(|_| ops.random(&mut rng)).collect();
                for round in 0..60 {
                    let a = pool[round % pool.len()].clone();
                    let b = pool[(round * 7 + 3) % pool.len()].clone();
                    let child = match ops.crossover(&a, &b, &mut rng) {
                        Some(c) if round % 2 == 0 => c,
                        _ => ops.mutate(&a, &mut rng),
                    };
                    pool.push(child);
                }
                let what = format!("{} {} nfe {nfe}", ns.name(), solver.label());
                for s in &pool {
                    s.validate_on(&ns).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!((s.nfe, s.afs), (nfe, Afs::None), "{what}");
                    let rebuilt = solver.build_for(&ns, s.timesteps.clone(), true).unwrap();
                    assert_eq!(canonical(&rebuilt), canonical(s), "{what}");
                    let end = *s.timesteps.last().unwrap();
                    let noise_dpm = matches!(solver, ClassicSolver::DpmSolver { .. });
                    assert_eq!(end, if noise_dpm { ns.t_min() } else { 0.0 }, "{what}");
                    if let NoiseSchedule::VpDiscrete(d) = &ns {
                        let calls = &s.timesteps[..nfe];
                        for &t in calls {
                            let (k, clamped) = d.nearest_timestep(t);
                            assert!(
                                !clamped && t == d.t_of_timestep(k),
                                "{what}: {t} off the grid"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A one-dimensional model whose ε is zero (only used to check schedules against a noise
/// schedule).
struct NoOp;
impl s3::model::Denoiser for NoOp {
    fn sample_shape(&self) -> &[usize] {
        &[1]
    }
    fn parameterization(&self) -> s3::model::Parameterization {
        s3::model::Parameterization::Eps
    }
    fn forward(&self, _x: &[f32], _t: s3::model::TimePoint, out: &mut [f32]) -> s3::Result<()> {
        out.fill(0.0);
        Ok(())
    }
}

#[test]
fn repair_fixes_broken_schedules() {
    let space = SearchSpace::load("usf").unwrap();
    let ns = NoiseSchedule::vp_linear();
    let ops = Candidates::new(&space, &ns, 4).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    // Too many steps, unsorted times, an order beyond the history, a corrector on the last step.
    let bad_step = |order: usize| Step {
        prediction: Prediction::Data,
        order,
        derivatives: (1..order)
            .map(|_| Derivative::new(vec![-2, -3, -4]))
            .collect(),
        corrector: None,
    };
    let mut s = SolverSchedule::new(
        Afs::None,
        vec![1.0, 0.3, 0.6, 0.2, 0.1, 0.05, 1e-3],
        (0..6)
            .map(|i| bad_step(if i == 0 { 3 } else { 4 }))
            .collect(),
    );
    s.steps[5].corrector = Some(s3::solver::Corrector::from_predictor(&s.steps[4]));
    assert!(s.validate().is_err());
    let r = ops.repair(&s, &mut rng);
    r.validate().unwrap();
    assert_eq!(r.nfe, 4);
}

#[test]
fn hash_is_stable_and_canonical() {
    let ns = NoiseSchedule::vp_linear();
    let ts = Spacing::LogSnr.timesteps(&ns, 5, 1.0, 1e-3).unwrap();
    let s = ClassicSolver::DpmSolverPp { order: 3 }
        .build(ts, true)
        .unwrap();
    // Computed once and pinned: the hash must not change across processes or builds.
    assert_eq!(schedule_hash(&s), "cc4eb94283a862267c812af72cd21700");
    // Labels, point order and do-nothing relaxations do not change the identity.
    let mut t = s.clone().with_name("another label");
    t.steps[2].derivatives[0].points.reverse();
    assert_eq!(schedule_hash(&t), schedule_hash(&s));
    assert_eq!(canonical(&t), canonical(&s));
    // A real change does.
    let mut u = s.clone();
    u.timesteps[2] *= 0.999;
    assert_ne!(schedule_hash(&u), schedule_hash(&s));
}

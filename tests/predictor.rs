//! The learned predictor end to end: training on a synthetic target with both losses, the
//! saved files, warm starts, and encoding real classic-solver schedules.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use s3::noise::NoiseSchedule;
use s3::predictor::{Encoder, Loss, Predictor, TrainConfig, kendall_tau};
use s3::solver::{ClassicSolver, Spacing};

/// `n` random feature vectors of width `dim` in [0, 1] with metric = exp(w·x/√dim + noise),
/// w ~ N(0, 1) fixed by `seed`, noise ~ N(0, 0.05).
fn synthetic(n: usize, dim: usize, seed: u64) -> (Vec<Vec<f32>>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0, 1.0).unwrap();
    let w: Vec<f64> = (0..dim).map(|_| normal.sample(&mut rng)).collect();
    let mut xs = Vec::with_capacity(n);
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let x: Vec<f32> = (0..dim).map(|_| rng.random::<f32>()).collect();
        let lin: f64 = x
            .iter()
            .zip(&w)
            .map(|(a, b)| f64::from(*a) * b)
            .sum::<f64>();
        let noise = 0.05 * normal.sample(&mut rng);
        ms.push((lin / (dim as f64).sqrt() + noise).exp());
        xs.push(x);
    }
    (xs, ms)
}

fn fit(loss: Loss) -> (Predictor, s3::predictor::TrainReport) {
    let (xs, ms) = synthetic(400, 40, 1);
    let cfg = TrainConfig {
        loss,
        ..TrainConfig::default()
    };
    let mut p = Predictor::new(40, &cfg).unwrap();
    let report = p.train(&xs, &ms, 0.2).unwrap();
    eprintln!("{loss:?}: {report:?}");
    (p, report)
}

#[test]
fn ranking_loss_learns_a_synthetic_target() {
    let (_, r) = fit(Loss::PairwiseRanking { margin: 0.1 });
    let tau = r.holdout_tau.unwrap();
    assert!(tau > 0.8, "held-out τ {tau}");
    assert!(r.train_tau > 0.8, "train τ {}", r.train_tau);
}

#[test]
fn mse_loss_learns_a_synthetic_target_and_predicts_ln_metric() {
    let (p, r) = fit(Loss::MseLogMetric);
    let tau = r.holdout_tau.unwrap();
    assert!(tau > 0.8, "held-out τ {tau}");
    // Scores are ln(metric) estimates: check them on fresh draws of the same target.
    let (xs, ms) = synthetic(400, 40, 1);
    let s = p.score(&xs).unwrap();
    let mae = s
        .iter()
        .zip(&ms)
        .map(|(a, m)| (a - m.ln()).abs())
        .sum::<f64>()
        / ms.len() as f64;
    assert!(mae < 0.2, "mean |score − ln m| = {mae}");
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let (xs, ms) = synthetic(120, 10, 3);
    let cfg = TrainConfig {
        epochs: 5,
        hidden: vec![16],
        ..TrainConfig::default()
    };
    let run = || {
        let mut p = Predictor::new(10, &cfg).unwrap();
        p.train(&xs, &ms, 0.25).unwrap();
        p.score(&xs).unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn save_load_round_trip_gives_identical_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (xs, ms) = synthetic(200, 12, 5);
    for loss in [Loss::PairwiseRanking { margin: 0.1 }, Loss::MseLogMetric] {
        let cfg = TrainConfig {
            loss,
            epochs: 10,
            hidden: vec![32, 16],
            ..TrainConfig::default()
        };
        let mut p = Predictor::new(12, &cfg).unwrap();
        let report = p.train(&xs, &ms, 0.2).unwrap();
        let stem = dir.path().join("predictors").join("synthetic.v1");
        let meta = serde_json::json!({"encoder": Encoder::new(3).meta(), "dataset": "synthetic"});
        p.save(&stem, meta).unwrap();
        assert!(
            dir.path()
                .join("predictors/synthetic.v1.safetensors")
                .is_file()
        );
        assert!(dir.path().join("predictors/synthetic.v1.json").is_file());

        let (q, doc) = Predictor::load(&stem).unwrap();
        assert_eq!(p.score(&xs).unwrap(), q.score(&xs).unwrap(), "{loss:?}");
        assert_eq!(q.config(), &cfg);
        assert_eq!(q.trained_on(), 200);
        // JSON floats may come back 1 ulp off; compare with a tolerance.
        let back = q.report().unwrap();
        assert_eq!(back.epochs, report.epochs);
        assert!((back.train_tau - report.train_tau).abs() < 1e-12);
        assert!((back.holdout_tau.unwrap() - report.holdout_tau.unwrap()).abs() < 1e-12);
        assert_eq!(doc["dataset"], "synthetic");
        assert_eq!(doc["input_dim"], 12);
        assert_eq!(doc["trials"], 200);
        assert!(doc["holdout_tau"].as_f64().is_some());
        assert_eq!(
            Encoder::from_meta(&doc["encoder"]).unwrap(),
            Encoder::new(3)
        );
    }
}

#[test]
fn reserved_metadata_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = Predictor::new(4, &TrainConfig::default()).unwrap();
    let err = p
        .save(&dir.path().join("p"), serde_json::json!({"trials": 3}))
        .unwrap_err();
    assert!(err.to_string().contains("`trials`"), "{err}");
}

#[test]
fn loading_a_missing_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("nothing-here");
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(err.contains("nothing-here.json"), "{err}");

    // JSON present, weights missing.
    let p = Predictor::new(4, &TrainConfig::default()).unwrap();
    p.save(&stem, serde_json::Value::Null).unwrap();
    std::fs::remove_file(dir.path().join("nothing-here.safetensors")).unwrap();
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(err.contains("nothing-here.safetensors"), "{err}");
}

#[test]
fn mismatched_weights_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("p");
    let cfg = TrainConfig {
        hidden: vec![8],
        ..TrainConfig::default()
    };
    Predictor::new(6, &cfg)
        .unwrap()
        .save(&stem, serde_json::Value::Null)
        .unwrap();
    let json = dir.path().join("p.json");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    doc["train_config"]["hidden"] = serde_json::json!([16]);
    std::fs::write(&json, doc.to_string()).unwrap();
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(
        err.contains("p.safetensors") && err.contains("shape"),
        "{err}"
    );

    // One layer more: `layer2.*` is missing from the file.
    doc["train_config"]["hidden"] = serde_json::json!([8, 1]);
    std::fs::write(&json, doc.to_string()).unwrap();
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(
        err.contains("p.safetensors") && err.contains("no tensor `layer2.bias`"),
        "{err}"
    );

    // No hidden layer: `layer0` has another shape.
    doc["train_config"]["hidden"] = serde_json::json!([]);
    std::fs::write(&json, doc.to_string()).unwrap();
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(
        err.contains("p.safetensors") && err.contains("shape"),
        "{err}"
    );
}

#[test]
fn a_loaded_predictor_warm_starts() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("warm");
    let (xs, ms) = synthetic(300, 20, 7);
    let mut p = Predictor::new(20, &TrainConfig::default()).unwrap();
    let first = p.train(&xs[..150], &ms[..150], 0.0).unwrap();
    assert_eq!(first.holdout_tau, None);
    p.save(&stem, serde_json::Value::Null).unwrap();

    let (mut q, _) = Predictor::load(&stem).unwrap();
    // Before further training the loaded one already ranks the unseen half well.
    let unseen = q.score(&xs[150..]).unwrap();
    let tau0 = kendall_tau(&unseen, &ms[150..]);
    assert!(
        tau0 > 0.6,
        "τ of the loaded predictor on unseen trials: {tau0}"
    );
    let mut cfg = q.config().clone();
    cfg.epochs = 30;
    q.set_config(cfg).unwrap();
    let r = q.train(&xs, &ms, 0.2).unwrap();
    assert!(r.holdout_tau.unwrap() > 0.8, "{r:?}");
    let mut other = q.config().clone();
    other.hidden = vec![3];
    assert!(q.set_config(other).is_err());
}

#[test]
fn bad_inputs_are_refused() {
    let mut p = Predictor::new(3, &TrainConfig::default()).unwrap();
    let xs = vec![vec![0.0, 1.0, 2.0], vec![1.0, 1.0, 1.0]];
    assert!(p.train(&xs, &[1.0, -1.0], 0.0).is_err());
    assert!(p.train(&xs, &[1.0], 0.0).is_err());
    assert!(p.train(&xs, &[1.0, 2.0], 1.0).is_err());
    assert!(p.score(&[vec![0.0; 4]]).is_err());
    assert!(
        Predictor::new(
            3,
            &TrainConfig {
                batch_size: 1,
                ..TrainConfig::default()
            }
        )
        .is_err()
    );
}

/// Real schedules: every classic solver × spacing at NFE 4–8 encodes into one width and the
/// predictor scores them all in one call.
#[test]
fn classic_solver_schedules_encode_and_score() {
    let ns = NoiseSchedule::vp_linear();
    let enc = Encoder::new(8);
    let mut feats = Vec::new();
    for solver in ClassicSolver::all() {
        for spacing in [
            Spacing::LogSnr,
            Spacing::TimeUniform,
            Spacing::TimeQuadratic,
        ] {
            for (nfe, denoise) in (4..=8).flat_map(|n| [(n, false), (n, true)]) {
                let mut ts = spacing.timesteps(&ns, nfe, ns.t_max(), ns.t_min()).unwrap();
                if denoise {
                    *ts.last_mut().unwrap() = 0.0;
                }
                let s = solver.build(ts, true).unwrap();
                let v = enc.encode(&s, &ns).unwrap();
                assert_eq!(v.len(), enc.dim());
                assert!(v.iter().all(|x| x.is_finite()));
                feats.push(v);
            }
        }
    }
    assert!(feats.len() > 20);
    let p = Predictor::new(enc.dim(), &TrainConfig::default()).unwrap();
    let s = p.score(&feats).unwrap();
    assert_eq!(s.len(), feats.len());
    assert!(s.iter().all(|x| x.is_finite()));
}

//! The learned predictor end to end: training on a synthetic target with both losses, the
//! saved files, warm starts, and encoding real classic-solver schedules.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use s3::noise::NoiseSchedule;
use s3::predictor::{Encoder, Loss, Predictor, PredictorFile, TrainConfig, kendall_tau};
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
    // The JSON's two copies of the widths must agree.
    doc["train_config"]["hidden"] = serde_json::json!([16]);
    std::fs::write(&json, doc.to_string()).unwrap();
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(
        err.contains("p.json") && err.contains("field `hidden`"),
        "{err}"
    );
    let mut set_hidden = |h: serde_json::Value| {
        doc["train_config"]["hidden"] = h.clone();
        doc["hidden"] = h;
        std::fs::write(&json, doc.to_string()).unwrap();
    };

    set_hidden(serde_json::json!([16]));
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(
        err.contains("p.safetensors") && err.contains("shape"),
        "{err}"
    );

    // One layer more: `layer2.*` is missing from the file.
    set_hidden(serde_json::json!([8, 1]));
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(
        err.contains("p.safetensors") && err.contains("no tensor `layer2.bias`"),
        "{err}"
    );

    // No hidden layer: `layer0` has another shape.
    set_hidden(serde_json::json!([]));
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

/// The JSON half keeps the layout of format version 1: these keys (sorted, as written) plus
/// the caller's metadata, and a field of the wrong type is refused naming file and field.
#[test]
fn predictor_file_layout_is_stable_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("p");
    let (xs, ms) = synthetic(20, 4, 2);
    let mut p = Predictor::new(
        4,
        &TrainConfig {
            epochs: 1,
            hidden: vec![3],
            ..TrainConfig::default()
        },
    )
    .unwrap();
    p.train(&xs, &ms, 0.2).unwrap();
    p.save(&stem, serde_json::json!({"dataset": "d"})).unwrap();
    let json = dir.path().join("p.json");
    let text = std::fs::read_to_string(&json).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "dataset",
            "format",
            "hidden",
            "holdout_tau",
            "input_dim",
            "input_scaling_fitted",
            "loss",
            "report",
            "s3_version",
            "target_scaling_fitted",
            "train_config",
            "train_tau",
            "trials",
            "version",
            "weights"
        ]
    );
    assert_eq!(doc["format"], s3::predictor::PREDICTOR_FORMAT);
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["weights"], "p.safetensors");
    let file = PredictorFile::from_json(&doc, &json).unwrap();
    assert_eq!(file.trials, 20);
    assert_eq!(file.meta["dataset"], "d");
    assert_eq!(file.to_json().unwrap(), doc);

    let mut bad = doc.clone();
    bad["trials"] = serde_json::json!("many");
    std::fs::write(&json, bad.to_string()).unwrap();
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(
        err.contains("p.json") && err.contains("field `trials`"),
        "{err}"
    );
    let mut bad = doc.clone();
    bad.as_object_mut().unwrap().remove("input_scaling_fitted");
    std::fs::write(&json, bad.to_string()).unwrap();
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(
        err.contains("p.json") && err.contains("missing field `input_scaling_fitted`"),
        "{err}"
    );
    let mut bad = doc;
    bad["version"] = serde_json::json!(2);
    std::fs::write(&json, bad.to_string()).unwrap();
    let err = Predictor::load(&stem).unwrap_err().to_string();
    assert!(
        err.contains("p.json") && err.contains("field `version`"),
        "{err}"
    );
}

/// Training and scoring are bit-for-bit those of the code before the predictor was split
/// into network / scaling / loss / train / file: values recorded from it for fixed data,
/// settings and seed. They were recorded on x86-64 with AVX2 + FMA and no AVX-512, where they
/// must match exactly; on other CPUs candle's matrix kernels may sum in another order, so
/// there they must only agree to 1e-4 (any change of seeds, batch order, learning-rate
/// schedule or loss moves them far more).
#[test]
fn training_matches_values_recorded_before_the_split() {
    const RANKING: ([u64; 3], [u64; 6]) = (
        [0x3fb62d516aaaaaab, 0x3fd2be9c17c73d2c, 0x3fbf30d891f30d89],
        [
            0x3fc08b5780000000,
            0x3fc2f4dbc0000000,
            0x3fe8b47a40000000,
            0x3fdee22d40000000,
            0x3fd1de5360000000,
            0x3fbf147d00000000,
        ],
    );
    const MSE: ([u64; 3], [u64; 6]) = (
        [0x3ff03d0fa5555555, 0x3fc1299cab0cd913, 0x3f952fab4152fab4],
        [
            0xbfcf2c1a74b991f9,
            0xbfced89fbf2079f4,
            0xbfc03ff596b966ec,
            0xbfc609b3ce26c677,
            0xbfc9de5465b6bed3,
            0xbfcfd9b51cbdd650,
        ],
    );
    #[cfg(target_arch = "x86_64")]
    let exact = std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && !std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let exact = false;
    let (xs, ms) = synthetic(120, 10, 3);
    for (loss, (report, scores)) in [
        (Loss::PairwiseRanking { margin: 0.1 }, RANKING),
        (Loss::MseLogMetric, MSE),
    ] {
        let cfg = TrainConfig {
            loss,
            epochs: 30,
            batch_size: 32,
            hidden: vec![16, 8],
            seed: 17,
            ..TrainConfig::default()
        };
        let mut p = Predictor::new(10, &cfg).unwrap();
        let r = p.train(&xs, &ms, 0.25).unwrap();
        let got_report = [r.final_loss, r.train_tau, r.holdout_tau.unwrap()];
        let got_scores = p.score(&xs[..6]).unwrap();
        let want_report = report.map(f64::from_bits);
        let want_scores = scores.map(f64::from_bits);
        if exact {
            assert_eq!(
                got_report.map(f64::to_bits),
                report,
                "{loss:?}: {got_report:?}"
            );
            assert_eq!(
                got_scores.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                scores,
                "{loss:?}: {got_scores:?}"
            );
        } else {
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
            assert!(
                close(got_report[0], want_report[0]),
                "{loss:?}: {got_report:?}"
            );
            for (g, w) in got_scores.iter().zip(&want_scores) {
                assert!(close(*g, *w), "{loss:?}: {got_scores:?} vs {want_scores:?}");
            }
        }
    }
}

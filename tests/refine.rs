//! Continuous refinement (`s3::refine`): it lowers the cheap tier within its model-call
//! budget, starts from the parent exactly, and an interrupted refinement replayed over a
//! cache of tier values ends where the uninterrupted one does, paying nothing twice.

use s3::dataset::Dataset;
use s3::eval::Evaluator;
use s3::metric::MetricKind;
use s3::noise::NoiseSchedule;
use s3::refine::{Knobs, Measure, Settings, Tier, refine};
use s3::solver::{ClassicSolver, SolverSchedule, Spacing};
use s3::space::schedule_hash;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// The MSE tier over a cache keyed by schedule hash, counting what it computes.
struct CachedMse<'a> {
    ev: Evaluator<'a>,
    cache: RefCell<HashMap<String, f64>>,
    computed: Cell<usize>,
}

impl<'a> CachedMse<'a> {
    fn new(ds: &'a Dataset, ns: &'a NoiseSchedule) -> Self {
        Self {
            ev: Evaluator::new(ds, ns, MetricKind::Mse, 64, 5).unwrap(),
            cache: RefCell::new(HashMap::new()),
            computed: Cell::new(0),
        }
    }
}

impl Tier for CachedMse<'_> {
    fn measure(&self, s: &SolverSchedule) -> s3::Result<Result<Measure, String>> {
        let key = schedule_hash(s);
        if let Some(&value) = self.cache.borrow().get(&key) {
            return Ok(Ok(Measure { value, paid: false }));
        }
        let value = match self.ev.evaluate(s) {
            Ok(e) => e.value,
            Err(e) => return Ok(Err(e.to_string())),
        };
        self.computed.set(self.computed.get() + 1);
        self.cache.borrow_mut().insert(key, value);
        Ok(Ok(Measure { value, paid: true }))
    }

    fn calls(&self, nfe: usize) -> u64 {
        (nfe * self.ev.samples()) as u64
    }
}

fn parent(ns: &NoiseSchedule) -> SolverSchedule {
    let ts = Spacing::TimeUniform
        .timesteps(ns, 4, ns.t_max(), ns.t_min())
        .unwrap();
    ClassicSolver::DpmSolverPp { order: 2 }
        .build(ts, true)
        .unwrap()
}

const MEASUREMENTS: u64 = 120;

#[test]
fn refinement_lowers_the_tier_within_budget_and_replays_without_paying_twice() {
    let ds = Dataset::load("toy2d").unwrap();
    let ns = ds.noise.build();
    let p = parent(&ns);
    let settings = |tier: &CachedMse| Settings {
        knobs: Knobs::ALL,
        max_calls: MEASUREMENTS * tier.calls(p.nfe),
    };

    let whole = CachedMse::new(&ds, &ns);
    let a = refine(&p, &ns, &whole, settings(&whole), &|| false)
        .unwrap()
        .unwrap();
    assert!(a.calls <= settings(&whole).max_calls, "{a:?}");
    assert!(
        a.value < 0.5 * a.start_value,
        "{} → {}",
        a.start_value,
        a.value
    );
    assert_ne!(a.schedule, p);
    // The parent's own value is the tier's value of the parent.
    assert_eq!(a.start_value, whole.ev.evaluate(&p).unwrap().value);
    // The reported value is the refined schedule's.
    assert_eq!(a.value, whole.ev.evaluate(&a.schedule).unwrap().value);

    // Stopped after 40 measurements, then replayed over the same cache.
    let parts = CachedMse::new(&ds, &ns);
    let made = Cell::new(0);
    let stop = || {
        made.set(made.get() + 1);
        made.get() > 40
    };
    let first = refine(&p, &ns, &parts, settings(&parts), &stop)
        .unwrap()
        .unwrap();
    assert!(
        first.termination.contains("stopped"),
        "{}",
        first.termination
    );
    assert!(first.measurements <= 40);
    let paid_before = parts.computed.get();
    let b = refine(&p, &ns, &parts, settings(&parts), &|| false)
        .unwrap()
        .unwrap();
    assert_eq!(b.schedule, a.schedule);
    assert_eq!(b.value, a.value);
    assert_eq!(b.measurements, a.measurements);
    assert_eq!(b.paid_calls, a.paid_calls - first.paid_calls);
    assert_eq!(parts.computed.get(), whole.computed.get());
    assert!(paid_before > 0 && paid_before < whole.computed.get());
}

#[test]
fn each_knob_alone_refines_and_keeps_the_discrete_decisions() {
    let ds = Dataset::load("toy2d").unwrap();
    let ns = ds.noise.build();
    let p = parent(&ns);
    let only = |times, coefficients, offsets| Knobs {
        times,
        coefficients,
        offsets,
    };
    for (name, knobs) in [
        ("times", only(true, false, false)),
        ("coefficients", only(false, true, false)),
        ("offsets", only(false, false, true)),
    ] {
        let tier = CachedMse::new(&ds, &ns);
        let settings = Settings {
            knobs,
            max_calls: 60 * tier.calls(p.nfe),
        };
        let r = refine(&p, &ns, &tier, settings, &|| false)
            .unwrap()
            .unwrap();
        assert!(
            r.value < r.start_value,
            "{name}: {} → {}",
            r.start_value,
            r.value
        );
        let s = &r.schedule;
        assert_eq!(s.steps.len(), p.steps.len());
        for (a, b) in s.steps.iter().zip(&p.steps) {
            assert_eq!((a.prediction, a.order), (b.prediction, b.order), "{name}");
        }
        assert_eq!(s.timesteps != p.timesteps, name == "times", "{name}");
        assert_eq!(s.has_time_offsets(), name == "offsets", "{name}");
        assert_eq!(s.timesteps[0], p.timesteps[0], "{name}: t_0 moved");
    }
}

//! The refinement's cost function for argmin: θ → schedule → cheap-tier value, counting
//! model calls against the budget, and the solver wrapper that ends Nelder–Mead when the
//! budget is spent or a stop is asked for.
//!
//! argmin's Nelder–Mead unwraps the costs of its first simplex, so this cost function never
//! returns an error: a θ without a valid schedule, a failing schedule and every θ after the
//! budget is spent cost [`INVALID_COST`] (Nelder–Mead never moves to such a point, and
//! keeps its best vertex through a shrink); a store error is kept and returned after the run.

use super::{Params, Tier};
use crate::error::S3Error;
use argmin::core::{
    CostFunction, Error, KV, Problem, Solver, State, TerminationReason, TerminationStatus,
};
use std::cell::{Cell, RefCell};

/// The cost of a θ that gives no (working) schedule, far above any tier value yet finite,
/// so Nelder–Mead's centroid and spread arithmetic stay finite.
pub(super) const INVALID_COST: f64 = 1e30;

/// What the refinement has spent.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    pub(super) measurements: usize,
    pub(super) calls: u64,
    pub(super) paid_calls: u64,
}

/// Why the objective stopped measuring.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Done {
    Budget,
    Stopped,
    Error,
}

/// θ → tier value, with the budget.
pub(super) struct Objective<'o> {
    params: &'o Params<'o>,
    tier: &'o dyn Tier,
    max_calls: u64,
    stop: &'o dyn Fn() -> bool,
    counts: Cell<Counts>,
    done: Cell<Option<Done>>,
    error: RefCell<Option<S3Error>>,
    failure: RefCell<Option<String>>,
}

impl<'o> Objective<'o> {
    pub(super) fn new(
        params: &'o Params<'o>,
        tier: &'o dyn Tier,
        max_calls: u64,
        stop: &'o dyn Fn() -> bool,
    ) -> Self {
        Self {
            params,
            tier,
            max_calls,
            stop,
            counts: Cell::new(Counts::default()),
            done: Cell::new(None),
            error: RefCell::new(None),
            failure: RefCell::new(None),
        }
    }

    /// The tier value at θ, or [`INVALID_COST`].
    pub(super) fn cost_of(&self, theta: &[f64]) -> f64 {
        if self.done.get().is_some() {
            return INVALID_COST;
        }
        let Some(s) = self.params.schedule(theta) else {
            return INVALID_COST;
        };
        let calls = self.tier.calls(s.nfe);
        let mut counts = self.counts.get();
        if counts.calls + calls > self.max_calls {
            self.done.set(Some(Done::Budget));
            return INVALID_COST;
        }
        if (self.stop)() {
            self.done.set(Some(Done::Stopped));
            return INVALID_COST;
        }
        let measured = match self.tier.measure(&s) {
            Ok(m) => m,
            Err(e) => {
                *self.error.borrow_mut() = Some(e);
                self.done.set(Some(Done::Error));
                return INVALID_COST;
            }
        };
        counts.calls += calls;
        counts.measurements += 1;
        let value = match measured {
            Ok(m) => {
                counts.paid_calls += if m.paid { calls } else { 0 };
                m.value
            }
            Err(why) => {
                counts.paid_calls += calls;
                *self.failure.borrow_mut() = Some(why);
                INVALID_COST
            }
        };
        self.counts.set(counts);
        if value.is_finite() {
            value
        } else {
            INVALID_COST
        }
    }

    /// A store error met during the run, once.
    pub(super) fn take_error(&self) -> crate::error::Result<()> {
        match self.error.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The last schedule failure's message.
    pub(super) fn last_failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    pub(super) fn counts(&self) -> Counts {
        self.counts.get()
    }

    fn reason(&self) -> Option<&'static str> {
        self.done.get().map(|d| match d {
            Done::Budget => "model-call budget spent",
            Done::Stopped => "stopped",
            Done::Error => "store error",
        })
    }
}

impl CostFunction for &Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, theta: &Vec<f64>) -> Result<f64, Error> {
        Ok(self.cost_of(theta))
    }
}

/// A solver that ends its inner solver once the objective stopped measuring (budget spent,
/// stop asked for, store error).
pub(super) struct Budgeted<'o, S> {
    inner: S,
    objective: &'o Objective<'o>,
}

impl<'o, S> Budgeted<'o, S> {
    pub(super) fn new(inner: S, objective: &'o Objective<'o>) -> Self {
        Self { inner, objective }
    }
}

impl<'o, I: State, S: Solver<&'o Objective<'o>, I>> Solver<&'o Objective<'o>, I>
    for Budgeted<'o, S>
{
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn init(
        &mut self,
        problem: &mut Problem<&'o Objective<'o>>,
        state: I,
    ) -> Result<(I, Option<KV>), Error> {
        self.inner.init(problem, state)
    }

    fn next_iter(
        &mut self,
        problem: &mut Problem<&'o Objective<'o>>,
        state: I,
    ) -> Result<(I, Option<KV>), Error> {
        self.inner.next_iter(problem, state)
    }

    fn terminate(&mut self, state: &I) -> TerminationStatus {
        match self.objective.reason() {
            Some(why) => TerminationStatus::Terminated(TerminationReason::SolverExit(why.into())),
            None => self.inner.terminate(state),
        }
    }
}

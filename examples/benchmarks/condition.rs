//! "Number of interleaved waits/notifies per sec on a condition variable by two processes".

use crate::limits::Limit;
use crate::measure::Workload;
use crate::row::{Spec, Unit};

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc, python, limit, goal| Spec {
        family: "condition",
        case,
        unit: Unit::Rate("waits/s"),
        shmproc,
        python: Some(python),
        limit,
        goal,
    };
    vec![
        row(
            "Condition, 2 processes",
            condition,
            "condition",
            Some(Limit::FutexWaits),
            Some(1.0),
        ),
        row(
            "Condition managed by server",
            managed_condition,
            "managed_condition",
            None,
            None,
        ),
    ]
}

/// `Condition`: this process and a child alternate notify + wait; counts waits (2 per round).
pub(crate) fn condition() -> Option<Workload> {
    None // not yet: fill in when Condition and Process exist.
}

/// The same through a condition held by a manager process.
pub(crate) fn managed_condition() -> Option<Workload> {
    None // not yet: fill in when managers exist.
}

//! "Number of 256 byte objects passed between processes per sec".

use crate::limits::Limit;
use crate::measure::Workload;
use crate::row::{Spec, Unit};

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc, python, limit, goal| Spec {
        family: "objects",
        case,
        unit: Unit::Rate("objects/s"),
        shmproc,
        python: Some(python),
        limit,
        goal,
    };
    vec![
        row(
            "Queue, 1 -> 1 process",
            queue_1to1,
            "queue",
            Some(Limit::Ring),
            Some(0.5),
        ),
        row(
            "Pipe, one way",
            pipe_one_way,
            "pipe",
            Some(Limit::Ring),
            Some(0.5),
        ),
        row(
            "Queue managed by server",
            managed_queue,
            "managed_queue",
            None,
            None,
        ),
    ]
}

/// `Queue`: a child puts 256-byte objects, this process gets them.
pub(crate) fn queue_1to1() -> Option<Workload> {
    None // not yet: fill in when Queue and Process exist.
}

/// `Pipe`: a child sends 256-byte objects one way, this process receives them.
pub(crate) fn pipe_one_way() -> Option<Workload> {
    None // not yet: fill in when Pipe and Process exist.
}

/// A queue held by a manager process: a child puts, this process gets.
pub(crate) fn managed_queue() -> Option<Workload> {
    None // not yet: fill in when managers exist.
}

//! Process start (start, run an empty target, join) per start method.

use crate::limits::Limit;
use crate::measure::Workload;
use crate::row::{Spec, Unit};

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc, python, limit, goal| Spec {
        family: "spawn",
        case,
        unit: Unit::Rate("starts/s"),
        shmproc,
        python: Some(python),
        limit: Some(limit),
        goal,
    };
    vec![
        row(
            "Process start + join, spawn",
            start_spawn,
            "spawn",
            Limit::PosixSpawn,
            Some(0.8),
        ),
        row(
            "Process start + join, fork",
            start_fork,
            "fork",
            Limit::Fork,
            Some(0.8),
        ),
        row(
            "Process start + join, forkserver",
            start_forkserver,
            "forkserver",
            Limit::Fork,
            None,
        ),
    ]
}

/// `Process` with the spawn start method.
pub(crate) fn start_spawn() -> Option<Workload> {
    None // not yet: fill in when Process exists.
}

/// `Process` with the fork start method.
pub(crate) fn start_fork() -> Option<Workload> {
    None // not yet: fill in when Process exists.
}

/// `Process` with the forkserver start method.
pub(crate) fn start_forkserver() -> Option<Workload> {
    None // not yet: fill in when Process exists.
}

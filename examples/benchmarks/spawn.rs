//! Process start (start, run an empty target, join) per start method.

use shmproc::{Process, StartMethod};

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

/// The target: does nothing.
fn noop(_: ()) {}

/// Starts and joins a child running [`noop`] with `method`, `reps` times.
fn start_join(method: StartMethod, reps: u64) {
    for _ in 0..reps {
        let p = Process::new(noop, ())
            .start_method(method)
            .start()
            .expect("start");
        assert_eq!(p.join().expect("join"), 0, "child failed");
    }
}

/// `Process` with the spawn start method.
pub(crate) fn start_spawn() -> Option<Workload> {
    Some(Workload::new(1, |reps| {
        start_join(StartMethod::Spawn, reps)
    }))
}

/// `Process` with the fork start method.
pub(crate) fn start_fork() -> Option<Workload> {
    Some(Workload::new(1, |reps| start_join(StartMethod::Fork, reps)))
}

/// `Process` with the forkserver start method (the server is started before the timed runs,
/// as on the Python side).
pub(crate) fn start_forkserver() -> Option<Workload> {
    start_join(StartMethod::ForkServer, 1);
    Some(Workload::new(1, |reps| {
        start_join(StartMethod::ForkServer, reps);
    }))
}

//! Round trips between two processes.

use crate::limits::Limit;
use crate::measure::Workload;
use crate::row::{Spec, Unit};

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    vec![Spec {
        family: "pingpong",
        case: "Pipe round trip, 2 processes",
        unit: Unit::Rate("round trips/s"),
        shmproc: pipe_round_trip,
        python: Some("pipe_roundtrip"),
        limit: Some(Limit::FutexRoundTrip),
        goal: None,
    }]
}

/// `Pipe`: this process sends a small object, a child echoes it back.
pub(crate) fn pipe_round_trip() -> Option<Workload> {
    None // not yet: fill in when Pipe and Process exist.
}

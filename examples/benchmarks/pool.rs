//! Pool map throughput.

use crate::measure::Workload;
use crate::row::{Spec, Unit};

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    vec![Spec {
        family: "pool",
        case: "Pool(2).map, trivial tasks",
        unit: Unit::Rate("tasks/s"),
        shmproc: pool_map,
        python: Some("pool_map"),
        limit: None,
        goal: None,
    }]
}

/// `Pool::map` of a trivial function over integers with 2 workers.
pub(crate) fn pool_map() -> Option<Workload> {
    None // not yet: fill in when Pool exists.
}

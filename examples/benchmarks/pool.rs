//! Pool map throughput.

use crate::measure::Workload;
use crate::row::{Spec, Unit};
use shmproc::Pool;

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

fn noop(x: u64) -> u64 {
    x
}

/// `Pool::map` of a trivial function over integers with 2 workers, default chunk size (the
/// pool is started once, outside the clock, as Python's `with Pool(2)` is).
pub(crate) fn pool_map() -> Option<Workload> {
    let pool = Pool::new(2).ok()?;
    pool.map(noop, 0..10).ok()?;
    Some(Workload::new(1, move |reps| {
        let out = pool.map(noop, 0..reps).expect("map");
        assert_eq!(out.len() as u64, reps);
    }))
}

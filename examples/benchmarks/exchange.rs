//! The pprocess API: `pmap` and reusable workers on trivial tasks (beside the pool row).

use shmproc::Pool;
use shmproc::exchange::{Workers, pmap};

use crate::measure::Workload;
use crate::row::{Spec, Unit};

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    let row = |case, shmproc| Spec {
        family: "exchange",
        case,
        unit: Unit::Rate("tasks/s"),
        shmproc,
        python: None,
        limit: None,
        goal: None,
    };
    vec![
        row(
            "exchange::pmap(2) of 1000, workers started per call",
            pmap_1000,
        ),
        row(
            "Pool::new(2).map of the same 1000, pool started per call",
            pool_map_1000,
        ),
        row(
            "exchange::Workers(2), trivial tasks, steady",
            workers_steady,
        ),
    ]
}

/// The task: trivial.
fn triple(x: u64) -> u64 {
    x * 3
}

/// `pmap` over 1000 integers with 2 workers, worker start and stop included.
pub(crate) fn pmap_1000() -> Option<Workload> {
    let input: Vec<u64> = (0..1000).collect();
    Some(Workload::new(1000, move |reps| {
        for _ in 0..reps {
            let out = pmap(triple, input.clone(), 2).expect("pmap");
            assert_eq!(out.len(), 1000);
        }
    }))
}

/// The same input through a fresh `Pool` of 2 (started and stopped per call, as `pmap` does).
pub(crate) fn pool_map_1000() -> Option<Workload> {
    let input: Vec<u64> = (0..1000).collect();
    Some(Workload::new(1000, move |reps| {
        for _ in 0..reps {
            let pool = Pool::new(2).expect("pool");
            let out = pool.map(triple, input.clone()).expect("map");
            assert_eq!(out.len(), 1000);
        }
    }))
}

/// Two reusable workers kept busy: submit and collect `reps` tasks.
pub(crate) fn workers_steady() -> Option<Workload> {
    let mut w = Workers::new(triple, 2).expect("start workers");
    Some(Workload::new(1, move |reps| {
        for i in 0..reps {
            w.submit(i).expect("submit");
        }
        while let Some((_, r)) = w.next(None).expect("next") {
            r.expect("task");
        }
    }))
}

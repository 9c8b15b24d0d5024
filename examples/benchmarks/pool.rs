//! Pool throughput: the three workloads of the pool issue, each beside Python's
//! `multiprocessing.Pool(2)` on the same workload.

use crate::measure::Workload;
use crate::row::{Spec, Unit};
use shmproc::Pool;

/// Integers per `map` call in the map row.
const MAP_LEN: u64 = 100_000;

/// The rows of this family.
pub(crate) fn specs() -> Vec<Spec> {
    vec![
        Spec {
            family: "pool",
            case: "Pool(2).map, 100,000 ints, default chunks",
            unit: Unit::Rate("tasks/s"),
            shmproc: pool_map,
            python: Some("pool_map"),
            limit: None,
            goal: None,
        },
        Spec {
            family: "pool",
            case: "Pool(2).imap, chunksize 1",
            unit: Unit::Rate("tasks/s"),
            shmproc: pool_imap,
            python: Some("pool_imap"),
            limit: None,
            goal: None,
        },
        Spec {
            family: "pool",
            case: "Pool(2).apply_async + get",
            unit: Unit::Rate("round trips/s"),
            shmproc: pool_apply,
            python: Some("pool_apply"),
            limit: None,
            goal: None,
        },
    ]
}

fn noop(x: u64) -> u64 {
    x
}

/// A pool of 2 workers, started (and warmed up) outside the clock, as Python's
/// `with Pool(2)` is.
fn pool2() -> Option<Pool> {
    let pool = Pool::new(2).ok()?;
    pool.map(noop, 0..10).ok()?;
    Some(pool)
}

/// `Pool::map` of a trivial function over 100,000 integers, default chunk size.
pub(crate) fn pool_map() -> Option<Workload> {
    let pool = pool2()?;
    Some(Workload::new(MAP_LEN, move |reps| {
        for _ in 0..reps {
            let out = pool.map(noop, 0..MAP_LEN).expect("map");
            assert_eq!(out.len() as u64, MAP_LEN);
        }
    }))
}

/// `Pool::imap` (chunk size 1) of a trivial function, every result taken in order.
pub(crate) fn pool_imap() -> Option<Workload> {
    let pool = pool2()?;
    Some(Workload::new(1, move |reps| {
        let mut n = 0u64;
        for r in pool.imap(noop, 0..reps).expect("imap") {
            n += r.expect("result");
        }
        assert_eq!(n, reps * reps.saturating_sub(1) / 2);
    }))
}

/// `apply_async(noop, 7).get()`, one at a time: pool round trips.
pub(crate) fn pool_apply() -> Option<Workload> {
    let pool = pool2()?;
    Some(Workload::new(1, move |reps| {
        for _ in 0..reps {
            let r = pool.apply_async(noop, 7).expect("submit").get();
            assert_eq!(r.expect("get"), 7);
        }
    }))
}

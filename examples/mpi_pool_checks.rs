//! The MPI pool's behaviour checks, run by `scripts/test-mpi` under
//! `mpiexec --oversubscribe -n 3` (cargo feature `mpi`). Exits non-zero on the first failed
//! check; prints `all MPI pool checks passed` at the end.
//!
//! Run without `mpiexec`, it checks that the pool refuses to start with an error naming the
//! command (`--expect-no-mpiexec`).

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use shmproc::mpi_pool::MpiPool;
use shmproc::{Error, Pool, TaskPool, Value};
use std::collections::BTreeSet;

fn square(x: u64) -> u64 {
    x * x
}

fn add(a: u64, b: u64) -> u64 {
    a + b
}

fn picky(x: u64) -> u64 {
    assert!(x != 7, "seven is not allowed");
    x
}

/// Code written once for either pool.
fn sum_of_squares<P: TaskPool>(pool: &P) -> u64 {
    let mapped: u64 = pool.map(square, 0..100u64).unwrap().into_iter().sum();
    let streamed: u64 = pool
        .imap(square, 0..100u64)
        .unwrap()
        .map(Result::unwrap)
        .sum();
    assert_eq!(mapped, streamed);
    mapped
}

fn never_registered(x: u64) -> u64 {
    x
}

fn with_value(v: Value<u64>) -> u64 {
    v.get().unwrap_or(0)
}

fn main() {
    shmproc::init();
    let started = MpiPool::builder()
        .register(square)
        .register(picky)
        .register2(add)
        .register(with_value)
        .start();
    if std::env::args().any(|a| a == "--expect-no-mpiexec") {
        match started {
            Err(Error::Mpi { reason }) if reason.contains("mpiexec") => {
                println!("refused without mpiexec: {reason}");
                return;
            }
            other => panic!("expected the no-mpiexec error, got {other:?}"),
        }
    }
    let pool = started.unwrap();
    assert_eq!(pool.processes(), 2, "run under mpiexec -n 3");

    // map equals the sequential map, with the default and explicit chunk sizes.
    let expect: Vec<u64> = (0..1000).map(square).collect();
    assert_eq!(pool.map(square, 0..1000u64).unwrap(), expect);
    assert_eq!(pool.map_chunked(square, 0..1000u64, 7).unwrap(), expect);
    assert_eq!(pool.apply(square, 12).unwrap(), 144);
    let pending = pool.apply_async(square, 5).unwrap();
    assert_eq!(pending.get().unwrap(), 25);
    assert_eq!(
        pool.starmap(add, (0..100u64).map(|i| (i, 2 * i))).unwrap(),
        (0..100u64).map(|i| 3 * i).collect::<Vec<_>>()
    );

    // imap keeps order; imap_unordered yields the same set.
    let ordered: Vec<u64> = pool
        .imap(square, 0..500u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ordered, (0..500).map(square).collect::<Vec<_>>());
    let unordered: BTreeSet<u64> = pool
        .imap_unordered(square, 0..500u64, 3)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(unordered, (0..500).map(square).collect());

    // Empty input.
    assert!(pool.map(square, Vec::<u64>::new()).unwrap().is_empty());
    assert_eq!(pool.imap(square, Vec::<u64>::new()).unwrap().count(), 0);

    // A panicking task: its item fails with the message, the rest and the pool go on.
    match pool.map_chunked(picky, 0..20u64, 4) {
        Err(Error::TaskPanicked { message }) => {
            assert!(message.contains("seven is not allowed"), "{message}");
            assert!(
                message.contains("mpi_pool_checks.rs"),
                "location: {message}"
            );
        }
        other => panic!("expected TaskPanicked, got {other:?}"),
    }
    let items: Vec<_> = pool.imap(picky, 0..10u64).unwrap().collect();
    assert!(matches!(items[7], Err(Error::TaskPanicked { .. })));
    assert_eq!(items.iter().filter(|r| r.is_ok()).count(), 9);
    assert_eq!(pool.apply(square, 3).unwrap(), 9, "the pool goes on");

    // 10,000 small tasks.
    let many = pool.map_chunked(square, 0..10_000u64, 1).unwrap();
    assert_eq!(many.len(), 10_000);
    assert_eq!(many[9_999], 9_999 * 9_999);

    // Clear errors: an unregistered function, a shared-memory handle in the arguments, a
    // panicking input iterator.
    match pool.map(never_registered, 0..3u64) {
        Err(Error::Mpi { reason }) => assert!(reason.contains("not registered"), "{reason}"),
        other => panic!("expected the unregistered error, got {other:?}"),
    }
    let v = Value::new(5u64).unwrap();
    match pool.apply(with_value, v) {
        Err(Error::Mpi { reason }) => {
            assert!(reason.contains("another host"), "{reason}");
        }
        Err(e) => panic!("expected the handle error, got {e}"),
        Ok(_) => panic!("a handle crossed to another host"),
    }
    let input = (0..10u64).map(|i| if i == 5 { panic!("input broke") } else { i });
    match pool.map(square, input) {
        Err(Error::InputPanicked { message }) => assert!(message.contains("input broke")),
        other => panic!("expected InputPanicked, got {other:?}"),
    }
    assert_eq!(pool.apply(square, 4).unwrap(), 16, "the pool goes on");
    // The same generic code runs on the MPI pool and on a local pool.
    assert_eq!(sum_of_squares(&pool), 328_350);
    assert_eq!(sum_of_squares(&Pool::new(2).unwrap()), 328_350);
    // close refuses new tasks; join waits for what was submitted and stops the workers.
    let pending = pool.apply_async(square, 6).unwrap();
    pool.close();
    assert!(matches!(pool.apply(square, 1), Err(Error::Closed)));
    pool.join().unwrap();
    assert_eq!(
        pending.get().unwrap(),
        36,
        "a task submitted before close still ran"
    );
    println!("all MPI pool checks passed");
}

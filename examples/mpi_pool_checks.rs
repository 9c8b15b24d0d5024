//! The MPI pool's behaviour checks, run by `scripts/test-mpi` under
//! `mpiexec --oversubscribe -n 3` (cargo feature `mpi`). Exits non-zero on the first failed
//! check; prints `all MPI pool checks passed` at the end.
//!
//! Run without `mpiexec`, it checks that the pool refuses to start with an error naming the
//! command (`--expect-no-mpiexec`). With `MPI_CHECKS_MISMATCH=swap` (or `fewer`) the worker
//! ranks register their functions in another order (or one fewer), and rank 0 checks that
//! `start` refuses with the registration error.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shmproc::mpi_pool::MpiPool;
use shmproc::{Error, Pool, TaskPool, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// A check that hangs fails instead: rank 0 ends the whole job.
const WATCHDOG: Duration = Duration::from_secs(90);

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

fn cube(x: u64) -> u64 {
    x * x * x
}

/// `n` bytes of `n as u8`: results of several MB.
fn bytes_of(n: usize) -> Vec<u8> {
    vec![n as u8; n]
}

/// The length and a checksum of an argument of several MB.
fn len_and_sum(v: Vec<u8>) -> (usize, u64) {
    (v.len(), v.iter().map(|&b| u64::from(b)).sum())
}

/// An argument whose decoding panics on the worker.
#[derive(Debug)]
struct Boom;

impl Serialize for Boom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(0)
    }
}

impl<'de> Deserialize<'de> for Boom {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Boom, D::Error> {
        panic!("Boom does not decode")
    }
}

fn takes_boom(_: Boom) -> u64 {
    1
}

/// A result that fails to encode on the worker.
#[derive(Debug)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("Unencodable refuses"))
    }
}

impl<'de> Deserialize<'de> for Unencodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unencodable, D::Error> {
        u8::deserialize(d).map(|_| Unencodable)
    }
}

fn unencodable(_: u64) -> Unencodable {
    Unencodable
}

fn never_registered(x: u64) -> u64 {
    x
}

fn with_value(v: Value<u64>) -> u64 {
    v.get().unwrap_or(0)
}

fn main() {
    shmproc::init();
    std::thread::spawn(|| {
        std::thread::sleep(WATCHDOG);
        eprintln!("watchdog: a check hung for {WATCHDOG:?}");
        std::process::exit(3);
    });
    // Simulated registration mismatches: the worker ranks (OpenMPI names each rank in
    // OMPI_COMM_WORLD_RANK) register other tables than rank 0.
    let mismatch = std::env::var("MPI_CHECKS_MISMATCH").ok();
    let worker = std::env::var("OMPI_COMM_WORLD_RANK").is_ok_and(|r| r != "0");
    let builder = match (mismatch.as_deref(), worker) {
        // Same types, other order: a task for `square` would run `cube`.
        (Some("swap"), true) => MpiPool::builder().register(cube).register(square),
        (_, _) => MpiPool::builder().register(square).register(cube),
    };
    let builder = builder.register(picky).register2(add);
    let builder = match (mismatch.as_deref(), worker) {
        (Some("fewer"), true) => builder,
        _ => builder.register(with_value),
    };
    let started = builder
        .register(bytes_of)
        .register(len_and_sum)
        .register(takes_boom)
        .register(unencodable)
        .start();
    if let Some(kind) = mismatch {
        match started {
            Err(Error::Mpi { reason }) if reason.contains("registered other functions") => {
                println!("registration mismatch ({kind}) refused: {reason}");
                return;
            }
            Err(e) => panic!("expected the registration error ({kind}), got {e}"),
            Ok(pool) => panic!(
                "workers registered other functions ({kind}) and the pool started; square(3) \
                 gave {:?}",
                pool.apply(square, 3)
            ),
        }
    }
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
    attacks(&pool);
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
    // Closing and joining again is harmless; the closed pool refuses every kind of call, and
    // an iterator started on it ends instead of waiting for results that never come.
    pool.close();
    pool.join().unwrap();
    assert!(matches!(pool.apply(square, 1), Err(Error::Closed)));
    assert!(matches!(pool.map(square, 0..10u64), Err(Error::Closed)));
    assert!(matches!(pool.apply_async(square, 1), Err(Error::Closed)));
    match pool.imap(square, 0..10u64) {
        Err(Error::Closed) => {}
        Err(e) => panic!("expected Closed, got {e}"),
        Ok(it) => {
            let got: Vec<_> = it.collect();
            assert!(
                got.iter().all(|r| matches!(r, Err(Error::Closed))) && !got.is_empty(),
                "{got:?}"
            );
        }
    }
    println!("all MPI pool checks passed");
}

/// What a careless or hostile caller does: large messages, abandoned and interleaved
/// results, odd chunk sizes, arguments and results that fail on the worker.
fn attacks(pool: &MpiPool) {
    const MB: usize = 1 << 20;
    // Arguments and results of several MB, one per task and several per chunk.
    let sizes = [3 * MB, 2 * MB + 1, 4 * MB - 7, MB];
    let big = pool.map_chunked(bytes_of, sizes, 1).unwrap();
    for (v, &n) in big.iter().zip(&sizes) {
        assert!(v.len() == n && v.iter().all(|&b| b == n as u8));
    }
    let sums = pool.map_chunked(len_and_sum, big.clone(), 2).unwrap();
    for ((len, sum), &n) in sums.iter().zip(&sizes) {
        assert_eq!((*len, *sum), (n, n as u64 * u64::from(n as u8)));
    }
    let lens: Vec<usize> = pool
        .imap(bytes_of, sizes)
        .unwrap()
        .map(|r| r.unwrap().len())
        .collect();
    assert_eq!(lens, sizes);

    // An imap dropped half-way, then a map and another imap: no stale results leak in.
    let mut it = pool.imap(square, 0..1000u64).unwrap();
    assert_eq!(it.nth(4).unwrap().unwrap(), 16);
    drop(it);
    let mut it = pool.imap_unordered(bytes_of, sizes, 1).unwrap();
    assert!(it.next().unwrap().is_ok());
    drop(it);
    let expect: Vec<u64> = (0..300).map(cube).collect();
    assert_eq!(pool.map_chunked(cube, 0..300u64, 3).unwrap(), expect);
    assert_eq!(
        pool.imap(square, 0..50u64)
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        (0..50).map(square).collect::<Vec<_>>()
    );

    // Results never collected, and collected out of order.
    for i in 0..20u64 {
        drop(pool.apply_async(square, i).unwrap());
    }
    let a = pool.map_async(square, 0..100u64, Some(3)).unwrap();
    let b = pool.map_async(cube, 0..100u64, None).unwrap();
    let c = pool.apply_async(bytes_of, 2 * MB).unwrap();
    let d = pool.map_async(square, 0..0u64, None).unwrap();
    assert!(d.get_all().unwrap().is_empty());
    assert_eq!(c.get().unwrap().len(), 2 * MB);
    assert_eq!(b.get_all().unwrap(), (0..100).map(cube).collect::<Vec<_>>());
    assert_eq!(
        a.get_all().unwrap(),
        (0..100).map(square).collect::<Vec<_>>()
    );

    // Two iterators at once, and one iterator feeding another.
    let zipped: Vec<(u64, u64)> = pool
        .imap(square, 0..200u64)
        .unwrap()
        .zip(pool.imap_unordered(cube, 0..200u64, 7).unwrap())
        .map(|(x, y)| (x.unwrap(), y.unwrap()))
        .collect();
    assert_eq!(
        zipped.iter().map(|p| p.0).collect::<Vec<_>>(),
        (0..200).map(square).collect::<Vec<_>>()
    );
    let mut cubes: Vec<u64> = zipped.iter().map(|p| p.1).collect();
    cubes.sort_unstable();
    assert_eq!(cubes, (0..200).map(cube).collect::<Vec<_>>());
    let inner = pool.imap(square, 0..100u64).unwrap().map(Result::unwrap);
    let nested: Vec<u64> = pool
        .imap(square, inner)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(nested, (0..100u64).map(|x| x.pow(4)).collect::<Vec<_>>());

    // A long imap keeps only the results not yet taken, not a slot per item it ever took.
    let n = 400_000u64;
    let mut it = pool.imap_unordered(square, 0..n, 400).unwrap();
    let (mut count, mut sum) = (0u64, 0u128);
    let first = it.next().unwrap().unwrap();
    let base = rss_kib();
    for r in it.by_ref() {
        count += 1;
        sum += u128::from(r.unwrap());
    }
    let grown = rss_kib().saturating_sub(base);
    drop(it);
    assert_eq!(count + 1, n);
    assert_eq!(
        sum + u128::from(first),
        (0..u128::from(n)).map(|x| x * x).sum::<u128>()
    );
    assert!(
        grown < 8 << 10,
        "rank 0 grew by {grown} KiB over an imap of {n} items"
    );

    // Chunk sizes 0 and huge: every item once, in order.
    let expect: Vec<u64> = (0..57).map(square).collect();
    assert_eq!(pool.map_chunked(square, 0..57u64, 0).unwrap(), expect);
    assert_eq!(
        pool.map_chunked(square, 0..57u64, usize::MAX).unwrap(),
        expect
    );
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..57u64, 0)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, expect);
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..57u64, usize::MAX)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, expect);

    // Arguments whose decoding panics on the worker: each item fails, the pool goes on.
    match pool.map_chunked(takes_boom, [Boom, Boom, Boom], 2) {
        Err(Error::TaskFailed { reason }) => assert!(reason.contains("panicked"), "{reason}"),
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    // A result that fails to encode on the worker fails its chunk, as in the local Pool: it
    // did not panic.
    match pool.apply(unencodable, 1) {
        Err(Error::TaskFailed { reason }) => assert!(reason.contains("result"), "{reason}"),
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    match Pool::new(1).unwrap().apply(unencodable, 1) {
        Err(Error::TaskFailed { reason }) => assert!(reason.contains("result"), "{reason}"),
        other => panic!("the local pool: expected TaskFailed, got {other:?}"),
    }
    assert_eq!(pool.apply(square, 9).unwrap(), 81, "the pool goes on");
}

/// This process's resident memory, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

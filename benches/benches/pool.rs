//! `pool/*`: a pool of two workers running a trivial function.
//!
//! - `map_100k_default_chunksize`: `map` over 100,000 integers (one element = one task);
//! - `imap_chunksize_1`: `imap` with chunk size 1 over 10,000 integers per batch;
//! - `apply_async_round_trip`: one `apply_async` then `get` at a time.
//!
//! The pool is started before the clock.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmproc::Pool;
use std::time::Duration;

fn noop(x: u64) -> u64 {
    x
}

fn pool(c: &mut Criterion) {
    let pool = Pool::new(2).expect("pool");
    pool.map(noop, 0..100).expect("warm up");
    let mut g = c.benchmark_group("pool");
    g.measurement_time(Duration::from_secs(3));

    g.throughput(Throughput::Elements(100_000));
    g.bench_function("map_100k_default_chunksize", |b| {
        b.iter(|| pool.map(noop, 0..100_000u64).expect("map"));
    });

    g.throughput(Throughput::Elements(10_000));
    g.bench_function("imap_chunksize_1", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for r in pool.imap(noop, 0..10_000u64).expect("imap") {
                n += r.expect("result");
            }
            assert_eq!(n, 10_000 * 9_999 / 2);
        });
    });

    g.throughput(Throughput::Elements(1));
    g.bench_function("apply_async_round_trip", |b| {
        b.iter(|| {
            pool.apply_async(noop, 7)
                .expect("submit")
                .get()
                .expect("get")
        });
    });
    g.finish();
    pool.join().expect("join");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = pool
}
criterion_main!(benches);

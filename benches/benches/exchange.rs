//! The pprocess API: `pmap` throughput beside a sequential map and a process per job, and
//! `Exchange::ready` latency with 100 channels.
//!
//! `exchange/pmap/1000`: 1000 small jobs through `pmap` on 2 reusable workers (worker start
//! included), per second. `exchange/pool_map/1000`: the same input through `Pool::new(2)`'s
//! `map` (pool start included, the fair pair of `pmap`, which starts its workers too), and
//! `exchange/pool_map_warm/1000` through one pool kept across iterations.
//! `exchange/sequential/1000`: the same map in this process.
//! `exchange/process_per_job/20`: 20 jobs through an `Exchange` with limit 2, one process
//! each. `exchange/ready_zero/100`: `ready(Some(0))` over 100 idle channels.
//! `exchange/ready_round_trip/100`: send to one of 100 echoing children, `ready(None)`,
//! receive.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmproc::Pool;
use shmproc::exchange::{self, Channel, Exchange, pmap};
use std::hint::black_box;
use std::time::Duration;

fn triple(x: u64) -> u64 {
    x * 3
}

fn triple_on(ch: Channel, x: u64) {
    ch.send(&(x * 3)).unwrap();
}

fn echo(mut ch: Channel, _: ()) {
    while let Ok(x) = ch.receive::<u64>() {
        if ch.send(&x).is_err() {
            return;
        }
    }
}

fn bench_pmap(c: &mut Criterion) {
    let mut g = c.benchmark_group("exchange");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let input: Vec<u64> = (0..1000).collect();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("pmap/1000", |b| {
        b.iter(|| black_box(pmap(triple, input.clone(), 2).unwrap()))
    });
    g.bench_function("pool_map/1000", |b| {
        b.iter(|| {
            let pool = Pool::new(2).unwrap();
            black_box(pool.map(triple, input.clone()).unwrap())
        })
    });
    let pool = Pool::new(2).unwrap();
    g.bench_function("pool_map_warm/1000", |b| {
        b.iter(|| black_box(pool.map(triple, input.clone()).unwrap()))
    });
    drop(pool);
    g.bench_function("sequential/1000", |b| {
        b.iter(|| black_box(input.iter().copied().map(triple).collect::<Vec<_>>()))
    });
    g.throughput(Throughput::Elements(20));
    g.bench_function("process_per_job/20", |b| {
        b.iter(|| {
            let mut sum = 0;
            let mut ex = Exchange::with_limit(2).with_store(|ch: &mut Channel| {
                sum += ch.receive::<u64>()?;
                Ok(())
            });
            for x in 0..20 {
                ex.start(triple_on, x).unwrap();
            }
            ex.finish().unwrap();
            drop(ex);
            assert_eq!(sum, 3 * 190);
        })
    });
    g.finish();
}

fn bench_ready(c: &mut Criterion) {
    let channels: Vec<Channel> = (0..100)
        .map(|_| exchange::start(echo, ()).unwrap())
        .collect();
    let mut ex = Exchange::from_channels(channels);
    let mut g = c.benchmark_group("exchange");
    g.throughput(Throughput::Elements(1));
    g.bench_function("ready_zero/100", |b| {
        b.iter(|| assert!(ex.ready(Some(Duration::ZERO)).unwrap().is_empty()))
    });
    let mut k = 0u64;
    g.bench_function("ready_round_trip/100", |b| {
        b.iter(|| {
            k += 1;
            let i = (k % 100) as usize;
            ex.active()[i].send(&k).unwrap();
            let ready = ex.ready(None).unwrap();
            assert_eq!(ready.len(), 1);
            for ch in ready {
                assert_eq!(ch.receive::<u64>().unwrap(), k);
            }
        })
    });
    g.finish();
    // Dropping the channels closes them: the children's loops end.
    drop(ex);
    exchange::waitall().unwrap();
}

criterion_group!(benches, bench_pmap, bench_ready);
criterion_main!(benches);

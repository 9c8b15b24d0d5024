//! `condition/*`: waits per second between two processes, a `Condition` ping-pong (each
//! round trip is two waits, one in each process) against a bare futex ping-pong between the
//! same two processes (one `FUTEX_WAIT` and one `FUTEX_WAKE` per hop, no spinning), measured
//! in the same group. The peer is forked outside the timed region.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmproc::testing::{ForkPermit, fork};
use shmproc::{Condition, RawValue};
use shmproc_benches::FutexPingPong;
use std::time::{Duration, Instant};

const STOP: u32 = 2;

/// A condition ping-pong: `turn` 1 = the peer's move, 0 = ours; 2 stops the peer.
fn condition_round_trips(iters: u64) -> Duration {
    let cond = Condition::new().unwrap();
    let turn = RawValue::new(0u32).unwrap();
    let (c2, t2) = (cond.clone(), turn.clone());
    // SAFETY: no other thread of this process holds a lock that the child takes.
    let mut peer = fork(unsafe { ForkPermit::new() }, move || {
        let mut g = c2.lock().unwrap();
        loop {
            while t2.get() == 0 {
                c2.wait(&mut g).unwrap();
            }
            if t2.get() == STOP {
                return 0;
            }
            t2.set(0);
            c2.notify(1).unwrap();
        }
    });
    let mut g = cond.lock().unwrap();
    let start = Instant::now();
    for _ in 0..iters {
        turn.set(1);
        cond.notify(1).unwrap();
        while turn.get() == 1 {
            cond.wait(&mut g).unwrap();
        }
    }
    let elapsed = start.elapsed();
    turn.set(STOP);
    cond.notify(1).unwrap();
    drop(g);
    assert_eq!(peer.wait(), Ok(0));
    elapsed
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("condition");
    // Two waits per round trip (one in each process).
    g.throughput(Throughput::Elements(2));
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(20);
    let futex = FutexPingPong::new();
    g.bench_function("ping_pong/bare_futex", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            futex.round_trips(n);
            t.elapsed()
        })
    });
    g.bench_function("ping_pong/condition", |b| {
        b.iter_custom(condition_round_trips)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

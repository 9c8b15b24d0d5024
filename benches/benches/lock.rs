//! `lock/<operation>/uncontended`: one acquire + release of shmproc's `Lock` beside a bare
//! spinlock (CAS + release store), a bare CAS + swap lock (the uncontended path of any futex
//! mutex that detects sleepers on release) and `std::sync::Mutex`, in one group. The robust
//! `Lock` (owner id in the word, owner record beside it) is meant to stay at or above
//! `std_mutex/uncontended`; the benchmarks program pairs the two run by run in its lock table.

use std::hint::black_box;
use std::sync::Mutex;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmproc::Lock;
use shmproc_benches::{CasSwapLock, SpinLock};

fn lock(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock");
    g.throughput(Throughput::Elements(1));

    let spin = SpinLock::new();
    g.bench_function("bare_spinlock/uncontended", |b| {
        b.iter(|| {
            let s = black_box(&spin);
            s.lock();
            s.unlock();
        });
    });
    let cas_swap = CasSwapLock::new();
    g.bench_function("bare_cas_swap_lock/uncontended", |b| {
        b.iter(|| {
            let s = black_box(&cas_swap);
            s.lock();
            s.unlock()
        });
    });
    let mutex = Mutex::new(0u64);
    g.bench_function("std_mutex/uncontended", |b| {
        b.iter(|| drop(black_box(&mutex).lock()));
    });
    let shm = Lock::new().expect("Lock");
    g.bench_function("lock_guard/uncontended", |b| {
        b.iter(|| drop(black_box(&shm).lock()));
    });
    g.bench_function("acquire_release/uncontended", |b| {
        b.iter(|| {
            let l = black_box(&shm);
            let _ = l.acquire();
            let _ = l.release();
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = lock
}
criterion_main!(benches);

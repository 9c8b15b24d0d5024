//! `rlock/*`: uncontended acquire + release of an `RLock` (and a `Lock`), against a bare
//! spinlock (one CAS to acquire, one store to release) measured in the same group.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn spin_lock(w: &AtomicU32) {
    while w
        .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("rlock");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));

    let spin = AtomicU32::new(0);
    g.bench_function("acquire_release/bare_spinlock", |b| {
        b.iter(|| {
            spin_lock(black_box(&spin));
            spin.store(0, Ordering::Release);
        })
    });

    let rlock = shmproc::RLock::new().unwrap();
    g.bench_function("acquire_release/rlock_guard", |b| {
        b.iter(|| drop(black_box(&rlock).lock().unwrap()))
    });
    g.bench_function("acquire_release/rlock_reentrant", |b| {
        let _outer = rlock.lock().unwrap();
        b.iter(|| drop(black_box(&rlock).lock().unwrap()))
    });

    let lock = shmproc::Lock::new().unwrap();
    g.bench_function("acquire_release/lock_guard", |b| {
        b.iter(|| drop(black_box(&lock).lock().unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! `array/<operation>/<elements>`: reading an `i32` array element by element, shmproc's
//! `RawArray` and `Array` beside the bare mechanisms they are built on (volatile loads, a
//! spinlock around each load), in one group.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use shmproc::{Array, RawArray};
use shmproc_benches::{SpinLock, spin_load_sum, volatile_sum};

fn array(c: &mut Criterion) {
    let mut g = c.benchmark_group("array");
    for len in [1000usize, 16_384] {
        let data: Vec<i32> = (0..len as i32).collect();
        let raw = RawArray::<i32>::from_slice(&data).expect("RawArray");
        let arr = Array::<i32>::from_slice(&data).expect("Array");
        let spin = SpinLock::new();
        g.throughput(Throughput::Elements(len as u64));

        g.bench_with_input(
            BenchmarkId::new("bare_volatile_load", len),
            &data,
            |b, d| {
                b.iter(|| volatile_sum(black_box(d)));
            },
        );
        g.bench_with_input(BenchmarkId::new("raw_iter", len), &raw, |b, a| {
            b.iter(|| black_box(a).iter().fold(0i64, |s, x| s + i64::from(x)));
        });
        g.bench_with_input(BenchmarkId::new("raw_get", len), &raw, |b, a| {
            b.iter(|| {
                let a = black_box(a);
                (0..a.len()).fold(0i64, |s, i| s + i64::from(a.get(i).unwrap_or(0)))
            });
        });
        g.bench_with_input(
            BenchmarkId::new("bare_spinlock_per_load", len),
            &data,
            |b, d| {
                b.iter(|| spin_load_sum(&spin, black_box(d)));
            },
        );
        g.bench_with_input(
            BenchmarkId::new("array_get_lock_per_element", len),
            &arr,
            |b, a| {
                b.iter(|| {
                    let a = black_box(a);
                    (0..a.len()).fold(0i64, |s, i| s + i64::from(a.get(i).unwrap_or(0)))
                });
            },
        );
        g.bench_with_input(
            BenchmarkId::new("array_slice_one_lock", len),
            &arr,
            |b, a| {
                b.iter(|| {
                    let guard = black_box(a).lock().expect("lock");
                    guard.iter().fold(0i64, |s, &x| s + i64::from(x))
                });
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(30);
    targets = array
}
criterion_main!(benches);

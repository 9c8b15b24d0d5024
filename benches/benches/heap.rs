//! The heap's common paths: a `Value` made and dropped, a handle cloned and dropped, and a raw
//! allocation freed, each in one process on an idle segment.

use criterion::{Criterion, criterion_group, criterion_main};
use shmproc::heap_testing::TestHeap;
use shmproc::{Segment, Value};
use std::hint::black_box;
use std::time::Duration;

fn heap(c: &mut Criterion) {
    let mut g = c.benchmark_group("heap");
    let seg = Segment::create(64 << 20).unwrap();
    g.bench_function("value_new_drop", |b| {
        b.iter(|| drop(black_box(Value::new_in(&seg, 7u64).unwrap())));
    });
    let v = Value::new_in(&seg, 7u64).unwrap();
    g.bench_function("handle_clone_drop", |b| {
        b.iter(|| drop(black_box(v.clone())));
    });
    let heap = TestHeap::on(&seg);
    g.bench_function("alloc_free_100", |b| {
        b.iter(|| heap.free(black_box(heap.alloc(100, 8).unwrap())).unwrap());
    });
    g.bench_function("alloc_free_100k", |b| {
        b.iter(|| {
            heap.free(black_box(heap.alloc(100_000, 8).unwrap()))
                .unwrap()
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = heap
}
criterion_main!(benches);

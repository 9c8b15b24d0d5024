//! `containers/<operation>/<where>`: `Dict::get` of a present small key and `List::get`, in
//! this process and from a second process, and `Dict::insert` of a new small entry, beside a
//! `std::sync::Mutex<HashMap>` in the same group.
//!
//! The second process is started and ready before the clock starts; for each timed batch the
//! parent posts a request (operation and count) in a `RawArray` and the child answers when it
//! has done that many operations.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmproc::{Dict, List, Process, RawArray, Segment};
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries in the dictionary and elements in the list.
const N: u64 = 1000;

const DICT_GET: u64 = 1;
const LIST_GET: u64 = 2;
const STOP: u64 = 3;

// ctl words: 0 = request sequence number, 1 = answered sequence number, 2 = operation,
// 3 = count, 4 = the child is ready.
fn reader((d, l, ctl): (Dict<u64, u64>, List<u64>, RawArray<u64>)) {
    ctl.set(4, 1).expect("ctl");
    let mut seen = 0;
    loop {
        let seq = ctl.get(0).expect("ctl");
        if seq == seen {
            std::hint::spin_loop();
            continue;
        }
        seen = seq;
        let (op, count) = (ctl.get(2).expect("ctl"), ctl.get(3).expect("ctl"));
        match op {
            DICT_GET => {
                for i in 0..count {
                    black_box(d.get(&(i % N)).expect("get"));
                }
            }
            LIST_GET => {
                for i in 0..count {
                    black_box(l.get((i % N) as usize).expect("get"));
                }
            }
            _ => {
                ctl.set(1, seq).expect("ctl");
                return;
            }
        }
        ctl.set(1, seq).expect("ctl");
    }
}

fn containers(c: &mut Criterion) {
    let mut g = c.benchmark_group("containers");
    g.throughput(Throughput::Elements(1));

    let d = Dict::<u64, u64>::with_capacity(N as usize).expect("dict");
    d.update((0..N).map(|i| (i, i * 3))).expect("update");
    let l = List::<u64>::new().expect("list");
    l.extend(0..N).expect("extend");
    let std_map = Mutex::new((0..N).map(|i| (i, i * 3)).collect::<HashMap<_, _>>());

    g.bench_function("std_mutex_hashmap_get/local", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N;
            black_box(std_map.lock().expect("lock").get(&i).copied())
        });
    });
    g.bench_function("dict_get/local", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N;
            black_box(d.get(&i).expect("get"))
        });
    });
    g.bench_function("list_get/local", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % N;
            black_box(l.get(i as usize).expect("get"))
        });
    });

    // In a segment of its own, so polling it shares no cache line with the containers.
    let ctl_seg = Segment::create(1 << 20).expect("segment");
    let ctl = RawArray::<u64>::new_in(&ctl_seg, 5).expect("ctl");
    let child = Process::new(reader, (d.clone(), l.clone(), ctl.clone()))
        .start()
        .expect("start reader");
    while ctl.get(4).unwrap_or(0) == 0 {
        std::thread::yield_now();
    }
    let mut seq = 0;
    // Posts a request to the child; with `here`, this process does the same reads meanwhile.
    let mut remote = |op: u64, iters: u64, here: bool| {
        seq += 1;
        ctl.set(2, op).expect("ctl");
        ctl.set(3, iters).expect("ctl");
        let t = Instant::now();
        ctl.set(0, seq).expect("ctl");
        if here {
            for i in 0..iters {
                black_box(d.get(&(i % N)).expect("get"));
            }
        }
        while ctl.get(1).unwrap_or(0) != seq {
            // Leave the core to the child (two-core machines).
            std::thread::yield_now();
        }
        t.elapsed()
    };
    g.bench_function("dict_get/second_process", |b| {
        b.iter_custom(|iters| remote(DICT_GET, iters, false));
    });
    g.bench_function("list_get/second_process", |b| {
        b.iter_custom(|iters| remote(LIST_GET, iters, false));
    });
    // Both processes read at once: how much the one lock costs readers (a reader-writer or
    // sequence-validated read would only pay off if this falls well below twice one reader).
    g.throughput(Throughput::Elements(2));
    g.bench_function("dict_get/two_processes_at_once", |b| {
        b.iter_custom(|iters| remote(DICT_GET, iters, true));
    });
    g.throughput(Throughput::Elements(1));
    remote(STOP, 0, false);
    child.join().expect("join reader");

    g.bench_function("std_mutex_hashmap_insert/new_small", |b| {
        let m = Mutex::new(HashMap::new());
        b.iter_custom(|iters| {
            m.lock().expect("lock").clear();
            let t = Instant::now();
            for i in 0..iters {
                m.lock().expect("lock").insert(i, i);
            }
            t.elapsed()
        });
    });
    g.bench_function("dict_insert/new_small", |b| {
        let d = Dict::<u64, u64>::new().expect("dict");
        b.iter_custom(|iters| {
            d.clear().expect("clear");
            let t = Instant::now();
            for i in 0..iters {
                d.insert(i, i).expect("insert");
            }
            t.elapsed()
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = containers
}
criterion_main!(benches);

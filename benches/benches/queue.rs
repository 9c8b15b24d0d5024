//! `queue/<producers>to<consumers>/256B`: 256-byte strings passed through a `Queue` between
//! processes (the original `processing` object-passing workload), beside a bare
//! single-producer single-consumer shared-memory ring of 256-byte messages in the same group.
//!
//! `queue/1to1_into/256B`: as `queue/1to1/256B`, the consumer decoding every string into one
//! reused buffer (`Queue::get_into`), so nothing is allocated per message.
//!
//! `queue/1to1_object/256B`: as `queue/1to1/256B`, with the 256-byte object,
//! `struct Object { data: Vec<u8> }`, its field marked `#[serde(with = "shmproc::codec::bytes")]`
//! (one length and one copy each way, no UTF-8 check on decode).
//!
//! `queue/1to1_bytebuf_into/256B`: the same 256 bytes on the wire as a `shmproc::codec::ByteBuf`,
//! the consumer decoding each into one kept buffer (`get_into`: no allocation per message).
//!
//! `queue/same_thread/{string,object}/256B`: one `put` and one `get` in one thread, the cost of
//! the serde path per message with no second process (the figure least moved by other load on
//! the machine).
//!
//! `queue/shareable/1to1/256B` and `queue/shareable_loan/1to1/256B`: `[u8; 256]` values
//! through a `ShareableQueue` (copied with `put`/`get`, and written and read in place with
//! `put_with`/`get_with`), no encoding.
//!
//! Children are started and ready before the clock starts; each timed batch ends when every
//! consumer has taken its messages.

use criterion::{Bencher, Criterion, Throughput, criterion_group, criterion_main};
use shmproc::codec::ByteBuf;
use shmproc::{Process, Queue, RawArray, RawValue, ShareableQueue};
use shmproc_benches::Ring;
use std::time::{Duration, Instant};

const MSG: usize = 256;

fn wait_for(cond: impl Fn() -> bool) {
    while !cond() {
        std::thread::yield_now();
    }
}

/// Consumer `c` of `k` (`counts` has `2k` slots): sets `counts[k + c]` when ready, then counts
/// messages into `counts[c]` until the queue closes.
fn consume((q, counts, c): (Queue<String>, RawArray<u64>, usize)) {
    let k = counts.len() / 2;
    counts.set(k + c, 1).expect("index");
    let mut n = 0;
    while q.get().is_ok() {
        n += 1;
        counts.set(c, n).expect("index");
    }
}

/// As `consume`, decoding into one reused `String`.
fn consume_into((q, counts, c): (Queue<String>, RawArray<u64>, usize)) {
    let k = counts.len() / 2;
    counts.set(k + c, 1).expect("index");
    let mut n = 0;
    let mut s = String::new();
    while q.get_into(&mut s).is_ok() {
        std::hint::black_box(&s);
        n += 1;
        counts.set(c, n).expect("index");
    }
}

/// One producer (this process) and one consumer child running `target`, which reports ready
/// in `counts[1]` and counts what it took in `counts[0]`: times `iters` puts of `msg` until
/// the consumer has taken them all.
fn one_to_one<T>(b: &mut Bencher<'_>, target: fn((Queue<T>, RawArray<u64>, usize)), msg: T)
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let q = Queue::<T>::with_capacity(1024).expect("queue");
    let counts = RawArray::<u64>::new(2).expect("counts");
    let consumer = Process::new(target, (q.clone(), counts.clone(), 0))
        .start()
        .expect("start consumer");
    wait_for(|| counts.get(1).unwrap_or(0) == 1);
    let mut taken = 0;
    b.iter_custom(|iters| {
        let t = Instant::now();
        for _ in 0..iters {
            q.put(&msg).expect("put");
        }
        taken += iters;
        wait_for(|| counts.get(0).unwrap_or(0) >= taken);
        t.elapsed()
    });
    q.close();
    consumer.join().expect("join consumer");
}

/// The 256-byte object, its byte field encoded as one byte string.
#[derive(serde::Serialize, serde::Deserialize)]
struct Object {
    #[serde(with = "shmproc::codec::bytes")]
    data: Vec<u8>,
}

/// As `consume`, for `Object`s.
fn consume_object((q, counts, c): (Queue<Object>, RawArray<u64>, usize)) {
    let k = counts.len() / 2;
    counts.set(k + c, 1).expect("index");
    let mut n = 0;
    while let Ok(o) = q.get() {
        std::hint::black_box(o);
        n += 1;
        counts.set(c, n).expect("index");
    }
}

/// As `consume`, decoding `ByteBuf`s into one kept buffer.
fn consume_bytebuf_into((q, counts, c): (Queue<ByteBuf>, RawArray<u64>, usize)) {
    let k = counts.len() / 2;
    counts.set(k + c, 1).expect("index");
    let mut n = 0;
    let mut b = ByteBuf::with_capacity(MSG);
    while q.get_into(&mut b).is_ok() {
        std::hint::black_box(&b);
        n += 1;
        counts.set(c, n).expect("index");
    }
}

/// `queue/1to1_object/256B`, `queue/1to1_bytebuf_into/256B` and `queue/same_thread/{string,object}/256B`.
fn object(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1to1_object/256B", |b| {
        let msg = Object {
            data: vec![b'x'; MSG],
        };
        one_to_one(b, consume_object, msg);
    });
    g.bench_function("1to1_bytebuf_into/256B", |b| {
        one_to_one(b, consume_bytebuf_into, ByteBuf::from(vec![b'x'; MSG]));
    });
    g.bench_function("same_thread/string/256B", |b| {
        let q = Queue::<String>::with_capacity(1024).expect("queue");
        let msg = "x".repeat(MSG);
        b.iter(|| {
            q.put(&msg).expect("put");
            std::hint::black_box(q.get().expect("get"))
        });
    });
    g.bench_function("same_thread/object/256B", |b| {
        let q = Queue::<Object>::with_capacity(1024).expect("queue");
        let msg = Object {
            data: vec![b'x'; MSG],
        };
        b.iter(|| {
            q.put(&msg).expect("put");
            std::hint::black_box(q.get().expect("get"))
        });
    });
    g.finish();
}

/// Producer: waits for `go` to reach `round`, puts `n` messages, then waits for the next round.
fn produce((q, go, n): (Queue<String>, RawValue<u64>, u64)) {
    let msg = "x".repeat(MSG);
    let mut round = 1;
    loop {
        wait_for(|| go.get() >= round);
        if go.get() == u64::MAX {
            return;
        }
        for _ in 0..n {
            q.put(&msg).expect("put");
        }
        round += 1;
    }
}

/// Consumer of a `ShareableQueue`: as `consume`, reading each value in place if `loan`, else
/// copying it out.
fn consume_shareable((q, counts, loan): (ShareableQueue<[u8; MSG]>, RawArray<u64>, bool)) {
    counts.set(1, 1).expect("index");
    let mut n = 0;
    loop {
        let r = if loan {
            q.get_with(|v| std::hint::black_box(v[MSG - 1]))
        } else {
            q.get().map(|v| std::hint::black_box(v)[MSG - 1])
        };
        if r.is_err() {
            return;
        }
        n += 1;
        counts.set(0, n).expect("index");
    }
}

fn shareable(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(1));
    for (name, loan) in [
        ("shareable/1to1/256B", false),
        ("shareable_loan/1to1/256B", true),
    ] {
        g.bench_function(name, |b| {
            let q = ShareableQueue::<[u8; MSG]>::with_capacity(1024).expect("queue");
            let counts = RawArray::<u64>::new(2).expect("counts");
            let consumer = Process::new(consume_shareable, (q.clone(), counts.clone(), loan))
                .start()
                .expect("start consumer");
            wait_for(|| counts.get(1).unwrap_or(0) == 1);
            let msg = [b'x'; MSG];
            let mut taken = 0;
            b.iter_custom(|iters| {
                let t = Instant::now();
                for i in 0..iters {
                    if loan {
                        q.put_with(|s| {
                            s.fill(b'x');
                            s[0] = i as u8;
                        })
                        .expect("put_with");
                    } else {
                        q.put(&msg).expect("put");
                    }
                }
                taken += iters;
                wait_for(|| counts.get(0).unwrap_or(0) >= taken);
                t.elapsed()
            });
            q.close();
            consumer.join().expect("join consumer");
        });
    }
    g.finish();
}

fn queue(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(1));

    let mut ring = Ring::new();
    g.bench_function("bare_ring/1to1/256B", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            ring.send(iters);
            t.elapsed()
        });
    });
    drop(ring);

    for (name, target) in [
        ("1to1/256B", consume as fn(_)),
        ("1to1_into/256B", consume_into),
    ] {
        g.bench_function(name, |b| one_to_one(b, target, "x".repeat(MSG)));
    }

    g.bench_function("2to2/256B", |b| {
        let q = Queue::<String>::with_capacity(1024).expect("queue");
        let counts = RawArray::<u64>::new(4).expect("counts");
        let consumers: Vec<_> = (0..2)
            .map(|c| {
                Process::new(consume, (q.clone(), counts.clone(), c))
                    .start()
                    .expect("start consumer")
            })
            .collect();
        wait_for(|| counts.iter().skip(2).sum::<u64>() == 2);
        let mut taken = 0;
        b.iter_custom(|iters| {
            // Each batch gets its own pair of producers, so both put exactly half.
            let go = RawValue::new(0u64).expect("go");
            let half = iters.div_ceil(2);
            let producers: Vec<_> = (0..2)
                .map(|_| {
                    Process::new(produce, (q.clone(), go.clone(), half))
                        .start()
                        .expect("start producer")
                })
                .collect();
            let t = Instant::now();
            go.set(1);
            taken += 2 * half;
            wait_for(|| counts.iter().take(2).sum::<u64>() >= taken);
            let elapsed = t.elapsed();
            go.set(u64::MAX);
            for p in producers {
                p.join().expect("join producer");
            }
            elapsed
        });
        q.close();
        for p in consumers {
            p.join().expect("join consumer");
        }
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = queue, object, shareable
}
criterion_main!(benches);

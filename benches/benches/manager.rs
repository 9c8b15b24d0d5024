//! `manager/*`: calls through a manager's server per second. A managed dict's `get` over the
//! local transport (a shared-memory pipe to the server process) and over TCP loopback, a
//! managed lock's acquire + release, a managed queue's put + get and managed condition waits
//! between two processes, beside a bare shared-memory pipe round trip to a child (the
//! transport's own cost) in the same group. Servers and peers start outside the timed region.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmproc::manager::ConditionProxy;
use shmproc::testing::{ForkPermit, fork};
use shmproc::{Manager, Process, RawValue};
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const STOP: u32 = 2;

fn condition_peer((cond, turn): (ConditionProxy, RawValue<u32>)) {
    cond.acquire().unwrap();
    loop {
        while turn.get() == 0 {
            cond.wait().unwrap();
        }
        if turn.get() == STOP {
            cond.release().unwrap();
            return;
        }
        turn.set(0);
        cond.notify(1).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("manager");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(20);

    // The transport alone: a shared-memory pipe round trip to a forked echo child.
    let (a, b) = shmproc::pipe().unwrap();
    // SAFETY: no other thread of this process holds a lock the child takes.
    let mut echo = fork(unsafe { ForkPermit::new() }, move || {
        while let Ok(m) = b.recv_bytes() {
            if m.is_empty() || b.send_bytes(&m).is_err() {
                break;
            }
        }
        0
    });
    g.bench_function("round_trip/bare_pipe", |bn| {
        bn.iter(|| {
            a.send_bytes(&[1, 2, 3]).unwrap();
            black_box(a.recv_bytes().unwrap());
        });
    });
    a.send_bytes(&[]).unwrap();
    assert_eq!(echo.wait(), Ok(0));

    let m = Manager::start().unwrap();
    let d = m.dict::<u64, u64>().unwrap();
    d.update((0..100).map(|i| (i, i * i))).unwrap();
    let mut k = 0u64;
    g.bench_function("dict_get/local", |bn| {
        bn.iter(|| {
            k = (k + 1) % 100;
            black_box(d.get(&k).unwrap());
        });
    });

    let lock = m.lock().unwrap();
    g.bench_function("lock/acquire_release", |bn| {
        bn.iter(|| {
            lock.acquire().unwrap();
            lock.release().unwrap();
        });
    });

    let q = m.queue::<String>().unwrap();
    let obj = "0".repeat(256);
    g.bench_function("queue/put_get_256B", |bn| {
        bn.iter(|| {
            q.put(&obj).unwrap();
            black_box(q.get().unwrap());
        });
    });

    // Two waits per round, one in each process.
    g.throughput(Throughput::Elements(2));
    let cond = m.condition().unwrap();
    let turn = RawValue::new(0u32).unwrap();
    let peer = Process::new(condition_peer, (cond.clone(), turn.clone()))
        .start()
        .unwrap();
    g.bench_function("condition/waits_2_processes", |bn| {
        bn.iter_custom(|iters| {
            cond.acquire().unwrap();
            let t = Instant::now();
            for _ in 0..iters {
                turn.set(1);
                cond.notify(1).unwrap();
                while turn.get() == 1 {
                    cond.wait().unwrap();
                }
            }
            let e = t.elapsed();
            cond.release().unwrap();
            e
        });
    });
    cond.acquire().unwrap();
    turn.set(STOP);
    cond.notify_all().unwrap();
    cond.release().unwrap();
    peer.join().unwrap();
    g.throughput(Throughput::Elements(1));

    let owner = Manager::serve(SocketAddr::from(([127, 0, 0, 1], 0)), b"bench").unwrap();
    let remote = Manager::connect(owner.address(), b"bench").unwrap();
    let rd = remote.dict::<u64, u64>().unwrap();
    rd.update((0..100).map(|i| (i, i * i))).unwrap();
    g.bench_function("dict_get/tcp_loopback", |bn| {
        bn.iter(|| {
            k = (k + 1) % 100;
            black_box(rd.get(&k).unwrap());
        });
    });
    g.finish();
    drop(rd);
    drop(remote);
    owner.shutdown().unwrap();
    m.shutdown().unwrap();
}

criterion_group!(benches, bench);
criterion_main!(benches);

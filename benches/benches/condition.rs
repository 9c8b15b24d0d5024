//! `condition/*`: waits per second between two processes, a `Condition` ping-pong (each
//! round trip is two waits, one in each process) against a bare futex ping-pong between the
//! same two processes (one `FUTEX_WAIT` and one `FUTEX_WAKE` per hop, no spinning), measured
//! in the same group. The peer is forked outside the timed region.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmproc::testing::fork;
use shmproc::{Condition, RawValue};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const STOP: u32 = 2;

/// A condition ping-pong: `turn` 1 = the peer's move, 0 = ours; 2 stops the peer.
fn condition_round_trips(iters: u64) -> Duration {
    let cond = Condition::new().unwrap();
    let turn = RawValue::new(0u32).unwrap();
    let (c2, t2) = (cond.clone(), turn.clone());
    let mut peer = fork(move || {
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

/// An anonymous shared mapping holding one futex word, inherited by a forked peer.
struct SharedWord {
    ptr: *mut AtomicU32,
}

impl SharedWord {
    fn new() -> Self {
        // SAFETY: an anonymous shared mapping of one page, no file; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        SharedWord { ptr: p.cast() }
    }

    fn word(&self) -> &AtomicU32 {
        // SAFETY: the page is mapped, zeroed, page-aligned and lives as long as `self`.
        unsafe { &*self.ptr }
    }
}

impl Drop for SharedWord {
    fn drop(&mut self) {
        // SAFETY: unmaps the page mapped in `new`; no reference outlives `self`.
        unsafe { libc::munmap(self.ptr.cast(), 4096) };
    }
}

fn futex_wait(w: &AtomicU32, expected: u32) {
    // SAFETY: FUTEX_WAIT on a valid, aligned word in a shared mapping, no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            w.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

fn futex_wake(w: &AtomicU32) {
    // SAFETY: FUTEX_WAKE of one waiter on a valid word.
    unsafe { libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAKE, 1) };
}

/// The bare futex ping-pong: the word is 1 for the peer's move, 0 for ours, 2 to stop.
fn futex_round_trips(iters: u64) -> Duration {
    let shared = SharedWord::new();
    let w = shared.word();
    let mut peer = fork(|| {
        loop {
            let v = w.load(Ordering::Acquire);
            if v == STOP {
                return 0;
            }
            if v == 0 {
                futex_wait(w, 0);
                continue;
            }
            w.store(0, Ordering::Release);
            futex_wake(w);
        }
    });
    let start = Instant::now();
    for _ in 0..iters {
        w.store(1, Ordering::Release);
        futex_wake(w);
        while w.load(Ordering::Acquire) == 1 {
            futex_wait(w, 1);
        }
    }
    let elapsed = start.elapsed();
    w.store(STOP, Ordering::Release);
    futex_wake(w);
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
    g.bench_function("ping_pong/bare_futex", |b| b.iter_custom(futex_round_trips));
    g.bench_function("ping_pong/condition", |b| {
        b.iter_custom(condition_round_trips)
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

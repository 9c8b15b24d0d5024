//! Pipe throughput and latency between two processes, beside a bare shared-memory ring, a bare
//! futex ping-pong and a kernel pipe measured in the same groups.
//!
//! `pipe/one_way/256`: 256-byte messages from parent to child per second (the child acks the
//! last one). `pipe/ping_pong/8`: round trips per second (`shmproc_blocking`: spinning off on
//! both ends, the futex path alone, beside `bare_futex`). `pipe/one_way_bytes/16MiB`:
//! bytes per second of 16 MiB messages.

#![allow(clippy::unwrap_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmproc::testing::{ForkPermit, fork};
use shmproc_benches::{FutexPingPong, PipePingPong, Ring};
use std::time::{Duration, Instant};

const MSG: usize = 256;

fn shm_one_way(iters: u64) -> Duration {
    let (a, b) = shmproc::pipe().unwrap();
    // SAFETY: no other thread of this process holds a lock that the child takes.
    let mut child = fork(unsafe { ForkPermit::new() }, move || {
        let mut buf = [0u8; MSG];
        for _ in 0..iters {
            b.recv_bytes_into(&mut buf).unwrap();
        }
        b.send_bytes(b"ack").unwrap();
        0
    });
    let msg = [7u8; MSG];
    let start = Instant::now();
    for _ in 0..iters {
        a.send_bytes(&msg).unwrap();
    }
    a.recv_bytes().unwrap();
    let t = start.elapsed();
    assert_eq!(child.wait(), Ok(0));
    t
}

fn kernel_pipe_one_way(iters: u64) -> Duration {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe` writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let mut back = [0; 2];
    // SAFETY: as above.
    assert_eq!(unsafe { libc::pipe(back.as_mut_ptr()) }, 0);
    // SAFETY: no other thread of this process holds a lock that the child takes.
    let mut child = fork(unsafe { ForkPermit::new() }, || {
        let mut buf = [0u8; MSG];
        for _ in 0..iters {
            let mut got = 0;
            while got < MSG {
                let dst = buf[got..].as_mut_ptr();
                // SAFETY: `dst` has room for `MSG - got` bytes.
                let n = unsafe { libc::read(fds[0], dst.cast(), MSG - got) };
                assert!(n > 0);
                got += n as usize;
            }
        }
        // SAFETY: writes one byte from a static buffer.
        unsafe { libc::write(back[1], b"a".as_ptr().cast(), 1) };
        0
    });
    let msg = [7u8; MSG];
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: `msg` holds `MSG` readable bytes.
        let n = unsafe { libc::write(fds[1], msg.as_ptr().cast(), MSG) };
        assert_eq!(n, MSG as isize);
    }
    let mut b = [0u8; 1];
    // SAFETY: `b` has room for one byte.
    unsafe { libc::read(back[0], b.as_mut_ptr().cast(), 1) };
    let t = start.elapsed();
    assert_eq!(child.wait(), Ok(0));
    for fd in fds.into_iter().chain(back) {
        // SAFETY: closes descriptors this function opened and no longer uses.
        unsafe { libc::close(fd) };
    }
    t
}

fn shm_ping_pong(iters: u64) -> Duration {
    ping_pong_with(iters, true)
}

/// The blocking path alone: spinning off on both ends.
fn shm_ping_pong_blocking(iters: u64) -> Duration {
    ping_pong_with(iters, false)
}

fn ping_pong_with(iters: u64, spin: bool) -> Duration {
    let (a, b) = shmproc::pipe().unwrap();
    a.set_spinning(spin);
    b.set_spinning(spin);
    // SAFETY: no other thread of this process holds a lock that the child takes.
    let mut child = fork(unsafe { ForkPermit::new() }, move || {
        let mut buf = [0u8; 8];
        for _ in 0..iters {
            let n = b.recv_bytes_into(&mut buf).unwrap();
            b.send_bytes(&buf[..n]).unwrap();
        }
        0
    });
    let mut buf = [0u8; 8];
    let start = Instant::now();
    for i in 0..iters {
        a.send_bytes(&i.to_le_bytes()).unwrap();
        a.recv_bytes_into(&mut buf).unwrap();
    }
    let t = start.elapsed();
    assert_eq!(child.wait(), Ok(0));
    t
}

/// 16 MiB messages one way (the receiver acks the last one).
fn shm_large(iters: u64) -> Duration {
    const BIG: usize = 16 << 20;
    let (a, b) = shmproc::pipe().unwrap();
    // SAFETY: no other thread of this process holds a lock that the child takes.
    let mut child = fork(unsafe { ForkPermit::new() }, move || {
        let mut buf = vec![0u8; BIG];
        for _ in 0..iters {
            b.recv_bytes_into(&mut buf).unwrap();
        }
        b.send_bytes(b"ack").unwrap();
        0
    });
    let msg = vec![7u8; BIG];
    let start = Instant::now();
    for _ in 0..iters {
        a.send_bytes(&msg).unwrap();
    }
    a.recv_bytes().unwrap();
    let t = start.elapsed();
    assert_eq!(child.wait(), Ok(0));
    t
}

fn large(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe/one_way_bytes");
    g.throughput(Throughput::Bytes(16 << 20));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(10);
    g.bench_function("shmproc/16MiB", |b| b.iter_custom(shm_large));
    g.finish();
}

fn one_way(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe/one_way");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(20);
    g.bench_function("shmproc/256", |b| b.iter_custom(shm_one_way));
    let mut ring = Ring::new();
    g.bench_function("bare_ring/256", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            ring.send(n);
            t.elapsed()
        })
    });
    g.bench_function("kernel_pipe/256", |b| b.iter_custom(kernel_pipe_one_way));
    g.finish();
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipe/ping_pong");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(20);
    g.bench_function("shmproc/8", |b| b.iter_custom(shm_ping_pong));
    g.bench_function("shmproc_blocking/8", |b| {
        b.iter_custom(shm_ping_pong_blocking)
    });
    let futex = FutexPingPong::new();
    g.bench_function("bare_futex/8", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            futex.round_trips(n);
            t.elapsed()
        })
    });
    let kernel = PipePingPong::new();
    g.bench_function("kernel_pipe/8", |b| {
        b.iter_custom(|n| {
            let t = Instant::now();
            kernel.round_trips(n);
            t.elapsed()
        })
    });
    g.finish();
}

criterion_group!(benches, one_way, ping_pong, large);
criterion_main!(benches);

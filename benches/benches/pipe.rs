//! Pipe throughput and latency between two processes, beside a bare shared-memory ring, a bare
//! futex ping-pong and a kernel pipe measured in the same groups.
//!
//! `pipe/one_way/256`: 256-byte messages from parent to child per second (the child acks the
//! last one). `pipe/ping_pong/8`: blocking round trips per second. `pipe/one_way_bytes/16MiB`:
//! bytes per second of 16 MiB messages.

#![allow(
    unsafe_code,
    clippy::undocumented_unsafe_blocks,
    clippy::multiple_unsafe_ops_per_block,
    clippy::unwrap_used,
    clippy::disallowed_types,
    missing_docs
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shmproc::testing::fork;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const MSG: usize = 256;

/// A shared anonymous mapping (inherited by forked children).
struct Shared {
    ptr: *mut u8,
    len: usize,
}

impl Shared {
    fn new(len: usize) -> Shared {
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        Shared {
            ptr: ptr.cast(),
            len,
        }
    }
    fn u64(&self, off: usize) -> &AtomicU64 {
        unsafe { &*self.ptr.add(off).cast::<AtomicU64>() }
    }
    fn u32(&self, off: usize) -> &AtomicU32 {
        unsafe { &*self.ptr.add(off).cast::<AtomicU32>() }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Bare SPSC ring: 4096 slots of 256 bytes, head at 0, tail at 64, data at 4096; spins only.
fn bare_ring(iters: u64) -> Duration {
    const SLOTS: u64 = 4096;
    let sh = Shared::new(4096 + SLOTS as usize * MSG);
    let mut child = fork(|| {
        let mut buf = [0u8; MSG];
        let mut tail = 0u64;
        while tail < iters {
            let head = sh.u64(0).load(Ordering::Acquire);
            while tail < head {
                let off = 4096 + (tail % SLOTS) as usize * MSG;
                unsafe { std::ptr::copy_nonoverlapping(sh.ptr.add(off), buf.as_mut_ptr(), MSG) };
                std::hint::black_box(&buf);
                tail += 1;
                sh.u64(64).store(tail, Ordering::Release);
            }
            std::hint::spin_loop();
        }
        0
    });
    let msg = [7u8; MSG];
    let start = Instant::now();
    for head in 0..iters {
        while head - sh.u64(64).load(Ordering::Acquire) >= SLOTS {
            std::hint::spin_loop();
        }
        let off = 4096 + (head % SLOTS) as usize * MSG;
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), sh.ptr.add(off), MSG) };
        sh.u64(0).store(head + 1, Ordering::Release);
    }
    while sh.u64(64).load(Ordering::Acquire) < iters {
        std::hint::spin_loop();
    }
    let t = start.elapsed();
    assert_eq!(child.wait(), Ok(0));
    t
}

fn shm_one_way(iters: u64) -> Duration {
    let (a, b) = shmproc::pipe().unwrap();
    let mut child = fork(move || {
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
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let mut back = [0; 2];
    assert_eq!(unsafe { libc::pipe(back.as_mut_ptr()) }, 0);
    let mut child = fork(|| {
        let mut buf = [0u8; MSG];
        for _ in 0..iters {
            let mut got = 0;
            while got < MSG {
                let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().add(got).cast(), MSG - got) };
                assert!(n > 0);
                got += n as usize;
            }
        }
        unsafe { libc::write(back[1], b"a".as_ptr().cast(), 1) };
        0
    });
    let msg = [7u8; MSG];
    let start = Instant::now();
    for _ in 0..iters {
        let n = unsafe { libc::write(fds[1], msg.as_ptr().cast(), MSG) };
        assert_eq!(n, MSG as isize);
    }
    let mut b = [0u8; 1];
    unsafe { libc::read(back[0], b.as_mut_ptr().cast(), 1) };
    let t = start.elapsed();
    assert_eq!(child.wait(), Ok(0));
    for fd in fds.into_iter().chain(back) {
        unsafe { libc::close(fd) };
    }
    t
}

fn futex_wait(w: &AtomicU32, expected: u32) {
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
    unsafe { libc::syscall(libc::SYS_futex, w.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
}

/// Bare futex ping-pong: the word counts turns; odd = child's turn, even = parent's.
fn bare_futex_ping_pong(iters: u64) -> Duration {
    let sh = Shared::new(4096);
    let w = sh.u32(0);
    let mut child = fork(|| {
        for i in 0..iters as u32 {
            let want = 2 * i + 1;
            loop {
                let v = w.load(Ordering::Acquire);
                if v == want {
                    break;
                }
                futex_wait(w, v);
            }
            w.store(want + 1, Ordering::Release);
            futex_wake(w);
        }
        0
    });
    let start = Instant::now();
    for i in 0..iters as u32 {
        w.store(2 * i + 1, Ordering::Release);
        futex_wake(w);
        let want = 2 * i + 2;
        loop {
            let v = w.load(Ordering::Acquire);
            if v == want {
                break;
            }
            futex_wait(w, v);
        }
    }
    let t = start.elapsed();
    assert_eq!(child.wait(), Ok(0));
    t
}

fn shm_ping_pong(iters: u64) -> Duration {
    let (a, b) = shmproc::pipe().unwrap();
    let mut child = fork(move || {
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

fn kernel_pipe_ping_pong(iters: u64) -> Duration {
    let (mut p1, mut p2) = ([0; 2], [0; 2]);
    assert_eq!(unsafe { libc::pipe(p1.as_mut_ptr()) }, 0);
    assert_eq!(unsafe { libc::pipe(p2.as_mut_ptr()) }, 0);
    let mut child = fork(|| {
        let mut b = [0u8; 8];
        for _ in 0..iters {
            assert_eq!(unsafe { libc::read(p1[0], b.as_mut_ptr().cast(), 8) }, 8);
            assert_eq!(unsafe { libc::write(p2[1], b.as_ptr().cast(), 8) }, 8);
        }
        0
    });
    let mut b = [0u8; 8];
    let start = Instant::now();
    for _ in 0..iters {
        assert_eq!(unsafe { libc::write(p1[1], b.as_ptr().cast(), 8) }, 8);
        assert_eq!(unsafe { libc::read(p2[0], b.as_mut_ptr().cast(), 8) }, 8);
    }
    let t = start.elapsed();
    assert_eq!(child.wait(), Ok(0));
    for fd in p1.into_iter().chain(p2) {
        unsafe { libc::close(fd) };
    }
    t
}

/// 16 MiB messages one way (the receiver acks the last one).
fn shm_large(iters: u64) -> Duration {
    const BIG: usize = 16 << 20;
    let (a, b) = shmproc::pipe().unwrap();
    let mut child = fork(move || {
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
    g.bench_function("bare_ring/256", |b| b.iter_custom(bare_ring));
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
    g.bench_function("bare_futex/8", |b| b.iter_custom(bare_futex_ping_pong));
    g.bench_function("kernel_pipe/8", |b| b.iter_custom(kernel_pipe_ping_pong));
    g.finish();
}

criterion_group!(benches, one_way, ping_pong, large);
criterion_main!(benches);

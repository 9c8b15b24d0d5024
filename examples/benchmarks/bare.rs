//! The bare machine mechanisms ("limits") that shmproc is measured against.
//!
//! Shared by the `benchmarks` example and by the criterion benches (`shmproc-benches`, which
//! includes this file by path). These are baselines, not library code, so they call `libc` directly; the library's
//! rule that only `src/sys` makes system calls does not apply here.
//!
//! # Safety
//! Every shared mapping made here is `MAP_SHARED | MAP_ANONYMOUS`, page aligned, and lives until
//! the value that owns it is dropped, after its peer process has been reaped. The peers touch
//! it only through atomics or behind an acquire/release hand-off.

// Baselines are plain `std` atomics by design: they measure the machine, not shmproc's loom seam.
#![allow(clippy::disallowed_types)]

use std::hint::{black_box, spin_loop};
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::thread::yield_now;

/// Sums `buf` with one volatile load per element (the bare cost of reading shared memory).
#[inline(never)]
pub fn volatile_sum(buf: &[i32]) -> i64 {
    let mut sum = 0i64;
    for x in buf {
        // SAFETY: `x` is a valid, aligned reference to an initialized `i32`.
        let v = unsafe { ptr::read_volatile(x) };
        sum = sum.wrapping_add(i64::from(v));
    }
    sum
}

/// Returns `0..n` as atomics (the buffer [`atomic_sum`] reads).
pub fn atomic_i32s(n: i32) -> Vec<AtomicI32> {
    (0..n).map(AtomicI32::new).collect()
}

/// Sums `buf` with one relaxed atomic load per element: the bare cost of reading memory that
/// other threads or processes may write at the same time (a volatile load of it would be a
/// data race). The compiler folds a volatile `i32` load and its widening to `i64` into one
/// sign-extending load, but not an atomic one: a load, then a sign extension.
#[inline(never)]
pub fn atomic_sum(buf: &[AtomicI32]) -> i64 {
    let mut sum = 0i64;
    for x in buf {
        sum = sum.wrapping_add(i64::from(x.load(Ordering::Relaxed)));
    }
    sum
}

/// A bare test-and-set spinlock: a CAS to acquire, a release store to release.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct SpinLock {
    word: AtomicU32,
}

impl SpinLock {
    /// An unlocked spinlock.
    pub const fn new() -> Self {
        SpinLock {
            word: AtomicU32::new(0),
        }
    }

    /// Spins until the lock is taken.
    #[inline]
    pub fn lock(&self) {
        while self
            .word
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spin_loop();
        }
    }

    /// Releases the lock.
    #[inline]
    pub fn unlock(&self) {
        self.word.store(0, Ordering::Release);
    }
}

/// The uncontended path of a futex mutex that must learn on release whether anyone sleeps
/// (as `std::sync::Mutex` and shmproc's `Lock` do): a CAS to acquire and an atomic swap to
/// release, i.e. two locked read-modify-writes where the bare spinlock has one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct CasSwapLock {
    word: AtomicU32,
}

impl CasSwapLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        CasSwapLock {
            word: AtomicU32::new(0),
        }
    }

    /// Spins until the lock is taken (CAS 0 -> 1).
    #[inline]
    pub fn lock(&self) {
        while self
            .word
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            spin_loop();
        }
    }

    /// Releases with a swap and reports whether a waiter bit was set.
    #[inline]
    pub fn unlock(&self) -> bool {
        self.word.swap(0, Ordering::Release) & 0x8000_0000 != 0
    }
}

/// Takes and releases `lock` `n` times (uncontended).
#[inline(never)]
pub fn spin_cycles(lock: &SpinLock, n: u64) {
    for _ in 0..n {
        black_box(lock).lock();
        lock.unlock();
    }
}

/// Sums `buf` taking `lock` around each element's (volatile) load: the bare cost of a
/// synchronized array read per element.
#[inline(never)]
pub fn spin_load_sum(lock: &SpinLock, buf: &[i32]) -> i64 {
    let mut sum = 0i64;
    for x in buf {
        lock.lock();
        // SAFETY: `x` is a valid, aligned reference to an initialized `i32`.
        let v = unsafe { ptr::read_volatile(x) };
        lock.unlock();
        sum = sum.wrapping_add(i64::from(v));
    }
    sum
}

/// An anonymous `MAP_SHARED` mapping, inherited by forked children.
#[derive(Debug)]
pub struct SharedMap {
    ptr: *mut u8,
    len: usize,
}

impl SharedMap {
    /// Maps `len` zeroed bytes.
    ///
    /// # Panics
    /// If `mmap` fails.
    pub fn new(len: usize) -> SharedMap {
        // SAFETY: a fresh anonymous mapping aliases nothing.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(p != libc::MAP_FAILED, "mmap failed");
        SharedMap { ptr: p.cast(), len }
    }

    /// The atomic `u64` at byte `offset` (8-byte aligned, inside the mapping).
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        assert!(offset.is_multiple_of(8) && offset + 8 <= self.len);
        let p = self.ptr.wrapping_add(offset).cast::<AtomicU64>();
        // SAFETY: in bounds and aligned (checked above); the mapping is zero-initialized and
        // lives as long as `self`; all access to it goes through atomics.
        unsafe { &*p }
    }

    /// The atomic `u32` at byte `offset` (4-byte aligned, inside the mapping).
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(offset.is_multiple_of(4) && offset + 4 <= self.len);
        let p = self.ptr.wrapping_add(offset).cast::<AtomicU32>();
        // SAFETY: as in `u64_at`.
        unsafe { &*p }
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Forks a child that runs `f` then `_exit(0)`s; returns the child's pid.
///
/// The caller must be single-threaded (benchmark processes are), and `f` should only touch
/// shared memory and make system calls.
fn fork_child(f: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the benchmark process is single-threaded when it forks, so the child inherits
    // no lock held by another thread.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        f();
        // SAFETY: ends the child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(0) };
    }
    pid
}

/// Waits for child `pid` to exit.
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out pointer; `pid` is our child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// `FUTEX_WAIT` on `word` while it equals `expected` (shared futex: no `FUTEX_PRIVATE_FLAG`).
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid aligned u32 in a shared mapping; a null timeout waits forever.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ptr::null::<libc::timespec>(),
        )
    };
}

/// `FUTEX_WAKE` one waiter on `word`.
fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a valid aligned u32 in a shared mapping.
    unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1) };
}

const PARENT: u32 = 0;
const CHILD: u32 = 1;
const STOP: u32 = 2;

/// A bare futex ping-pong between this process and a forked child: each round trip is one
/// wake and one wait on each side.
#[derive(Debug)]
pub struct FutexPingPong {
    map: SharedMap,
    child: libc::pid_t,
}

impl FutexPingPong {
    /// Maps the turn word and forks the echoing child.
    pub fn new() -> FutexPingPong {
        let map = SharedMap::new(4096);
        let turn = map.u32_at(0);
        let child = fork_child(|| {
            loop {
                let mut t = turn.load(Ordering::Acquire);
                while t == PARENT {
                    futex_wait(turn, PARENT);
                    t = turn.load(Ordering::Acquire);
                }
                if t == STOP {
                    return;
                }
                turn.store(PARENT, Ordering::Release);
                futex_wake(turn);
            }
        });
        FutexPingPong { map, child }
    }

    /// Performs `n` round trips.
    pub fn round_trips(&self, n: u64) {
        let turn = self.map.u32_at(0);
        for _ in 0..n {
            turn.store(CHILD, Ordering::Release);
            futex_wake(turn);
            while turn.load(Ordering::Acquire) == CHILD {
                futex_wait(turn, CHILD);
            }
        }
    }
}

impl Default for FutexPingPong {
    fn default() -> Self {
        FutexPingPong::new()
    }
}

impl Drop for FutexPingPong {
    fn drop(&mut self) {
        let turn = self.map.u32_at(0);
        turn.store(STOP, Ordering::Release);
        futex_wake(turn);
        reap(self.child);
    }
}

/// Busy-waits (with a short spin, then yielding the core) until `done()` holds. Yielding
/// matters on a loaded 2-core machine: a pure spinner can burn its whole time slice while the
/// peer it waits for is not running.
#[inline]
fn wait_until(mut done: impl FnMut() -> bool) {
    let mut spins = 0u32;
    while !done() {
        if spins < 200 {
            spins += 1;
            spin_loop();
        } else {
            yield_now();
        }
    }
}

/// Size of one ring message.
pub const MSG: usize = 256;
const SLOTS: usize = 256;
const HEAD: usize = 0;
const TAIL: usize = 64;
const RING_STOP: usize = 128;
const SLOT0: usize = 256;

/// One 64-byte aligned 256-byte message (both ends of every copy stay 64-byte aligned).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct Message(pub [u8; MSG]);

/// A bare single-producer single-consumer ring of 256-byte messages in a shared mapping, this
/// process producing and a forked child consuming (busy-waiting on both sides, yielding the core after a short spin).
#[derive(Debug)]
pub struct Ring {
    map: SharedMap,
    child: libc::pid_t,
    head: u64,
    msg: Message,
}

impl Ring {
    /// Maps the ring and forks the consumer.
    pub fn new() -> Ring {
        let map = SharedMap::new(SLOT0 + SLOTS * MSG);
        let base = map.ptr;
        let head = map.u64_at(HEAD);
        let tail = map.u64_at(TAIL);
        let stop = map.u64_at(RING_STOP);
        let child = fork_child(|| {
            let mut out = Message([0; MSG]);
            let mut t = 0u64;
            loop {
                wait_until(|| {
                    head.load(Ordering::Acquire) != t || stop.load(Ordering::Relaxed) != 0
                });
                if head.load(Ordering::Acquire) == t {
                    return;
                }
                let slot = SLOT0 + (t as usize % SLOTS) * MSG;
                let src = base.wrapping_add(slot);
                // SAFETY: the slot is inside the mapping, 64-byte aligned, and owned by the
                // consumer until `tail` moves past it (acquire on `head` above).
                unsafe { ptr::copy_nonoverlapping(src, out.0.as_mut_ptr(), MSG) };
                black_box(&mut out);
                t += 1;
                tail.store(t, Ordering::Release);
            }
        });
        Ring {
            map,
            child,
            head: 0,
            msg: Message([7; MSG]),
        }
    }

    /// Sends `n` messages and waits until the consumer has copied them all out.
    pub fn send(&mut self, n: u64) {
        let tail = self.map.u64_at(TAIL);
        let head = self.map.u64_at(HEAD);
        for _ in 0..n {
            wait_until(|| self.head - tail.load(Ordering::Acquire) < SLOTS as u64);
            let slot = SLOT0 + (self.head as usize % SLOTS) * MSG;
            self.msg.0[0] = self.head as u8;
            let dst = self.map.ptr.wrapping_add(slot);
            // SAFETY: the slot is inside the mapping, 64-byte aligned, and free (the consumer
            // released it: acquire on `tail` above).
            unsafe { ptr::copy_nonoverlapping(self.msg.0.as_ptr(), dst, MSG) };
            self.head += 1;
            head.store(self.head, Ordering::Release);
        }
        wait_until(|| tail.load(Ordering::Acquire) == self.head);
    }
}

impl Default for Ring {
    fn default() -> Self {
        Ring::new()
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        self.map.u64_at(RING_STOP).store(1, Ordering::Relaxed);
        reap(self.child);
    }
}

/// A kernel pipe ping-pong: one byte each way through two pipes, a forked child echoing.
#[derive(Debug)]
pub struct PipePingPong {
    to_child: libc::c_int,
    from_child: libc::c_int,
    child: libc::pid_t,
}

fn pipe_pair() -> [libc::c_int; 2] {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert!(r == 0, "pipe2 failed");
    fds
}

fn close(fd: libc::c_int) {
    // SAFETY: `fd` is a descriptor this process owns and no longer uses.
    unsafe { libc::close(fd) };
}

fn read_byte(fd: libc::c_int) -> bool {
    let mut b = 0u8;
    // SAFETY: reads one byte into a valid local.
    let r = unsafe { libc::read(fd, (&raw mut b).cast(), 1) };
    r == 1
}

fn write_byte(fd: libc::c_int) {
    let b = 1u8;
    // SAFETY: writes one byte from a valid local.
    let r = unsafe { libc::write(fd, (&raw const b).cast(), 1) };
    assert!(r == 1, "pipe write failed");
}

impl PipePingPong {
    /// Makes the pipes and forks the echoing child.
    pub fn new() -> PipePingPong {
        let [c_read, p_write] = pipe_pair();
        let [p_read, c_write] = pipe_pair();
        let child = fork_child(|| {
            close(p_write);
            close(p_read);
            while read_byte(c_read) {
                write_byte(c_write);
            }
        });
        close(c_read);
        close(c_write);
        PipePingPong {
            to_child: p_write,
            from_child: p_read,
            child,
        }
    }

    /// Performs `n` round trips.
    pub fn round_trips(&self, n: u64) {
        for _ in 0..n {
            write_byte(self.to_child);
            assert!(read_byte(self.from_child), "pipe echo child died");
        }
    }
}

impl Default for PipePingPong {
    fn default() -> Self {
        PipePingPong::new()
    }
}

impl Drop for PipePingPong {
    fn drop(&mut self) {
        close(self.to_child);
        reap(self.child);
        close(self.from_child);
    }
}

/// `posix_spawn`s `/bin/true` and waits for it.
pub fn posix_spawn_true() {
    let path = c"/bin/true";
    let argv = [path.as_ptr().cast_mut(), ptr::null_mut()];
    let envp = [ptr::null_mut::<libc::c_char>()];
    let mut pid: libc::pid_t = 0;
    // SAFETY: `path` is NUL-terminated; `argv` and `envp` are null-terminated arrays of valid
    // C strings; null file actions and attributes mean the defaults.
    let r = unsafe {
        libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            ptr::null(),
            ptr::null(),
            argv.as_ptr(),
            envp.as_ptr(),
        )
    };
    assert!(r == 0, "posix_spawn failed: {r}");
    reap(pid);
}

/// Forks a child that `_exit(0)`s at once and waits for it.
pub fn fork_exit_wait() {
    let pid = fork_child(|| {});
    reap(pid);
}

/// A process-shared `pthread_mutex_t` in its own shared mapping, optionally robust
/// (`PTHREAD_MUTEX_ROBUST`: the next locker gets `EOWNERDEAD` if the owner dies).
#[derive(Debug)]
pub struct PthreadMutex {
    map: SharedMap,
}

impl PthreadMutex {
    /// Initializes a process-shared mutex, robust if `robust`.
    ///
    /// # Panics
    /// If an attribute call or `pthread_mutex_init` fails.
    pub fn new(robust: bool) -> PthreadMutex {
        let map = SharedMap::new(4096);
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is valid storage for an attribute object.
        let r = unsafe { libc::pthread_mutexattr_init(attr.as_mut_ptr()) };
        assert_eq!(r, 0, "pthread_mutexattr_init");
        // SAFETY: `attr` was initialized above.
        let r = unsafe {
            libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED)
        };
        assert_eq!(r, 0, "pthread_mutexattr_setpshared");
        if robust {
            // SAFETY: `attr` was initialized above.
            let r = unsafe {
                libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST)
            };
            assert_eq!(r, 0, "pthread_mutexattr_setrobust");
        }
        // SAFETY: the mapping is page aligned and far larger than a `pthread_mutex_t`, unused
        // by anyone else; `attr` is initialized.
        let r = unsafe { libc::pthread_mutex_init(map.ptr.cast(), attr.as_ptr()) };
        assert_eq!(r, 0, "pthread_mutex_init");
        // SAFETY: `attr` is initialized and no longer needed.
        unsafe { libc::pthread_mutexattr_destroy(attr.as_mut_ptr()) };
        PthreadMutex { map }
    }

    /// Locks and unlocks the mutex `n` times.
    pub fn cycles(&self, n: u64) {
        let m = self.map.ptr.cast::<libc::pthread_mutex_t>();
        for _ in 0..n {
            // SAFETY: `m` is the mutex initialized in `new`, alive as long as `self`.
            let r = unsafe { libc::pthread_mutex_lock(black_box(m)) };
            debug_assert_eq!(r, 0);
            // SAFETY: this thread holds the mutex (locked just above).
            unsafe { libc::pthread_mutex_unlock(m) };
        }
    }
}

impl Drop for PthreadMutex {
    fn drop(&mut self) {
        // SAFETY: the mutex is initialized and unlocked (every `cycles` unlocks what it locks).
        unsafe { libc::pthread_mutex_destroy(self.map.ptr.cast()) };
    }
}

/// A bare busy-wait ping-pong between this process and a forked child: each side spins on one
/// shared word (yielding the core after a while, so a descheduled peer can run): the floor of
/// any spinning transport.
#[derive(Debug)]
pub struct SpinPingPong {
    map: SharedMap,
    child: libc::pid_t,
}

impl SpinPingPong {
    /// Maps the turn word and forks the echoing child.
    pub fn new() -> SpinPingPong {
        let map = SharedMap::new(4096);
        let turn = map.u32_at(0);
        let child = fork_child(|| {
            loop {
                wait_until(|| turn.load(Ordering::Acquire) != PARENT);
                if turn.load(Ordering::Acquire) == STOP {
                    return;
                }
                turn.store(PARENT, Ordering::Release);
            }
        });
        SpinPingPong { map, child }
    }

    /// Performs `n` round trips.
    pub fn round_trips(&self, n: u64) {
        let turn = self.map.u32_at(0);
        for _ in 0..n {
            turn.store(CHILD, Ordering::Release);
            wait_until(|| turn.load(Ordering::Acquire) != CHILD);
        }
    }
}

impl Default for SpinPingPong {
    fn default() -> Self {
        SpinPingPong::new()
    }
}

impl Drop for SpinPingPong {
    fn drop(&mut self) {
        self.map.u32_at(0).store(STOP, Ordering::Release);
        reap(self.child);
    }
}

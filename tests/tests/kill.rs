//! The kill suite: children SIGKILLed at random points while holding a lock, updating a
//! `Value`, allocating and freeing in the heap, or mutating a `Dict` or `List`; after each kill: no hang (watchdog), the
//! lock reports `OwnerDied` and then works, the heap stays consistent, nothing leaks.
//!
//! Iterations default to a few hundred (the suite stays well under a minute);
//! `SHMPROC_KILL_ITERS=<n>` sets the count for the deep check.

#![allow(clippy::unwrap_used, clippy::print_stderr)] // tests: a failed unwrap is the assertion

use shmproc::fuzzing::concurrent::{self, Op, Schedule};
use shmproc::heap_testing::TestHeap;
use shmproc::testing::{ForkPermit, assert_no_leaks, fork, set_liveness_probe_fault, watchdog};
use shmproc::{Array, Dict, List, Lock, Queue, RLock, RawArray, RawValue, Segment, Slot, Value};
use shmproc_tests::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn iters(default: u64) -> u64 {
    std::env::var("SHMPROC_KILL_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A watchdog limit that grows with the iteration count (never an upper bound on speed:
/// only a net for hangs).
fn limit(n: u64) -> Duration {
    Duration::from_secs(120) + Duration::from_millis(200) * u32::try_from(n).unwrap_or(u32::MAX)
}

/// Waits until the writer has acknowledged an operation past `from` in slot `i` of `acked`
/// (at most 5 s): on a loaded machine a forked writer can take longer to start than the random
/// delay before its kill, and a round whose writer never ran tests nothing.
fn await_first_ack(acked: &RawArray<u64>, i: usize, from: u64) {
    let t = Instant::now();
    while acked.get(i).unwrap() == from && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_micros(20));
    }
}

/// The suite's generator: seeded from `SHMPROC_KILL_SEED` (to replay a run) or the pid.
fn kill_rng() -> Rng {
    let seed = std::env::var("SHMPROC_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| (u64::from(std::process::id()) * 0x9e37_79b9) | 1);
    eprintln!("kill suite seed: {seed} (SHMPROC_KILL_SEED to replay)");
    Rng::from_state(seed)
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::yield_now();
    }
}

fn spin_for(micros: u64) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_micros(micros) {
        std::hint::spin_loop();
    }
}

/// A holder killed inside `lock()` makes the next `lock()` return `OwnerDied`; then the lock
/// works normally.
#[test]
fn kill_lock_holder_reports_owner_died_then_works() {
    let n = iters(200);
    watchdog(limit(n), "kill_lock_holder", || {
        assert_no_leaks(|| {
            let seg = Segment::create(1 << 20).unwrap();
            let lock = Lock::new_in(&seg).unwrap();
            let holding = RawValue::new_in(&seg, 0u32).unwrap();
            let mut rng = kill_rng();
            for i in 0..n {
                holding.set(0);
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut child = fork(unsafe { ForkPermit::new() }, || {
                    let _g = lock.lock().unwrap_or_else(|d| d.into_inner());
                    holding.set(1);
                    loop {
                        std::hint::spin_loop();
                    }
                });
                wait_until("the child to hold the lock", || holding.get() == 1);
                spin_for(rng.below(300));
                assert_eq!(child.kill(), Err(9));
                match lock.lock() {
                    Err(died) => drop(died.into_inner()),
                    Ok(_) => panic!("iteration {i}: no OwnerDied after the holder was killed"),
                }
                // Fully usable again, and the death is reported once.
                assert!(lock.lock().is_ok(), "iteration {i}");
                assert!(lock.try_lock().ok().flatten().is_some(), "iteration {i}");
                assert!(!lock.is_locked());
            }
        })
    });
}

/// while the liveness probe fails (no `/proc`, `EMFILE`), a lock is never handed to
/// a second holder, whether its holder lives or was killed: the waiter times out instead.
/// Once the probe works again, the dead holder is detected. (The fault switch is
/// process-wide; nextest runs each test in a process of its own.)
#[test]
fn failing_liveness_probe_never_grants_a_held_lock() {
    watchdog(Duration::from_secs(120), "failing_liveness_probe", || {
        assert_no_leaks(|| {
            let seg = Segment::create(1 << 20).unwrap();
            let lock = Lock::new_in(&seg).unwrap();
            let rlock = RLock::new_in(&seg).unwrap();
            let holding = RawValue::new_in(&seg, 0u32).unwrap();
            let wait = Duration::from_millis(150);
            for errno in [libc::ENOENT, libc::EMFILE] {
                holding.set(0);
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut child = fork(unsafe { ForkPermit::new() }, || {
                    let _g = lock.lock().unwrap_or_else(|d| d.into_inner());
                    let _r = rlock.lock().unwrap_or_else(|d| d.into_inner());
                    holding.set(1);
                    loop {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                });
                wait_until("the child to hold the locks", || holding.get() == 1);
                set_liveness_probe_fault(Some(errno));
                // The holder lives: nobody else gets in.
                assert!(matches!(lock.try_lock(), Ok(None)), "errno {errno}");
                assert!(matches!(lock.lock_timeout(wait), Ok(None)), "errno {errno}");
                assert!(
                    matches!(rlock.lock_timeout(wait), Ok(None)),
                    "errno {errno}"
                );
                // The holder is killed, but the probe cannot tell: still nobody gets in.
                assert_eq!(child.kill(), Err(9));
                let start = Instant::now();
                assert!(matches!(lock.lock_timeout(wait), Ok(None)), "errno {errno}");
                assert!(start.elapsed() >= wait);
                assert!(matches!(rlock.try_lock(), Ok(None)), "errno {errno}");
                assert!(
                    matches!(rlock.lock_timeout(wait), Ok(None)),
                    "errno {errno}"
                );
                // The probe works again: the dead holder is found.
                set_liveness_probe_fault(None);
                match lock.lock_timeout(Duration::from_secs(10)) {
                    Err(died) => drop(died.into_inner()),
                    Ok(g) => panic!("errno {errno}: expected OwnerDied, got {}", g.is_some()),
                }
                match rlock.lock_timeout(Duration::from_secs(10)) {
                    Err(died) => drop(died.into_inner()),
                    Ok(g) => panic!("errno {errno}: expected OwnerDied, got {}", g.is_some()),
                }
                assert!(!lock.is_locked() && !rlock.is_locked());
            }
        })
    });
}

/// Children increment a `Value` under its lock and acknowledge each increment; one is killed
/// at a random point. The count is never below the acknowledged total, at most one above,
/// and the lock always works afterwards.
#[test]
fn kill_value_updater_at_random_points() {
    let n = iters(200);
    watchdog(limit(n), "kill_value_updater", || {
        assert_no_leaks(|| {
            let seg = Segment::create(1 << 20).unwrap();
            let value = Value::new_in(&seg, 0u64).unwrap();
            let acked = RawValue::new_in(&seg, 0u64).unwrap();
            let started = RawValue::new_in(&seg, 0u32).unwrap();
            let mut rng = kill_rng();
            let mut owner_died = 0;
            for i in 0..n {
                started.set(0);
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut victim = fork(unsafe { ForkPermit::new() }, || {
                    started.set(1);
                    loop {
                        let mut g = value.lock().unwrap_or_else(|d| d.into_inner());
                        *g += 1;
                        drop(g);
                        acked.set(acked.get() + 1);
                    }
                });
                // A survivor contends for the same lock while the victim dies.
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut survivor = fork(unsafe { ForkPermit::new() }, || {
                    for _ in 0..50 {
                        drop(value.lock().unwrap_or_else(|d| d.into_inner()));
                    }
                    0
                });
                wait_until("the victim to start", || started.get() == 1);
                spin_for(rng.below(500));
                assert_eq!(victim.kill(), Err(9));
                assert_eq!(survivor.wait(), Ok(0), "iteration {i}: survivor failed");
                let count = match value.lock() {
                    Ok(g) => *g,
                    Err(d) => {
                        owner_died += 1;
                        *d.into_inner()
                    }
                };
                let a = acked.get();
                assert!(
                    count == a || count == a + 1,
                    "iteration {i}: count {count}, acked {a}"
                );
                // Resynchronize: the unacknowledged increment (if any) is now acknowledged.
                acked.set(count);
                assert!(value.lock().is_ok(), "iteration {i}: lock unusable");
            }
            eprintln!("{n} kills; the final check saw OwnerDied {owner_died} times");
        })
    });
}

/// A child allocating, writing, checking and freeing in a heap is killed at a random point;
/// the heap stays consistent: at most the one block in flight is lost, the byte count is off
/// by at most that block, nothing is both free and live, and allocation works afterwards.
#[test]
fn kill_heap_user_at_random_points() {
    let n = iters(200);
    watchdog(limit(n), "kill_heap_user", || {
        assert_no_leaks(|| {
            let mut rng = kill_rng();
            let flags = Segment::create(1 << 16).unwrap();
            let started = RawValue::new_in(&flags, 0u32).unwrap();
            let heap = TestHeap::new(4 << 20).unwrap();
            let start = heap.stats().used;
            for i in 0..n {
                started.set(0);
                let seed = rng.next();
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut child = fork(unsafe { ForkPermit::new() }, || {
                    let mut x = seed | 1;
                    let mut live: Vec<(u64, u64, u64)> = Vec::new();
                    started.set(1);
                    for j in 0u64.. {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if live.len() < 8 && x.is_multiple_of(2) {
                            let size = [8, 100, 700, 5000][(x >> 8) as usize % 4];
                            let align = 1 << ((x >> 12) % 9);
                            if let Ok(off) = heap.alloc(size, align) {
                                heap.fill(off, 0, size.min(64), j).unwrap();
                                live.push((off, size.min(64), j));
                            }
                        } else if !live.is_empty() {
                            let (off, len, s) = live.swap_remove((x >> 16) as usize % live.len());
                            if !heap.check(off, 0, len, s).unwrap() {
                                return 3;
                            }
                            heap.free(off).unwrap();
                        }
                    }
                    0
                });
                wait_until("the child to start", || started.get() == 1);
                spin_for(rng.below(400));
                // Reaping releases what the child held, wherever inside alloc/free it died.
                assert_eq!(
                    child.kill(),
                    Err(9),
                    "iteration {i}: child found corruption"
                );
                let r = heap
                    .walk()
                    .unwrap_or_else(|e| panic!("iteration {i}: heap corrupt: {e}"));
                let used = heap.stats().used;
                assert_eq!(r.lost_blocks, 0, "iteration {i}: {r:?}");
                assert_eq!(used, r.live_bytes, "iteration {i}: {r:?}");
                assert_eq!(used, start, "iteration {i}: the dead child's blocks leaked");
                // Allocation still works in every class the child used.
                for size in [8, 100, 700, 5000] {
                    if let Ok(off) = heap.alloc(size, 8) {
                        heap.free(off).unwrap();
                    }
                }
            }
            eprintln!("{n} kills; used bytes {start} before and after");
        })
    });
}

fn holder_kills(default: u64) -> u64 {
    std::env::var("SHMPROC_HOLDER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Children SIGKILLed at random points while holding references to arrays, queues and pipes
/// (clones of the parent's and their own) and while allocating and freeing: once each is
/// reaped, the heap's used bytes are back where they started, and once the parent drops its
/// own handles, back to the empty heap's. `SHMPROC_HOLDER_KILLS` sets the rounds (30; the
/// deep check runs 1,000).
#[test]
fn killed_holders_of_arrays_queues_and_pipes_leave_used_bytes_unchanged() {
    let n = holder_kills(30);
    watchdog(limit(n), "killed_holders", || {
        assert_no_leaks(|| {
            let mut rng = kill_rng();
            let seg = Segment::create(64 << 20).unwrap();
            let empty = seg.stats().used;
            let flags = Segment::create(1 << 16).unwrap();
            let started = RawValue::new_in(&flags, 0u32).unwrap();
            let arr = Array::<u64>::new_in(&seg, 4096).unwrap();
            let q = Queue::<u64>::with_capacity_in(&seg, 64).unwrap();
            // Pipes live in the default heap, which the children share (mapped before forking).
            let default = shmproc::default_segment().unwrap();
            let (mine, theirs) = shmproc::pipe().unwrap();
            let start = seg.stats().used;
            let default_start = default.stats().used;
            for i in 0..n {
                started.set(0);
                let seed = rng.next();
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut child = fork(unsafe { ForkPermit::new() }, || {
                    let mut x = seed | 1;
                    let mut arrays = Vec::new();
                    let mut queues = Vec::new();
                    let mut clones = Vec::new();
                    let mut pipes = Vec::new();
                    started.set(1);
                    loop {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if (x >> 40).is_multiple_of(16) {
                            pipes.push(shmproc::pipe().unwrap());
                            if pipes.len() > 4 {
                                pipes.swap_remove(0);
                            }
                        }
                        match x % 8 {
                            0 => arrays.push(
                                Array::<u8>::new_in(&seg, (x >> 8) as usize % 70_000).unwrap(),
                            ),
                            1 => queues.push(
                                Queue::<u64>::with_capacity_in(&seg, 1 + (x >> 8) as usize % 300)
                                    .unwrap(),
                            ),
                            2 => clones.push((arr.clone(), q.clone())),
                            3 => {
                                let _ = q.try_put(&x);
                            }
                            4 => {
                                let _ = q.try_get();
                            }
                            5 if !arrays.is_empty() => {
                                drop(arrays.swap_remove((x >> 8) as usize % arrays.len()))
                            }
                            6 if !queues.is_empty() => {
                                drop(queues.swap_remove((x >> 8) as usize % queues.len()))
                            }
                            _ if !clones.is_empty() => {
                                drop(clones.swap_remove((x >> 8) as usize % clones.len()))
                            }
                            _ => {}
                        }
                        if arrays.len() > 16 {
                            arrays.clear();
                        }
                        if queues.len() > 8 {
                            queues.clear();
                        }
                        if clones.len() > 32 {
                            clones.clear();
                        }
                    }
                });
                wait_until("the child to start", || started.get() == 1);
                spin_for(rng.below(2000));
                assert_eq!(child.kill(), Err(9), "iteration {i}");
                let used = seg.stats().used;
                assert_eq!(
                    used, start,
                    "iteration {i}: the dead child's references leaked"
                );
                assert_eq!(
                    default.stats().used,
                    default_start,
                    "iteration {i}: the dead child's pipes leaked"
                );
                while q.try_get().is_ok() {}
            }
            let r = TestHeap::on(&seg).walk().unwrap();
            assert_eq!(r.lost_blocks, 0, "{r:?}");
            eprintln!(
                "{n} kills; used bytes: {start} before, {} after (empty heap {empty})",
                seg.stats().used
            );
            drop((arr, q, mine, theirs));
            assert_eq!(
                seg.stats().used,
                empty,
                "the parent's handles were the last"
            );
        })
    });
}

/// Random concurrent schedules (all primitives, 2–4 processes) with kill points, checked by
/// the concurrent fuzzer's invariants.
#[test]
fn kill_concurrent_schedules() {
    let n = iters(200) / 5;
    watchdog(limit(n * 5), "kill_concurrent_schedules", || {
        let mut rng = kill_rng();
        let (mut killed, mut died) = (0, 0);
        for _ in 0..n {
            let procs = 2 + rng.below(3) as usize;
            let ops = (0..procs)
                .map(|_| (0..8).map(|_| Op::decode(rng.next() as u8)).collect())
                .collect();
            let kills = (0..procs)
                .map(|_| (rng.below(2) == 0).then(|| rng.below(8) as u32))
                .collect();
            let r = concurrent::run(&Schedule { procs: ops, kills });
            killed += r.killed;
            died += r.owner_died;
        }
        eprintln!("{n} schedules: {killed} processes killed, {died} OwnerDied reported");
        assert!(n < 5 || killed > 0, "no schedule killed anything");
    });
}

/// A holder killed while other processes wait: every waiter gets the lock (one of them with
/// `OwnerDied`), nobody hangs.
#[test]
fn kill_holder_with_waiters_wakes_them() {
    let n = iters(200) / 10;
    watchdog(limit(n * 10), "kill_holder_with_waiters", || {
        assert_no_leaks(|| {
            let seg = Segment::create(1 << 20).unwrap();
            let lock = Lock::new_in(&seg).unwrap();
            let holding = RawValue::new_in(&seg, 0u32).unwrap();
            let died = RawValue::new_in(&seg, 0u32).unwrap();
            for i in 0..n {
                holding.set(0);
                died.set(0);
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut holder = fork(unsafe { ForkPermit::new() }, || {
                    let _g = lock.lock().unwrap_or_else(|d| d.into_inner());
                    holding.set(1);
                    loop {
                        std::hint::spin_loop();
                    }
                });
                wait_until("the holder", || holding.get() == 1);
                let mut waiters: Vec<_> = (0..3)
                    .map(|_| {
                        // SAFETY: no other thread of this process holds a lock that the child takes.
                        fork(unsafe { ForkPermit::new() }, || {
                            if lock.lock().is_err() {
                                died.set(died.get() + 1);
                            }
                            0
                        })
                    })
                    .collect();
                std::thread::sleep(Duration::from_millis(2));
                assert_eq!(holder.kill(), Err(9));
                for w in &mut waiters {
                    assert_eq!(w.wait(), Ok(0), "iteration {i}");
                }
                assert_eq!(
                    died.get(),
                    1,
                    "iteration {i}: exactly one waiter sees OwnerDied"
                );
                assert!(lock.lock().is_ok());
            }
        })
    });
}

/// The `n`-th operation of writer `p` in the dictionary kill test.
fn dict_step(d: &Dict<(u64, u64), u64>, p: u64, n: u64) {
    if n % 5 == 4 {
        d.remove(&(p, (n * 7) % 61)).unwrap();
    } else {
        d.insert((p, n % 61), n).unwrap();
    }
}

/// The model: what writer `p`'s keys hold after its operations `start..end` on an empty map.
fn dict_model(p: u64, start: u64, end: u64) -> BTreeMap<(u64, u64), u64> {
    let mut m = BTreeMap::new();
    for n in start..end {
        if n % 5 == 4 {
            m.remove(&(p, (n * 7) % 61));
        } else {
            m.insert((p, n % 61), n);
        }
    }
    m
}

/// Writers SIGKILLed at random points inside `insert`/`remove`/grow and `push`/`insert`
/// (a table copy): the containers match the acknowledged operations (plus at most the one in
/// flight), stay usable, and the heap grows by at most about one small entry per kill.
#[test]
fn kill_writers_mid_mutation_keeps_containers_consistent() {
    // At most 1,000 rounds (2,000 kills).
    let rounds = iters(30).min(1000);
    watchdog(limit(rounds), "kill_containers", || {
        assert_no_leaks(|| {
            let seg = Segment::create(256 << 20).unwrap();
            let acked = RawArray::<u64>::new_in(&seg, 4).unwrap();
            let before = seg.stats().used;
            let d = Dict::<(u64, u64), u64>::new_in(&seg).unwrap();
            let l = List::<(u64, u64)>::new_in(&seg).unwrap();
            let mut next = [0u64; 2];
            let mut next_push = [0u64; 2];
            let rounds = rounds as u32;
            for round in 0..rounds {
                // The counts a writer acknowledges start where this round starts: a writer
                // killed before its first acknowledgement must not leave last round's count
                // (one short if last round's op in flight had finished).
                for p in 0..2usize {
                    acked.set(p, next[p]).unwrap();
                    acked.set(2 + p, next_push[p]).unwrap();
                }
                let mut kids: Vec<_> = (0..2u64)
                    .map(|p| {
                        let (d, l, acked) = (d.clone(), l.clone(), acked.clone());
                        let (start, pstart) = (next[p as usize], next_push[p as usize]);
                        // SAFETY: no other thread of this process holds a lock that the child
                        // takes.
                        fork(unsafe { ForkPermit::new() }, move || {
                            let (mut n, mut i) = (start, pstart);
                            loop {
                                dict_step(&d, p, n);
                                n += 1;
                                acked.set(p as usize, n).unwrap();
                                if i % 4 == 3 {
                                    l.insert(0, (p, i)).unwrap();
                                } else {
                                    l.push((p, i)).unwrap();
                                }
                                i += 1;
                                acked.set(2 + p as usize, i).unwrap();
                            }
                        })
                    })
                    .collect();
                for (p, &from) in next_push.iter().enumerate() {
                    await_first_ack(&acked, 2 + p, from);
                }
                let t = Duration::from_micros(200 + u64::from(round % 11) * 150);
                std::thread::sleep(t);
                for k in &mut kids {
                    assert_eq!(k.kill(), Err(9));
                }
                let items: BTreeMap<(u64, u64), u64> = d.items().unwrap().into_iter().collect();
                let pushed = l.to_vec().unwrap();
                assert_eq!(d.len().unwrap(), items.len());
                for p in 0..2u64 {
                    let a = acked.get(p as usize).unwrap();
                    let mine: BTreeMap<_, _> = items
                        .iter()
                        .filter(|((q, _), _)| *q == p)
                        .map(|(k, v)| (*k, *v))
                        .collect();
                    let start = next[p as usize];
                    let done = if mine == dict_model(p, start, a) {
                        a
                    } else if mine == dict_model(p, start, a + 1) {
                        a + 1
                    } else {
                        panic!(
                            "round {round}: writer {p}'s keys match neither {a} nor {} ops",
                            a + 1
                        );
                    };
                    next[p as usize] = done;
                    let a = acked.get(2 + p as usize).unwrap();
                    let got: BTreeSet<u64> = pushed
                        .iter()
                        .filter(|(q, _)| *q == p)
                        .map(|e| e.1)
                        .collect();
                    let n = pushed.iter().filter(|(q, _)| *q == p).count() as u64;
                    assert_eq!(n, got.len() as u64, "round {round}: an element twice");
                    let pstart = next_push[p as usize];
                    let want: BTreeSet<u64> = (pstart..pstart + n).collect();
                    assert_eq!(got, want, "round {round}: writer {p}'s elements");
                    assert!(
                        pstart + n == a || pstart + n == a + 1,
                        "round {round}: writer {p} has {n} elements from {pstart}, acked {a}"
                    );
                    next_push[p as usize] = pstart + n;
                }
                // Start every round empty, so growth is exercised again.
                d.clear().unwrap();
                l.clear().unwrap();
            }
            assert!(next.iter().sum::<u64>() > 0, "writers never got to write");
            // Still usable.
            d.insert((9, 9), 9).unwrap();
            l.push((9, 9)).unwrap();
            assert_eq!(d.get(&(9, 9)).unwrap(), Some(9));
            drop((d, l));
            let leaked = seg.stats().used - before;
            eprintln!(
                "{rounds} rounds, {} kills, {} dict and {} list operations: {leaked} bytes lost \
                 ({} per kill)",
                2 * rounds,
                next.iter().sum::<u64>(),
                next_push.iter().sum::<u64>(),
                leaked / u64::from(2 * rounds)
            );
            // Blocks a killed writer was allocating or freeing belong to its holder record and
            // are released when it is reaped, so what stays lost is at most about one small
            // entry per kill (measured: 11 bytes per kill on average over 600 kills).
            let per_kill = 1024u64;
            assert!(
                leaked <= u64::from(2 * rounds) * per_kill,
                "{leaked} bytes lost in {} kills (at most {per_kill} each)",
                2 * rounds
            );
        })
    });
}

/// A writer killed while its list grows and shrinks around the quarter threshold (`pop`,
/// `remove(0)` and `truncate` give back half the table, `push` doubles it): the list is always
/// a run of consecutive numbers, one mutation from the last acknowledged state, and stays
/// usable; each kill loses at most one block.
#[test]
fn kill_writer_while_list_shrinks_keeps_it_consistent() {
    let rounds = iters(40).min(1000);
    watchdog(limit(rounds), "kill_list_shrink", || {
        assert_no_leaks(|| {
            let seg = Segment::create(64 << 20).unwrap();
            let acked = RawArray::<u64>::new_in(&seg, 2).unwrap();
            let before = seg.stats().used;
            let l = List::<u64>::new_in(&seg).unwrap();
            let mut rng = kill_rng();
            let mut ops = 0u64;
            for round in 0..rounds {
                let (l2, acked2) = (l.clone(), acked.clone());
                acked.set(0, 0).unwrap();
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut kid = fork(unsafe { ForkPermit::new() }, move || {
                    let mut n = 0u64;
                    loop {
                        // Up to 70 (a table of 128), then down to 3, by pops, front removals
                        // and halvings: every shrink path, over and over.
                        while l2.len().unwrap() < 70 {
                            let v = l2.to_vec().unwrap();
                            l2.push(v.last().map_or(0, |x| x + 1)).unwrap();
                            n += 1;
                            acked2.set(0, n).unwrap();
                        }
                        while l2.len().unwrap() > 3 {
                            match n % 3 {
                                0 => drop(l2.pop().unwrap()),
                                1 => drop(l2.remove(0).unwrap()),
                                _ => l2.truncate(l2.len().unwrap() / 2).unwrap(),
                            }
                            n += 1;
                            acked2.set(0, n).unwrap();
                        }
                    }
                });
                await_first_ack(&acked, 0, 0);
                std::thread::sleep(Duration::from_micros(rng.below(3000) + 100));
                assert_eq!(kid.kill(), Err(9));
                ops += acked.get(0).unwrap();
                let v = l.to_vec().unwrap();
                assert_eq!(v.len(), l.len().unwrap());
                assert!(
                    v.windows(2).all(|w| w[1] == w[0] + 1),
                    "round {round}: not a run of consecutive numbers: {v:?}"
                );
                assert!(v.len() <= 70, "round {round}: {} elements", v.len());
            }
            assert!(ops > 0, "the writer never got to write");
            // Still usable, across the thresholds.
            l.clear().unwrap();
            l.extend(0..100).unwrap();
            l.truncate(10).unwrap();
            assert_eq!(l.to_vec().unwrap(), (0..10).collect::<Vec<_>>());
            drop(l);
            let leaked = seg.stats().used - before;
            eprintln!("{rounds} kills, {ops} list operations: {leaked} bytes lost");
            // At most one block per kill: a table of at most 129 words, or an entry.
            assert!(
                leaked <= rounds * 2048,
                "{leaked} bytes lost in {rounds} kills"
            );
        })
    });
}

/// One worker of [`kill_lock_users_mid_handoff`]: takes `lock` again and again (its owner record
/// changes hands every time another worker got it in between), marks itself inside, and counts
/// in `bad` any grant that finds another holder still inside without an `OwnerDied`.
fn handoff_worker(
    lock: &Lock,
    inside: &RawValue<u32>,
    bad: &RawValue<u32>,
    rounds: &RawValue<u64>,
) -> ! {
    let me = std::process::id();
    loop {
        let g = match lock.lock() {
            Ok(g) => {
                // A clean grant: the previous holder left, so nobody is inside.
                if inside.get() != 0 {
                    bad.set(bad.get() + 1);
                }
                g
            }
            // A killed holder may have been inside: that is what OwnerDied reports.
            Err(died) => died.into_inner(),
        };
        inside.set(me);
        for _ in 0..(me % 7) * 10 {
            std::hint::spin_loop();
        }
        if inside.get() != me {
            bad.set(bad.get() + 1);
        }
        inside.set(0);
        rounds.set(rounds.get() + 1);
        drop(g);
    }
}

/// Processes hand a lock back and forth as fast as they can (so its owner record changes
/// hands all the time) and are SIGKILLed at random moments: in the middle of acquiring
/// (between the compare-exchange and the record store), releasing, or inside. No grant ever
/// finds another holder inside without `OwnerDied`, and after all are killed the lock is
/// taken again (the last holder, if any, reported as dead), never left locked.
#[test]
fn kill_lock_users_mid_handoff() {
    let n = iters(200);
    watchdog(limit(n), "kill_lock_users_mid_handoff", || {
        assert_no_leaks(|| {
            let seg = Segment::create(1 << 20).unwrap();
            let lock = Lock::new_in(&seg).unwrap();
            let inside = RawValue::new_in(&seg, 0u32).unwrap();
            let bad = RawValue::new_in(&seg, 0u32).unwrap();
            let rounds = RawValue::new_in(&seg, 0u64).unwrap();
            let mut rng = kill_rng();
            let spawn = || {
                // SAFETY: no other thread of this process holds a lock that the child takes.
                fork(unsafe { ForkPermit::new() }, || {
                    handoff_worker(&lock, &inside, &bad, &rounds)
                })
            };
            let mut workers: Vec<_> = (0..3).map(|_| spawn()).collect();
            for _ in 0..n {
                spin_for(rng.below(2000));
                let k = rng.below(workers.len() as u64) as usize;
                assert_eq!(workers[k].kill(), Err(9));
                workers[k] = spawn();
            }
            for w in &mut workers {
                assert_eq!(w.kill(), Err(9));
            }
            assert_eq!(
                bad.get(),
                0,
                "a lock was granted while another holder was inside"
            );
            assert!(rounds.get() > 0, "the workers made no progress");
            // All are dead: the lock is free or held by a dead worker, never stuck.
            match lock.lock_timeout(Duration::from_secs(30)) {
                Ok(Some(g)) => drop(g),
                Err(died) => drop(died.into_inner()),
                Ok(None) => panic!("the lock stayed held after every user was killed"),
            }
            eprintln!("{n} kills, {} grants", rounds.get());
        })
    });
}

/// Operation `n` of the mixed kill test on `(d, l)`: `update_with` (change and remove),
/// `insert`, `remove`, `get_or_insert_with`, `clear`, and `List::insert` in the middle, `push`,
/// `set`, `remove(0)`, `truncate`, and `Slot::set` and `Slot::update_with`. Deterministic given the state, so `mixed_model` replays it.
fn mixed_step(d: &Dict<u64, u64>, l: &List<u64>, s: &Slot<Vec<u64>>, n: u64) {
    match n % 11 {
        0 => d
            .update_with(&(n % 13), |v| *v = Some(v.unwrap_or(0) + n))
            .unwrap(),
        1 => drop(d.insert(n % 13, n).unwrap()),
        2 => drop(d.remove(&((n * 7) % 13)).unwrap()),
        3 => drop(d.get_or_insert_with(n % 17, || n).unwrap()),
        4 if n % 40 == 4 => d.clear().unwrap(),
        4 => d.update_with(&((n * 3) % 13), |v| *v = None).unwrap(),
        5 => {
            let len = l.len().unwrap();
            l.insert(len / 2, n).unwrap();
        }
        6 => l.push(n).unwrap(),
        7 => {
            let len = l.len().unwrap();
            if len > 0 {
                l.set((n as usize) % len, n).unwrap();
            }
        }
        8 if l.len().unwrap() > 30 => l.truncate(8).unwrap(),
        8 => l.push(n).unwrap(),
        9 if n.is_multiple_of(3) => s.set(vec![n]).unwrap(),
        9 => s.update_with(|v| slot_step(v, n)).unwrap(),
        _ => {
            if l.len().unwrap() > 0 {
                l.remove(0).unwrap();
            }
        }
    }
}

/// The slot's change by `update_with` in `mixed_step`.
fn slot_step(v: &mut Vec<u64>, n: u64) {
    if v.len() >= 20 {
        v.clear();
    } else {
        v.push(n);
    }
}

/// `mixed_step` on a model.
fn mixed_model(d: &mut BTreeMap<u64, u64>, l: &mut Vec<u64>, s: &mut Vec<u64>, n: u64) {
    match n % 11 {
        0 => *d.entry(n % 13).or_insert(0) += n,
        1 => drop(d.insert(n % 13, n)),
        2 => drop(d.remove(&((n * 7) % 13))),
        3 => drop(*d.entry(n % 17).or_insert(n)),
        4 if n % 40 == 4 => d.clear(),
        4 => drop(d.remove(&((n * 3) % 13))),
        5 => l.insert(l.len() / 2, n),
        6 => l.push(n),
        7 => {
            let len = l.len();
            if len > 0 {
                l[(n as usize) % len] = n;
            }
        }
        8 if l.len() > 30 => l.truncate(8),
        8 => l.push(n),
        9 if n.is_multiple_of(3) => *s = vec![n],
        9 => slot_step(s, n),
        _ => {
            if !l.is_empty() {
                l.remove(0);
            }
        }
    }
}

/// A writer SIGKILLed at random points of a mix of every dictionary and list mutation
/// (`update_with`, `clear`, `get_or_insert_with`, a list insert in the middle, `set`,
/// `truncate`, a slot's `set` and `update_with`, ...), often right at its start, while it completes or rolls back the mutation the
/// writer killed before it left (its `FRESH` block or its intent): both containers match the
/// acknowledged operations (plus at most the one in flight), and the heap grows by at most
/// about one entry per kill.
#[test]
fn kill_writer_mid_mixed_mutations_keeps_containers_consistent() {
    let rounds = iters(60).min(1000);
    watchdog(limit(rounds), "kill_mixed", || {
        assert_no_leaks(|| {
            let seg = Segment::create(64 << 20).unwrap();
            let acked = RawArray::<u64>::new_in(&seg, 1).unwrap();
            let before = seg.stats().used;
            let d = Dict::<u64, u64>::new_in(&seg).unwrap();
            let l = List::<u64>::new_in(&seg).unwrap();
            let sl = Slot::<Vec<u64>>::new_in(&seg, Vec::new()).unwrap();
            let mut rng = kill_rng();
            let (mut next, mut early) = (0u64, 0u64);
            // The containers' state at the last check.
            let (mut prev_d, mut prev_l, mut prev_s) = (BTreeMap::new(), Vec::new(), Vec::new());
            for round in 0..rounds {
                acked.set(0, next).unwrap();
                let (d2, l2, s2, acked2) = (d.clone(), l.clone(), sl.clone(), acked.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                let mut kid = fork(unsafe { ForkPermit::new() }, move || {
                    let mut n = next;
                    loop {
                        mixed_step(&d2, &l2, &s2, n);
                        n += 1;
                        acked2.set(0, n).unwrap();
                    }
                });
                // Every third round the kill comes within a few microseconds: often inside the
                // repair of the previous kill's mutation.
                if round % 3 == 0 {
                    spin_for(rng.below(60));
                } else {
                    await_first_ack(&acked, 0, next);
                    std::thread::sleep(Duration::from_micros(rng.below(2000) + 50));
                }
                assert_eq!(kid.kill(), Err(9));
                let a = acked.get(0).unwrap();
                early += u64::from(a == next);
                let items: BTreeMap<u64, u64> = d.items().unwrap().into_iter().collect();
                let list = l.to_vec().unwrap();
                let slot = sl.get().unwrap();
                assert_eq!(d.len().unwrap(), items.len(), "round {round}: len");
                assert_eq!(l.len().unwrap(), list.len(), "round {round}: list len");
                // The state at the round's start is what the last check found; replay the
                // acknowledged operations (and the one in flight) from it.
                let (mut md, mut ml, mut ms) = (prev_d.clone(), prev_l.clone(), prev_s.clone());
                for n in next..a {
                    mixed_model(&mut md, &mut ml, &mut ms, n);
                }
                let done = if md == items && ml == list && ms == slot {
                    a
                } else {
                    mixed_model(&mut md, &mut ml, &mut ms, a);
                    assert!(
                        md == items && ml == list && ms == slot,
                        "round {round}: state matches neither {a} nor {} operations:\n\
                         dict {items:?}\nmodel {md:?}\nlist {list:?}\nmodel {ml:?}\n\
                         slot {slot:?}\nmodel {ms:?}",
                        a + 1
                    );
                    a + 1
                };
                (prev_d, prev_l, prev_s) = (items, list, slot);
                next = done;
            }
            assert!(next > 0, "the writer never got to write");
            eprintln!("{rounds} kills ({early} before a first acknowledgement), {next} operations");
            d.clear().unwrap();
            l.clear().unwrap();
            d.insert(1, 1).unwrap();
            assert_eq!(d.get(&1).unwrap(), Some(1));
            sl.set(Vec::new()).unwrap();
            drop((d, l, sl));
            let leaked = seg.stats().used - before;
            eprintln!("{leaked} bytes lost in {rounds} kills");
            // At most about one block per kill: an entry, or a table of a list of at most
            // 31 elements (a list insert that grows its table prepares two blocks).
            assert!(
                leaked <= rounds * 1024,
                "{leaked} bytes lost in {rounds} kills"
            );
        })
    });
}

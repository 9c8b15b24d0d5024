//! Synchronization primitives between real processes: CPython's behaviours, and robustness to
//! processes killed while holding or waiting.

use shmproc::testing::{ForkPermit, assert_no_leaks, fork, watchdog};
use shmproc::{
    Array, Barrier, BoundedSemaphore, Condition, Error, Event, Lock, RLock, RawValue, Semaphore,
};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(60);
const KILL_ROUNDS: usize = 5;

fn run(name: &str, f: impl FnOnce()) {
    watchdog(LIMIT, name, || assert_no_leaks(f));
}

/// Spins (sleeping 1 ms at a time) until `f` holds.
fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn rlock_needs_as_many_releases_as_acquires() {
    run("rlock_counts", || {
        let l = RLock::new().unwrap();
        for _ in 0..3 {
            l.acquire().unwrap();
        }
        assert_eq!(l.depth(), 3);
        l.release().unwrap();
        l.release().unwrap();
        assert!(l.is_locked());
        l.release().unwrap();
        assert!(!l.is_locked());
        assert!(matches!(l.release(), Err(Error::NotOwner)));
        let g1 = l.lock().unwrap();
        let g2 = l.try_lock().unwrap().unwrap();
        drop(g1);
        assert_eq!(l.depth(), 1);
        drop(g2);
        assert!(!l.is_locked());
    });
}

#[test]
fn rlock_held_in_another_process_blocks_try_and_timed_acquire() {
    run("rlock_other_process", || {
        let l = RLock::new().unwrap();
        let state = RawValue::new(0u32).unwrap();
        let (l2, s2) = (l.clone(), state.clone());
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut child = fork(unsafe { ForkPermit::new() }, move || {
            l2.acquire().unwrap();
            l2.acquire().unwrap();
            s2.set(1);
            until(|| s2.get() == 2);
            // A release too many from a non-owner process is refused first.
            l2.release().unwrap();
            l2.release().unwrap();
            0
        });
        until(|| state.get() == 1);
        assert!(!l.try_acquire().unwrap());
        assert!(matches!(l.release(), Err(Error::NotOwner)));
        let t = Instant::now();
        assert!(!l.acquire_timeout(Duration::from_millis(100)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(100));
        state.set(2);
        assert!(l.acquire_timeout(Duration::from_secs(20)).unwrap());
        l.release().unwrap();
        assert_eq!(child.wait(), Ok(0));
    });
}

#[test]
fn semaphore_values_go_down_and_up() {
    run("semaphore_values", || {
        let s = Semaphore::new(2).unwrap();
        assert_eq!(s.value(), 2);
        assert!(s.try_acquire());
        assert_eq!(s.value(), 1);
        s.acquire();
        assert_eq!(s.value(), 0);
        assert!(!s.try_acquire());
        let t = Instant::now();
        assert!(!s.acquire_timeout(Duration::from_millis(50)));
        assert!(t.elapsed() >= Duration::from_millis(50));
        for v in 1..=4 {
            s.release().unwrap();
            assert_eq!(s.value(), v);
        }
        let b = BoundedSemaphore::new(2).unwrap();
        assert!(matches!(
            b.release(),
            Err(Error::SemaphoreOverRelease { limit: 2 })
        ));
        b.acquire();
        b.release().unwrap();
        assert!(b.release().is_err());
        assert_eq!(b.value(), 2);
    });
}

#[test]
fn semaphore_release_in_one_process_wakes_a_waiter_in_another() {
    run("semaphore_cross", || {
        let s = Semaphore::new(0).unwrap();
        let done = RawValue::new(0u32).unwrap();
        let kids: Vec<_> = (0..2)
            .map(|_| {
                let (s2, d2) = (s.clone(), done.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                fork(unsafe { ForkPermit::new() }, move || {
                    for _ in 0..500 {
                        s2.acquire();
                    }
                    d2.set(1);
                    0
                })
            })
            .collect();
        for _ in 0..1000 {
            s.release().unwrap();
        }
        for mut k in kids {
            assert_eq!(k.wait(), Ok(0));
        }
        assert_eq!(s.value(), 0);
    });
}

/// Three processes wait; `notify(1)` releases exactly one, `notify_all` the other two.
#[test]
fn notify_one_wakes_exactly_one_of_three_waiting_processes() {
    run("notify_one", || {
        let cond = Condition::new().unwrap();
        let ready = RawValue::new(0u32).unwrap();
        let woken = RawValue::new(0u32).unwrap();
        let kids: Vec<_> = (0..3)
            .map(|_| {
                let (c, r, w) = (cond.clone(), ready.clone(), woken.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                fork(unsafe { ForkPermit::new() }, move || {
                    let mut g = c.lock().unwrap();
                    r.set(r.get() + 1);
                    c.wait(&mut g).unwrap();
                    w.set(w.get() + 1);
                    0
                })
            })
            .collect();
        // All three have registered once `ready` is 3 under the lock (each registers before
        // releasing the lock it incremented `ready` under).
        until(|| {
            let _g = cond.lock().unwrap();
            ready.get() == 3
        });
        {
            let _g = cond.lock().unwrap();
            cond.notify(1).unwrap();
        }
        until(|| woken.get() == 1);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(woken.get(), 1, "notify(1) woke more than one waiter");
        {
            let _g = cond.lock().unwrap();
            cond.notify_all().unwrap();
        }
        for mut k in kids {
            assert_eq!(k.wait(), Ok(0));
        }
        assert_eq!(woken.get(), 3);
    });
}

#[test]
fn wait_for_sees_a_predicate_set_by_another_process() {
    run("wait_for", || {
        for lock_kind in 0..2 {
            let cond = if lock_kind == 0 {
                Condition::with_lock(Lock::new().unwrap()).unwrap()
            } else {
                Condition::with_lock(RLock::new().unwrap()).unwrap()
            };
            let flag = RawValue::new(0u32).unwrap();
            let (c, f) = (cond.clone(), flag.clone());
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                std::thread::sleep(Duration::from_millis(20));
                let _g = c.lock().unwrap();
                f.set(1);
                c.notify_all().unwrap();
                0
            });
            let mut g = cond.lock().unwrap();
            let _inner = if lock_kind == 1 {
                Some(cond.lock().unwrap()) // an RLock level that wait must release and restore
            } else {
                None
            };
            assert!(
                cond.wait_for(&mut g, || flag.get() == 1, Some(Duration::from_secs(20)))
                    .unwrap()
            );
            let t = Instant::now();
            assert!(
                !cond
                    .wait_for(&mut g, || flag.get() == 2, Some(Duration::from_millis(50)))
                    .unwrap()
            );
            assert!(t.elapsed() >= Duration::from_millis(50));
            drop(_inner);
            drop(g);
            assert_eq!(child.wait(), Ok(0));
        }
    });
}

#[test]
fn condition_refuses_notify_without_the_lock_and_foreign_guards() {
    run("condition_not_owner", || {
        let a = Condition::new().unwrap();
        let b = Condition::new().unwrap();
        assert!(matches!(a.notify(1), Err(Error::NotOwner)));
        assert!(matches!(a.notify_all(), Err(Error::NotOwner)));
        let mut gb = b.lock().unwrap();
        assert!(matches!(
            a.wait_timeout(&mut gb, Duration::from_millis(1)),
            Err(Error::NotOwner)
        ));
    });
}

#[test]
fn event_set_in_one_process_releases_waiters_in_others() {
    run("event", || {
        let ev = Event::new().unwrap();
        let t = Instant::now();
        assert!(!ev.wait(Some(Duration::from_millis(50))));
        assert!(t.elapsed() >= Duration::from_millis(50));
        let kids: Vec<_> = (0..3)
            .map(|_| {
                let e = ev.clone();
                // SAFETY: no other thread of this process holds a lock that the child takes.
                fork(unsafe { ForkPermit::new() }, move || {
                    if e.wait(Some(Duration::from_secs(30))) {
                        0
                    } else {
                        1
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        ev.set();
        assert!(ev.is_set());
        for mut k in kids {
            assert_eq!(k.wait(), Ok(0));
        }
        ev.clear();
        assert!(!ev.is_set());
    });
}

/// Five processes pass a barrier hundreds of times in lockstep; the action runs once a pass.
#[test]
fn heavy_five_processes_pass_a_barrier_in_lockstep() {
    run("barrier_lockstep", || {
        const PASSES: u32 = 300;
        let rounds = Array::<u32>::new(5).unwrap();
        let seen = Array::<u32>::new(5).unwrap();
        let actions = RawValue::new(0u32).unwrap();
        let a2 = actions.clone();
        let barrier = Barrier::with_action(5, move || a2.set(a2.get() + 1)).unwrap();
        let kids: Vec<_> = (0..5usize)
            .map(|me| {
                let (b, r, s) = (barrier.clone(), rounds.clone(), seen.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                fork(unsafe { ForkPermit::new() }, move || {
                    for round in 0..PASSES {
                        r.set(me, round).unwrap();
                        let i = b.wait_timeout(Duration::from_secs(30)).unwrap();
                        s.lock().unwrap()[i as usize] += 1;
                        if r.to_vec().unwrap().iter().any(|&x| x != round) {
                            return 2;
                        }
                        let i = b.wait_timeout(Duration::from_secs(30)).unwrap();
                        s.lock().unwrap()[i as usize] += 1;
                    }
                    0
                })
            })
            .collect();
        for mut k in kids {
            assert_eq!(k.wait(), Ok(0));
        }
        assert_eq!(seen.to_vec().unwrap(), [2 * PASSES; 5]);
        assert_eq!(actions.get(), 2 * PASSES);
        assert!(!barrier.is_broken());
    });
}

#[test]
fn abort_breaks_the_barrier_for_every_waiter_and_reset_repairs_it() {
    run("barrier_abort", || {
        let barrier = Barrier::new(4).unwrap();
        let kids: Vec<_> = (0..3)
            .map(|_| {
                let b = barrier.clone();
                // SAFETY: no other thread of this process holds a lock that the child takes.
                fork(unsafe { ForkPermit::new() }, move || match b.wait() {
                    Err(Error::BrokenBarrier) => 0,
                    _ => 1,
                })
            })
            .collect();
        until(|| barrier.n_waiting() == 3);
        barrier.abort();
        assert!(barrier.is_broken());
        for mut k in kids {
            assert_eq!(k.wait(), Ok(0));
        }
        assert!(matches!(barrier.wait(), Err(Error::BrokenBarrier)));
        barrier.reset();
        assert!(!barrier.is_broken());
        assert_eq!(barrier.n_waiting(), 0);
        let kids: Vec<_> = (0..3)
            .map(|_| {
                let b = barrier.clone();
                // SAFETY: no other thread of this process holds a lock that the child takes.
                fork(unsafe { ForkPermit::new() }, move || {
                    b.wait_timeout(Duration::from_secs(30)).map_or(1, |_| 0)
                })
            })
            .collect();
        barrier.wait_timeout(Duration::from_secs(30)).unwrap();
        for mut k in kids {
            assert_eq!(k.wait(), Ok(0));
        }
    });
}

#[test]
fn barrier_timeout_breaks_it_for_every_waiter() {
    run("barrier_timeout", || {
        let barrier = Barrier::new(4).unwrap();
        let kids: Vec<_> = (0..2)
            .map(|_| {
                let b = barrier.clone();
                // SAFETY: no other thread of this process holds a lock that the child takes.
                fork(unsafe { ForkPermit::new() }, move || match b.wait() {
                    Err(Error::BrokenBarrier) => 0,
                    _ => 1,
                })
            })
            .collect();
        until(|| barrier.n_waiting() == 2);
        let t = Instant::now();
        assert!(matches!(
            barrier.wait_timeout(Duration::from_millis(100)),
            Err(Error::BrokenBarrier)
        ));
        assert!(t.elapsed() >= Duration::from_millis(100));
        for mut k in kids {
            assert_eq!(k.wait(), Ok(0));
        }
    });
}

#[test]
fn handles_round_trip_through_tokens_and_serde() {
    run("tokens", || {
        let r = RLock::new().unwrap();
        assert!(RLock::from_token(&r.token()).unwrap().same_as(&r));
        let s = Semaphore::new(3).unwrap();
        assert!(Semaphore::from_token(&s.token()).unwrap().same_as(&s));
        assert!(matches!(
            BoundedSemaphore::from_token(&s.token()),
            Err(Error::TypeMismatch { .. })
        ));
        let e = Event::new().unwrap();
        assert!(Event::from_token(&e.token()).unwrap().same_as(&e));
        let b = Barrier::new(3).unwrap();
        let b2 = Barrier::from_token(&b.token()).unwrap();
        assert!(b2.same_as(&b) && b2.parties() == 3);
        let c = Condition::with_lock(r.clone()).unwrap();
        let bytes = shmproc::codec::to_bytes(&c).unwrap();
        let c2: Condition = shmproc::codec::from_bytes(&bytes).unwrap();
        assert!(c2.same_as(&c));
    });
}

// ---- SIGKILL loops -------------------------------------------------------------------------

#[test]
fn kill_rlock_holder_reports_owner_died() {
    run("kill_rlock", || {
        let l = RLock::new().unwrap();
        for _ in 0..KILL_ROUNDS {
            let ready = RawValue::new(0u32).unwrap();
            let (l2, r2) = (l.clone(), ready.clone());
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                l2.acquire().unwrap();
                l2.acquire().unwrap();
                r2.set(1);
                std::thread::sleep(Duration::from_secs(600));
                0
            });
            until(|| ready.get() == 1);
            assert_eq!(child.kill(), Err(9));
            match l.lock() {
                Err(died) => {
                    assert_eq!(l.depth(), 1);
                    drop(died.into_inner());
                }
                Ok(_) => panic!("expected OwnerDied"),
            }
            assert!(!l.is_locked());
            drop(l.lock().unwrap());
        }
    });
}

#[test]
fn kill_condition_lock_holder_reports_owner_died_to_the_waiter() {
    run("kill_condition_holder", || {
        let cond = Condition::new().unwrap();
        for _ in 0..KILL_ROUNDS {
            let ready = RawValue::new(0u32).unwrap();
            let mut g = cond.lock().unwrap();
            let (c2, r2) = (cond.clone(), ready.clone());
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                let _g = c2.lock().unwrap();
                c2.notify(1).unwrap();
                r2.set(1);
                std::thread::sleep(Duration::from_secs(600));
                0
            });
            let pid = child.pid();
            let r3 = ready.clone();
            let killer = std::thread::spawn(move || {
                until(|| r3.get() == 1);
                std::thread::sleep(Duration::from_millis(20));
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            });
            match cond.wait(&mut g) {
                Err(Error::OwnerDied { .. }) => {}
                other => panic!("expected OwnerDied, got {other:?}"),
            }
            killer.join().unwrap();
            assert_eq!(child.wait(), Err(9));
            drop(g);
            drop(cond.lock().unwrap());
        }
    });
}

#[test]
fn kill_condition_waiter_never_blocks_the_others() {
    run("kill_condition_waiter", || {
        let cond = Condition::new().unwrap();
        for _ in 0..KILL_ROUNDS {
            let ready = RawValue::new(0u32).unwrap();
            let mut kids: Vec<_> = (0..3)
                .map(|_| {
                    let (c, r) = (cond.clone(), ready.clone());
                    // SAFETY: no other thread of this process holds a lock that the child takes.
                    fork(unsafe { ForkPermit::new() }, move || {
                        let mut g = c.lock().unwrap();
                        r.set(r.get() + 1);
                        match c.wait_timeout(&mut g, Duration::from_secs(30)) {
                            Ok(true) => 0,
                            _ => 1,
                        }
                    })
                })
                .collect();
            until(|| {
                let _g = cond.lock().unwrap();
                ready.get() == 3
            });
            assert_eq!(kids[0].kill(), Err(9));
            {
                let _g = cond.lock().unwrap();
                cond.notify_all().unwrap();
            }
            for k in &mut kids[1..] {
                assert_eq!(k.wait(), Ok(0));
            }
            // Usable afterwards: a fresh waiter is released by notify(1).
            let (c, r) = (cond.clone(), ready.clone());
            r.set(0);
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut k = fork(unsafe { ForkPermit::new() }, move || {
                let mut g = c.lock().unwrap();
                r.set(1);
                c.wait_for(&mut g, || r.get() == 2, Some(Duration::from_secs(30)))
                    .map_or(1, |ok| if ok { 0 } else { 1 })
            });
            until(|| {
                let _g = cond.lock().unwrap();
                ready.get() == 1
            });
            {
                let _g = cond.lock().unwrap();
                ready.set(2);
                cond.notify(1).unwrap();
            }
            assert_eq!(k.wait(), Ok(0));
        }
    });
}

#[test]
fn kill_event_waiter_never_blocks_the_others() {
    run("kill_event_waiter", || {
        for _ in 0..KILL_ROUNDS {
            let ev = Event::new().unwrap();
            let mut kids: Vec<_> = (0..2)
                .map(|_| {
                    let e = ev.clone();
                    // SAFETY: no other thread of this process holds a lock that the child takes.
                    fork(unsafe { ForkPermit::new() }, move || {
                        if e.wait(Some(Duration::from_secs(30))) {
                            0
                        } else {
                            1
                        }
                    })
                })
                .collect();
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(kids[0].kill(), Err(9));
            ev.set();
            assert_eq!(kids[1].wait(), Ok(0));
            ev.clear();
            assert!(!ev.wait(Some(Duration::from_millis(10))));
        }
    });
}

#[test]
fn kill_barrier_waiter_breaks_later_passes_and_reset_repairs() {
    run("kill_barrier_waiter", || {
        let barrier = Barrier::new(3).unwrap();
        for _ in 0..KILL_ROUNDS {
            let b = barrier.clone();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut victim = fork(unsafe { ForkPermit::new() }, move || {
                let _ = b.wait();
                // Second pass: never reached by the killed process.
                let _ = b.wait();
                0
            });
            let b = barrier.clone();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut peer = fork(unsafe { ForkPermit::new() }, move || {
                if b.wait_timeout(Duration::from_secs(30)).is_err() {
                    return 1;
                }
                match b.wait_timeout(Duration::from_secs(30)) {
                    Err(Error::BrokenBarrier) => 0,
                    _ => 2,
                }
            });
            until(|| barrier.n_waiting() == 2);
            // The victim was counted, so this pass completes without it.
            assert_eq!(victim.kill(), Err(9));
            barrier.wait_timeout(Duration::from_secs(30)).unwrap();
            // The next pass cannot: the survivors time out and see it broken.
            until(|| barrier.n_waiting() == 1);
            assert!(matches!(
                barrier.wait_timeout(Duration::from_millis(50)),
                Err(Error::BrokenBarrier)
            ));
            assert_eq!(peer.wait(), Ok(0));
            barrier.reset();
            assert!(!barrier.is_broken());
        }
    });
}

#[test]
fn kill_barrier_leader_in_its_action_breaks_the_pass() {
    run("kill_barrier_leader", || {
        let parent = std::process::id();
        let in_action = RawValue::new(0u32).unwrap();
        let ia = in_action.clone();
        let barrier = Barrier::with_action(2, move || {
            if std::process::id() != parent {
                ia.set(1);
                std::thread::sleep(Duration::from_secs(600));
            }
        })
        .unwrap();
        for _ in 0..KILL_ROUNDS {
            in_action.set(0);
            let b = barrier.clone();
            // The parent arrives first and waits; the child arrives last and leads.
            let waiter = std::thread::spawn({
                let b = barrier.clone();
                move || b.wait()
            });
            until(|| barrier.n_waiting() == 1);
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                b.wait().map_or(1, |_| 0)
            });
            until(|| in_action.get() == 1);
            assert_eq!(child.kill(), Err(9));
            assert!(matches!(waiter.join().unwrap(), Err(Error::BrokenBarrier)));
            assert!(barrier.is_broken());
            barrier.reset();
        }
    });
}

#[test]
fn kill_semaphore_waiter_loses_nothing_and_dead_holder_is_documented_loss() {
    run("kill_semaphore", || {
        let sem = Semaphore::new(0).unwrap();
        for _ in 0..KILL_ROUNDS {
            let s2 = sem.clone();
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut waiter = fork(unsafe { ForkPermit::new() }, move || {
                s2.acquire();
                0
            });
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(waiter.kill(), Err(9));
            sem.release().unwrap();
            assert_eq!(sem.value(), 1);
            assert!(sem.acquire_timeout(Duration::from_secs(5)));
        }
        // A holder that dies keeps its unit: the value stays down (as in Python).
        sem.release().unwrap();
        let s2 = sem.clone();
        let ready = RawValue::new(0u32).unwrap();
        let r2 = ready.clone();
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut holder = fork(unsafe { ForkPermit::new() }, move || {
            s2.acquire();
            r2.set(1);
            std::thread::sleep(Duration::from_secs(600));
            0
        });
        until(|| ready.get() == 1);
        assert_eq!(holder.kill(), Err(9));
        assert!(!sem.acquire_timeout(Duration::from_millis(50)));
    });
}

/// Two processes hand a turn back and forth through one condition many times.
#[test]
fn heavy_condition_ping_pong_between_two_processes() {
    run("condition_ping_pong", || {
        const ROUNDS: u32 = 20_000;
        let cond = Condition::new().unwrap();
        let turn = RawValue::new(0u32).unwrap();
        let (c2, t2) = (cond.clone(), turn.clone());
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut peer = fork(unsafe { ForkPermit::new() }, move || {
            let mut g = c2.lock().unwrap();
            loop {
                while t2.get() == 0 {
                    c2.wait(&mut g).unwrap();
                }
                if t2.get() == 2 {
                    return 0;
                }
                t2.set(0);
                c2.notify(1).unwrap();
            }
        });
        let mut g = cond.lock().unwrap();
        for _ in 0..ROUNDS {
            turn.set(1);
            cond.notify(1).unwrap();
            while turn.get() == 1 {
                cond.wait(&mut g).unwrap();
            }
        }
        turn.set(2);
        cond.notify(1).unwrap();
        drop(g);
        assert_eq!(peer.wait(), Ok(0));
    });
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Signals interrupt the futex waits (`EINTR`), but every timed wait still lasts its full
/// timeout: the waits loop against one absolute monotonic deadline.
#[test]
fn timed_waits_last_their_timeout_under_a_storm_of_signals() {
    run("eintr", || {
        // SAFETY: a zeroed `sigaction` is a valid "no flags, empty mask" value to fill in.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as usize;
        // SAFETY: installs a handler that does nothing (async-signal-safe) for SIGUSR1.
        let rc = unsafe { libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()) };
        assert_eq!(rc, 0);
        // SAFETY: `pthread_self` has no preconditions.
        let me = unsafe { libc::pthread_self() };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let storm = {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // SAFETY: `me` is the test thread, alive until `stop` is set and this
                    // thread joined.
                    unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let d = Duration::from_millis(150);
        let ev = Event::new().unwrap();
        let t = Instant::now();
        assert!(!ev.wait(Some(d)));
        assert!(t.elapsed() >= d);
        let sem = Semaphore::new(0).unwrap();
        let t = Instant::now();
        assert!(!sem.acquire_timeout(d));
        assert!(t.elapsed() >= d);
        let cond = Condition::new().unwrap();
        let mut g = cond.lock().unwrap();
        let t = Instant::now();
        assert!(!cond.wait_timeout(&mut g, d).unwrap());
        assert!(t.elapsed() >= d);
        drop(g);
        let barrier = Barrier::new(2).unwrap();
        let t = Instant::now();
        assert!(barrier.wait_timeout(d).is_err());
        assert!(t.elapsed() >= d);
        let lock = RLock::new().unwrap();
        let l2 = lock.clone();
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let holder = fork(unsafe { ForkPermit::new() }, move || {
            l2.acquire().unwrap();
            std::thread::sleep(Duration::from_secs(2));
            0
        });
        let mut holder = holder;
        while !lock.is_locked() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let t = Instant::now();
        assert!(!lock.acquire_timeout(d).unwrap());
        assert!(t.elapsed() >= d);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        storm.join().unwrap();
        assert_eq!(holder.kill(), Err(9));
    });
}

fn wait_without_the_action(b: Barrier) -> bool {
    matches!(
        b.wait_timeout(Duration::from_secs(30)),
        Err(Error::BarrierActionMissing)
    )
}

fn wait_with_the_action((mut b, count): (Barrier, RawValue<u32>)) -> u32 {
    b.set_action(move || count.set(count.get() + 1));
    b.wait_timeout(Duration::from_secs(30)).unwrap()
}

/// Regression (issue 18): a spawned child whose barrier handle lacks the action used to break
/// the pass only when it happened to arrive last (a timing-dependent `BrokenBarrier`). Now
/// its every wait is `BarrierActionMissing` at once, without arriving; a child that calls
/// `set_action` leads the pass and runs the action itself.
#[test]
fn a_barrier_handle_without_its_action_is_refused_whatever_the_arrival_order() {
    run("barrier_action_missing", || {
        let count = RawValue::new(0u32).unwrap();
        let barrier = Barrier::with_action(2, || {}).unwrap();
        let waiter = std::thread::spawn({
            let b = barrier.clone();
            move || b.wait_timeout(Duration::from_secs(30))
        });
        until(|| barrier.n_waiting() == 1);
        // This child would arrive last: refused, and the pass is not broken.
        let refused = shmproc::spawn(wait_without_the_action, barrier.clone()).unwrap();
        assert!(refused.join().unwrap());
        assert!(!barrier.is_broken());
        assert_eq!(barrier.n_waiting(), 1);
        let leader =
            shmproc::spawn(wait_with_the_action, (barrier.clone(), count.clone())).unwrap();
        assert_eq!(leader.join().unwrap(), 1);
        assert_eq!(waiter.join().unwrap().unwrap(), 0);
        assert_eq!(count.get(), 1, "the child's action ran once");
        // Also refused when nobody waits (it would have arrived first).
        let refused = shmproc::spawn(wait_without_the_action, barrier.clone()).unwrap();
        assert!(refused.join().unwrap());
        assert_eq!(barrier.n_waiting(), 0);
        assert!(!barrier.is_broken());
    });
}

// ---- Array range guards --------------------------------------------------------------------

/// Issue 18: two processes hold guards on disjoint ranges of one `Array` at the same time.
#[test]
fn array_disjoint_ranges_are_held_by_two_processes_at_once() {
    run("array_disjoint_ranges", || {
        let arr = Array::<u64>::new(100).unwrap();
        let state = RawValue::new(0u32).unwrap();
        let mut low = arr.lock_range(..50).unwrap().unwrap();
        let (a2, s2) = (arr.clone(), state.clone());
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut child = fork(unsafe { ForkPermit::new() }, move || {
            let mut high = a2.lock_range(50..).unwrap().unwrap();
            high.fill(2);
            // The parent's range is held: an overlapping one is refused at once.
            let overlapping = a2.try_lock_range(40..60).unwrap().unwrap().is_none();
            s2.set(if overlapping { 1 } else { 99 });
            until(|| s2.get() == 2);
            0
        });
        // The child got its range while this process holds the other half.
        until(|| state.get() != 0);
        assert_eq!(state.get(), 1, "the child took an overlapping range");
        low.fill(1);
        drop(low);
        state.set(2);
        assert_eq!(child.wait(), Ok(0));
        let v = arr.to_vec().unwrap();
        assert!(v[..50].iter().all(|&x| x == 1) && v[50..].iter().all(|&x| x == 2));
    });
}

/// Issue 18: a guard on an overlapping range, and whole-array access, wait for the holder in
/// another process.
#[test]
fn array_overlapping_range_waits_for_the_holder_in_another_process() {
    run("array_overlapping_range", || {
        let arr = Array::<u32>::new(20).unwrap();
        let state = RawValue::new(0u32).unwrap();
        let held = arr.lock_range(0..10).unwrap().unwrap();
        let (a2, s2) = (arr.clone(), state.clone());
        // SAFETY: no other thread of this process holds a lock that the child takes.
        let mut child = fork(unsafe { ForkPermit::new() }, move || {
            s2.set(1);
            let mut g = a2.lock_range(5..15).unwrap().unwrap();
            g[0] = 7;
            s2.set(2);
            drop(g);
            let whole = a2.get(5).unwrap();
            s2.set(3);
            i32::try_from(whole).unwrap()
        });
        until(|| state.get() == 1);
        let timed = arr
            .lock_range_timeout(9..10, Duration::from_millis(20))
            .unwrap()
            .unwrap();
        assert!(
            timed.is_none(),
            "this thread holds an overlapping guard: the timed form must time out"
        );
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            state.get(),
            1,
            "the overlapping range was granted while held"
        );
        drop(held);
        assert_eq!(child.wait(), Ok(7));
        assert_eq!(state.get(), 3);
    });
}

/// Issue 18: a range holder killed by SIGKILL does not keep its range forever: the next
/// overlapping guard, or whole-array lock, reports `OwnerDied` with the guard.
#[test]
fn kill_array_range_holder_reports_owner_died() {
    run("kill_array_range", || {
        let arr = Array::<u32>::new(64).unwrap();
        for round in 0..KILL_ROUNDS {
            let ready = RawValue::new(0u32).unwrap();
            let (a2, r2) = (arr.clone(), ready.clone());
            // SAFETY: no other thread of this process holds a lock that the child takes.
            let mut child = fork(unsafe { ForkPermit::new() }, move || {
                let mut g = a2.lock_range(10..20).unwrap().unwrap();
                g.fill(5);
                std::mem::forget(g);
                r2.set(1);
                std::thread::sleep(Duration::from_secs(600));
                0
            });
            until(|| ready.get() == 1);
            // A disjoint range is not affected.
            drop(arr.try_lock_range(20..).unwrap().unwrap().unwrap());
            assert_eq!(child.kill(), Err(9));
            if round % 2 == 0 {
                match arr.lock_range(15..25).unwrap() {
                    Err(died) => {
                        let g = died.into_inner();
                        assert_eq!(g.range(), 15..25);
                        assert_eq!(g[..5], [5; 5]);
                    }
                    Ok(_) => panic!("round {round}: expected OwnerDied"),
                }
            } else {
                match arr.lock() {
                    Err(died) => assert_eq!(died.into_inner()[10..20], [5; 10]),
                    Ok(_) => panic!("round {round}: expected OwnerDied from lock()"),
                }
            }
            // Recovered: the whole range is free again, and told only once.
            drop(arr.lock_range(..).unwrap().unwrap());
            assert_eq!(arr.get(10).unwrap(), 5);
        }
    });
}

/// Issue 18: a range outside the array is an error, not a guard or a panic.
#[test]
fn array_range_out_of_bounds_is_an_error() {
    run("array_range_bounds", || {
        let arr = Array::<u8>::new(8).unwrap();
        assert!(matches!(
            arr.lock_range(4..9),
            Err(Error::IndexOutOfBounds { index: 8, len: 8 })
        ));
        assert!(matches!(
            arr.try_lock_range(..=8),
            Err(Error::IndexOutOfBounds { len: 8, .. })
        ));
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = arr.lock_range_timeout(5..3, Duration::ZERO);
        assert!(matches!(backwards, Err(Error::InvalidSize { .. })));
        // An empty range locks nothing: the whole array stays available.
        let empty = arr.lock_range(8..).unwrap().unwrap();
        assert!(empty.is_empty());
        assert_eq!(arr.get(0).unwrap(), 0);
    });
}

/// Issue 18: processes taking random ranges (and now and then the whole array) never see
/// another holder's writes inside what they hold: each holder stamps its range with its id,
/// keeps checking it for a while, and checks it once more before releasing.
#[test]
fn array_range_guards_exclude_each_other_across_processes() {
    /// Whether `part` still holds `stamp` everywhere after a while of checking.
    fn intact(part: &[u64], stamp: u64) -> bool {
        (0..50).all(|_| {
            std::hint::spin_loop();
            part.iter().all(|&x| x == stamp)
        })
    }
    run("array_range_stress", || {
        const LEN: u64 = 64;
        const ROUNDS: u64 = 2000;
        let arr = Array::<u64>::new(LEN as usize).unwrap();
        let start_line = Barrier::new(3).unwrap();
        let children: Vec<_> = (1..=3u64)
            .map(|id| {
                let (a, b) = (arr.clone(), start_line.clone());
                // SAFETY: no other thread of this process holds a lock that the child takes.
                fork(unsafe { ForkPermit::new() }, move || {
                    b.wait_timeout(Duration::from_secs(30)).unwrap();
                    let mut rng = shmproc_tests::Rng::new(id);
                    for round in 0..ROUNDS {
                        let stamp = id << 32 | round;
                        if round % 17 == 0 {
                            let mut all = a.lock().unwrap();
                            all.fill(stamp);
                            if !intact(&all, stamp) {
                                return 1;
                            }
                            continue;
                        }
                        let start = rng.below(LEN) as usize;
                        let end = start + 1 + rng.below((LEN - start as u64).min(16)) as usize;
                        let mut part = a.lock_range(start..end).unwrap().unwrap();
                        part.fill(stamp);
                        if !intact(&part, stamp) {
                            return 2;
                        }
                    }
                    0
                })
            })
            .collect();
        for mut c in children {
            assert_eq!(
                c.wait(),
                Ok(0),
                "a holder saw another's writes in its range"
            );
        }
        drop(arr.lock_range(..).unwrap().unwrap());
    });
}

/// The calling thread's id, from `/proc/thread-self` (a link to `<pid>/task/<tid>`).
fn thread_id() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

/// Runs `f` on the first new thread of this process that gets the id `tid` (Linux hands ids
/// out cyclically up to `pid_max`, so spawning short threads comes back to it); `None` if no
/// thread got it before `limit`.
fn on_thread_with_id<R: Send + 'static>(
    tid: u32,
    limit: Duration,
    f: impl Fn() -> R + Send + Sync + 'static,
) -> Option<R> {
    let f = std::sync::Arc::new(f);
    let end = Instant::now() + limit;
    while Instant::now() < end {
        let f = std::sync::Arc::clone(&f);
        let got = std::thread::spawn(move || (thread_id() == tid).then(|| f()))
            .join()
            .unwrap();
        if got.is_some() {
            return got;
        }
    }
    None
}

/// A thread that takes a `Lock` and an `RLock` and exits holding them (guards leaked), and one
/// that released them before exiting (its record stays behind): a later thread of the same
/// process that gets the same thread id finds the first pair held, as any other thread would
/// (its process lives, so the leaked guards may too): no takeover, no self-deadlock panic, no
/// re-entry into the ended thread's `RLock`. It takes the second pair as its own, which nobody
/// else may then take over, and which stays held after it ends too.
#[test]
fn a_reused_thread_id_never_inherits_an_ended_threads_locks() {
    watchdog(Duration::from_secs(60), "reused_thread_id", || {
        // One attempt; false if no thread got the dead thread's id again in time.
        let attempt = || -> bool {
            let held = (Lock::new().unwrap(), RLock::new().unwrap());
            let released = (Lock::new().unwrap(), RLock::new().unwrap());
            let (h, r) = (held.clone(), released.clone());
            let tid = std::thread::spawn(move || {
                drop(r.0.lock().unwrap());
                drop(r.1.lock().unwrap());
                std::mem::forget(h.0.lock().unwrap());
                std::mem::forget(h.1.lock().unwrap());
                thread_id()
            })
            .join()
            .unwrap();
            let (h, r) = (held.clone(), released.clone());
            let outcome = on_thread_with_id(tid, Duration::from_secs(8), move || {
                let wait = Duration::from_millis(50);
                let lock_held = matches!(h.0.try_lock(), Ok(None))
                    && matches!(h.0.lock_timeout(wait), Ok(None));
                let rlock_held = matches!(h.1.try_lock(), Ok(None))
                    && matches!(h.1.lock_timeout(wait), Ok(None))
                    && matches!(h.1.release(), Err(Error::NotOwner));
                let rlock_depth = h.1.depth();
                let took = (
                    r.0.try_lock().unwrap().map(std::mem::forget).is_some(),
                    r.1.try_lock().unwrap().map(std::mem::forget).is_some(),
                );
                // While this thread lives, nobody else gets them (a stale record of the earlier
                // thread beside this thread's id would read as a dead owner).
                let r2 = r.clone();
                let others_took = std::thread::spawn(move || {
                    (
                        r2.0.try_lock().unwrap().is_some(),
                        r2.1.try_lock().unwrap().is_some(),
                    )
                })
                .join()
                .unwrap();
                (lock_held, rlock_held, rlock_depth, took, others_took)
            });
            let Some(outcome) = outcome else {
                // Another process took the id meanwhile: try again with a new dead thread.
                return false;
            };
            assert_eq!(outcome, (true, true, 0, (true, true), (false, false)));
            // The new thread exited holding `released`, in a process that lives: still held.
            let wait = Duration::from_millis(50);
            assert!(matches!(released.0.lock_timeout(wait), Ok(None)));
            assert!(matches!(released.1.lock_timeout(wait), Ok(None)));
            assert!(held.0.is_locked() && held.1.is_locked());
            true
        };
        assert!(
            (0..3).any(|_| attempt()),
            "no thread got a dead thread's id again"
        );
    });
}

/// A thread ends holding a `Lock` (its guard leaked); a later thread of the same process that
/// gets its id makes one timed attempt that gives up at once, and another thread tries while
/// the later one lives. Neither gets the lock: the holder's process lives, so its guard may
/// too, whichever thread has its id now.
#[test]
fn a_timed_out_attempt_by_a_reused_thread_id_leaves_a_leaked_guard_held() {
    watchdog(Duration::from_secs(60), "reused_id_timed_attempt", || {
        // One attempt; false if no thread got the dead thread's id again in time.
        let attempt = || -> bool {
            let lock = Lock::new().unwrap();
            let l = lock.clone();
            let tid = std::thread::spawn(move || {
                std::mem::forget(l.lock().unwrap());
                thread_id()
            })
            .join()
            .unwrap();
            let l = lock.clone();
            let outcome = on_thread_with_id(tid, Duration::from_secs(8), move || {
                let first = match l.lock_timeout(Duration::ZERO) {
                    Err(died) => {
                        drop(died.into_inner());
                        "owner died"
                    }
                    Ok(Some(_)) => "clean",
                    Ok(None) => "timed out",
                };
                // This thread, with the dead holder's id, is alive while the other one tries.
                let l2 = l.clone();
                let other =
                    std::thread::spawn(move || match l2.lock_timeout(Duration::from_millis(100)) {
                        Err(died) => {
                            drop(died.into_inner());
                            "owner died"
                        }
                        Ok(Some(_)) => "clean",
                        Ok(None) => "timed out",
                    })
                    .join()
                    .unwrap();
                (first, other)
            });
            let Some(outcome) = outcome else {
                // Another process took the id meanwhile: try again with a new dead thread.
                return false;
            };
            assert_eq!(outcome, ("timed out", "timed out"));
            assert!(lock.is_locked());
            true
        };
        assert!(
            (0..3).any(|_| attempt()),
            "no thread got a dead thread's id again"
        );
    });
}

/// A forked child is another thread (its own id) whatever the parent's records say: a lock
/// and an `RLock` the forking thread holds are held for the child (no re-entry, no takeover
/// of the live parent); a lock whose record the forking thread left behind on release is the
/// child's to take, and when the child dies holding it the parent gets `OwnerDied`.
#[test]
fn a_forked_child_never_passes_for_the_forking_thread() {
    run("fork_records", || {
        let released = Lock::new().unwrap();
        let held = (Lock::new().unwrap(), RLock::new().unwrap());
        drop(released.lock().unwrap());
        let g = held.0.lock().unwrap();
        let rg = held.1.lock().unwrap();
        let (r2, h2) = (released.clone(), held.clone());
        // SAFETY: the locks the child takes are shmproc's, not held by another thread here.
        let mut child = fork(unsafe { ForkPermit::new() }, move || {
            let blocked = h2.0.try_lock().unwrap().is_none()
                && h2.1.try_lock().unwrap().is_none()
                && h2
                    .0
                    .lock_timeout(Duration::from_millis(20))
                    .unwrap()
                    .is_none()
                && h2
                    .1
                    .lock_timeout(Duration::from_millis(20))
                    .unwrap()
                    .is_none();
            let took = r2.lock().map(std::mem::forget).is_ok();
            // Exits holding `released`.
            i32::from(blocked) | i32::from(took) << 1
        });
        assert_eq!(child.wait(), Ok(3));
        assert!(released.lock_timeout(Duration::from_secs(10)).is_err());
        assert!(held.0.is_locked() && held.1.depth() == 1);
        drop((g, rg));
    });
}

/// Short threads take a lock one after another and release it before they end (a thread that
/// ended holding it would keep it held: its process lives); thread ids wrap around
/// (`pid_max`) while this runs, so later threads get the ids of earlier ones, whose records the
/// lock keeps. A grant never finds a holder inside, nobody reports a dead owner, no thread
/// mistakes an earlier record of its id for its own hold (which would panic as a
/// self-deadlock or re-enter), and the lock is free at the end.
fn short_threads_reusing_ids(lock: AnyLock) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    watchdog(
        Duration::from_secs(60),
        "short_threads_reusing_ids",
        move || {
            let inside = Arc::new(AtomicU64::new(0));
            let stats = Arc::new([(); 4].map(|()| AtomicU64::new(0)));
            let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
            let end = Instant::now() + Duration::from_secs(6);
            // Empty threads use ids up fast, so they wrap around while the lock users run.
            let burner = std::thread::spawn(move || {
                while Instant::now() < end {
                    std::thread::spawn(|| ()).join().unwrap();
                }
            });
            let lanes: Vec<_> = (0..2u64)
                .map(|lane| {
                    let (lock, inside, stats) = (lock.clone(), inside.clone(), stats.clone());
                    let seen = seen.clone();
                    std::thread::spawn(move || {
                        let mut n = 0u64;
                        while Instant::now() < end {
                            n += 1;
                            let marker = lane << 32 | n;
                            let (lock, inside, st) = (lock.clone(), inside.clone(), stats.clone());
                            let tid = std::thread::spawn(move || {
                                if lock.acquire() {
                                    st[1].fetch_add(1, Ordering::SeqCst);
                                } else if inside.load(Ordering::SeqCst) != 0 {
                                    st[0].fetch_add(1, Ordering::SeqCst);
                                }
                                inside.store(marker, Ordering::SeqCst);
                                std::hint::spin_loop();
                                if inside.load(Ordering::SeqCst) != marker {
                                    st[0].fetch_add(1, Ordering::SeqCst);
                                }
                                st[2].fetch_add(1, Ordering::SeqCst);
                                inside.store(0, Ordering::SeqCst);
                                lock.release();
                                thread_id()
                            })
                            .join()
                            .unwrap();
                            if !seen.lock().unwrap().insert(tid) {
                                stats[3].fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    })
                })
                .collect();
            for l in lanes {
                l.join().unwrap();
            }
            burner.join().unwrap();
            let [bad, died, grants, reused] = [0, 1, 2, 3].map(|i| stats[i].load(Ordering::SeqCst));
            eprintln!(
                "{grants} grants, {died} OwnerDied, {reused} ids of earlier lock users reused"
            );
            assert_eq!(bad, 0, "a grant found another holder inside");
            assert_eq!(died, 0, "a holder that released was reported dead");
            assert!(!lock.acquire());
            lock.release();
            assert!(!lock.is_locked());
        },
    );
}

/// A `Lock` or an `RLock`, through the guardless API.
#[derive(Clone)]
enum AnyLock {
    Lock(Lock),
    RLock(RLock),
}

impl AnyLock {
    /// Acquires it; returns whether the previous holder had died.
    fn acquire(&self) -> bool {
        match self {
            AnyLock::Lock(l) => l.acquire().is_err(),
            AnyLock::RLock(l) => {
                let died = l.acquire().is_err();
                assert_eq!(l.depth(), 1, "a new thread holds an RLock at depth 1");
                died
            }
        }
    }

    fn release(&self) {
        match self {
            AnyLock::Lock(l) => l.release().unwrap(),
            AnyLock::RLock(l) => l.release().unwrap(),
        }
    }

    fn is_locked(&self) -> bool {
        match self {
            AnyLock::Lock(l) => l.is_locked(),
            AnyLock::RLock(l) => l.is_locked(),
        }
    }
}

#[test]
fn heavy_short_threads_reusing_ids_keep_a_lock_exclusive_and_recoverable() {
    short_threads_reusing_ids(AnyLock::Lock(Lock::new().unwrap()));
}

#[test]
fn heavy_short_threads_reusing_ids_keep_an_rlock_exclusive_and_recoverable() {
    short_threads_reusing_ids(AnyLock::RLock(RLock::new().unwrap()));
}

/// Runs `f` with a short watchdog and the leak check: a deadlock fails fast.
fn run_short(name: &str, f: impl FnOnce()) {
    watchdog(Duration::from_secs(10), name, || assert_no_leaks(f));
}

/// A thread that holds one range and takes a second, disjoint one, while another thread waits
/// for the whole array, gets its second range: the whole-array waiter must not hold the
/// array's lock while it waits for the first range (the two threads would wait for each other
/// forever).
#[test]
fn array_second_disjoint_range_is_granted_while_the_whole_array_is_awaited() {
    run_short("array_range_vs_whole_waiter", || {
        let arr = Array::<u32>::new(16).unwrap();
        let mut low = arr.lock_range(0..8).unwrap().unwrap();
        low[0] = 1;
        std::thread::scope(|s| {
            let whole = s.spawn(|| arr.to_vec().unwrap());
            // Let the whole-array reader start waiting for `low`.
            std::thread::sleep(Duration::from_millis(100));
            let mut high = arr
                .lock_range_timeout(8..16, Duration::from_secs(3))
                .unwrap()
                .unwrap()
                .expect("a disjoint range must be granted to the holder of another range");
            high[0] = 2;
            drop(high);
            drop(low);
            let v = whole.join().unwrap();
            assert_eq!((v[0], v[8]), (1, 2));
        });
    });
}

/// With every range slot held, the first one by the calling thread and the second by a thread
/// that waits for the caller, a further disjoint range is granted as soon as any other holder
/// releases: it is neither a self-deadlock report nor a wait on one chosen holder.
#[test]
fn array_seventeenth_range_waits_for_any_other_threads_release() {
    run_short("array_range_17", || {
        let arr = Array::<u8>::new(64).unwrap();
        let first = arr.lock_range(0..1).unwrap().unwrap();
        let (got_tx, got_rx) = std::sync::mpsc::channel::<()>();
        let got_rx = std::sync::Mutex::new(got_rx);
        std::thread::scope(|s| {
            for i in 1..16 {
                let (arr, got_rx) = (&arr, &got_rx);
                let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
                // One holder at a time, so holder `i` has slot `i`.
                s.spawn(move || {
                    let mut g = arr.lock_range(i..i + 1).unwrap().unwrap();
                    g[0] = u8::try_from(i).unwrap();
                    held_tx.send(()).unwrap();
                    match i {
                        // Waits until the caller got its 17th range.
                        1 => {
                            let _ = got_rx.lock().unwrap().recv_timeout(Duration::from_secs(5));
                        }
                        // The others release soon.
                        _ => std::thread::sleep(Duration::from_millis(100)),
                    }
                    drop(g);
                });
                held_rx.recv().unwrap();
            }
            // All 16 slots are held now (slot 0 by this thread).
            let mut g = arr
                .lock_range_timeout(40..41, Duration::from_secs(3))
                .unwrap()
                .unwrap()
                .expect("a 17th disjoint range must be granted once another holder releases");
            g[0] = 40;
            drop(g);
            got_tx.send(()).unwrap();
        });
        drop(first);
        assert_eq!(arr.get(40).unwrap(), 40);
    });
}

/// A range guard leaked by a thread that then ends keeps its range locked: the leaked
/// guard's slice may still be alive in another thread, so taking the range over would give
/// two live `&mut` to the same elements.
#[test]
fn array_range_leaked_by_an_ended_thread_is_not_taken_over() {
    run_short("array_range_leaked", || {
        let arr = Array::<u32>::new(8).unwrap();
        std::thread::scope(|s| {
            let leaked: &mut [u32] = s
                .spawn(|| {
                    let g = Box::leak(Box::new(arr.lock_range(0..4).unwrap().unwrap()));
                    &mut **g
                })
                .join()
                .unwrap();
            // The thread that took the range has ended; `leaked` is still a live `&mut`.
            let again = arr
                .lock_range_timeout(0..4, Duration::from_millis(200))
                .unwrap();
            let second_alias = match again {
                Ok(g) => g.is_some(),
                Err(_) => true,
            };
            leaked[0] = 1;
            assert!(
                !second_alias,
                "a second guard over elements still borrowed through a leaked guard"
            );
        });
    });
}

/// A `Lock` guard leaked by a thread that then ends keeps the lock held while the process
/// lives, like a forgotten `std::sync::MutexGuard`: other threads' `try_lock` finds it busy,
/// `lock_timeout` times out, nobody gets `OwnerDied`.
#[test]
fn lock_leaked_by_an_ended_thread_stays_held() {
    run_short("lock_leaked", || {
        let lock = Lock::new().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                Box::leak(Box::new(lock.lock().unwrap()));
            })
            .join()
            .unwrap();
            for _ in 0..2 {
                let got = s
                    .spawn(|| {
                        let tried = lock.try_lock().map(|g| g.is_some()).unwrap_or(true);
                        let timed = lock
                            .lock_timeout(Duration::from_millis(100))
                            .map(|g| g.is_some())
                            .unwrap_or(true);
                        (tried, timed)
                    })
                    .join()
                    .unwrap();
                assert_eq!(
                    got,
                    (false, false),
                    "a leaked guard's lock was granted again"
                );
            }
            assert!(lock.is_locked());
            assert!(matches!(lock.release(), Err(Error::NotOwner)));
        });
    });
}

/// An `RLock` guard leaked by a thread that then ends: no other thread re-enters it (as one
/// more level of a hold it does not have) or takes it over; its depth there is 0.
#[test]
fn rlock_leaked_by_an_ended_thread_is_neither_reentered_nor_taken_over() {
    run_short("rlock_leaked", || {
        let lock = RLock::new().unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                Box::leak(Box::new(lock.lock().unwrap()));
                Box::leak(Box::new(lock.lock().unwrap()));
            })
            .join()
            .unwrap();
            for _ in 0..2 {
                let got = s
                    .spawn(|| {
                        let tried = lock.try_lock().map(|g| g.is_some()).unwrap_or(true);
                        let timed = lock
                            .lock_timeout(Duration::from_millis(100))
                            .map(|g| g.is_some())
                            .unwrap_or(true);
                        let not_owner = matches!(lock.release(), Err(Error::NotOwner));
                        (tried, timed, lock.depth(), not_owner)
                    })
                    .join()
                    .unwrap();
                assert_eq!(got, (false, false, 0, true));
            }
            assert!(lock.is_locked());
        });
    });
}

/// A `Value` guard leaked by a thread that then ends, its `&mut` handed out of the thread:
/// the value's lock stays held, so no second `&mut` to the value is ever made.
#[test]
fn value_guard_leaked_by_an_ended_thread_is_not_taken_over() {
    run_short("value_leaked", || {
        let v = shmproc::Value::new(7u64).unwrap();
        std::thread::scope(|s| {
            let leaked: &mut u64 = s
                .spawn(|| {
                    let g = Box::leak(Box::new(v.lock().unwrap()));
                    &mut **g
                })
                .join()
                .unwrap();
            let second = s
                .spawn(|| {
                    v.get_lock()
                        .lock_timeout(Duration::from_millis(200))
                        .map(|g| g.is_some())
                        .unwrap_or(true)
                })
                .join()
                .unwrap();
            *leaked = 8;
            assert!(
                !second,
                "a second guard over a value still borrowed through a leaked guard"
            );
            assert!(v.get_lock().try_lock().unwrap().is_none());
        });
    });
}

/// The whole-array guard of `Array::lock` leaked by a thread that then ends: the array stays
/// locked for whole-array and range access alike.
#[test]
fn array_lock_leaked_by_an_ended_thread_is_not_taken_over() {
    run_short("array_lock_leaked", || {
        let arr = Array::<u32>::new(8).unwrap();
        std::thread::scope(|s| {
            let leaked: &mut [u32] = s
                .spawn(|| {
                    let g = Box::leak(Box::new(arr.lock().unwrap()));
                    &mut **g
                })
                .join()
                .unwrap();
            let whole = arr
                .get_lock()
                .lock_timeout(Duration::from_millis(200))
                .map(|g| g.is_some())
                .unwrap_or(true);
            let range = arr
                .lock_range_timeout(0..2, Duration::from_millis(200))
                .map(|g| g.map(|g| g.is_some()).unwrap_or(true))
                .unwrap_or(true);
            leaked[0] = 1;
            assert_eq!((whole, range), (false, false));
        });
    });
}

/// Takes a random range (now and then the whole array) of `a` in one of the ways there are,
/// stamps it and checks nobody else writes into it; `false` if somebody did.
fn random_range_round(a: &Array<u64>, rng: &mut shmproc_tests::Rng, stamp: u64) -> bool {
    fn intact(part: &[u64], stamp: u64) -> bool {
        (0..20).all(|_| {
            std::hint::spin_loop();
            part.iter().all(|&x| x == stamp)
        })
    }
    let len = a.len() as u64;
    let start = rng.below(len) as usize;
    let end = start + 1 + rng.below((len - start as u64).min(8)) as usize;
    match rng.below(8) {
        0 => {
            let mut all = a.lock().unwrap_or_else(|e| e.into_inner());
            all.fill(stamp);
            intact(&all, stamp)
        }
        1 => {
            let i = start;
            let _ = a.set(i, stamp);
            true
        }
        2 => match a.try_lock_range(start..end).unwrap() {
            Ok(Some(mut g)) => {
                g.fill(stamp);
                intact(&g, stamp)
            }
            Ok(None) => true,
            Err(e) => {
                let mut g = e.into_inner();
                g.fill(stamp);
                intact(&g, stamp)
            }
        },
        3 => match a
            .lock_range_timeout(start..end, Duration::from_millis(2))
            .unwrap()
        {
            Ok(Some(mut g)) => {
                g.fill(stamp);
                intact(&g, stamp)
            }
            Ok(None) => true,
            Err(e) => {
                let mut g = e.into_inner();
                g.fill(stamp);
                intact(&g, stamp)
            }
        },
        _ => {
            let mut g = a
                .lock_range(start..end)
                .unwrap()
                .unwrap_or_else(|e| e.into_inner());
            g.fill(stamp);
            intact(&g, stamp)
        }
    }
}

/// Processes killed at random moments of taking and releasing ranges (and the whole array)
/// never leave a range held forever, and never let two live holders share an element: two
/// checkers keep stamping random ranges while a third process is killed mid-way, round after
/// round.
#[test]
fn kill_array_range_claimant_at_random_moments() {
    run_short("kill_array_range_random", || {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        eprintln!("seed {seed}");
        let mut rng = shmproc_tests::Rng::new(seed);
        let arr = Array::<u64>::new(24).unwrap();
        for round in 0..40u64 {
            let go = RawValue::new(0u32).unwrap();
            let spawn_worker = |id: u64, rounds: u64| {
                let (a, g) = (arr.clone(), go.clone());
                let seed = seed ^ (round << 8 | id);
                // SAFETY: no other thread of this process holds a lock that the child takes.
                fork(unsafe { ForkPermit::new() }, move || {
                    until(|| g.get() == 1);
                    let mut rng = shmproc_tests::Rng::new(seed);
                    for r in 0..rounds {
                        if !random_range_round(&a, &mut rng, id << 48 | round << 32 | r) {
                            return 1;
                        }
                    }
                    0
                })
            };
            let mut victim = spawn_worker(3, u64::MAX);
            let checkers: Vec<_> = (1..=2).map(|id| spawn_worker(id, 1500)).collect();
            go.set(1);
            std::thread::sleep(Duration::from_micros(rng.below(3000)));
            assert_eq!(victim.kill(), Err(9));
            for mut c in checkers {
                assert_eq!(
                    c.wait(),
                    Ok(0),
                    "round {round}: two holders shared an element"
                );
            }
            // Nothing is held forever.
            let all = arr
                .lock_range_timeout(.., Duration::from_secs(3))
                .unwrap()
                .unwrap_or_else(|e| Some(e.into_inner()));
            assert!(all.is_some(), "round {round}: a range stayed held");
            drop(all);
            drop(arr.lock().unwrap_or_else(|e| e.into_inner()));
        }
    });
}

/// A thread that holds the array's lock (through `lock()` or `get_lock()`) and asks for a
/// range is told (a panic) instead of deadlocking; a thread that forgot a range guard and
/// asks for that range again is refused, never given a second guard.
#[test]
fn array_range_requests_that_would_self_deadlock_are_refused() {
    run_short("array_range_self_deadlock", || {
        let arr = Array::<u32>::new(8).unwrap();
        {
            let _all = arr.lock().unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drop(arr.lock_range(0..2));
            }));
            assert!(r.is_err(), "lock_range under lock() must panic");
            assert!(matches!(arr.try_lock_range(0..2), Ok(Ok(None))));
        }
        {
            let _l = arr.get_lock().lock().unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                drop(arr.lock_range(0..2));
            }));
            assert!(r.is_err(), "lock_range under get_lock() must panic");
        }
        let g = arr.lock_range(0..2).unwrap().unwrap();
        std::mem::forget(g);
        assert!(matches!(arr.try_lock_range(1..3), Ok(Ok(None))));
        assert!(matches!(
            arr.lock_range_timeout(1..3, Duration::from_millis(10)),
            Ok(Ok(None))
        ));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drop(arr.lock_range(0..1));
        }));
        assert!(
            r.is_err(),
            "relocking a forgotten range must panic, not grant"
        );
        // A disjoint range is still granted.
        drop(arr.lock_range(2..8).unwrap().unwrap());
    });
}

/// Twenty threads (more than the 16 range slots) take random ranges and now and then the
/// whole array: none sees another's writes in what it holds, and none waits forever.
#[test]
fn array_more_range_holders_than_slots_exclude_each_other() {
    run_short("array_range_over_slots", || {
        let arr = Array::<u64>::new(200).unwrap();
        std::thread::scope(|s| {
            let workers: Vec<_> = (1..=20u64)
                .map(|id| {
                    let arr = &arr;
                    s.spawn(move || {
                        let mut rng = shmproc_tests::Rng::new(id);
                        (0..300).all(|r| random_range_round(arr, &mut rng, id << 32 | r))
                    })
                })
                .collect();
            for w in workers {
                assert!(w.join().unwrap(), "a holder saw another's writes");
            }
        });
        drop(arr.lock_range(..).unwrap().unwrap());
    });
}

/// A range guard keeps working while the other handles of its array are dropped, and a handle
/// attached afresh from the tokens sees the range held.
#[test]
fn array_range_guard_outlives_the_other_handles() {
    run_short("array_range_handles", || {
        let arr = Array::<u32>::new(8).unwrap();
        let (tok, lock_tok) = arr.token();
        let other = arr.clone();
        let mut g = other.lock_range(2..6).unwrap().unwrap();
        drop(arr);
        g.fill(7);
        let fresh = Array::<u32>::from_token(&tok, &lock_tok).unwrap();
        assert!(matches!(fresh.try_lock_range(5..7), Ok(Ok(None))));
        std::thread::scope(|s| {
            let t = s.spawn(|| {
                matches!(
                    fresh.lock_range_timeout(0..8, Duration::from_millis(20)),
                    Ok(Ok(None))
                )
            });
            assert!(t.join().unwrap());
        });
        drop(g);
        assert_eq!(fresh.to_vec().unwrap(), [0, 0, 7, 7, 7, 7, 0, 0]);
    });
}

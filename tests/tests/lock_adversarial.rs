//! Adversarial tests of the robust lock word: second guards from safe code (a lock released
//! from under its live guard), scribbled lock words, owner records and owner pids, and holders
//! killed at random points.

use shmproc::heap_testing::TestHeap;
use shmproc::testing::{ForkPermit, assert_no_leaks, fork, watchdog};
use shmproc::{Array, Error, Lock, RLock, Segment, Value};
use shmproc_tests::{Rng, dead_pid, peek_u32, peek_u64, poke};
use std::time::Duration;

fn run(name: &str, f: impl FnOnce()) {
    watchdog(Duration::from_secs(60), name, || assert_no_leaks(f));
}

/// Whether another thread gets `lock` within a short wait (it must not while a guard lives).
fn other_thread_gets(lock: &Lock) -> bool {
    std::thread::scope(|s| {
        s.spawn(|| {
            lock.lock_timeout(Duration::from_millis(100))
                .map(|g| g.is_some())
                .unwrap_or(true)
        })
        .join()
        .unwrap()
    })
}

/// `Lock::release` by the thread that holds a `Value`'s lock through a live `ValueGuard`: the
/// guard's `&mut` still lives, so the lock must stay held (else another thread gets a second
/// `&mut` to the same value, and the first guard's drop later releases the second's hold).
#[test]
fn releasing_a_values_lock_under_its_live_guard_never_gives_a_second_guard() {
    run("release_under_value_guard", || {
        let v = Value::new(1u64).unwrap();
        let mut g = v.lock().unwrap();
        let released = v.get_lock().release();
        let second = other_thread_gets(v.get_lock());
        *g = 2;
        drop(g);
        assert!(
            matches!(released, Err(Error::NotOwner)),
            "release under a live guard: {released:?}"
        );
        assert!(!second, "a second guard while the first lives");
    });
}

/// The same for an `Array`'s whole-array guard, and for a plain `LockGuard`.
#[test]
fn releasing_an_arrays_or_locks_lock_under_its_live_guard_never_gives_a_second_guard() {
    run("release_under_array_guard", || {
        let a = Array::<u32>::new(4).unwrap();
        let mut g = a.lock().unwrap();
        let released = a.get_lock().release();
        let second = other_thread_gets(a.get_lock());
        g[0] = 2;
        drop(g);
        assert!(matches!(released, Err(Error::NotOwner)), "{released:?}");
        assert!(!second, "a second array guard while the first lives");
        let l = Lock::new().unwrap();
        let g = l.lock().unwrap();
        let released = l.release();
        let second = other_thread_gets(&l);
        drop(g);
        assert!(matches!(released, Err(Error::NotOwner)), "{released:?}");
        assert!(!second, "a second lock guard while the first lives");
    });
}

/// `acquire`/`release` without a guard keep working (the fix for the test above must not
/// break the multiprocessing-style pair), and release by a non-holder is refused.
#[test]
fn acquire_release_pairs_and_foreign_release_are_refused_or_work() {
    run("acquire_release_pairs", || {
        let l = Lock::new().unwrap();
        l.acquire().unwrap();
        assert!(!other_thread_gets(&l));
        let foreign = std::thread::scope(|s| s.spawn(|| l.release()).join().unwrap());
        assert!(matches!(foreign, Err(Error::NotOwner)), "{foreign:?}");
        assert!(l.is_locked());
        l.release().unwrap();
        assert!(!l.is_locked());
        assert!(matches!(l.release(), Err(Error::NotOwner)));
    });
}

/// Offsets of a lock word's fields inside its block (see `sync::raw`'s layout table).
const WORD: u64 = 0;
const PID: u64 = 4;
const RECORD: u64 = 8;

/// A live thread holds a lock; its pid word and its record are scribbled with hostile values
/// (a dead pid, 0, `u32::MAX`, our own pid; an empty record, another id's, garbage). The
/// holder's thread lives, so no waiter may take the lock over, and every timed wait returns.
#[test]
fn scribbled_pid_and_record_of_a_live_holder_never_give_a_second_holder() {
    run("scribbled_live_holder", || {
        let seg = Segment::create(1 << 16).unwrap();
        let heap = TestHeap::on(&seg);
        let l = Lock::new_in(&seg).unwrap();
        let at = l.token().offset;
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
        let lr = &l;
        std::thread::scope(|s| {
            s.spawn(move || {
                let g = lr.lock().unwrap();
                held_tx.send(()).unwrap();
                let _ = hold_rx.recv();
                drop(g);
            });
            held_rx.recv().unwrap();
            let mut rng = Rng::new(0x5c41_bb1e);
            let pids = [dead_pid(), 0, u32::MAX, std::process::id(), 0x3fff_ffff];
            for round in 0..40 {
                let pid = pids[round % pids.len()];
                poke(&heap, at + PID, &pid.to_le_bytes());
                let record: u64 = match round % 4 {
                    0 => 0,
                    1 => rng.next(),
                    2 => (u64::from(dead_pid()) << 32) | 5,
                    _ => u64::MAX,
                };
                if round % 2 == 0 {
                    poke(&heap, at + RECORD, &record.to_le_bytes());
                }
                let got = l
                    .lock_timeout(Duration::from_millis(5))
                    .map(|g| g.is_some())
                    .unwrap_or(true);
                assert!(!got, "round {round}: pid {pid:#x} record {record:#x}");
                assert!(matches!(l.try_lock(), Ok(None)), "round {round}");
            }
            hold_tx.send(()).unwrap();
        });
        // Released normally: usable again whatever was scribbled beside the word.
        drop(l.lock().unwrap());
        assert_eq!(peek_u32(&heap, at + WORD), 0);
    });
}

/// A thread ends while its guard lives on (leaked): its process (ours) lives, so the lock
/// stays held, also when the pid word beside its record is scribbled to a value that proves
/// nothing (0, `u32::MAX`, our own pid): doubt means alive. (An id beyond `pid_max` is a
/// definite "gone", like a dead pid: a scribble there frees the lock, as one of the word does.)
#[test]
fn a_leaked_guard_with_an_unprovable_pid_word_stays_held() {
    run("leaked_unprovable_pid", || {
        let seg = Segment::create(1 << 16).unwrap();
        let heap = TestHeap::on(&seg);
        let l = Lock::new_in(&seg).unwrap();
        let at = l.token().offset;
        std::thread::scope(|s| {
            s.spawn(|| std::mem::forget(l.lock().unwrap()))
                .join()
                .unwrap();
        });
        assert_eq!(peek_u32(&heap, at + PID), std::process::id());
        for pid in [0u32, u32::MAX, std::process::id()] {
            poke(&heap, at + PID, &pid.to_le_bytes());
            assert!(!other_thread_gets(&l), "pid word {pid:#x}");
            assert!(matches!(l.try_lock(), Ok(None)), "pid word {pid:#x}");
        }
    });
}

/// A scribbled word naming the calling thread beside its own stamp reads as the caller's own
/// hold: a timed or non-blocking attempt reports it held (or times out); it never panics
/// through `lock_timeout`/`try_lock` and never hangs; `release` refuses it (no `acquire`
/// took it).
#[test]
fn a_word_scribbled_to_name_the_caller_never_hangs_a_timed_attempt() {
    run("scribbled_to_caller", || {
        let seg = Segment::create(1 << 16).unwrap();
        let heap = TestHeap::on(&seg);
        let l = Lock::new_in(&seg).unwrap();
        let at = l.token().offset;
        // Leaves our stamp in the record and our pid beside it.
        drop(l.lock().unwrap());
        let me = (0..4).map(|i| heap.peek_u8(at + RECORD + 4 + i).unwrap());
        let me: Vec<u8> = me.collect();
        for waiters in [0u32, 0x8000_0000] {
            let word = u32::from_le_bytes(me.clone().try_into().unwrap()) | waiters;
            poke(&heap, at + WORD, &word.to_le_bytes());
            assert!(l.is_locked());
            let timed = l
                .lock_timeout(Duration::from_millis(5))
                .map(|g| g.is_some());
            assert!(matches!(timed, Ok(false)), "word {word:#x}: {timed:?}");
            assert!(matches!(l.try_lock(), Ok(None)), "word {word:#x}");
            // Not taken with `acquire`: `release` refuses it (it cannot tell a scribble from
            // a guard's hold). Un-scribbled, the lock is usable again.
            assert!(
                matches!(l.release(), Err(Error::NotOwner)),
                "word {word:#x}"
            );
            poke(&heap, at + WORD, &0u32.to_le_bytes());
            assert!(!l.is_locked());
            drop(l.lock().unwrap());
        }
    });
}

/// A forked child loops lock / bump / unlock on a `Value` and is killed at random points, many
/// rounds: the parent always gets the lock (cleanly or with `OwnerDied`) without hanging, the
/// value reads as one of the child's whole bumps, and the lock works afterwards.
#[test]
fn sigkill_of_a_looping_holder_always_recovers() {
    const ROUNDS: usize = 60;
    run("sigkill_looping_holder", || {
        let v = Value::new(0u64).unwrap();
        let mut rng = Rng::new(0x0dea_d10c);
        let mut died = 0;
        for round in 0..ROUNDS {
            let v2 = v.clone();
            // SAFETY: the child only locks and writes the shared value, then is killed; it
            // takes no process-local lock another thread could hold.
            #[allow(unsafe_code)]
            let permit = unsafe { ForkPermit::new() };
            let mut child = fork(permit, move || {
                loop {
                    let mut g = match v2.lock() {
                        Ok(g) => g,
                        Err(e) => e.into_inner(),
                    };
                    // An odd value marks a bump in progress: the parent must see only even ones
                    // beside a clean acquisition.
                    *g += 1;
                    std::hint::black_box(&mut *g);
                    *g += 1;
                }
            });
            // Kill only once the child loops (a forked child may start late on a loaded machine).
            let from = v.get().unwrap();
            while v.get().unwrap() == from {
                std::thread::sleep(Duration::from_micros(100));
            }
            std::thread::sleep(Duration::from_micros(rng.below(3000)));
            let _ = child.kill();
            let died_now = match v.get_lock().lock_timeout(Duration::from_secs(20)) {
                Ok(Some(g)) => {
                    drop(g);
                    false
                }
                Ok(None) => panic!("round {round}: the killed holder's lock never came back"),
                Err(e) => {
                    drop(e.into_inner());
                    true
                }
            };
            died += usize::from(died_now);
            let mut g = v.lock().unwrap();
            if *g % 2 == 1 {
                assert!(
                    died_now,
                    "round {round}: a half bump behind a clean acquisition"
                );
                *g += 1;
            }
            drop(g);
            assert!(
                !v.get_lock().is_locked(),
                "round {round}: held after release"
            );
        }
        eprintln!("owner died in {died} of {ROUNDS} rounds");
        assert!(v.get().unwrap().is_multiple_of(2));
    });
}

thread_local! {
    /// A guard kept by the thread that took it (a `'static` one: its lock is leaked).
    static KEPT: std::cell::RefCell<Option<shmproc::LockGuard<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// The target of a `Fork` child: drops the copy of the parent's guard it inherited in its
/// thread-local (the child's only thread is the copy of the forking one).
fn drop_inherited_guard(_: ()) {
    KEPT.with(|k| drop(k.borrow_mut().take()));
}

/// In a single-threaded process: takes `l` and keeps the guard in a thread-local, tries to
/// fork a child (`StartMethod::Fork`) that would drop its inherited copy of that guard, then
/// reports how the start went, whether the lock is still held (the parent's guard lives) and
/// whether another thread of the parent gets it meanwhile.
fn keep_guard_and_fork(l: Lock) -> (String, bool, bool) {
    let l: &'static Lock = Box::leak(Box::new(l));
    KEPT.with(|k| *k.borrow_mut() = Some(l.lock().unwrap()));
    let started = shmproc::Process::new(drop_inherited_guard, ())
        .start_method(shmproc::StartMethod::Fork)
        .start();
    let started = match started {
        Ok(p) => format!("started: {:?}", p.join()),
        Err(Error::ForkWhileLocked { guards }) => format!("refused with {guards} guard(s)"),
        Err(e) => format!("{e}"),
    };
    let held = l.is_locked();
    let second = other_thread_gets(l);
    KEPT.with(|k| drop(k.borrow_mut().take()));
    (started, held, second)
}

/// A guard held (in a thread-local) across a `Fork` start would be copied into the child; the
/// child's drop of its copy must not release the parent's hold, or a second guard is handed
/// out while the parent's lives (with a `Value`, two `&mut` to one value, in safe code). The
/// fork is refused while the thread has a live guard.
#[test]
fn a_guard_inherited_by_a_fork_child_never_releases_the_parents_hold() {
    run("fork_inherited_guard", || {
        let l = Lock::new().unwrap();
        let (started, held, second) = shmproc::spawn(keep_guard_and_fork, l.clone())
            .unwrap()
            .join()
            .unwrap();
        assert!(
            started == "refused with 1 guard(s)",
            "a fork with a live guard: {started}"
        );
        assert!(
            held,
            "the child's copy of the guard released the parent's hold"
        );
        assert!(!second, "a second guard while the parent's lives");
        assert!(!l.is_locked());
    });
}

/// The target of a `Fork` child that writes through a `&'static mut` leaked from a guard.
fn write_through_leaked(_: ()) {
    LEAKED.with(|p| {
        if let Some(v) = p.take() {
            *v = 99;
        }
    });
}

thread_local! {
    /// A `&mut` leaked from a `ValueGuard`.
    static LEAKED: std::cell::Cell<Option<&'static mut u64>> = const { std::cell::Cell::new(None) };
}

/// In a single-threaded process: leaks a `ValueGuard` (and a `&'static mut` into the value),
/// then tries to fork a child that would write through it while this process holds the lock;
/// and returns how the start went and the value.
fn leak_guard_and_fork(v: Value<u64>) -> (String, u64) {
    let v: &'static Value<u64> = Box::leak(Box::new(v));
    let g: &'static mut shmproc::ValueGuard<'static, u64> = Box::leak(Box::new(v.lock().unwrap()));
    LEAKED.with(|p| p.set(Some(&mut **g)));
    // The child gets the thread-local's copy; this thread reads through it below.
    let first = match shmproc::Process::new(write_through_leaked, ())
        .start_method(shmproc::StartMethod::Fork)
        .start()
    {
        Ok(p) => format!("started: {:?}", p.join()),
        Err(Error::ForkWhileLocked { guards }) => format!("refused with {guards} guard(s)"),
        Err(e) => format!("{e}"),
    };
    let value = LEAKED.with(std::cell::Cell::take).map_or(0, |r| *r);
    (first, value)
}

/// A guard leaked for good (`Box::leak`) keeps the thread from forking: a child would write
/// through the leaked `&'static mut` while the parent holds the lock (a cross-process race).
#[test]
fn a_leaked_guard_refuses_every_later_fork_of_its_thread() {
    run("fork_leaked_guard", || {
        let v = Value::new(1u64).unwrap();
        let (first, value) = shmproc::spawn(leak_guard_and_fork, v.clone())
            .unwrap()
            .join()
            .unwrap();
        assert!(
            first == "refused with 1 guard(s)",
            "a fork with a leaked guard: {first}"
        );
        assert_eq!(value, 1, "a forked child wrote through the leaked guard");
    });
}

/// A `Fork` child's target that does nothing.
fn noop(_: ()) {}

/// Guards dropped: the same thread forks again (the count goes back down).
fn fork_after_guards(l: Lock) -> String {
    drop(l.lock().unwrap());
    drop(l.try_lock().unwrap());
    l.acquire().unwrap();
    let r = match shmproc::Process::new(noop, ())
        .start_method(shmproc::StartMethod::Fork)
        .start()
    {
        Ok(p) => format!("{:?}", p.join()),
        Err(e) => format!("{e}"),
    };
    l.release().unwrap();
    r
}

/// A fork after the thread's guards are gone (an `acquire` hold is no guard) goes ahead.
#[test]
fn a_fork_after_the_guards_are_dropped_goes_ahead() {
    run("fork_after_guards", || {
        let l = Lock::new().unwrap();
        let r = shmproc::spawn(fork_after_guards, l.clone())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(r, "Ok(0)");
        assert!(!l.is_locked());
    });
}

/// In a single-threaded process: keeps a guard of `l` in a thread-local and holds `l2` through
/// `acquire`, then forks a child (`testing::fork`, which does not refuse) that drops its copy
/// of the guard and tries to `release` its copy of the `acquire` hold. Returns the child's exit
/// code (bit 0: `l` still held in the child after its drop; bit 1: the child's release of
/// `l2` was refused), and whether `l` and `l2` are still held and another thread gets `l`.
fn fork_with_kept_guard_and_acquired(locks: (Lock, Lock)) -> (i32, bool, bool, bool) {
    let (l, l2): &'static (Lock, Lock) = Box::leak(Box::new(locks));
    KEPT.with(|k| *k.borrow_mut() = Some(l.lock().unwrap()));
    l2.acquire().unwrap();
    // SAFETY: this process has one thread; the child only drops its copy of the guard, reads
    // the lock words and tries a release, then exits.
    #[allow(unsafe_code)]
    let permit = unsafe { ForkPermit::new() };
    let mut child = fork(permit, || {
        drop_inherited_guard(());
        let refused = matches!(l2.release(), Err(Error::NotOwner));
        i32::from(l.is_locked()) | (i32::from(refused) << 1)
    });
    let code = child.wait().unwrap_or(-1);
    let held = (l.is_locked(), l2.is_locked());
    let second = other_thread_gets(l);
    KEPT.with(|k| drop(k.borrow_mut().take()));
    l2.release().unwrap();
    (code, held.0, held.1, second)
}

/// A copy of a guard that reaches a forked child anyway (a fork that does not refuse) releases
/// nothing when the child drops it, and the child's copy of the parent's `acquire` hold
/// releases nothing either: the parent's holds stay, and no second guard is handed out.
#[test]
fn a_guard_copy_dropped_in_a_forked_child_releases_nothing() {
    run("fork_guard_copy_dropped", || {
        let (l, l2) = (Lock::new().unwrap(), Lock::new().unwrap());
        let (code, held, held2, second) =
            shmproc::spawn(fork_with_kept_guard_and_acquired, (l.clone(), l2.clone()))
                .unwrap()
                .join()
                .unwrap();
        assert_eq!(
            code, 0b11,
            "bit 0: held after the child's drop; bit 1: release refused"
        );
        assert!(
            held,
            "the child's drop of its copy released the parent's hold"
        );
        assert!(held2, "the child's release freed the parent's acquire hold");
        assert!(!second, "a second guard while the parent's lives");
        assert!(!l.is_locked() && !l2.is_locked());
    });
}

/// Whether another thread gets `r` within a short wait.
fn other_thread_gets_rlock(r: &RLock) -> bool {
    std::thread::scope(|s| {
        s.spawn(|| {
            r.lock_timeout(Duration::from_millis(100))
                .map(|g| g.is_some())
                .unwrap_or(true)
        })
        .join()
        .unwrap()
    })
}

/// `RLock`: levels from `acquire` and from guards add up to one depth in any order, and
/// `release` drops only a level an `acquire` took: never the one a live guard owns.
#[test]
fn rlock_release_drops_only_levels_taken_by_acquire() {
    run("rlock_release_mixed", || {
        let r = RLock::new().unwrap();
        // A guard alone: release refused, the lock stays held.
        let g = r.lock().unwrap();
        assert!(matches!(r.release(), Err(Error::NotOwner)));
        assert_eq!(r.depth(), 1);
        assert!(!other_thread_gets_rlock(&r));
        // An acquire on top of the guard: one release, then refused again.
        r.acquire().unwrap();
        assert_eq!(r.depth(), 2);
        r.release().unwrap();
        assert_eq!(r.depth(), 1);
        assert!(matches!(r.release(), Err(Error::NotOwner)));
        assert!(!other_thread_gets_rlock(&r));
        drop(g);
        assert!(!r.is_locked());
        // A guard on top of an acquire: the release drops the acquire's level, the guard's
        // stays until its drop.
        r.acquire().unwrap();
        let g = r.lock().unwrap();
        r.release().unwrap();
        assert_eq!(r.depth(), 1);
        assert!(!other_thread_gets_rlock(&r));
        drop(g);
        assert!(!r.is_locked());
        // An acquire outliving a guard taken after it.
        r.acquire().unwrap();
        drop(r.lock().unwrap());
        assert_eq!(r.depth(), 1);
        assert!(!other_thread_gets_rlock(&r));
        r.release().unwrap();
        assert!(!r.is_locked());
        assert!(matches!(r.release(), Err(Error::NotOwner)));
        // Another thread's acquire is not this thread's to release.
        std::thread::scope(|s| s.spawn(|| r.acquire().unwrap()).join().unwrap());
        assert!(matches!(r.release(), Err(Error::NotOwner)));
    });
}

/// A holder in another process stopped between its compare-exchange and its owner-record
/// store (forged: the record and pid beside its id are put back to what the previous holder,
/// or nobody, left). While it lives nobody takes the lock; once it is killed the next acquirer
/// gets it with `OwnerDied`, exactly once.
#[test]
fn a_holder_killed_before_its_record_store_is_taken_over_only_once_dead() {
    run("killed_before_record_store", || {
        let seg = Segment::create(1 << 16).unwrap();
        let heap = TestHeap::on(&seg);
        let l = Lock::new_in(&seg).unwrap();
        let at = l.token().offset;
        // The previous holder: this thread (its record and pid stay behind).
        drop(l.lock().unwrap());
        let before = (peek_u64(&heap, at + RECORD), peek_u32(&heap, at + PID));
        for (record, pid) in [before, (0, 0)] {
            let l2 = l.clone();
            // SAFETY: the child only takes the shared lock and sleeps until killed.
            #[allow(unsafe_code)]
            let permit = unsafe { ForkPermit::new() };
            let mut child = fork(permit, move || {
                std::mem::forget(l2.lock().unwrap());
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
            while !(l.is_locked() && peek_u32(&heap, at + PID) == child.pid() as u32) {
                std::thread::sleep(Duration::from_millis(1));
            }
            poke(&heap, at + RECORD, &record.to_le_bytes());
            poke(&heap, at + PID, &pid.to_le_bytes());
            assert!(
                !other_thread_gets(&l),
                "taken from a live holder (record {record:#x})"
            );
            assert!(matches!(l.try_lock(), Ok(None)));
            let _ = child.kill();
            let got = std::thread::scope(|s| {
                let t = s.spawn(|| match l.lock_timeout(Duration::from_secs(20)) {
                    Ok(Some(g)) => {
                        drop(g);
                        "clean"
                    }
                    Ok(None) => "timed out",
                    Err(e) => {
                        drop(e.into_inner());
                        "owner died"
                    }
                });
                t.join().unwrap()
            });
            assert_eq!(got, "owner died", "record {record:#x}");
            assert!(!l.is_locked());
        }
    });
}

/// A forked child takes the lock on a second thread that leaks the guard and ends, while the
/// child's main thread lives on: nobody in another process takes the lock over. Then the child
/// exits and stays unreaped (a zombie): the lock is taken over with `OwnerDied`.
#[test]
fn a_leaked_guard_in_a_live_process_stays_held_and_a_zombie_owner_is_dead() {
    run("zombie_owner", || {
        let l = Lock::new().unwrap();
        let go = shmproc::RawValue::new(0u32).unwrap();
        let (l2, go2) = (l.clone(), go.clone());
        // SAFETY: the child only takes the shared lock on a thread of its own and polls a
        // shared value; it takes no process-local lock another thread of the parent holds.
        #[allow(unsafe_code)]
        let permit = unsafe { ForkPermit::new() };
        let mut child = fork(permit, move || {
            let l3 = l2.clone();
            std::thread::spawn(move || std::mem::forget(l3.lock().unwrap()))
                .join()
                .unwrap();
            while go2.get() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            0
        });
        while !l.is_locked() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The holder's thread has ended (or soon will); its process lives.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !other_thread_gets(&l),
            "taken from a live process's leaked guard"
        );
        go.set(1);
        // Exited, not reaped: a zombie.
        let mut zombie = false;
        while !zombie {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.pid()));
            zombie = stat.is_ok_and(|s| s.rsplit(')').next().unwrap_or("").trim().starts_with('Z'));
            std::thread::sleep(Duration::from_millis(1));
        }
        let got = std::thread::scope(|s| {
            s.spawn(|| match l.lock_timeout(Duration::from_secs(20)) {
                Ok(Some(_)) => "clean",
                Ok(None) => "timed out",
                Err(_) => "owner died",
            })
            .join()
            .unwrap()
        });
        assert_eq!(got, "owner died");
        assert_eq!(child.wait(), Ok(0));
        assert!(!l.is_locked());
    });
}

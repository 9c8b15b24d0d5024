//! Loom models of the lock word (run with `scripts/loom`).

use super::raw::{self, Acquired, LockWord};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;

#[test]
fn lock_word_gives_mutual_exclusion() {
    loom::model(|| {
        let word = Arc::new(LockWord::new());
        let data = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (w, d) = (Arc::clone(&word), Arc::clone(&data));
                loom::thread::spawn(move || {
                    assert_eq!(raw::lock(&w, None), Acquired::Clean);
                    // A non-atomic read-modify-write: only mutual exclusion keeps it exact.
                    let v = d.load(Ordering::Relaxed);
                    d.store(v + 1, Ordering::Relaxed);
                    raw::unlock(&w);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(data.load(Ordering::Relaxed), 2);
        assert!(!raw::is_locked(&word));
    });
}

fn join<T>(t: loom::thread::JoinHandle<T>) -> T {
    match t.join() {
        Ok(v) => v,
        Err(_) => panic!("model thread panicked"),
    }
}

#[test]
fn rlock_counts_levels_and_excludes() {
    use super::rlock::algo;
    loom::model(|| {
        let w = Arc::new((LockWord::new(), AtomicU32::new(0)));
        let data = Arc::new(AtomicU64::new(0));
        let t = {
            let (w, d) = (Arc::clone(&w), Arc::clone(&data));
            loom::thread::spawn(move || {
                assert_eq!(algo::lock(&w.0, &w.1, None), Acquired::Clean);
                assert_eq!(algo::lock(&w.0, &w.1, None), Acquired::Clean);
                let v = d.load(Ordering::Relaxed);
                d.store(v + 1, Ordering::Relaxed);
                assert!(algo::unlock(&w.0, &w.1));
                assert!(raw::held_by_current_thread(&w.0));
                assert!(algo::unlock(&w.0, &w.1));
                assert!(!algo::unlock(&w.0, &w.1));
            })
        };
        let got = algo::try_lock(&w.0, &w.1);
        if let Some(a) = got {
            assert_eq!(a, Acquired::Clean);
            let v = data.load(Ordering::Relaxed);
            data.store(v + 1, Ordering::Relaxed);
            assert!(algo::unlock(&w.0, &w.1));
        }
        join(t);
        assert_eq!(data.load(Ordering::Relaxed), 1 + u64::from(got.is_some()));
        assert!(!raw::is_locked(&w.0));
    });
}

#[test]
fn semaphore_never_loses_a_unit_or_a_wake_up() {
    use super::semaphore::{VALUE_MAX, algo};
    loom::model(|| {
        // value 0: the waiter must sleep until the release, and the release must wake it.
        let w = Arc::new(AtomicU32::new(0));
        let t = {
            let w = Arc::clone(&w);
            loom::thread::spawn(move || assert!(algo::acquire(&w, None)))
        };
        assert!(algo::release(&w, VALUE_MAX));
        join(t);
        assert_eq!(w.load(Ordering::SeqCst), 0);
        assert!(algo::release(&w, 1));
        assert!(!algo::release(&w, 1));
    });
}

#[test]
fn event_set_releases_a_waiter() {
    use super::event::algo;
    loom::model(|| {
        let word = Arc::new(AtomicU32::new(0));
        let t = {
            let w = Arc::clone(&word);
            loom::thread::spawn(move || assert!(algo::wait(&w, None)))
        };
        algo::set(&word);
        join(t);
        algo::clear(&word);
        assert!(!algo::is_set(&word));
        // A wait that began before a set returns true even if the flag is cleared again.
        let gen_before = word.load(Ordering::SeqCst);
        algo::set(&word);
        algo::clear(&word);
        assert_ne!(word.load(Ordering::SeqCst) & !3, gen_before & !3);
    });
}

#[test]
fn condition_notify_is_never_lost() {
    use super::condition::{CondWords, algo};
    loom::model(|| {
        // Words: (unused), seq, waiters, signals, sleepers, and the predicate; the lock apart.
        let w = Arc::new([
            AtomicU32::new(0),
            AtomicU32::new(0),
            AtomicU32::new(0),
            AtomicU32::new(0),
            AtomicU32::new(0),
            AtomicU32::new(0),
        ]);
        fn words(w: &[AtomicU32; 6]) -> CondWords<'_> {
            CondWords {
                futex: &w[1],
                waiters: &w[2],
                signals: &w[3],
            }
        }
        let lock = Arc::new(LockWord::new());
        let t = {
            let (w, lock) = (Arc::clone(&w), Arc::clone(&lock));
            loom::thread::spawn(move || {
                raw::lock(&lock, None);
                w[5].store(1, Ordering::Relaxed);
                algo::notify(words(&w), 1, &lock);
                raw::unlock(&lock);
            })
        };
        raw::lock(&lock, None);
        while w[5].load(Ordering::Relaxed) == 0 {
            let (_, a) = algo::wait(
                words(&w),
                None,
                || raw::unlock(&lock),
                |()| raw::lock(&lock, None),
            );
            assert_eq!(a, Acquired::Clean);
        }
        raw::unlock(&lock);
        join(t);
        assert!(w[3].load(Ordering::SeqCst) <= w[2].load(Ordering::SeqCst));
    });
}

#[test]
fn barrier_passes_two_parties_with_distinct_indices() {
    use super::barrier::{BarrierWords, algo};
    loom::model(|| {
        let w = Arc::new([AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)]);
        let ran = Arc::new(AtomicU32::new(0));
        fn words(w: &[AtomicU32; 3]) -> BarrierWords<'_> {
            BarrierWords {
                state: &w[0],
                leader: &w[1],
                outcomes: &w[2],
            }
        }
        let t = {
            let (w, r) = (Arc::clone(&w), Arc::clone(&ran));
            loom::thread::spawn(move || {
                algo::wait(words(&w), 2, None, false, || {
                    r.fetch_add(1, Ordering::Relaxed);
                    true
                })
            })
        };
        let mine = algo::wait(words(&w), 2, None, false, || {
            ran.fetch_add(1, Ordering::Relaxed);
            true
        });
        let theirs = join(t);
        let (Some(a), Some(b)) = (mine, theirs) else {
            panic!("barrier broke without a timeout or abort")
        };
        assert_ne!(a, b);
        // The action ran once, before either party was released.
        assert_eq!(ran.load(Ordering::Relaxed), 1);
        assert!(!algo::is_broken(&w[0]));
    });
}

#[test]
fn barrier_abort_breaks_a_sleeping_waiter() {
    use super::barrier::{BarrierWords, algo};
    loom::model(|| {
        let w = Arc::new([AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)]);
        fn words(w: &[AtomicU32; 3]) -> BarrierWords<'_> {
            BarrierWords {
                state: &w[0],
                leader: &w[1],
                outcomes: &w[2],
            }
        }
        let t = {
            let w = Arc::clone(&w);
            loom::thread::spawn(move || algo::wait(words(&w), 3, None, false, || true))
        };
        algo::abort(words(&w), 3);
        assert_eq!(join(t), None);
        assert!(algo::is_broken(&w[0]));
        algo::reset(words(&w), 3);
        assert!(!algo::is_broken(&w[0]));
    });
}

/// Regression: a thread that notifies and then waits must not take its own notification
/// back (the other waiter would sleep forever, which loom reports as a deadlock).
#[test]
fn condition_ping_pong_hands_the_turn_over() {
    use super::condition::{CondWords, algo};
    loom::model(|| {
        // Words: (unused), futex, waiters, signals, and the turn (1 = the peer's move); the
        // lock apart.
        let w = Arc::new([
            AtomicU32::new(0),
            AtomicU32::new(0),
            AtomicU32::new(0),
            AtomicU32::new(0),
            AtomicU32::new(0),
        ]);
        fn words(w: &[AtomicU32; 5]) -> CondWords<'_> {
            CondWords {
                futex: &w[1],
                waiters: &w[2],
                signals: &w[3],
            }
        }
        fn wait(w: &[AtomicU32; 5], lock: &LockWord) {
            let (_, a) = algo::wait(
                words(w),
                None,
                || raw::unlock(lock),
                |()| raw::lock(lock, None),
            );
            assert_eq!(a, Acquired::Clean);
        }
        let lock = Arc::new(LockWord::new());
        let t = {
            let (w, lock) = (Arc::clone(&w), Arc::clone(&lock));
            loom::thread::spawn(move || {
                raw::lock(&lock, None);
                while w[4].load(Ordering::Relaxed) != 1 {
                    wait(&w, &lock);
                }
                w[4].store(0, Ordering::Relaxed);
                algo::notify(words(&w), 1, &lock);
                // Wait for the stop (2) right after notifying: the case that once stole
                // the notification just given.
                while w[4].load(Ordering::Relaxed) == 0 {
                    wait(&w, &lock);
                }
                raw::unlock(&lock);
            })
        };
        raw::lock(&lock, None);
        w[4].store(1, Ordering::Relaxed);
        algo::notify(words(&w), 1, &lock);
        while w[4].load(Ordering::Relaxed) == 1 {
            wait(&w, &lock);
        }
        w[4].store(2, Ordering::Relaxed);
        algo::notify(words(&w), 1, &lock);
        raw::unlock(&lock);
        join(t);
    });
}

/// Two sleepers and two releases: each release wakes one sleeper, and neither is left asleep.
#[test]
fn semaphore_two_waiters_two_releases() {
    use super::semaphore::{VALUE_MAX, algo};
    loom::model(|| {
        let w = Arc::new(AtomicU32::new(0));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let w = Arc::clone(&w);
                loom::thread::spawn(move || assert!(algo::acquire(&w, None)))
            })
            .collect();
        assert!(algo::release(&w, VALUE_MAX));
        assert!(algo::release(&w, VALUE_MAX));
        for t in ts {
            join(t);
        }
        assert_eq!(w.load(Ordering::SeqCst), 0);
    });
}

/// The two-word event count's handshake (`park`'s module docs): the waiter announces itself,
/// fences and re-checks; the notifier changes the state, fences and looks for sleepers. The
/// state word is Relaxed on both sides, so only the two `SeqCst` fences keep the wake-up:
/// with either removed, loom finds the execution where the waiter sleeps forever.
#[test]
fn event_count_never_loses_a_wake_up() {
    use super::park::EventCount;
    loom::model(|| {
        // Words: seq, sleepers, and the state the waiter waits for.
        let w = Arc::new([AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)]);
        let t = {
            let w = Arc::clone(&w);
            loom::thread::spawn(move || {
                let ec = EventCount::new(&w[0], &w[1]);
                let got = ec.wait_until(
                    None,
                    || (w[2].load(Ordering::Relaxed) == 1).then_some(()),
                    |_| None,
                );
                assert_eq!(got, Some(()));
            })
        };
        w[2].store(1, Ordering::Relaxed);
        EventCount::new(&w[0], &w[1]).notify(1);
        join(t);
        assert_eq!(w[1].load(Ordering::SeqCst), 0);
    });
}

/// Two waiters on one event count and one notify for all: neither is left asleep.
#[test]
fn event_count_notify_all_wakes_every_sleeper() {
    use super::park::EventCount;
    loom::model(|| {
        let w = Arc::new([AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)]);
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let w = Arc::clone(&w);
                loom::thread::spawn(move || {
                    let ec = EventCount::new(&w[0], &w[1]);
                    let got = ec.wait_until(
                        None,
                        || (w[2].load(Ordering::Relaxed) == 1).then_some(()),
                        |_| None,
                    );
                    assert_eq!(got, Some(()));
                })
            })
            .collect();
        w[2].store(1, Ordering::Relaxed);
        EventCount::new(&w[0], &w[1]).notify(u32::MAX);
        for t in ts {
            join(t);
        }
    });
}

/// The pipe ring's one-word event count: a waiter marks the word, re-checks and sleeps; the
/// notifier stores the state and wakes only a marked word. With either `SeqCst` fence
/// removed (the waiter's after its mark, the notifier's before its load), loom finds the
/// execution where the waiter sleeps forever.
#[test]
fn event_word_never_loses_a_wake_up() {
    use super::park::{EventWord, Slices};
    loom::model(|| {
        // Words: the event word, and the state the waiter waits for.
        let w = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        let t = {
            let w = Arc::clone(&w);
            loom::thread::spawn(move || {
                let got = EventWord::new(&w[0]).wait_until_in(
                    Slices::long(),
                    None,
                    || (w[1].load(Ordering::Relaxed) == 1).then_some(()),
                    |_| None,
                );
                assert_eq!(got, Some(()));
            })
        };
        w[1].store(1, Ordering::Relaxed);
        EventWord::new(&w[0]).notify();
        join(t);
    });
}

/// A stream: the waiter waits for two states in turn while the notifier publishes them one
/// after the other. A notify that finds the mark already cleared by the previous one (the
/// woken waiter has not marked the word again yet) skips the wake-up; the waiter still never
/// sleeps through the second state.
#[test]
fn event_word_skipped_notifies_never_strand_a_stream() {
    use super::park::{EventWord, Slices};
    loom::model(|| {
        let w = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        let t = {
            let w = Arc::clone(&w);
            loom::thread::spawn(move || {
                for want in 1..=2 {
                    let got = EventWord::new(&w[0]).wait_until_in(
                        Slices::long(),
                        None,
                        || (w[1].load(Ordering::Relaxed) >= want).then_some(()),
                        |_| None,
                    );
                    assert_eq!(got, Some(()));
                }
            })
        };
        for v in 1..=2 {
            w[1].store(v, Ordering::Relaxed);
            EventWord::new(&w[0]).notify();
        }
        join(t);
    });
}

/// Two waiters on one event word and one notify: neither is left asleep (they share the
/// mark, and the notify wakes every sleeper).
#[test]
fn event_word_notify_wakes_every_sleeper() {
    use super::park::{EventWord, Slices};
    loom::model(|| {
        let w = Arc::new([AtomicU32::new(0), AtomicU32::new(0)]);
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let w = Arc::clone(&w);
                loom::thread::spawn(move || {
                    let got = EventWord::new(&w[0]).wait_until_in(
                        Slices::long(),
                        None,
                        || (w[1].load(Ordering::Relaxed) == 1).then_some(()),
                        |_| None,
                    );
                    assert_eq!(got, Some(()));
                })
            })
            .collect();
        w[1].store(1, Ordering::Relaxed);
        EventWord::new(&w[0]).notify();
        for t in ts {
            join(t);
        }
    });
}

/// A record naming the calling thread's id with another start time: what an earlier thread
/// with that id left behind before it died.
fn stale_record_of_caller() -> u64 {
    let me = crate::sys::current_stamp();
    (me & !0xffff_ffff) | u64::from((me as u32).wrapping_add(1))
}

/// The release leaves the owner record behind. Here the record left behind names the main
/// thread's id with another start time (an earlier thread with that id released the lock and
/// died). The main thread clears it before its compare-exchange can make the word name it,
/// and publishes the clear with a release fence, so the other thread, probing the word while
/// the main thread holds it, never reads that stale record beside the main thread's id (it
/// would take the lock from a live holder); nobody reports a dead owner.
#[test]
fn a_record_left_behind_never_makes_a_live_holder_look_dead() {
    loom::model(|| {
        let w = Arc::new(LockWord::new());
        let data = Arc::new(AtomicU64::new(0));
        w.record()
            .store(stale_record_of_caller(), Ordering::Relaxed);
        let t = {
            let (w, d) = (Arc::clone(&w), Arc::clone(&data));
            loom::thread::spawn(move || {
                let mut got = 0;
                for _ in 0..2 {
                    if let Some(a) = raw::try_lock_or_take_over(&w) {
                        assert_eq!(a, Acquired::Clean);
                        let v = d.load(Ordering::Relaxed);
                        d.store(v + 1, Ordering::Relaxed);
                        raw::unlock(&w);
                        got += 1;
                    }
                }
                got
            })
        };
        assert_eq!(raw::lock(&w, None), Acquired::Clean);
        assert!(raw::held_by_current_thread(&w));
        let v = data.load(Ordering::Relaxed);
        data.store(v + 1, Ordering::Relaxed);
        raw::unlock(&w);
        let got = join(t);
        assert_eq!(data.load(Ordering::Relaxed), 1 + got);
        assert!(!raw::is_locked(&w));
    });
}

/// An earlier thread with the main thread's id died holding the lock (word and record name
/// it, and the pid beside the record names a dead process). The main thread (same id) and
/// another thread both try to take it over: exactly one reports the dead owner, the lock is
/// never held by both, and neither mistakes the other, live, for the dead one while the
/// record still names the dead thread.
#[test]
fn a_dead_holder_with_a_reused_id_is_taken_over_once() {
    loom::model(|| {
        let w = Arc::new(LockWord::new());
        let data = Arc::new(AtomicU64::new(0));
        let dead = crate::sys::current_tid();
        w.pid().store(crate::sys::LOOM_DEAD_PID, Ordering::Relaxed);
        w.record()
            .store(stale_record_of_caller(), Ordering::Relaxed);
        w.store(dead, Ordering::Relaxed);
        let take = move |w: &LockWord, d: &AtomicU64| -> u64 {
            match raw::try_lock_or_take_over(w) {
                None => 0,
                Some(a) => {
                    let v = d.load(Ordering::Relaxed);
                    d.store(v + 1, Ordering::Relaxed);
                    raw::unlock(w);
                    match a {
                        Acquired::OwnerDied(tid) => {
                            assert_eq!(tid, dead);
                            1 << 8 | 1
                        }
                        _ => 1,
                    }
                }
            }
        };
        let t = {
            let (w, d) = (Arc::clone(&w), Arc::clone(&data));
            loom::thread::spawn(move || take(&w, &d))
        };
        let mine = take(&w, &data);
        let theirs = join(t);
        let (grants, died) = ((mine + theirs) & 0xff, (mine + theirs) >> 8);
        assert_eq!(died, 1, "exactly one takeover");
        assert_eq!(data.load(Ordering::Relaxed), grants);
        assert!(!raw::is_locked(&w));
    });
}

/// The lock was last released by a thread of a dead process (its record and pid stay behind).
/// Another thread takes it and ends without releasing it (its guard leaked; its process, the
/// model's, lives), while the main thread tries to get it twice. The main thread may get it
/// before, but never takes it over from the ended holder: whenever it reads the holder's
/// record it reads the holder's pid beside it (the record is stored with `Release` after the
/// pid, and read with `Acquire`), never the dead process's pid left behind; and a record it
/// read before the holder stored its own is read again after the probe found the holder gone.
#[test]
fn a_guard_leaked_by_an_ended_thread_is_never_taken_over() {
    loom::model(|| {
        let w = Arc::new(LockWord::new());
        let previous = (u64::from(raw::TID_MASK - 1) << 32) | u64::from(crate::sys::LOOM_START);
        w.pid().store(crate::sys::LOOM_DEAD_PID, Ordering::Relaxed);
        w.record().store(previous, Ordering::Relaxed);
        let t = {
            let w = Arc::clone(&w);
            loom::thread::spawn(move || {
                assert_eq!(raw::lock(&w, None), Acquired::Clean);
                // Ends holding it.
                crate::sys::end_thread_in_model();
            })
        };
        for _ in 0..2 {
            match raw::try_lock_or_take_over(&w) {
                None => {}
                Some(Acquired::Clean) => raw::unlock(&w),
                Some(a) => panic!("took over a leaked guard's lock: {a:?}"),
            }
        }
        join(t);
        assert!(raw::is_locked(&w));
    });
}

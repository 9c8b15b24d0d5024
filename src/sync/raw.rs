//! The robust lock word: the raw core under `Lock`, `Value` and `Array`.
//!
//! # State table
//!
//! | bits  | name      | meaning                                        | set by               |
//! |-------|-----------|------------------------------------------------|----------------------|
//! | 0..30 | owner     | thread id of the holder; 0 = `UNLOCKED`        | acquirer (CAS)       |
//! | 31    | `WAITERS` | a thread may be asleep on the futex            | a waiter, before sleeping |
//!
//! Transitions: `UNLOCKED → tid` (uncontended acquire, one CAS); `tid → tid|WAITERS` (a
//! waiter announces itself, CAS); `any → UNLOCKED` (release, one swap; a futex wake only if
//! `WAITERS` was set); `dead|… → tid|WAITERS` (takeover after the owner was found dead, CAS
//! against the exact word observed, so two waiters never both take over).
//!
//! # Owner death
//!
//! A waiter spins and then sleeps in slices (1 ms, doubling to 50 ms), the policies of
//! [`park`]; after each slice it checks whether the recorded owner thread still
//! exists. If not, it takes the lock over and reports `OwnerDied`. So a dead holder costs the
//! next acquirer at most one slice, and the lock keeps working afterwards. An uncontended acquire never checks (a free word has no owner).

use super::park::{self, Site, Slept, Slices};
use crate::loom::{AtomicU32, Ordering};
use crate::sys::{self, Deadline};

/// Bits of the owner's thread id.
pub(crate) const TID_MASK: u32 = 0x3fff_ffff;
/// A thread may be asleep on the word.
pub(crate) const WAITERS: u32 = 0x8000_0000;
/// The unlocked state.
pub(crate) const UNLOCKED: u32 = 0;

/// How an acquisition went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lock was free or released normally.
    Clean,
    /// The previous owner (this thread id) died holding it; the caller holds it now.
    OwnerDied(u32),
    /// The deadline passed first; the caller does not hold the lock.
    TimedOut,
}

/// Tries once to take a free lock for the calling thread.
#[inline]
pub(crate) fn try_lock(word: &AtomicU32) -> bool {
    let tid = sys::current_tid();
    // Acquire: the protected data written by the previous holder is visible.
    word.compare_exchange(UNLOCKED, tid, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

/// Tries once, and also takes over a lock whose recorded owner is dead.
pub(crate) fn try_lock_or_take_over(word: &AtomicU32) -> Option<Acquired> {
    if try_lock(word) {
        return Some(Acquired::Clean);
    }
    let s = word.load(Ordering::Relaxed);
    take_over_if_dead(word, s)
}

/// Takes the lock, waiting until `deadline` (forever if `None`).
#[inline]
pub(crate) fn lock(word: &AtomicU32, deadline: Option<&Deadline>) -> Acquired {
    if try_lock(word) {
        return Acquired::Clean;
    }
    lock_contended(word, deadline)
}

#[cold]
fn lock_contended(word: &AtomicU32, deadline: Option<&Deadline>) -> Acquired {
    let tid = sys::current_tid();
    let spun = park::spin_at(Site::Lock, || {
        // Relaxed: a first look; `try_lock`'s CAS synchronizes.
        (word.load(Ordering::Relaxed) == UNLOCKED && try_lock(word)).then_some(())
    });
    if spun.is_some() {
        return Acquired::Clean;
    }
    let mut slices = Slices::new();
    loop {
        let s = word.load(Ordering::Relaxed);
        if s == UNLOCKED {
            // Take it with WAITERS set: other sleepers may exist, and the next release must
            // wake one of them.
            if word
                .compare_exchange(
                    UNLOCKED,
                    tid | WAITERS,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Acquired::Clean;
            }
            continue;
        }
        if s & WAITERS == 0
            && word
                .compare_exchange(s, s | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        match park::sleep(word, s | WAITERS, deadline, &mut slices) {
            Slept::Woken => {}
            Slept::TimedOut => return Acquired::TimedOut,
            Slept::SliceEnded => {
                if let Some(a) = take_over_if_dead(word, word.load(Ordering::Relaxed)) {
                    return a;
                }
            }
        }
    }
}

/// If `observed` names an owner thread that no longer exists, takes the lock over.
fn take_over_if_dead(word: &AtomicU32, observed: u32) -> Option<Acquired> {
    let owner = observed & TID_MASK;
    if owner == UNLOCKED || owner == sys::current_tid() || sys::thread_alive(owner) {
        return None;
    }
    let me = sys::current_tid() | WAITERS;
    // Acquire: whatever the dead owner wrote is visible. The CAS is against the exact word
    // observed, so of several waiters that found the owner dead exactly one takes over.
    word.compare_exchange(observed, me, Ordering::Acquire, Ordering::Relaxed)
        .ok()
        .map(|_| Acquired::OwnerDied(owner))
}

/// Releases the lock and wakes one sleeper if there may be one.
#[inline]
pub(crate) fn unlock(word: &AtomicU32) {
    // Release: the protected data written while holding is visible to the next holder.
    if word.swap(UNLOCKED, Ordering::Release) & WAITERS != 0 {
        sys::futex_wake(word, 1);
    }
}

/// Returns whether the calling thread holds the lock.
#[inline]
pub(crate) fn held_by_current_thread(word: &AtomicU32) -> bool {
    // Relaxed: only this thread stores its own id into the word.
    word.load(Ordering::Relaxed) & TID_MASK == sys::current_tid()
}

/// Returns whether anybody holds the lock.
pub(crate) fn is_locked(word: &AtomicU32) -> bool {
    word.load(Ordering::Relaxed) & TID_MASK != UNLOCKED
}

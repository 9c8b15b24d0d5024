//! `futex(FUTEX_WAIT_BITSET | FUTEX_WAKE)` on words in shared memory.
//!
//! The words live in `MAP_SHARED` mappings used by several processes, so the `PRIVATE` flag is
//! never used (a private futex keys on the address space and would never wake another
//! process). Waits take an absolute `CLOCK_MONOTONIC` deadline (`FUTEX_WAIT_BITSET` with
//! `FUTEX_BITSET_MATCH_ANY`), so callers loop on interruptions against one deadline; a wait
//! bounded only by a length of its own (a sleep slice, with no caller deadline) takes it as
//! a relative timeout (`FUTEX_WAIT`, [`futex_wait_for`]), which spares reading the clock
//! before every sleep.
//!
//! # References
//! - `futex(2)`, `futex(7)`

use super::clock::Deadline;
use crate::loom::AtomicU32;

/// Why a futex wait returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    /// Woken, or the word no longer held the expected value, or interrupted: re-check.
    Retry,
    /// The deadline passed.
    TimedOut,
}

#[cfg(not(shmproc_loom))]
mod imp {
    use super::*;
    use core::num::NonZeroU32;
    use rustix::io::Errno;
    use rustix::thread::futex;
    use rustix::time::Timespec;
    use std::time::Duration;

    const MATCH_ANY: NonZeroU32 = NonZeroU32::MAX;

    /// Sleeps while `*word == expected`, until woken or `deadline` passes.
    pub(crate) fn futex_wait(
        word: &AtomicU32,
        expected: u32,
        deadline: Option<&Deadline>,
    ) -> WaitOutcome {
        let timeout = deadline.map(Deadline::as_timespec);
        match futex::wait_bitset(
            word.as_core(),
            futex::Flags::empty(),
            expected,
            timeout,
            MATCH_ANY,
        ) {
            Err(Errno::TIMEDOUT) => WaitOutcome::TimedOut,
            // Woken, EAGAIN (value changed), EINTR (signal): the caller re-checks its state
            // and waits again against the same absolute deadline.
            _ => WaitOutcome::Retry,
        }
    }

    /// Sleeps while `*word == expected`, until woken or about `timeout` has passed (a relative
    /// timeout: an interrupted wait that the caller repeats starts a new one).
    pub(crate) fn futex_wait_for(
        word: &AtomicU32,
        expected: u32,
        timeout: Duration,
    ) -> WaitOutcome {
        let ts = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        match futex::wait(word.as_core(), futex::Flags::empty(), expected, Some(&ts)) {
            Err(Errno::TIMEDOUT) => WaitOutcome::TimedOut,
            // As in `futex_wait`.
            _ => WaitOutcome::Retry,
        }
    }

    /// Wakes up to `n` waiters on `word` (all of them for `n >= i32::MAX`); returns how many
    /// were woken.
    pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
        // The kernel reads the count as an `int`: `u32::MAX` would be -1 and wake nobody.
        futex::wake(word.as_core(), futex::Flags::empty(), n.min(0x7fff_ffff)).unwrap_or(0)
    }

    /// `FUTEX_CMP_REQUEUE`: if `*from == expected`, moves up to `n` waiters of `from` to wait
    /// on `to` instead (without waking them) and returns `true`; else changes nothing and
    /// returns `false`.
    pub(crate) fn futex_requeue(from: &AtomicU32, expected: u32, to: &AtomicU32, n: u32) -> bool {
        futex::cmp_requeue(
            from.as_core(),
            futex::Flags::empty(),
            0,
            n.min(0x7fff_ffff),
            to.as_core(),
            expected,
        )
        .is_ok()
    }
}

#[cfg(shmproc_loom)]
mod imp {
    //! Loom emulation of the futex: one loom `Mutex` + `Condvar` for every word (the address
    //! does not matter: a wake-up of the wrong word is a spurious wake-up, which every caller
    //! tolerates, as it must `EINTR`).
    //!
    //! An untimed wait checks the word under the mutex and sleeps on the condvar; a wake takes
    //! the mutex and notifies every sleeper. So a waker that changed the word and then woke
    //! cannot be missed, and a missing wake leaves the waiter asleep forever, which loom
    //! reports as a deadlock: lost wake-ups are found. A timed wait yields once and reports
    //! `TimedOut` (loom has no clock), which explores the deadline path at every wait.
    use super::*;
    use crate::loom::Ordering;
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        static ref PARK: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    pub(crate) fn futex_wait(
        word: &AtomicU32,
        expected: u32,
        deadline: Option<&Deadline>,
    ) -> WaitOutcome {
        if deadline.is_some() {
            if word.load(Ordering::SeqCst) == expected {
                loom::thread::yield_now();
            }
            return WaitOutcome::TimedOut;
        }
        let (mutex, condvar) = &*PARK;
        let guard = match mutex.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if word.load(Ordering::SeqCst) == expected {
            drop(condvar.wait(guard));
        }
        WaitOutcome::Retry
    }

    /// A timed wait, as `futex_wait` with a deadline: yields once and reports `TimedOut`.
    pub(crate) fn futex_wait_for(
        word: &AtomicU32,
        expected: u32,
        _timeout: std::time::Duration,
    ) -> WaitOutcome {
        if word.load(Ordering::SeqCst) == expected {
            loom::thread::yield_now();
        }
        WaitOutcome::TimedOut
    }

    pub(crate) fn futex_wake(_word: &AtomicU32, _n: u32) -> usize {
        let (mutex, condvar) = &*PARK;
        let _guard = match mutex.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        condvar.notify_all();
        0
    }

    /// A requeue is emulated as a wake-up of everybody (a requeued waiter re-checks its state
    /// when it wakes, as after any wake-up).
    pub(crate) fn futex_requeue(from: &AtomicU32, expected: u32, _to: &AtomicU32, n: u32) -> bool {
        if from.load(Ordering::SeqCst) != expected {
            return false;
        }
        futex_wake(from, n);
        true
    }
}

pub(crate) use imp::{futex_requeue, futex_wait, futex_wait_for, futex_wake};

//! `futex(FUTEX_WAIT_BITSET | FUTEX_WAKE)` on words in shared memory.
//!
//! The words live in `MAP_SHARED` mappings used by several processes, so the `PRIVATE` flag is
//! never used (a private futex keys on the address space and would never wake another
//! process). Waits take an absolute `CLOCK_MONOTONIC` deadline (`FUTEX_WAIT_BITSET` with
//! `FUTEX_BITSET_MATCH_ANY`), so callers loop on interruptions against one deadline.
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

    /// Wakes up to `n` waiters on `word` (all of them for `n >= i32::MAX`); returns how many
    /// were woken.
    pub(crate) fn futex_wake(word: &AtomicU32, n: u32) -> usize {
        // The kernel reads the count as an `int`: `u32::MAX` would be -1 and wake nobody.
        futex::wake(word.as_core(), futex::Flags::empty(), n.min(0x7fff_ffff)).unwrap_or(0)
    }
}

#[cfg(shmproc_loom)]
mod imp {
    //! Loom emulation: a wait yields to other threads, which is enough for loom to explore
    //! every wake-up order; deadlines are treated as already passed after one yield.
    use super::*;
    use crate::loom::Ordering;

    pub(crate) fn futex_wait(
        word: &AtomicU32,
        expected: u32,
        deadline: Option<&Deadline>,
    ) -> WaitOutcome {
        if word.load(Ordering::SeqCst) == expected {
            loom::thread::yield_now();
        }
        if deadline.is_some() {
            WaitOutcome::TimedOut
        } else {
            WaitOutcome::Retry
        }
    }

    pub(crate) fn futex_wake(_word: &AtomicU32, _n: u32) -> usize {
        0
    }
}

pub(crate) use imp::{futex_wait, futex_wake};

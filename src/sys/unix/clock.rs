//! `clock_gettime(CLOCK_MONOTONIC)`: absolute deadlines for every timed wait.
//!
//! A deadline is computed once from the caller's timeout; every retry after `EINTR` or a
//! spurious wake-up waits against the same absolute instant, so signals never make a wait end
//! early or late.
//!
//! # References
//! - `clock_gettime(2)`

use rustix::time::{ClockId, Timespec, clock_gettime};
use std::time::Duration;

/// An absolute point on `CLOCK_MONOTONIC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Deadline {
    at: Timespec,
}

const NANOS: i64 = 1_000_000_000;

impl Deadline {
    /// Returns the deadline `timeout` from now, saturating far in the future.
    pub(crate) fn after(timeout: Duration) -> Self {
        let now = clock_gettime(ClockId::Monotonic);
        let secs = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX / 2);
        let nanos = i64::from(timeout.subsec_nanos());
        let mut tv_sec = now.tv_sec.saturating_add(secs);
        let mut tv_nsec = now.tv_nsec.saturating_add(nanos);
        if tv_nsec >= NANOS {
            tv_nsec -= NANOS;
            tv_sec = tv_sec.saturating_add(1);
        }
        Deadline {
            at: Timespec { tv_sec, tv_nsec },
        }
    }

    /// Returns whether the deadline has passed.
    pub(crate) fn has_passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Returns the time left until the deadline (zero once it has passed).
    pub(crate) fn remaining(&self) -> Duration {
        let now = clock_gettime(ClockId::Monotonic);
        let mut secs = self.at.tv_sec.saturating_sub(now.tv_sec);
        let mut nanos = self.at.tv_nsec.saturating_sub(now.tv_nsec);
        if nanos < 0 {
            nanos += NANOS;
            secs = secs.saturating_sub(1);
        }
        match (u64::try_from(secs), u32::try_from(nanos)) {
            (Ok(s), Ok(n)) => Duration::new(s, n),
            _ => Duration::ZERO,
        }
    }

    /// Returns the earlier of two deadlines.
    pub(crate) fn min(self, other: Deadline) -> Deadline {
        if (self.at.tv_sec, self.at.tv_nsec) <= (other.at.tv_sec, other.at.tv_nsec) {
            self
        } else {
            other
        }
    }

    #[cfg_attr(shmproc_loom, allow(dead_code))]
    pub(super) fn as_timespec(&self) -> &Timespec {
        &self.at
    }
}

//! `pthread_atfork(prepare, NULL, NULL)`: a counter of forks made by this process.
//!
//! A connection end created before a fork may be in use by the child; the parent dropping its
//! copy must then not close the end. The counter lets a handle tell whether the process forked
//! since the handle was made.
//!
//! # References
//! - `pthread_atfork(3)`

#![allow(unsafe_code)]
#![allow(clippy::disallowed_types)]

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static EPOCH: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn count_fork() {
    // Relaxed: the counter is read by this process's own threads after fork returns; fork
    // itself orders the store before anything the parent does afterwards.
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// Returns the number of forks this process has made since the first call.
pub(crate) fn fork_epoch() -> u64 {
    REGISTER.call_once(|| {
        // SAFETY: `pthread_atfork` registers a handler; `count_fork` is an `extern "C" fn()`
        // that only performs one atomic increment.
        let _ = unsafe { libc::pthread_atfork(Some(count_fork), None, None) };
    });
    // Relaxed: see `count_fork`.
    EPOCH.load(Ordering::Relaxed)
}

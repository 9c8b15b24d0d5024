//! Process-shared synchronization primitives: futex words in the shared heap, robust to the
//! death of their holders.
//!
//! Each primitive's algorithm lives in an `algo` module over plain `&AtomicU32` words and
//! takes its waits and wakes from `crate::sys`, so the loom models in `loom_tests` run the
//! same code against an emulated futex. Every wait, here and in the queue and pipe rings,
//! goes through [`park`]: one spin policy, one sleep-slice policy, one event count.

pub(crate) mod barrier;
pub(crate) mod block;
pub(crate) mod condition;
pub(crate) mod event;
pub(crate) mod lock;
pub(crate) mod park;
pub(crate) mod range;
pub(crate) mod raw;
pub(crate) mod rlock;
pub(crate) mod semaphore;

#[cfg(all(test, shmproc_loom))]
mod loom_tests;

pub use barrier::Barrier;
pub use condition::{Condition, ConditionGuard, ConditionLock};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use rlock::{RLock, RLockGuard};
pub use semaphore::{BoundedSemaphore, Semaphore};

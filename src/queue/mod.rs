//! Queues in shared memory: `Queue`, `SimpleQueue`, `JoinableQueue`, and `ShareableQueue`
//! (plain `Shareable` values copied into their slots with no encoding).
//!
//! A queue is one heap block holding a bounded ring of slots (see the protocol in `ring`):
//! any number of producer and consumer processes and threads, no feeder thread (a message is
//! in shared memory when `put` returns), messages of any size (small ones are copied into their
//! slot, larger ones into a heap block of their own), and crash safety: a process killed in
//! the middle of a `put` or `get` never corrupts the queue or blocks the others, every `put`
//! that returned `Ok` is delivered whole and in order per producer, and a message a killed
//! consumer was taking is delivered to another consumer.

pub(crate) mod handle;
mod readiness;
pub(crate) mod ring;
mod shareable;

#[cfg(all(test, shmproc_loom))]
mod loom_tests;

pub(crate) use handle::ErasedQueue;
pub use handle::{DEFAULT_QUEUE_CAPACITY, JoinableQueue, Queue, SimpleQueue};
pub use readiness::QueueReadiness;
pub use shareable::ShareableQueue;

#![doc = include_str!("../README.md")]
#![deny(unsafe_code)]
#![deny(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::bare_urls
)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod codec;
pub mod connection;
mod error;
mod fdpass;
mod fingerprint;
#[cfg(feature = "test-support")]
#[doc(hidden)]
pub use heap::testing as heap_testing;
mod heap;
mod loom;
mod process;
mod queue;
mod segment;
mod shared;
mod sync;
mod sys;

#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod testing;

#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod fuzzing;

pub use connection::{Client, Connection, Listener, pipe, pipe_simplex};
pub use error::{Error, LockResult, OwnerDied, Result};
pub use heap::{HeapStats, ObjectToken};
pub use process::{
    JoinHandle, OwnerDeathDetection, Process, ProcessBuilder, ProcessInfo, StartMethod,
    active_children, cpu_count, current_process, ensure_forkserver, init, owner_death_detection,
    parent_process, set_start_method, spawn, start_method,
};
pub use queue::{DEFAULT_QUEUE_CAPACITY, JoinableQueue, Queue, SimpleQueue};
pub use segment::Segment;
pub use segment::registry::{default_segment, set_default_heap_size};
pub use shared::{Array, ArrayGuard, RawArray, RawIter, RawValue, Shareable, Value, ValueGuard};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, ConditionLock, Event, Lock, LockGuard,
    RLock, RLockGuard, Semaphore,
};

/// Derives [`Shareable`] for a `#[repr(C)]` struct whose fields are all shareable.
///
/// ```
/// use shmproc::SharedStruct;
///
/// #[derive(SharedStruct, Clone, Copy, Debug, PartialEq)]
/// #[repr(C)]
/// struct Point {
///     x: f64,
///     y: i32,
/// }
///
/// # fn main() -> shmproc::Result<()> {
/// let p = shmproc::Value::new(Point { x: 1.5, y: -2 })?;
/// p.lock()?.y = 7;
/// assert_eq!(p.get()?, Point { x: 1.5, y: 7 });
/// # Ok(()) }
/// ```
pub use shmproc_derive::SharedStruct;

/// Items the derive macro's generated code uses. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::fingerprint::{extend, extend_u64, start};
    pub use core;
}

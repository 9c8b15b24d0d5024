#![doc = include_str!("../README.md")]
//!
//! ## Layers
//!
//! The crate is built bottom up; a module uses only the modules below it (so `segment` knows
//! nothing of `heap`, and nothing below `process` starts or inspects processes):
//!
//! ```text
//! error, fingerprint, loom  leaves used by every layer: the error type, layout fingerprints,
//!                           the one import point for atomics (core or loom)
//! sys/          the only code that names libc/rustix: memfd, mmap (or a process-local buffer
//!               in tests), shm_open, futex, thread identity, fork, posix_spawn, pidfd,
//!               pipes, eventfd, poll, SCM_RIGHTS, the segment reaper
//! segment/      Segment: a mapping with a checked header, and the registry of attached
//!               segments by identity; what follows the header is a `Format` from above
//! codec         the one message format: framing, size cap, bounded decode
//! heap/         the allocator: offsets, size classes, free lists, counted handles and their
//!               tokens; heap/root.rs gives Segment its constructors (a heap in every
//!               segment) and publish / lookup / stats
//! runtime       process state: the default heap, the child's start-up variable, init marks
//! transfer      the envelope: a value's bytes with the segments and descriptors it needs
//! sync/         Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event, Barrier
//! shared/       Value, Array, RawValue, RawArray, the Shareable trait (SharedStruct)
//! process/      Process, spawn / fork / forkserver start methods, init(), active_children
//! connection/   Pipe, Connection, wait(), Listener / Client with an authkey
//! queue/        Queue, SimpleQueue, JoinableQueue
//! pool/         Pool, AsyncResult: worker processes fed through queues, replaced when they die
//! exchange/     pprocess: start / create give a Channel to a child, Exchange watches many and
//!               caps how many run, pmap / Map / Queue over reusable workers
//! containers/   Dict, List, Slot: serde containers in the heap, no server
//! ```
//!
//! `.ci/run` checks the two rules a grep can see: only `src/sys/` names `libc` or `rustix`,
//! and `src/segment/` imports nothing from `src/heap/`.
#![deny(unsafe_code)]
#![deny(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::bare_urls
)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

// Modules by layer, bottom up (the diagram is in the crate docs above): a module uses only
// the modules listed before it. Blank lines keep rustfmt from sorting the layers.
mod error;
mod fingerprint;
mod loom;

mod sys;

mod segment;

pub mod codec;

mod heap;

mod runtime;

mod transfer;

mod handle;

mod sync;

mod shared;

mod process;

pub mod connection;

mod queue;

mod pool;

pub mod exchange;

mod containers;

#[cfg(feature = "test-support")]
#[doc(hidden)]
pub use heap::testing as heap_testing;

#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod testing;

#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod fuzzing;

pub use connection::{Client, Connection, Listener, pipe, pipe_simplex};
pub use containers::{Dict, DictGuard, List, ListGuard, Slot, SlotGuard};
pub use error::{Error, LockResult, OwnerDied, Result};
pub use exchange::{Channel, Exchange, Forked};
pub use handle::Handle;
pub use heap::{HeapStats, ObjectToken};
pub use pool::{AsyncResult, Callbacks, Imap, Pool, PoolBuilder};
pub use process::{
    JoinHandle, OwnerDeathDetection, Process, ProcessBuilder, ProcessInfo, StartMethod,
    active_children, cpu_count, current_process, ensure_forkserver, init, owner_death_detection,
    parent_process, set_start_method, spawn, start_method,
};
pub use queue::{DEFAULT_QUEUE_CAPACITY, JoinableQueue, Queue, ShareableQueue, SimpleQueue};
pub use runtime::{default_segment, set_default_heap_size};
pub use segment::Segment;
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

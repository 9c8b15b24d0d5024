#![doc = include_str!("../README.md")]
// The README (the crate docs) shows a `#[test]` that uses `enable_test_support!()`.
#![allow(clippy::test_attr_in_doctest)]
#![deny(unsafe_code)]
#![deny(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::bare_urls
)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

// Modules by layer, bottom up (the diagram is in CONTRIBUTING.md): a module uses only
// the modules listed before it. Blank lines keep rustfmt from sorting the layers.
mod error;
mod fingerprint;
mod loom;
mod trace;

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

#[cfg(feature = "mpi")]
pub mod mpi_pool;
mod task_pool;

pub mod exchange;

mod containers;

pub mod manager;

#[cfg(feature = "test-support")]
#[doc(hidden)]
pub use heap::testing as heap_testing;

#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod testing;

#[cfg(feature = "test-support")]
#[doc(hidden)]
pub mod fuzzing;

pub use connection::{
    Address, Client, Connection, Listener, Receiver, Sender, pipe, pipe_simplex, typed_pipe,
};
pub use containers::{Dict, DictGuard, List, ListGuard, Slot, SlotGuard};
pub use error::{Error, LockResult, OwnerDied, RemoteErrorKind, Result};
pub use exchange::{Channel, Exchange, Forked};
pub use handle::Handle;
pub use heap::{HeapStats, ObjectToken};
pub use manager::Manager;
pub use pool::{AsyncResult, Callbacks, Imap, Pool, PoolBuilder};
pub use process::{
    JoinHandle, OwnerDeathDetection, Process, ProcessBuilder, ProcessInfo, StartMethod,
    active_children, cpu_count, current_process, ensure_forkserver, init, owner_death_detection,
    parent_process, set_start_method, spawn, start_method,
};
pub use queue::{
    DEFAULT_QUEUE_CAPACITY, JoinableQueue, Queue, QueueReadiness, ShareableQueue, SimpleQueue,
};
pub use runtime::{default_segment, set_default_heap_size};
pub use segment::Segment;
pub use shared::{
    Array, ArrayGuard, ArrayRangeGuard, RangeLockResult, RawArray, RawIter, RawValue, Shareable,
    Value, ValueGuard,
};
pub use sync::{
    Barrier, BoundedSemaphore, Condition, ConditionGuard, ConditionLock, Event, Lock, LockGuard,
    RLock, RLockGuard, Semaphore,
};
pub use task_pool::{TaskIter, TaskPool};

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

/// Makes a type's methods callable through a manager: implements [`manager::Managed`] for the
/// type of an inherent `impl` block and generates its proxy, `<Type>Proxy`, with a method per
/// `pub` method of the block (see the full rules below).
pub use shmproc_derive::managed;

/// Items the derive macro's generated code uses. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::fingerprint::{extend, extend_u64, start};
    pub use crate::process::test_support::init_before_test_harness;
    pub use core;
    pub use serde;

    // Aliases rather than a re-export of `std`: a re-exported `std` changes how rustc names
    // standard types in the diagnostics of every crate that uses shmproc.
    /// `std::string::String`.
    pub type String = std::string::String;
    /// `std::vec::Vec`.
    pub type Vec<T> = std::vec::Vec<T>;
}

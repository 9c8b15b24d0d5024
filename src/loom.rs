//! The single import point for atomics and cells.
//!
//! Under `--cfg shmproc_loom` every atomic and `UnsafeCell` comes from `loom`, so loom models
//! explore every interleaving of the algorithms; otherwise they come from `core`. Nothing else
//! in the crate names `core::sync::atomic` or `core::cell::UnsafeCell` (enforced by
//! `clippy.toml`'s `disallowed-types`).

#![allow(clippy::disallowed_types)]

#[cfg(not(shmproc_loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(shmproc_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// Atomics of every width, for `RawValue`/`RawArray` element access.
#[cfg(not(shmproc_loom))]
pub(crate) use core::sync::atomic::{AtomicU8, AtomicU16};

#[cfg(shmproc_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU16};

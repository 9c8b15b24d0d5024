//! The single import point for atomics.
//!
//! Under `--cfg shmproc_loom` every atomic comes from `loom`, so loom models explore every
//! interleaving of the algorithms; otherwise the types here are `#[repr(transparent)]` wrappers
//! of `core`'s atomics with the same methods. Nothing else in the crate names
//! `core::sync::atomic` (enforced by `clippy.toml`'s `disallowed-types`; this file holds the
//! one `allow`), so no atomic access can escape the models by accident.
//!
//! Being `repr(transparent)`, each wrapper has exactly the size, alignment and bit validity of
//! the `core` atomic it wraps, which has those of its integer (std docs): a wrapper may be
//! placed over an integer in shared memory exactly like the `core` type.

#![allow(clippy::disallowed_types)]

#[cfg(not(shmproc_loom))]
pub(crate) use core::sync::atomic::{Ordering, fence};
#[cfg(shmproc_loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering, fence};

#[cfg(not(shmproc_loom))]
macro_rules! atomic_wrapper {
    ($name:ident, $int:ty) => {
        #[doc = concat!("`core::sync::atomic::", stringify!($name), "`, through the loom shim.")]
        #[repr(transparent)]
        #[derive(Debug, Default)]
        pub(crate) struct $name(core::sync::atomic::$name);

        #[allow(dead_code)]
        impl $name {
            #[inline(always)]
            pub(crate) const fn new(v: $int) -> Self {
                Self(core::sync::atomic::$name::new(v))
            }
            #[inline(always)]
            pub(crate) fn load(&self, order: Ordering) -> $int {
                self.0.load(order)
            }
            #[inline(always)]
            pub(crate) fn store(&self, v: $int, order: Ordering) {
                self.0.store(v, order)
            }
            #[inline(always)]
            pub(crate) fn swap(&self, v: $int, order: Ordering) -> $int {
                self.0.swap(v, order)
            }
            #[inline(always)]
            pub(crate) fn compare_exchange(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.0.compare_exchange(current, new, success, failure)
            }
            #[inline(always)]
            pub(crate) fn compare_exchange_weak(
                &self,
                current: $int,
                new: $int,
                success: Ordering,
                failure: Ordering,
            ) -> Result<$int, $int> {
                self.0.compare_exchange_weak(current, new, success, failure)
            }
            #[inline(always)]
            pub(crate) fn fetch_add(&self, v: $int, order: Ordering) -> $int {
                self.0.fetch_add(v, order)
            }
            #[inline(always)]
            pub(crate) fn fetch_sub(&self, v: $int, order: Ordering) -> $int {
                self.0.fetch_sub(v, order)
            }
            #[inline(always)]
            pub(crate) fn fetch_or(&self, v: $int, order: Ordering) -> $int {
                self.0.fetch_or(v, order)
            }
            #[inline(always)]
            pub(crate) fn fetch_and(&self, v: $int, order: Ordering) -> $int {
                self.0.fetch_and(v, order)
            }
            /// Returns the wrapped `core` atomic, for system calls that take one (futex).
            #[inline(always)]
            pub(crate) fn as_core(&self) -> &core::sync::atomic::$name {
                &self.0
            }
        }
    };
}

#[cfg(not(shmproc_loom))]
atomic_wrapper!(AtomicU8, u8);
#[cfg(not(shmproc_loom))]
atomic_wrapper!(AtomicU16, u16);
#[cfg(not(shmproc_loom))]
atomic_wrapper!(AtomicU32, u32);
#[cfg(not(shmproc_loom))]
atomic_wrapper!(AtomicU64, u64);

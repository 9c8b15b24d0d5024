//! Tear-free element access for `RawValue` and `RawArray`: one atomic load or store of exactly
//! `size_of::<T>()` bytes.
//!
//! # Safety
//!
//! Callers pass pointers into live heap blocks, aligned to `size_of::<T>()` (the blocks are
//! allocated with that alignment and elements are packed at that stride), and `T` satisfies
//! [`assert_atomic`]: size 1, 2, 4 or 8, no padding. `Shareable` makes every bit pattern a
//! valid `T`, so a value written by any process can be read back as a `T`.

#![allow(unsafe_code)]

use super::Shareable;
use crate::loom::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use core::mem::{size_of, transmute_copy};

/// Rejects at compile time a `T` that has no atomic of its exact size or has padding.
pub(crate) const fn assert_atomic<T: Shareable>() {
    assert!(
        matches!(size_of::<T>(), 1 | 2 | 4 | 8),
        "RawValue/RawArray need an element of 1, 2, 4 or 8 bytes (use Value/Array otherwise)"
    );
    assert!(
        T::PADDING_FREE,
        "RawValue/RawArray need an element without padding bytes"
    );
}

macro_rules! load_as {
    ($atomic:ty, $int:ty, $p:expr) => {{
        // SAFETY: the module's `# Safety`: `$p` points into a live block, aligned to the
        // element size, which equals `size_of::<$int>()`; the atomic has the size and
        // alignment of its integer (std docs).
        let a = unsafe { &*($p.cast::<$atomic>()) };
        let bits: $int = a.load(Ordering::Relaxed);
        // SAFETY: `size_of::<T>() == size_of::<$int>()` (the match arm) and every bit pattern
        // is a valid `T` (`Shareable`).
        unsafe { transmute_copy::<$int, T>(&bits) }
    }};
}

macro_rules! store_as {
    ($atomic:ty, $int:ty, $p:expr, $v:expr) => {{
        // SAFETY: `size_of::<T>() == size_of::<$int>()` and `T` has no padding
        // (`assert_atomic`), so all of its bytes are initialized.
        let bits = unsafe { transmute_copy::<T, $int>(&$v) };
        // SAFETY: as in `load_as`.
        let a = unsafe { &*($p.cast::<$atomic>()) };
        a.store(bits, Ordering::Relaxed);
    }};
}

/// Loads the element at `p` with one relaxed atomic load.
///
/// # Safety
/// - `p` points to a live, `size_of::<T>()`-aligned element inside a heap block.
/// - `assert_atomic::<T>()` holds.
#[inline(always)]
pub(crate) unsafe fn load<T: Shareable>(p: *const T) -> T {
    match size_of::<T>() {
        1 => load_as!(AtomicU8, u8, p),
        2 => load_as!(AtomicU16, u16, p),
        4 => load_as!(AtomicU32, u32, p),
        8 => load_as!(AtomicU64, u64, p),
        _ => unreachable!("rejected by assert_atomic"),
    }
}

/// Stores `v` at `p` with one relaxed atomic store.
///
/// # Safety
/// As for [`load`].
#[inline(always)]
pub(crate) unsafe fn store<T: Shareable>(p: *mut T, v: T) {
    match size_of::<T>() {
        1 => store_as!(AtomicU8, u8, p, v),
        2 => store_as!(AtomicU16, u16, p, v),
        4 => store_as!(AtomicU32, u32, p, v),
        8 => store_as!(AtomicU64, u64, p, v),
        _ => unreachable!("rejected by assert_atomic"),
    }
}

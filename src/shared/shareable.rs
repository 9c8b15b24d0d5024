//! The `Shareable` trait: what may live in shared memory.

#![allow(unsafe_code)]
#![allow(clippy::disallowed_types)]

use crate::fingerprint;
use core::sync::atomic;

/// A type whose values may live in shared memory and be read by any process.
///
/// Do not implement this by hand; derive it with `#[derive(SharedStruct)]` on a `#[repr(C)]`
/// struct whose fields are all `Shareable`. It is implemented for the integer and
/// floating-point primitives, the atomic integers, and arrays of `Shareable` types.
///
/// `bool`, `char` and enums are not `Shareable`: another process could write a byte pattern
/// that is not a valid value of the type, and reading it would be undefined behaviour.
///
/// # Safety
///
/// Implementing it promises that:
/// - every bit pattern of the type's non-padding bytes is a valid value (nothing read from
///   another process can be invalid);
/// - the type has a stable layout (`#[repr(C)]`, `#[repr(transparent)]` or a primitive) and
///   holds no pointers, references, descriptors or other process-local resources;
/// - the type does not need `Drop` (values in shared memory are never dropped in place);
/// - `FINGERPRINT` changes whenever the layout changes, differs from the fingerprint of every
///   type with another layout (a block is attached as any type with its fingerprint), and
///   `PADDING_FREE` is true only if the type has no padding bytes.
///
/// The kind of handle (`Value`, `Array`, `RawValue`, `RawArray`) is not part of
/// `FINGERPRINT`: shmproc mixes it into what a block records, so a type's blocks of one kind
/// never attach as another kind whatever the fingerprint.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be placed in shared memory",
    note = "derive it with `#[derive(shmproc::SharedStruct)]` on a `#[repr(C)]` struct whose fields are all shareable (integers, floats, atomics, arrays, other shared structs)"
)]
pub unsafe trait Shareable: Sized + Send + Sync + 'static {
    /// A stable fingerprint of the type's name and layout, checked on attach.
    const FINGERPRINT: u64;
    /// The type's name, for error messages.
    const TYPE_NAME: &'static str;
    /// Whether the type has no padding bytes (required for lock-free `RawValue`/`RawArray`).
    const PADDING_FREE: bool;
}

macro_rules! shareable_primitive {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: a primitive integer or float: every bit pattern is valid, no padding, no
        // pointers, no `Drop`; the fingerprint covers its name, size and alignment.
        unsafe impl Shareable for $t {
            const FINGERPRINT: u64 = fingerprint::start(
                stringify!($t), core::mem::size_of::<$t>(), core::mem::align_of::<$t>());
            const TYPE_NAME: &'static str = stringify!($t);
            const PADDING_FREE: bool = true;
        }
    )*};
}

shareable_primitive!(
    u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64
);

macro_rules! shareable_atomic {
    ($($t:ty),* $(,)?) => {$(
        // SAFETY: an atomic integer has the size, alignment and bit validity of its integer
        // (std docs: "has the same in-memory representation as the underlying integer type"),
        // no padding, no `Drop`.
        unsafe impl Shareable for $t {
            const FINGERPRINT: u64 = fingerprint::start(
                stringify!($t), core::mem::size_of::<$t>(), core::mem::align_of::<$t>());
            const TYPE_NAME: &'static str = stringify!($t);
            const PADDING_FREE: bool = true;
        }
    )*};
}

shareable_atomic!(
    atomic::AtomicU8,
    atomic::AtomicU16,
    atomic::AtomicU32,
    atomic::AtomicU64,
    atomic::AtomicUsize,
    atomic::AtomicI8,
    atomic::AtomicI16,
    atomic::AtomicI32,
    atomic::AtomicI64,
    atomic::AtomicIsize,
);

// SAFETY: an array of `Shareable` elements has no padding between elements (the Reference:
// "an array of [T; N] has a size of size_of::<T>() * N and the same alignment of T"), so its
// bytes are the elements' bytes: every pattern valid if the element's are, padding-free if
// the element is, no `Drop` if the element has none.
unsafe impl<T: Shareable, const N: usize> Shareable for [T; N] {
    const FINGERPRINT: u64 =
        fingerprint::extend_u64(fingerprint::extend_u64(T::FINGERPRINT, 0x5b5d), N as u64);
    const TYPE_NAME: &'static str = "[T; N]";
    const PADDING_FREE: bool = T::PADDING_FREE;
}

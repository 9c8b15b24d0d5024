//! Typed shared memory: `Value`, `Array`, `RawValue`, `RawArray`, and the `Shareable` trait
//! that `#[derive(SharedStruct)]` implements.

pub(crate) mod array;
pub(crate) mod atomic_elem;
pub(crate) mod kind;
pub(crate) mod raw;
pub(crate) mod shareable;
pub(crate) mod value;

pub use array::{Array, ArrayGuard, ArrayRangeGuard, RangeLockResult};
pub use raw::{RawArray, RawIter, RawValue};
pub use shareable::Shareable;
pub use value::{Value, ValueGuard};

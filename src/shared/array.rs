//! `Array<T>`: a fixed-length array of `T` in shared memory behind a [`Lock`].
//!
//! # Safety
//!
//! An `Array<T>` owns a counted reference to a heap block typed `Kind::Array` of `T`
//! (checked by `alloc`/`attach`) whose payload is a link record naming the array's lock,
//! then, at `DATA`, `len` initialized `T`s, aligned for `T`. Elements are read or written
//! only while the array's lock is held by the accessing thread, and slices made from the
//! block never outlive the guard holding the lock. As for `Value`, the block records its lock
//! and re-attaching checks it, and its kind keeps every other kind of handle off it.
//!
//! # Payload layout
//!
//! | offset | size                   | field                                          | writer         |
//! |--------|------------------------|------------------------------------------------|----------------|
//! | 0      | 32                     | link: lock's segment, offset, type, generation | creator        |
//! | `DATA` | `len * size_of::<T>()` | the elements (`DATA`: the alignment, ≥ 64)      | under the lock |

#![allow(unsafe_code)]

use super::Shareable;
use super::kind::{self, Kind};
use super::value::{check_block, data_offset};
use crate::error::{Error, LockResult, OwnerDied, Result};
use crate::heap::{ObjectRef, ObjectToken};
use crate::segment::Segment;
use crate::sync::{Lock, LockGuard};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// A fixed-length array of `T` in shared memory, synchronized by a process-shared lock
/// (`multiprocessing.Array`).
///
/// [`get`](Array::get) and [`set`](Array::set) take the lock for one element, like Python's
/// `arr[i]`; [`lock`](Array::lock) takes it once and gives a slice, which is much faster for
/// bulk work.
///
/// # Owner death
/// If a process dies holding the lock, the next access reports [`Error::OwnerDied`] once.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let arr = shmproc::Array::from_slice(&[0, 1, 2, 3])?;
/// for x in arr.lock()?.iter_mut() {
///     *x = -*x;
/// }
/// assert_eq!(arr.to_vec()?, [0, -1, -2, -3]);
/// assert_eq!(arr.get(3)?, -3);
/// # Ok(()) }
/// ```
pub struct Array<T: Shareable> {
    obj: ObjectRef,
    lock: Lock,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Shareable> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            obj: self.obj.clone(),
            lock: self.lock.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

crate::handle::paired_handle!(
    [T: Shareable] Array<T>, "Array",
    object: |s| &s.obj, lock: |s| s.lock.object()
);

impl<T: Shareable> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::handle::debug(self, f)
            .field("type", &T::TYPE_NAME)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Allocates a zero-filled block of `kind` for `at` bytes of prefix and then `len` elements
/// of `T`.
pub(crate) fn alloc_zeroed<T: Shareable>(
    segment: &Segment,
    kind: Kind,
    at: usize,
    len: usize,
    align: usize,
) -> Result<ObjectRef> {
    const {
        assert!(
            core::mem::size_of::<T>() > 0,
            "zero-sized types cannot be shared"
        )
    };
    let bytes = core::mem::size_of::<T>()
        .checked_mul(len)
        .and_then(|b| b.checked_add(at))
        .ok_or(Error::InvalidSize {
            reason: "array length overflows",
        })?;
    // All-zero bytes are a valid `T` (`Shareable`: every bit pattern is valid).
    Ok(
        ObjectRef::alloc_zeroed(segment, bytes as u64, align as u64, kind.fingerprint::<T>())?
            .with_token_fingerprint(T::FINGERPRINT),
    )
}

impl<T: Shareable> Array<T> {
    /// Creates an array of `len` zeros in the default heap, with its own lock.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`], [`Error::InvalidSize`]; errors creating the default heap.
    pub fn new(len: usize) -> Result<Self> {
        Self::new_in(&crate::runtime::default_segment()?, len)
    }

    /// Creates an array of `len` zeros in `segment`, with its own lock.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`], [`Error::InvalidSize`].
    pub fn new_in(segment: &Segment, len: usize) -> Result<Self> {
        let lock = Lock::new_in(segment)?;
        Self::zeroed_with_lock_in(segment, len, lock)
    }

    /// Creates an array of `len` zeros in the default heap that uses `lock`.
    ///
    /// # Errors
    /// As for [`Array::new`].
    pub fn with_lock(len: usize, lock: Lock) -> Result<Self> {
        Self::zeroed_with_lock_in(&crate::runtime::default_segment()?, len, lock)
    }

    fn zeroed_with_lock_in(segment: &Segment, len: usize, lock: Lock) -> Result<Self> {
        let obj = alloc_zeroed::<T>(segment, Kind::Array, Self::DATA, len, Self::ALIGN)?;
        obj.write_link(0, lock.object())?;
        Ok(Array {
            obj,
            lock,
            len,
            _t: PhantomData,
        })
    }

    /// Creates an array in the default heap holding a copy of `items`.
    ///
    /// # Errors
    /// As for [`Array::new`].
    pub fn from_slice(items: &[T]) -> Result<Self>
    where
        T: Copy,
    {
        Self::from_slice_in(&crate::runtime::default_segment()?, items)
    }

    /// Creates an array in `segment` holding a copy of `items`.
    ///
    /// # Errors
    /// As for [`Array::new_in`].
    pub fn from_slice_in(segment: &Segment, items: &[T]) -> Result<Self>
    where
        T: Copy,
    {
        let a = Self::new_in(segment, items.len())?;
        a.lock()?.copy_from_slice(items);
        Ok(a)
    }

    /// Alignment of the payload (and of the elements): a cache line at least.
    const ALIGN: usize = if core::mem::align_of::<T>() > 64 {
        core::mem::align_of::<T>()
    } else {
        64
    };

    /// Offset of the elements in the payload, after the link record.
    const DATA: usize = data_offset(Self::ALIGN);

    #[inline(always)]
    fn ptr(&self) -> *mut T {
        self.obj.ptr().wrapping_add(Self::DATA).cast::<T>()
    }

    /// Returns the number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads element `index` under the lock.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`]; [`Error::OwnerDied`] if the previous holder died.
    #[inline]
    pub fn get(&self, index: usize) -> Result<T>
    where
        T: Copy,
    {
        if index >= self.len {
            return Err(Error::IndexOutOfBounds {
                index,
                len: self.len,
            });
        }
        let _g = self.lock.lock()?;
        // SAFETY: `index < len` keeps the read inside the block's initialized elements, and
        // the lock held by `_g` excludes every concurrent access (module `# Safety`).
        Ok(unsafe { self.ptr().wrapping_add(index).read() })
    }

    /// Writes element `index` under the lock.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`]; [`Error::OwnerDied`] (nothing written).
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        if index >= self.len {
            return Err(Error::IndexOutOfBounds {
                index,
                len: self.len,
            });
        }
        let _g = self.lock.lock()?;
        // SAFETY: as in `get`.
        unsafe { self.ptr().wrapping_add(index).write(value) };
        Ok(())
    }

    /// Takes the lock and returns a guard that dereferences to the elements as a slice.
    ///
    /// # Errors
    /// [`OwnerDied`] with the guard if the previous holder died.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        match self.lock.lock() {
            Ok(guard) => Ok(ArrayGuard {
                array: self,
                _guard: guard,
            }),
            Err(e) => {
                let tid = e.tid();
                Err(OwnerDied::new(
                    ArrayGuard {
                        array: self,
                        _guard: e.into_inner(),
                    },
                    tid,
                ))
            }
        }
    }

    /// Copies the elements out under the lock.
    ///
    /// # Errors
    /// [`Error::OwnerDied`] if the previous holder died.
    pub fn to_vec(&self) -> Result<Vec<T>>
    where
        T: Copy,
    {
        Ok(self.lock()?.to_vec())
    }

    /// Returns the lock that synchronizes this array.
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Returns the tokens (array, lock) this handle serializes to.
    pub fn token(&self) -> (ObjectToken, ObjectToken) {
        (self.obj.token(), self.lock.token())
    }

    /// Re-attaches an array from its tokens.
    ///
    /// `lock` must be the token of the lock the array was created with: the array's block
    /// records its lock, so no other lock can be paired with it.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`]; [`Error::WrongKind`] if the token names a `Value`,
    /// `RawValue` or `RawArray`; [`Error::LockMismatch`] if `lock` is not the array's lock;
    /// [`Error::ObjectGone`], [`Error::UnknownSegment`], [`Error::CorruptObject`].
    pub fn from_token(array: &ObjectToken, lock: &ObjectToken) -> Result<Self> {
        Self::attach_pair(array, lock)
    }

    fn attach_pair(array: &ObjectToken, lock: &ObjectToken) -> Result<Self> {
        let obj = kind::attach::<T>(array, Kind::Array)?;
        let len = elements::<T>(&obj, Self::DATA)?;
        let lock = Lock::from_token(lock)?;
        obj.check_link(0, lock.object())?;
        Ok(Array {
            obj,
            lock,
            len,
            _t: PhantomData,
        })
    }
}

/// Returns how many `T`s an attached block holds from byte `at` on, checking size and
/// alignment.
pub(crate) fn elements<T>(obj: &ObjectRef, at: usize) -> Result<usize> {
    let size = core::mem::size_of::<T>() as u64;
    let bytes = obj
        .len()
        .checked_sub(at as u64)
        .ok_or(Error::CorruptObject {
            reason: "array block shorter than its header",
        })?;
    if size == 0 || !bytes.is_multiple_of(size) {
        return Err(Error::CorruptObject {
            reason: "array block length is not a whole number of elements",
        });
    }
    let n = bytes / size;
    check_block::<T>(obj, at, n)?;
    usize::try_from(n).map_err(|_| Error::CorruptObject {
        reason: "array length overflows",
    })
}

/// Holds an [`Array`]'s lock and dereferences to its elements; releases the lock on drop.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct ArrayGuard<'a, T: Shareable> {
    array: &'a Array<T>,
    _guard: LockGuard<'a>,
}

impl<T: Shareable> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the block holds `len` initialized `T`s, aligned (module `# Safety`), and the
        // lock held for the guard's lifetime excludes every concurrent access.
        unsafe { core::slice::from_raw_parts(self.array.ptr(), self.array.len) }
    }
}

impl<T: Shareable> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only slice made through the guard.
        unsafe { core::slice::from_raw_parts_mut(self.array.ptr(), self.array.len) }
    }
}

impl<T: Shareable + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

//! `RawValue<T>` and `RawArray<T>`: shared memory without a lock, every element access one
//! atomic load or store.
//!
//! # Safety
//!
//! Handles own a counted reference to a heap block of `len` elements, aligned to
//! `size_of::<T>()` (allocated so, checked on attach) and initialized before the handle
//! exists. Elements are only accessed through `atomic_elem`, so concurrent access from any
//! process is never a data race, and no reference to the memory is ever handed out.

#![allow(unsafe_code)]

use super::Shareable;
use super::array::{alloc_zeroed, elements};
use super::atomic_elem::{self, assert_atomic};
use super::kind::{self, Kind};
use crate::error::{Error, Result};
use crate::heap::{ObjectRef, ObjectToken};
use crate::segment::Segment;
use std::fmt;
use std::iter::FusedIterator;
use std::marker::PhantomData;

/// One `T` in shared memory with no lock (`multiprocessing.RawValue`).
///
/// Reads and writes are single atomic instructions, so they never tear, but a
/// read-modify-write is not atomic: use [`Value`](crate::Value) for that. `T` must be 1, 2, 4
/// or 8 bytes without padding (checked at compile time).
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let v = shmproc::RawValue::new(7u64)?;
/// v.set(8);
/// assert_eq!(v.get(), 8);
/// # Ok(()) }
/// ```
pub struct RawValue<T: Shareable> {
    obj: ObjectRef,
    _t: PhantomData<T>,
}

impl<T: Shareable> Clone for RawValue<T> {
    fn clone(&self) -> Self {
        RawValue {
            obj: self.obj.clone(),
            _t: PhantomData,
        }
    }
}

crate::handle::single_token_handle!([T: Shareable] RawValue<T>, "RawValue", object: |s| &s.obj);

impl<T: Shareable> fmt::Debug for RawValue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::handle::debug(self, f)
            .field("type", &T::TYPE_NAME)
            .finish_non_exhaustive()
    }
}

impl<T: Shareable> RawValue<T> {
    /// Creates a value in the default heap.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`]; errors creating the default heap.
    pub fn new(value: T) -> Result<Self> {
        Self::new_in(&crate::runtime::default_segment()?, value)
    }

    /// Creates a value in `segment`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`].
    pub fn new_in(segment: &Segment, value: T) -> Result<Self> {
        const { assert_atomic::<T>() };
        let obj = alloc_zeroed::<T>(segment, Kind::RawValue, 0, 1, core::mem::size_of::<T>())?;
        let v = RawValue {
            obj,
            _t: PhantomData,
        };
        v.set(value);
        Ok(v)
    }

    /// Reads the value (one atomic load).
    #[inline]
    pub fn get(&self) -> T {
        // SAFETY: the block holds one aligned element (module `# Safety`); `assert_atomic`
        // held when the value was created or attached.
        unsafe { atomic_elem::load(self.obj.ptr().cast::<T>()) }
    }

    /// Writes the value (one atomic store).
    #[inline]
    pub fn set(&self, value: T) {
        // SAFETY: as in `get`.
        unsafe { atomic_elem::store(self.obj.ptr().cast::<T>(), value) }
    }

    /// Re-attaches a value from its token, checking its kind, size and alignment.
    fn attach(token: &ObjectToken) -> Result<Self> {
        const { assert_atomic::<T>() };
        let obj = kind::attach::<T>(token, Kind::RawValue)?;
        if elements::<T>(&obj, 0)? != 1 || obj.ptr().align_offset(core::mem::size_of::<T>()) != 0 {
            return Err(Error::CorruptObject {
                reason: "raw value block has the wrong size or alignment",
            });
        }
        Ok(RawValue {
            obj,
            _t: PhantomData,
        })
    }
}

/// A fixed-length array of `T` in shared memory with no lock (`multiprocessing.RawArray`).
///
/// Each element read or write is one atomic instruction, so it never tears, and disjoint
/// writers need no lock. `T` must be 1, 2, 4 or 8 bytes without padding (checked at compile
/// time).
///
/// # Cost
///
/// The handle keeps the block's address and length, read and checked once when it was made or
/// attached (the length is the block's, fixed for its life; nothing is read from shared memory
/// but the elements). So a loop of [`get`](RawArray::get) over `0..len()` inlines to the loads
/// alone: the compiler keeps address and length in registers, drops the bounds check and
/// unrolls the loop, as for a slice. What remains is the atomic load itself: the compiler does
/// not fold an atomic load into the instruction that uses its value (an `i32` widened to `i64`
/// is a load and then a sign extension, where a plain or volatile load is one sign-extending
/// load), one more instruction per element. A loop that only sums pays for it: the
/// `benchmarks` program's `RawArray<i32> get(i)` rows measured 0.75–0.84× the rate of
/// volatile loads and 0.88–1.12× that of a plain loop of relaxed `AtomicI32` loads (the same
/// loads and sign extensions) in the same runs, on a loaded 2-core Xeon. A volatile or plain
/// load of memory that another thread or process may be writing is a data race, so the atomic
/// load stays.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let a = shmproc::RawArray::<i32>::new(4)?;
/// a.set(2, 5)?;
/// assert_eq!(a.iter().sum::<i32>(), 5);
/// assert_eq!(a.to_vec(), [0, 0, 5, 0]);
/// # Ok(()) }
/// ```
pub struct RawArray<T: Shareable> {
    obj: ObjectRef,
    ptr: *mut T,
    len: usize,
}

// SAFETY: `ptr` points into the shared block owned by `obj` (which is `Send`); elements are
// only accessed atomically, so handles may move between threads as the block may.
unsafe impl<T: Shareable> Send for RawArray<T> {}
// SAFETY: every method takes `&self` and accesses elements with atomic operations only.
unsafe impl<T: Shareable> Sync for RawArray<T> {}

impl<T: Shareable> Clone for RawArray<T> {
    fn clone(&self) -> Self {
        RawArray {
            obj: self.obj.clone(),
            ptr: self.ptr,
            len: self.len,
        }
    }
}

crate::handle::single_token_handle!([T: Shareable] RawArray<T>, "RawArray", object: |s| &s.obj);

impl<T: Shareable> fmt::Debug for RawArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::handle::debug(self, f)
            .field("type", &T::TYPE_NAME)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<T: Shareable> RawArray<T> {
    /// Creates an array of `len` zeros in the default heap.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`], [`Error::InvalidSize`]; errors creating the default heap.
    pub fn new(len: usize) -> Result<Self> {
        Self::new_in(&crate::runtime::default_segment()?, len)
    }

    /// Creates an array of `len` zeros in `segment`.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`], [`Error::InvalidSize`].
    pub fn new_in(segment: &Segment, len: usize) -> Result<Self> {
        const { assert_atomic::<T>() };
        let obj = alloc_zeroed::<T>(segment, Kind::RawArray, 0, len, 64)?;
        let ptr = obj.ptr().cast::<T>();
        Ok(RawArray { obj, ptr, len })
    }

    /// Creates an array in the default heap holding a copy of `items`.
    ///
    /// # Errors
    /// As for [`RawArray::new`].
    pub fn from_slice(items: &[T]) -> Result<Self>
    where
        T: Copy,
    {
        Self::from_slice_in(&crate::runtime::default_segment()?, items)
    }

    /// Creates an array in `segment` holding a copy of `items`.
    ///
    /// # Errors
    /// As for [`RawArray::new_in`].
    pub fn from_slice_in(segment: &Segment, items: &[T]) -> Result<Self>
    where
        T: Copy,
    {
        let a = Self::new_in(segment, items.len())?;
        for (i, &v) in items.iter().enumerate() {
            // SAFETY: `i < len`: element `i` is inside the block (module `# Safety`).
            unsafe { atomic_elem::store(a.ptr.wrapping_add(i), v) };
        }
        Ok(a)
    }

    /// Returns the number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads element `index` (one atomic load).
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`].
    #[inline]
    pub fn get(&self, index: usize) -> Result<T> {
        if index >= self.len {
            return Err(Error::IndexOutOfBounds {
                index,
                len: self.len,
            });
        }
        // SAFETY: `index < len`: the element is inside the block (module `# Safety`).
        Ok(unsafe { atomic_elem::load(self.ptr.wrapping_add(index)) })
    }

    /// Writes element `index` (one atomic store).
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`].
    #[inline]
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        if index >= self.len {
            return Err(Error::IndexOutOfBounds {
                index,
                len: self.len,
            });
        }
        // SAFETY: `index < len`: the element is inside the block (module `# Safety`).
        unsafe { atomic_elem::store(self.ptr.wrapping_add(index), value) };
        Ok(())
    }

    /// Returns an iterator over the elements, each read with one atomic load.
    pub fn iter(&self) -> RawIter<'_, T> {
        RawIter {
            array: self,
            front: 0,
            back: self.len,
        }
    }

    /// Copies the elements out (element by element; concurrent writers may interleave).
    pub fn to_vec(&self) -> Vec<T> {
        self.iter().collect()
    }

    /// Checks that `start..start + n` lies inside the array.
    fn check_range(&self, start: usize, n: usize) -> Result<()> {
        match start.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::IndexOutOfBounds {
                index: start.saturating_add(n),
                len: self.len,
            }),
        }
    }

    /// Copies `dst.len()` elements starting at `start` into `dst`, each with one atomic load
    /// (no element tears; writers elsewhere in the range may interleave between elements).
    ///
    /// Workers that each read and write their own disjoint range need no lock and run in
    /// parallel.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`] if the range passes the end (nothing is read).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// let a = shmproc::RawArray::from_slice(&[1u32, 2, 3, 4, 5])?;
    /// let mut middle = [0u32; 3];
    /// a.read_into(1, &mut middle)?;
    /// assert_eq!(middle, [2, 3, 4]);
    /// a.write_from(3, &[40, 50])?;
    /// assert_eq!(a.read_range(2..)?, [3, 40, 50]);
    /// assert!(a.write_from(4, &[0, 0]).is_err()); // past the end: nothing written
    /// # Ok(()) }
    /// ```
    pub fn read_into(&self, start: usize, dst: &mut [T]) -> Result<()> {
        self.check_range(start, dst.len())?;
        let src = self.ptr.wrapping_add(start);
        for (i, d) in dst.iter_mut().enumerate() {
            // SAFETY: `start + i < start + dst.len() <= len` (checked above): the element is
            // inside the block (module `# Safety`).
            *d = unsafe { atomic_elem::load(src.wrapping_add(i)) };
        }
        Ok(())
    }

    /// Writes `src` into the elements starting at `start`, each with one atomic store.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`] if the range passes the end (nothing is written).
    pub fn write_from(&self, start: usize, src: &[T]) -> Result<()>
    where
        T: Copy,
    {
        self.check_range(start, src.len())?;
        let dst = self.ptr.wrapping_add(start);
        for (i, &v) in src.iter().enumerate() {
            // SAFETY: `start + i < start + src.len() <= len` (checked above): the element is
            // inside the block (module `# Safety`).
            unsafe { atomic_elem::store(dst.wrapping_add(i), v) };
        }
        Ok(())
    }

    /// Copies the elements of `range` out, each with one atomic load.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`] if the range is not inside the array (or ends before it
    /// starts).
    pub fn read_range(&self, range: impl std::ops::RangeBounds<usize>) -> Result<Vec<T>> {
        use std::ops::Bound;
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.saturating_add(1),
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len,
        };
        let n = end.checked_sub(start).ok_or(Error::IndexOutOfBounds {
            index: start,
            len: self.len,
        })?;
        self.check_range(start, n)?;
        let mut out = Vec::with_capacity(n);
        out.extend((start..end).map(|i| {
            // SAFETY: `i < end <= len` (checked above): the element is inside the block.
            unsafe { atomic_elem::load(self.ptr.wrapping_add(i)) }
        }));
        Ok(out)
    }

    /// Copies every element from `src`, which must have the array's length (like
    /// [`slice::copy_from_slice`], but an error instead of a panic).
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if the lengths differ (nothing is written).
    pub fn copy_from_slice(&self, src: &[T]) -> Result<()>
    where
        T: Copy,
    {
        if src.len() != self.len {
            return Err(Error::InvalidSize {
                reason: "copy_from_slice: the slice's length differs from the array's",
            });
        }
        self.write_from(0, src)
    }

    /// Copies every element into `dst`, which must have the array's length.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if the lengths differ (nothing is read).
    pub fn copy_to_slice(&self, dst: &mut [T]) -> Result<()> {
        if dst.len() != self.len {
            return Err(Error::InvalidSize {
                reason: "copy_to_slice: the slice's length differs from the array's",
            });
        }
        self.read_into(0, dst)
    }

    /// Re-attaches an array from its token, checking its kind, size and alignment.
    fn attach(token: &ObjectToken) -> Result<Self> {
        const { assert_atomic::<T>() };
        let obj = kind::attach::<T>(token, Kind::RawArray)?;
        let len = elements::<T>(&obj, 0)?;
        if obj.ptr().align_offset(core::mem::size_of::<T>()) != 0 {
            return Err(Error::CorruptObject {
                reason: "raw array block misaligned",
            });
        }
        let ptr = obj.ptr().cast::<T>();
        Ok(RawArray { obj, ptr, len })
    }
}

impl<'a, T: Shareable> IntoIterator for &'a RawArray<T> {
    type Item = T;
    type IntoIter = RawIter<'a, T>;
    fn into_iter(self) -> RawIter<'a, T> {
        self.iter()
    }
}

/// Iterator over a [`RawArray`]'s elements, each read with one atomic load.
#[derive(Debug)]
pub struct RawIter<'a, T: Shareable> {
    array: &'a RawArray<T>,
    front: usize,
    back: usize,
}

impl<T: Shareable> Iterator for RawIter<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.front >= self.back {
            return None;
        }
        // SAFETY: `front < back <= len`: the element is inside the block (module `# Safety`).
        let v = unsafe { atomic_elem::load(self.array.ptr.wrapping_add(self.front)) };
        self.front += 1;
        Some(v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl<T: Shareable> DoubleEndedIterator for RawIter<'_, T> {
    fn next_back(&mut self) -> Option<T> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        // SAFETY: `front <= back < len`: the element is inside the block.
        Some(unsafe { atomic_elem::load(self.array.ptr.wrapping_add(self.back)) })
    }
}

impl<T: Shareable> ExactSizeIterator for RawIter<'_, T> {}
impl<T: Shareable> FusedIterator for RawIter<'_, T> {}

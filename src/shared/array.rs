//! `Array<T>`: a fixed-length array of `T` in shared memory behind a [`Lock`].
//!
//! # Safety
//!
//! An `Array<T>` owns a counted reference to a heap block typed `Kind::Array` of `T`
//! (checked by `alloc`/`attach`) whose payload is a link record naming the array's lock, a
//! range table (`sync::range`), then, at `DATA`, `len` initialized `T`s, aligned for `T`.
//! Elements are read or written only while the accessing thread holds either the array's lock
//! *and* no range claim exists (every whole-array access waits for the table to empty while
//! holding the lock, and no claim is made without the lock), or a range claim covering them
//! (claims never overlap: the table grants a claim only when no held claim overlaps it). Slices
//! made from the block never outlive the guard holding the lock or the claim. As for `Value`,
//! the block records its lock and re-attaching checks it, and its kind keeps every other kind
//! of handle off it.
//!
//! # Payload layout
//!
//! | offset | size                   | field                                          | writer         |
//! |--------|------------------------|------------------------------------------------|----------------|
//! | 0      | 32                     | link: lock's segment, offset, type, generation | creator        |
//! | 32     | 648                    | range table (see `sync::range`), zeroed = empty | claimants      |
//! | `DATA` | `len * size_of::<T>()` | the elements (`DATA`: 704 rounded up to the alignment) | under the lock or a claim |

#![allow(unsafe_code)]

use super::Shareable;
use super::kind::{self, Kind};
use super::value::{check_block, data_offset};
use crate::error::{Error, LockResult, OwnerDied, Result};
use crate::heap::{LINK_BYTES, ObjectRef, ObjectToken};
use crate::segment::Segment;
use crate::sync::range::{self, Claim, RangeTable, Wait};
use crate::sync::{Lock, LockGuard};
use crate::sys::{self, Deadline};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Bound, Deref, DerefMut, Range, RangeBounds};
use std::time::Duration;

/// A fixed-length array of `T` in shared memory, synchronized by a process-shared lock
/// (`multiprocessing.Array`).
///
/// [`get`](Array::get) and [`set`](Array::set) take the lock for one element, like Python's
/// `arr[i]`; [`lock`](Array::lock) takes it once and gives a slice, which is much faster for
/// bulk work. [`lock_range`](Array::lock_range) locks only a range of elements: workers on
/// disjoint ranges hold their guards at the same time and run in parallel, while a guard on
/// an overlapping range waits.
///
/// # Owner death
/// If a process dies holding the lock or a range guard, the next access to the elements it
/// held reports [`Error::OwnerDied`] once. A guard (whole-array or range) leaked by a thread
/// that then ends keeps its elements locked for as long as its process lives (the slice it
/// gave out may live on in another thread), like a forgotten `std::sync::MutexGuard`.
///
/// # Memory
/// Each array carries a range table of 648 bytes before its elements, for up to
/// 16 range guards held at once (see [`lock_range`](Array::lock_range)).
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

    /// Offset of the range table in the payload, after the link record.
    const TABLE: usize = LINK_BYTES as usize;

    /// Offset of the elements in the payload, after the link record and the range table.
    const DATA: usize = data_offset(Self::ALIGN)
        .saturating_add(RangeTable::SIZE)
        .next_multiple_of(Self::ALIGN);

    #[inline(always)]
    fn ptr(&self) -> *mut T {
        self.obj.ptr().wrapping_add(Self::DATA).cast::<T>()
    }

    #[inline(always)]
    fn table(&self) -> &RangeTable {
        const { assert!(Self::TABLE.is_multiple_of(RangeTable::ALIGN)) };
        const { assert!(Self::TABLE + RangeTable::SIZE <= Self::DATA) };
        let ptr = self
            .obj
            .ptr()
            .wrapping_add(Self::TABLE)
            .cast::<RangeTable>();
        // SAFETY: the block's payload holds the range table at `TABLE` (module `# Safety`;
        // `elements` checked on attach that the block reaches `DATA`), aligned (the payload is
        // `ALIGN`-aligned, `ALIGN >= 64`, and `TABLE` is a multiple of the table's alignment,
        // asserted above), and lives as long as `self.obj`. It is accessed only atomically;
        // `RangeTable` is `repr(C)` of atomics (through the `loom` shim's
        // `repr(transparent)`), whose size, alignment and validity are those of their integers
        // (std docs), so every bit pattern, zeroes included, is a valid table.
        unsafe { &*ptr }
    }

    /// Takes the lock and waits until no range guard is held: the whole array is the caller's.
    #[inline]
    fn lock_all(&self) -> LockResult<LockGuard<'_>> {
        match range::lock_unclaimed(self.table(), &self.lock) {
            Ok((guard, None)) => Ok(guard),
            Ok((guard, Some(tid))) => Err(OwnerDied::new(guard, tid)),
            Err(()) => panic!(
                "Array accessed as a whole by a thread that holds one of its range guards; \
                 this would deadlock (drop the ArrayRangeGuard first)"
            ),
        }
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
    /// Waits while a [range guard](Array::lock_range) is held.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`]; [`Error::OwnerDied`] if the previous holder died.
    ///
    /// # Panics
    /// If the calling thread holds a range guard of this array (that would deadlock).
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
        let _g = self.lock_all()?;
        // SAFETY: `index < len` keeps the read inside the block's initialized elements, and
        // the lock held by `_g` excludes every concurrent access (module `# Safety`).
        Ok(unsafe { self.ptr().wrapping_add(index).read() })
    }

    /// Writes element `index` under the lock.
    ///
    /// Waits while a [range guard](Array::lock_range) is held.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`]; [`Error::OwnerDied`] (nothing written).
    ///
    /// # Panics
    /// As for [`get`](Array::get).
    pub fn set(&self, index: usize, value: T) -> Result<()> {
        if index >= self.len {
            return Err(Error::IndexOutOfBounds {
                index,
                len: self.len,
            });
        }
        let _g = self.lock_all()?;
        // SAFETY: as in `get`.
        unsafe { self.ptr().wrapping_add(index).write(value) };
        Ok(())
    }

    /// Takes the lock and returns a guard that dereferences to the elements as a slice.
    ///
    /// Waits while a [range guard](Array::lock_range) is held (without holding the lock, so
    /// range guards keep being granted meanwhile); new range guards wait for this guard.
    ///
    /// # Errors
    /// [`OwnerDied`] with the guard if the previous holder (of the lock or of a range guard)
    /// died.
    ///
    /// # Panics
    /// If the calling thread holds the lock or a range guard of this array already (that
    /// would deadlock).
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        match self.lock_all() {
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
    ///
    /// # Panics
    /// As for [`lock`](Array::lock).
    pub fn to_vec(&self) -> Result<Vec<T>>
    where
        T: Copy,
    {
        Ok(self.lock()?.to_vec())
    }

    /// Locks the elements in `range` only and returns a guard that dereferences to them as a
    /// slice; guards on disjoint ranges are held at the same time, by any threads of any
    /// processes.
    ///
    /// Blocks while a guard on an overlapping range is held, or the whole array is locked
    /// ([`lock`](Array::lock), [`get`](Array::get), [`set`](Array::set),
    /// [`to_vec`](Array::to_vec)); whole-array access in turn waits until every range guard
    /// is dropped. Taking a range guard takes the array's lock for a moment, so a thread that
    /// holds [`get_lock`](Array::get_lock)'s lock blocks range guards. At most 16 range guards
    /// of one array are held at once; a 17th waits for one to be dropped. An empty range
    /// locks nothing.
    ///
    /// The two results: the outer one is for the request (a range out of bounds), the inner
    /// one is the lock's [`LockResult`], so `arr.lock_range(a..b)??` reads like `lock()?`.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`] if the range ends past [`len`](Array::len),
    /// [`Error::InvalidSize`] if it starts after its end. Inside, [`OwnerDied`] with the guard
    /// if a process died holding an overlapping range guard or the array's lock: the elements
    /// it held may be half-updated.
    ///
    /// # Panics
    /// If the calling thread holds a guard on an overlapping range (that would deadlock), or
    /// holds the array's lock.
    ///
    /// # Examples
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// let arr = shmproc::Array::from_slice(&[1, 2, 3, 4])?;
    /// let mut low = arr.lock_range(..2)??;
    /// let mut high = arr.lock_range(2..)??; // disjoint: held at the same time
    /// low[0] = 10;
    /// high[1] = 40;
    /// assert!(arr.try_lock_range(1..3)??.is_none()); // overlaps both
    /// drop((low, high));
    /// assert_eq!(arr.to_vec()?, [10, 2, 3, 40]);
    /// # Ok(()) }
    /// ```
    pub fn lock_range(
        &self,
        range: impl RangeBounds<usize>,
    ) -> Result<LockResult<ArrayRangeGuard<'_, T>>> {
        let r = self.check_range(range)?;
        match self.claim(r, Wait::Forever) {
            Claimed::Held(g) => Ok(Ok(g)),
            Claimed::Died(e) => Ok(Err(e)),
            Claimed::NotNow => unreachable!("an unbounded wait ends only with the claim"),
            Claimed::SelfConflict => panic!(
                "Array::lock_range called by a thread that holds a guard on an overlapping \
                 range; this would deadlock"
            ),
        }
    }

    /// Locks the elements in `range` if no overlapping guard is held and the array is not
    /// locked now, without blocking; `Ok(None)` inside otherwise (also when the calling thread
    /// holds an overlapping guard).
    ///
    /// # Errors
    /// As for [`lock_range`](Array::lock_range).
    pub fn try_lock_range(&self, range: impl RangeBounds<usize>) -> Result<RangeLockResult<'_, T>> {
        let r = self.check_range(range)?;
        Ok(self.claim(r, Wait::Never).into_option())
    }

    /// Locks the elements in `range`, waiting at most `timeout`; `Ok(None)` inside if it timed
    /// out (a thread that holds an overlapping guard itself waits out the timeout).
    ///
    /// The deadline is on the monotonic clock.
    ///
    /// # Errors
    /// As for [`lock_range`](Array::lock_range).
    pub fn lock_range_timeout(
        &self,
        range: impl RangeBounds<usize>,
        timeout: Duration,
    ) -> Result<RangeLockResult<'_, T>> {
        let r = self.check_range(range)?;
        let deadline = Deadline::after(timeout);
        let claimed = self.claim(r, Wait::Until(&deadline));
        if let Claimed::SelfConflict = claimed {
            std::thread::sleep(deadline.remaining());
        }
        Ok(claimed.into_option())
    }

    /// Resolves `range` against the length.
    fn check_range(&self, range: impl RangeBounds<usize>) -> Result<Range<usize>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.checked_add(1).ok_or(Error::IndexOutOfBounds {
                index: s,
                len: self.len,
            })?,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e.checked_add(1).ok_or(Error::IndexOutOfBounds {
                index: e,
                len: self.len,
            })?,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => self.len,
        };
        if end > self.len {
            return Err(Error::IndexOutOfBounds {
                index: end.saturating_sub(1),
                len: self.len,
            });
        }
        if start > end {
            return Err(Error::InvalidSize {
                reason: "range starts after its end",
            });
        }
        Ok(start..end)
    }

    fn claim(&self, r: Range<usize>, wait: Wait<'_>) -> Claimed<'_, T> {
        let guard = |slot| {
            sys::guard_made();
            ArrayRangeGuard {
                array: self,
                start: r.start,
                len: r.end - r.start,
                slot,
                _not_send: PhantomData,
            }
        };
        if r.is_empty() {
            return Claimed::Held(guard(None));
        }
        match range::claim(self.table(), &self.lock, r.start as u64, r.end as u64, wait) {
            Claim::Held { slot, died: None } => Claimed::Held(guard(Some(slot))),
            Claim::Held {
                slot,
                died: Some(tid),
            } => Claimed::Died(OwnerDied::new(guard(Some(slot)), tid)),
            Claim::NotNow => Claimed::NotNow,
            Claim::SelfConflict => Claimed::SelfConflict,
        }
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
///
/// While it lives (or after it was leaked) [`Lock::release`](crate::Lock::release) on its
/// lock is refused, and its thread may not fork with `StartMethod::Fork` (or fork an exchange
/// or pool worker): [`Error::ForkWhileLocked`](crate::Error::ForkWhileLocked). A copy that
/// reaches a forked child anyway releases nothing when dropped there.
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

/// The inner result of [`Array::try_lock_range`] and [`Array::lock_range_timeout`]: the guard,
/// `None` if not granted in time, or the guard wrapped in [`OwnerDied`].
pub type RangeLockResult<'a, T> =
    std::result::Result<Option<ArrayRangeGuard<'a, T>>, OwnerDied<ArrayRangeGuard<'a, T>>>;

/// How a range claim went, with the guard.
enum Claimed<'a, T: Shareable> {
    Held(ArrayRangeGuard<'a, T>),
    Died(OwnerDied<ArrayRangeGuard<'a, T>>),
    NotNow,
    SelfConflict,
}

impl<'a, T: Shareable> Claimed<'a, T> {
    fn into_option(self) -> RangeLockResult<'a, T> {
        match self {
            Claimed::Held(g) => Ok(Some(g)),
            Claimed::Died(e) => Err(e),
            Claimed::NotNow | Claimed::SelfConflict => Ok(None),
        }
    }
}

/// Holds a range of an [`Array`]'s elements (from [`Array::lock_range`]) and dereferences to
/// them; releases the range on drop.
///
/// Not `Send`: the range belongs to the thread that took it.
///
/// While it lives (or after it was leaked) its thread may not fork with `StartMethod::Fork`
/// (or fork an exchange or pool worker):
/// [`Error::ForkWhileLocked`](crate::Error::ForkWhileLocked). A copy that reaches a forked
/// child anyway releases nothing when dropped there.
#[must_use = "the range is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct ArrayRangeGuard<'a, T: Shareable> {
    array: &'a Array<T>,
    start: usize,
    len: usize,
    /// The range table slot held; `None` for an empty range.
    slot: Option<usize>,
    _not_send: PhantomData<*const ()>,
}

// SAFETY: sharing `&ArrayRangeGuard` between threads gives access only to `&[T]` (and
// `&Array<T>`), which is `Sync` because `T: Shareable` is `Sync`.
unsafe impl<T: Shareable> Sync for ArrayRangeGuard<'_, T> {}

impl<T: Shareable> ArrayRangeGuard<'_, T> {
    /// Returns the range of indices this guard holds.
    pub fn range(&self) -> Range<usize> {
        self.start..self.start + self.len
    }
}

impl<T: Shareable> Deref for ArrayRangeGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `start + len <= array.len` (checked by `check_range`), so the slice lies
        // within the block's initialized, aligned elements (module `# Safety`); the claim held
        // for the guard's lifetime excludes every other access to them (no overlapping claim,
        // no whole-array access while a claim is held).
        unsafe { core::slice::from_raw_parts(self.array.ptr().wrapping_add(self.start), self.len) }
    }
}

impl<T: Shareable> DerefMut for ArrayRangeGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only slice made through the guard.
        unsafe {
            core::slice::from_raw_parts_mut(self.array.ptr().wrapping_add(self.start), self.len)
        }
    }
}

impl<T: Shareable> Drop for ArrayRangeGuard<'_, T> {
    fn drop(&mut self) {
        sys::guard_dropped();
        if let Some(slot) = self.slot {
            // Releases only the calling thread's claim: a copy in a forked child releases
            // nothing.
            range::release(self.array.table(), slot);
        }
    }
}

impl<T: Shareable + fmt::Debug> fmt::Debug for ArrayRangeGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayRangeGuard")
            .field("range", &self.range())
            .field("elements", &&**self)
            .finish()
    }
}

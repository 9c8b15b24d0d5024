//! `Value<T>`: one `T` in shared memory behind a [`Lock`].
//!
//! # Safety
//!
//! A `Value<T>` owns a counted reference to a heap block typed `Kind::Value` of `T`
//! (checked by `alloc`/`attach`) whose payload is a link record naming the value's lock,
//! then, at `data_offset(align_of::<T>())`, a `T`, aligned for `T` and initialized before the
//! handle exists. The `T` is read or written only while the value's lock is held by the
//! accessing thread, so no two accesses race, and `&mut T` never outlives the guard that
//! holds the lock.
//!
//! That every handle to the block uses the same lock is what makes this sound, so it is
//! checked, never assumed: the block records its lock when it is created (`write_link`),
//! re-attaching checks that the lock token names that lock (`check_link`), and the kind in
//! the block's fingerprint keeps a `RawValue`, `Array` or `RawArray` from attaching to it.
//!
//! # Payload layout
//!
//! | offset                      | size | field                                       | writer  |
//! |-----------------------------|------|---------------------------------------------|---------|
//! | 0                           | 32   | link: lock's segment, offset, type, generation | creator |
//! | `data_offset(align_of::<T>())` | `size_of::<T>()` | the `T`                        | under the lock |

#![allow(unsafe_code)]

use super::Shareable;
use super::kind::{self, Kind};
use crate::error::{Error, LockResult, OwnerDied, Result};
use crate::heap::{LINK_BYTES, ObjectRef, ObjectToken};
use crate::segment::Segment;
use crate::sync::{Lock, LockGuard};
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// A `T` in shared memory, synchronized by a process-shared lock (`multiprocessing.Value`).
///
/// `Clone` gives another handle to the same memory; handles can be passed to child processes.
/// Each access takes the lock, so reads and writes from any process never tear. For several
/// steps under one acquisition use [`lock`](Value::lock); for several values under one lock
/// use [`with_lock`](Value::with_lock).
///
/// # Owner death
/// If a process dies holding the lock, the next access reports [`Error::OwnerDied`] once (the
/// value may be mid-update), then the value works normally. A guard leaked by a thread that
/// then ends keeps the value locked for as long as its process lives (the `&mut T` it gave
/// out may live on in another thread), like a forgotten `std::sync::MutexGuard`.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let num = shmproc::Value::new(0.0f64)?;
/// num.set(3.1415927)?;
/// *num.lock()? += 1.0;
/// assert_eq!(num.get()?, 4.1415927);
/// # Ok(()) }
/// ```
pub struct Value<T: Shareable> {
    obj: ObjectRef,
    lock: Lock,
    _t: PhantomData<T>,
}

impl<T: Shareable> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            obj: self.obj.clone(),
            lock: self.lock.clone(),
            _t: PhantomData,
        }
    }
}

crate::handle::paired_handle!(
    [T: Shareable] Value<T>, "Value",
    object: |s| &s.obj, lock: |s| s.lock.object()
);

impl<T: Shareable> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::handle::debug(self, f)
            .field("type", &T::TYPE_NAME)
            .finish_non_exhaustive()
    }
}

impl<T: Shareable> Value<T> {
    /// Creates a value in the default heap, with its own lock.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the heap is full; errors creating the default heap.
    pub fn new(value: T) -> Result<Self> {
        Self::new_in(&crate::runtime::default_segment()?, value)
    }

    /// Creates a value in `segment`, with its own lock.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] if the segment's heap is full.
    pub fn new_in(segment: &Segment, value: T) -> Result<Self> {
        let lock = Lock::new_in(segment)?;
        Self::with_lock_in(segment, value, lock)
    }

    /// Creates a value in the default heap that uses `lock` (shared with other objects).
    ///
    /// # Errors
    /// As for [`Value::new`].
    pub fn with_lock(value: T, lock: Lock) -> Result<Self> {
        Self::with_lock_in(&crate::runtime::default_segment()?, value, lock)
    }

    /// Creates a value in `segment` that uses `lock`.
    ///
    /// # Errors
    /// As for [`Value::new_in`].
    pub fn with_lock_in(segment: &Segment, value: T, lock: Lock) -> Result<Self> {
        const {
            assert!(
                core::mem::size_of::<T>() > 0,
                "zero-sized types cannot be shared"
            )
        };
        let size = (Self::DATA + core::mem::size_of::<T>()) as u64;
        let align = core::mem::align_of::<T>().max(8) as u64;
        let obj = ObjectRef::alloc(segment, size, align, Kind::Value.fingerprint::<T>())?
            .with_token_fingerprint(T::FINGERPRINT);
        obj.write_link(0, lock.object())?;
        let v: Value<T> = Value {
            obj,
            lock,
            _t: PhantomData,
        };
        // SAFETY: the block was just allocated with room for a `T` at `DATA`, aligned for
        // `T` (size and alignment above), and no other handle to it exists yet, so this write
        // races with nothing.
        unsafe { v.ptr().write(value) };
        Ok(v)
    }

    /// Offset of the `T` in the payload, after the link record.
    const DATA: usize = data_offset(core::mem::align_of::<T>());

    #[inline(always)]
    fn ptr(&self) -> *mut T {
        self.obj.ptr().wrapping_add(Self::DATA).cast::<T>()
    }

    /// Reads the value under the lock.
    ///
    /// # Errors
    /// [`Error::OwnerDied`] if the previous lock holder died (the lock is released again).
    pub fn get(&self) -> Result<T>
    where
        T: Copy,
    {
        let g = self.lock()?;
        Ok(*g)
    }

    /// Writes the value under the lock.
    ///
    /// # Errors
    /// [`Error::OwnerDied`] if the previous lock holder died; the value is then not written.
    pub fn set(&self, value: T) -> Result<()> {
        let mut g = self.lock()?;
        *g = value;
        Ok(())
    }

    /// Takes the lock and returns a guard that dereferences to the value.
    ///
    /// # Errors
    /// [`OwnerDied`] with the guard if the previous holder died: the value may be half
    /// updated; repair it through the guard.
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        match self.lock.lock() {
            Ok(guard) => Ok(ValueGuard {
                value: self,
                _guard: guard,
            }),
            Err(e) => {
                let tid = e.tid();
                Err(OwnerDied::new(
                    ValueGuard {
                        value: self,
                        _guard: e.into_inner(),
                    },
                    tid,
                ))
            }
        }
    }

    /// Returns the lock that synchronizes this value.
    pub fn get_lock(&self) -> &Lock {
        &self.lock
    }

    /// Returns the tokens (value, lock) this handle serializes to.
    pub fn token(&self) -> (ObjectToken, ObjectToken) {
        (self.obj.token(), self.lock.token())
    }

    /// Re-attaches a value from its tokens.
    ///
    /// `lock` must be the token of the lock the value was created with: the value's block
    /// records its lock, so no other lock can be paired with it.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if the token names an object of another type;
    /// [`Error::WrongKind`] if it names an `Array`, `RawValue` or `RawArray`;
    /// [`Error::LockMismatch`] if `lock` is not the value's lock; [`Error::ObjectGone`],
    /// [`Error::UnknownSegment`], [`Error::CorruptObject`].
    pub fn from_token(value: &ObjectToken, lock: &ObjectToken) -> Result<Self> {
        Self::attach_pair(value, lock)
    }

    fn attach_pair(value: &ObjectToken, lock: &ObjectToken) -> Result<Self> {
        let obj = kind::attach::<T>(value, Kind::Value)?;
        check_block::<T>(&obj, Self::DATA, 1)?;
        let lock = Lock::from_token(lock)?;
        obj.check_link(0, lock.object())?;
        Ok(Value {
            obj,
            lock,
            _t: PhantomData,
        })
    }
}

/// Returns where the data starts in a locked object's payload aligned to `align`: after
/// the link record, at the first multiple of `align`.
pub(crate) const fn data_offset(align: usize) -> usize {
    if align > LINK_BYTES as usize {
        align
    } else {
        LINK_BYTES as usize
    }
}

/// Checks that a block holds at least `n` properly aligned `T`s from byte `at` on.
pub(crate) fn check_block<T>(obj: &ObjectRef, at: usize, n: u64) -> Result<()> {
    let need = (core::mem::size_of::<T>() as u64)
        .saturating_mul(n)
        .saturating_add(at as u64);
    let data = obj.ptr().wrapping_add(at);
    if obj.len() < need || data.align_offset(core::mem::align_of::<T>()) != 0 {
        return Err(Error::CorruptObject {
            reason: "block too small or misaligned for its type",
        });
    }
    Ok(())
}

/// Holds a [`Value`]'s lock and dereferences to the value; releases the lock when dropped.
///
/// While it lives (or after it was leaked) [`Lock::release`](crate::Lock::release) on its
/// lock is refused, and its thread may not fork with `StartMethod::Fork` (or fork an exchange
/// or pool worker): [`Error::ForkWhileLocked`](crate::Error::ForkWhileLocked). A copy that
/// reaches a forked child anyway releases nothing when dropped there.
#[must_use = "the lock is released as soon as the guard is dropped"]
#[clippy::has_significant_drop]
pub struct ValueGuard<'a, T: Shareable> {
    value: &'a Value<T>,
    _guard: LockGuard<'a>,
}

impl<T: Shareable> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the module's `# Safety`: the block holds an initialized `T`, and this thread
        // holds the value's lock for the guard's lifetime, so no other access races.
        unsafe { &*self.value.ptr() }
    }
}

impl<T: Shareable> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference made through the
        // guard, and the lock excludes every other process and thread.
        unsafe { &mut *self.value.ptr() }
    }
}

impl<T: Shareable + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

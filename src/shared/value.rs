//! `Value<T>`: one `T` in shared memory behind a [`Lock`].
//!
//! # Safety
//!
//! A `Value<T>` owns a counted reference to a heap block of at least `size_of::<T>()` bytes,
//! aligned for `T`, typed `T::FINGERPRINT` (checked by `alloc`/`attach`) and initialized with
//! a `T` before the handle exists. The payload is read or written only while the value's lock
//! is held by the accessing thread, so no two accesses race, and `&mut T` never outlives the
//! guard that holds the lock.

#![allow(unsafe_code)]

use super::Shareable;
use crate::error::{Error, LockResult, OwnerDied, Result};
use crate::heap::{ObjectRef, ObjectToken};
use crate::segment::Segment;
use crate::sync::{Lock, LockGuard};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
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
/// value may be mid-update), then the value works normally.
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

impl<T: Shareable> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
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
        let size = core::mem::size_of::<T>() as u64;
        let align = core::mem::align_of::<T>() as u64;
        let obj = ObjectRef::alloc(segment, size, align, T::FINGERPRINT)?;
        let ptr = obj.ptr().cast::<T>();
        // SAFETY: the block was just allocated for a `T` (size and alignment above) and no
        // other handle to it exists yet, so this write races with nothing.
        unsafe { ptr.write(value) };
        Ok(Value {
            obj,
            lock,
            _t: PhantomData,
        })
    }

    fn ptr(&self) -> *mut T {
        self.obj.ptr().cast::<T>()
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

    /// Returns the segment the value lives in.
    pub fn segment(&self) -> Segment {
        self.obj.segment()
    }

    /// Returns the tokens (value, lock) this handle serializes to.
    pub fn token(&self) -> (ObjectToken, ObjectToken) {
        (self.obj.token(), self.lock.token())
    }

    /// Re-attaches a value from its tokens.
    ///
    /// # Errors
    /// [`Error::TypeMismatch`] if the token names an object of another type;
    /// [`Error::ObjectGone`], [`Error::UnknownSegment`], [`Error::CorruptObject`].
    pub fn from_token(value: &ObjectToken, lock: &ObjectToken) -> Result<Self> {
        let obj = ObjectRef::attach(value, T::FINGERPRINT, T::TYPE_NAME)?;
        check_block::<T>(&obj, 1)?;
        Ok(Value {
            obj,
            lock: Lock::from_token(lock)?,
            _t: PhantomData,
        })
    }
}

/// Checks that a block holds at least `n` properly aligned `T`s.
pub(crate) fn check_block<T>(obj: &ObjectRef, n: u64) -> Result<()> {
    let need = (core::mem::size_of::<T>() as u64).saturating_mul(n);
    if obj.len() < need || obj.ptr().align_offset(core::mem::align_of::<T>()) != 0 {
        return Err(Error::CorruptObject {
            reason: "block too small or misaligned for its type",
        });
    }
    Ok(())
}

impl<T: Shareable> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (&self.obj, &self.lock).serialize(s)
    }
}

impl<'de, T: Shareable> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (v, l) = <(ObjectToken, ObjectToken)>::deserialize(d)?;
        Value::from_token(&v, &l).map_err(crate::codec::attach_error)
    }
}

/// Holds a [`Value`]'s lock and dereferences to the value; releases the lock when dropped.
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

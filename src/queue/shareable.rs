//! `ShareableQueue<T>`: a queue of [`Shareable`] values copied into their slots as they are,
//! with no encoding, and a loan form that writes and reads them in place.
//!
//! # Safety
//!
//! The ring is a [`RawQueue`]'s, created with the slot layout of `T`
//! ([`SlotLayout::for_value`]) and re-checked against it on attach, so each slot's message
//! area is at least `size_of::<T>()` bytes, aligned for `T` (16 or 64 bytes; `T`'s alignment
//! is at most that, checked at compile time), inside the ring's live block. A value is written
//! there only by the party holding the slot in `WRITING` state and read only by the one
//! holding it in `READING` state (the ring's `try_put_by`/`try_get_by` contracts), so no write
//! races another access. Every bit pattern of a `Shareable` type is valid and it has no
//! `Drop` (its `# Safety` contract), so any bytes a slot holds, stale or written by another
//! process, are a valid `T`, and a value copied out leaves nothing to drop in the slot.

#![allow(unsafe_code)]

use super::handle::{DEFAULT_QUEUE_CAPACITY, RawQueue, ring_fingerprint};
use super::ring::SlotLayout;
use crate::error::{Error, Result};
use crate::heap::ObjectToken;
use crate::segment::Segment;
use crate::shared::Shareable;
use crate::sys::Deadline;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::time::Duration;

const LABEL: &str = "shmproc::ShareableQueue";

/// Bytes of slots [`ShareableQueue::new`] aims at: 64 MiB, so a queue of large values does not
/// reserve gigabytes (slots of a fresh block use memory only once written).
const DEFAULT_QUEUE_BYTES: usize = 64 << 20;

/// A multi-producer, multi-consumer FIFO queue of [`Shareable`] values: each value is copied
/// into its slot as it is, with no encoding, and copied out (or read in place) with no
/// allocation.
///
/// Use it for plain data (`#[derive(SharedStruct)]` structs, `[u8; N]`, numbers) sent at high
/// rates or in large pieces; use [`Queue`](crate::Queue) for anything serde can encode,
/// including handles and `String`s.
///
/// It is a type of its own rather than a set of [`Queue`](crate::Queue) methods: its slots are
/// sized and aligned for `T` (a `Queue` slot is a fixed 320 bytes holding an encoded message or
/// the token of a heap block), a value never goes through the codec so it can carry no handle,
/// and its block records its kind, so a token of one never attaches as the other. The
/// protocol (slot states, crash rules, blocking) is the queue ring's, unchanged.
///
/// # Copies and loans
/// [`put`](Self::put) copies one `T` into its slot (a 256-byte value is four cache lines);
/// [`get`](Self::get) copies it out of the slot once, into its own frame, and moves it into
/// its return value (for a large `T`, one more copy, and the caller may move it again).
/// [`get_into`](Self::get_into) copies it once, from its slot straight into a place the
/// caller owns. For large values, [`put_with`](Self::put_with) lends the slot's
/// `&mut T` to a closure that fills it, and [`get_with`](Self::get_with) lends the message's
/// `&T`: nothing is copied but what the closures touch. A loaned slot holds the bytes of an
/// earlier message (or zeros): write every field the consumer reads. While a closure runs,
/// other producers (for `put_with`) or consumers (for `get_with`) wait behind it (they spin,
/// then sleep until it returns; their `try_` forms report [`Error::Full`] or
/// [`Error::Empty`] and their `_timeout` forms give up at their deadline), so keep closures
/// short.
///
/// # Blocking and timeouts
/// As for [`Queue`](crate::Queue): `put*` wait while the queue is full, `get*` while it is
/// empty; the `_timeout` forms give up with [`Error::Timeout`], the `try_` forms never wait
/// ([`Error::Full`], [`Error::Empty`]).
///
/// # Process death and panics
/// As for [`Queue`](crate::Queue): every put that returned `Ok` is delivered, even if its
/// producer dies right after; a producer killed inside `put`/`put_with` loses only that
/// unacknowledged value; a consumer killed inside `get`/`get_with` leaves the value to another
/// consumer. A `put_with` closure that panics leaves the slot empty (nothing is put); a
/// `get_with` closure that panics gives the value back to the queue.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let q = shmproc::ShareableQueue::<[u8; 256]>::new()?;
/// q.put(&[7; 256])?;
/// q.put_with(|slot| slot.fill(9))?;
/// assert_eq!(q.get()?, [7; 256]);
/// let sum = q.get_with(|v| v.iter().map(|&b| u32::from(b)).sum::<u32>())?;
/// assert_eq!(sum, 9 * 256);
/// assert!(matches!(q.try_get(), Err(shmproc::Error::Empty)));
/// # Ok(()) }
/// ```
pub struct ShareableQueue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for ShareableQueue<T> {
    fn clone(&self) -> Self {
        ShareableQueue {
            raw: self.raw.clone(),
            _t: PhantomData,
        }
    }
}

crate::handle::single_token_handle!(
    [T: Shareable] ShareableQueue<T>, "ShareableQueue", object: |s| &s.raw.obj,
    from_token_errors:
    /// A queue of another element type is `TypeMismatch` too.
);

impl<T: Shareable> fmt::Debug for ShareableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::handle::debug(self, f)
            .field("len", &self.raw.ring.len())
            .field("capacity", &self.raw.ring.capacity())
            .finish_non_exhaustive()
    }
}

/// Returns the slot layout of `T`.
const fn layout_of<T>() -> SlotLayout {
    match SlotLayout::for_value(size_of::<T>(), align_of::<T>()) {
        Some(l) => l,
        None => panic!("ShareableQueue element larger than memory or aligned above 64 bytes"),
    }
}

impl<T: Shareable> ShareableQueue<T> {
    const LAYOUT: SlotLayout = layout_of::<T>();

    /// Re-attaches a queue from its token, checking its kind, element type and slot layout.
    fn attach(token: &ObjectToken) -> Result<Self> {
        Ok(ShareableQueue {
            raw: RawQueue::from_token(token, T::FINGERPRINT, LABEL, Self::LAYOUT)?,
            _t: PhantomData,
        })
    }

    /// Returns the capacity [`new`](Self::new) gives: [`DEFAULT_QUEUE_CAPACITY`] values, or
    /// fewer for large `T` so the slots take about 64 MiB (at least 16 values).
    pub fn default_capacity() -> usize {
        (DEFAULT_QUEUE_BYTES / Self::LAYOUT.slot).clamp(16, DEFAULT_QUEUE_CAPACITY)
    }

    /// Creates a queue of [`default_capacity`](Self::default_capacity) values in the default
    /// heap.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`]; errors creating the default heap.
    pub fn new() -> Result<Self> {
        Self::with_capacity(Self::default_capacity())
    }

    /// Creates a queue that holds at most `capacity` values, in the default heap.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] for a capacity of 0 or above 2^24, or slots that overflow;
    /// [`Error::OutOfMemory`].
    pub fn with_capacity(capacity: usize) -> Result<Self> {
        Self::with_capacity_in(&crate::runtime::default_segment()?, capacity)
    }

    /// Creates a queue that holds at most `capacity` values, in `segment`.
    ///
    /// # Errors
    /// As for [`with_capacity`](Self::with_capacity).
    pub fn with_capacity_in(segment: &Segment, capacity: usize) -> Result<Self> {
        Ok(ShareableQueue {
            raw: RawQueue::create_with(
                segment,
                capacity,
                T::FINGERPRINT,
                ring_fingerprint(LABEL),
                Self::LAYOUT,
            )?,
            _t: PhantomData,
        })
    }

    fn put_by(
        &self,
        fill: impl FnOnce(&mut T),
        deadline: Option<&Deadline>,
        block: bool,
    ) -> Result<()> {
        let ring = &self.raw.ring;
        let mut fill = Some(fill);
        let mut fill_at = |off: usize| {
            let slot = ring.data_ptr(off).cast::<T>();
            // SAFETY: the ring calls this with a slot this thread holds in WRITING state, so
            // nothing else accesses its message area until we return; `data_ptr` is inside
            // the live block, aligned for `T` with at least `size_of::<T>()` bytes (the
            // layout checked on create and attach); whatever bytes it holds are a valid `T`
            // (module `# Safety`).
            let slot = unsafe { &mut *slot };
            if let Some(f) = fill.take() {
                f(slot);
            }
            Ok(())
        };
        if block {
            return ring.put_by(fill_at, deadline);
        }
        match ring.try_put_by(&mut fill_at)? {
            super::ring::Attempt::Done(()) => Ok(()),
            super::ring::Attempt::WouldBlock | super::ring::Attempt::Busy => Err(Error::Full),
        }
    }

    fn get_by<R>(
        &self,
        read: impl FnOnce(&T) -> R,
        deadline: Option<&Deadline>,
        block: bool,
    ) -> Result<R> {
        let ring = &self.raw.ring;
        let mut read = Some(read);
        let mut read_at = |off: usize| {
            let slot = ring.data_ptr(off).cast::<T>().cast_const();
            // SAFETY: the ring calls this with a slot this thread holds in READING state, so
            // no party writes its message area until we return; in bounds, aligned and a valid
            // `T` as in `put_by`.
            let value = unsafe { &*slot };
            read.take().map(|f| f(value))
        };
        let got = if block {
            ring.get_by(read_at, deadline)?
        } else {
            match ring.try_get_by(&mut read_at)? {
                super::ring::Attempt::Done(r) => r,
                super::ring::Attempt::WouldBlock | super::ring::Attempt::Busy => {
                    return Err(Error::Empty);
                }
            }
        };
        got.ok_or(Error::CorruptObject {
            reason: "queue read a slot twice",
        })
    }

    /// Puts a copy of `value`, waiting while the queue is full.
    ///
    /// # Errors
    /// [`Error::Closed`].
    pub fn put(&self, value: &T) -> Result<()>
    where
        T: Copy,
    {
        self.put_by(|slot| *slot = *value, None, true)
    }

    /// Puts a copy of `value`, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Closed`].
    pub fn put_timeout(&self, value: &T, timeout: Duration) -> Result<()>
    where
        T: Copy,
    {
        self.put_by(|slot| *slot = *value, Some(&Deadline::after(timeout)), true)
    }

    /// Puts a copy of `value` if there is room now.
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::Closed`].
    pub fn try_put(&self, value: &T) -> Result<()>
    where
        T: Copy,
    {
        self.put_by(|slot| *slot = *value, None, false)
    }

    /// Puts the value `fill` writes into a free slot in place, waiting while the queue is
    /// full. The slot holds an earlier message's bytes (or zeros): `fill` must write every
    /// field that matters. If `fill` panics, nothing is put and the panic propagates.
    ///
    /// # Errors
    /// [`Error::Closed`] (then `fill` is not called).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// let q = shmproc::ShareableQueue::<[u64; 4096]>::with_capacity(4)?;
    /// q.put_with(|slot| {
    ///     for (i, x) in slot.iter_mut().enumerate() {
    ///         *x = i as u64;
    ///     }
    /// })?;
    /// assert_eq!(q.get_with(|v| v[4095])?, 4095);
    /// # Ok(()) }
    /// ```
    pub fn put_with(&self, fill: impl FnOnce(&mut T)) -> Result<()> {
        self.put_by(fill, None, true)
    }

    /// Like [`put_with`](Self::put_with), waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Error::Timeout`], [`Error::Closed`] (then `fill` is not called).
    pub fn put_with_timeout(&self, fill: impl FnOnce(&mut T), timeout: Duration) -> Result<()> {
        self.put_by(fill, Some(&Deadline::after(timeout)), true)
    }

    /// Like [`put_with`](Self::put_with) if there is room now.
    ///
    /// # Errors
    /// [`Error::Full`], [`Error::Closed`] (then `fill` is not called).
    pub fn try_put_with(&self, fill: impl FnOnce(&mut T)) -> Result<()> {
        self.put_by(fill, None, false)
    }

    /// Copies the oldest value out of its slot to `dst`: the one copy a get makes, straight
    /// into the caller's memory (a value returned through the ring's `Result`, `Attempt` and
    /// `Option` layers would be moved at each).
    ///
    /// # Safety
    /// - `dst` is valid for writes of one `T` and aligned for it, and nothing else accesses
    ///   it while this runs. When this returns `Ok`, `*dst` holds the value; on `Err` it is
    ///   untouched.
    #[inline]
    unsafe fn get_to(&self, dst: *mut T, deadline: Option<&Deadline>, block: bool) -> Result<()> {
        self.get_by(
            |v| {
                // SAFETY: `v` is a valid `T` in a slot this thread holds in READING state
                // (module `# Safety`); `dst` is writable and aligned for one `T` and not
                // otherwise accessed (this fn's contract), and does not overlap the slot
                // (`v` borrows the slot, which no `&mut` of the caller can alias); `T` has
                // no `Drop`, so the copy duplicates no resource and the slot's bytes are
                // given up when the get returns.
                unsafe { core::ptr::copy_nonoverlapping(core::ptr::from_ref(v), dst, 1) };
            },
            deadline,
            block,
        )
    }

    /// Takes the oldest value, waiting while the queue is empty.
    ///
    /// # Errors
    /// [`Error::Closed`] once a closed queue is drained.
    pub fn get(&self) -> Result<T> {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: `out` is a local, writable and aligned for one `T`.
        unsafe { self.get_to(out.as_mut_ptr(), None, true) }?;
        // SAFETY: `get_to` returned `Ok`, so it wrote a whole `T` into `out`: `out` is
        // initialized, as `assume_init` requires (std docs).
        Ok(unsafe { out.assume_init() })
    }

    /// Takes the oldest value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`get`](Self::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        let mut out = MaybeUninit::<T>::uninit();
        let deadline = Deadline::after(timeout);
        // SAFETY: as in `get`.
        unsafe { self.get_to(out.as_mut_ptr(), Some(&deadline), true) }?;
        // SAFETY: as in `get`.
        Ok(unsafe { out.assume_init() })
    }

    /// Takes the oldest value if there is one now.
    ///
    /// # Errors
    /// [`Error::Empty`], and as for [`get`](Self::get).
    pub fn try_get(&self) -> Result<T> {
        let mut out = MaybeUninit::<T>::uninit();
        // SAFETY: as in `get`.
        unsafe { self.get_to(out.as_mut_ptr(), None, false) }?;
        // SAFETY: as in `get`.
        Ok(unsafe { out.assume_init() })
    }

    /// Takes the oldest value into `place`, waiting while the queue is empty: the value is
    /// copied once, from its slot straight into `place` (`get` moves it once more, into its
    /// return value). On error `place` is left as it was.
    ///
    /// # Errors
    /// As for [`get`](Self::get).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// let q = shmproc::ShareableQueue::<[u8; 256]>::new()?;
    /// q.put(&[7; 256])?;
    /// let mut buf = [0; 256];
    /// q.get_into(&mut buf)?;
    /// assert_eq!(buf, [7; 256]);
    /// # Ok(()) }
    /// ```
    pub fn get_into(&self, place: &mut T) -> Result<()> {
        // SAFETY: `place` is an exclusive reference: writable, aligned, not otherwise accessed.
        unsafe { self.get_to(place, None, true) }
    }

    /// Like [`get_into`](Self::get_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// As for [`get_timeout`](Self::get_timeout).
    pub fn get_into_timeout(&self, place: &mut T, timeout: Duration) -> Result<()> {
        let deadline = Deadline::after(timeout);
        // SAFETY: as in `get_into`.
        unsafe { self.get_to(place, Some(&deadline), true) }
    }

    /// Like [`get_into`](Self::get_into) if there is a value now.
    ///
    /// # Errors
    /// As for [`try_get`](Self::try_get).
    pub fn try_get_into(&self, place: &mut T) -> Result<()> {
        // SAFETY: as in `get_into`.
        unsafe { self.get_to(place, None, false) }
    }

    /// Takes the oldest value, reading it in place: `read` gets the value in its slot and
    /// its result is returned; the slot is freed when `read` returns. Waits while the queue
    /// is empty. If `read` panics, the value goes back to the queue and the panic propagates.
    ///
    /// # Errors
    /// As for [`get`](Self::get) (then `read` is not called).
    pub fn get_with<R>(&self, read: impl FnOnce(&T) -> R) -> Result<R> {
        self.get_by(read, None, true)
    }

    /// Like [`get_with`](Self::get_with), waiting at most `timeout`.
    ///
    /// # Errors
    /// As for [`get_timeout`](Self::get_timeout).
    pub fn get_with_timeout<R>(&self, read: impl FnOnce(&T) -> R, timeout: Duration) -> Result<R> {
        self.get_by(read, Some(&Deadline::after(timeout)), true)
    }

    /// Like [`get_with`](Self::get_with) if there is a value now.
    ///
    /// # Errors
    /// As for [`try_get`](Self::try_get).
    pub fn try_get_with<R>(&self, read: impl FnOnce(&T) -> R) -> Result<R> {
        self.get_by(read, None, false)
    }

    /// Returns the most values the queue holds.
    pub fn capacity(&self) -> usize {
        usize::try_from(self.raw.ring.capacity()).unwrap_or(usize::MAX)
    }

    /// Returns the number of values in the queue (a snapshot).
    pub fn len(&self) -> usize {
        usize::try_from(self.raw.ring.len()).unwrap_or(usize::MAX)
    }

    /// Returns whether the queue holds no value (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.raw.ring.len() == 0
    }

    /// Returns whether the queue is full (a snapshot).
    pub fn is_full(&self) -> bool {
        self.raw.ring.len() >= self.raw.ring.capacity()
    }

    /// Closes the queue: later puts fail with [`Error::Closed`], gets drain what is left and
    /// then fail with [`Error::Closed`]; every blocked caller wakes up. A `put_with` whose
    /// closure is running when the queue closes still returns `Ok` and its value is
    /// delivered: a get waits for it rather than report `Closed` first (a `try_get` reports
    /// `Empty` meanwhile).
    pub fn close(&self) {
        self.raw.ring.close();
    }

    /// Returns whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.raw.ring.is_closed()
    }
}

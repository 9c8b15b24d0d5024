//! The typed queue handles.

#![allow(unsafe_code)]

use super::readiness::QueueReadiness;
use super::ring::{self, Attempt, InPlace, Payload, Ring};
use crate::codec;
use crate::error::{Error, Result};
use crate::heap::{ObjectRef, ObjectToken};
use crate::segment::Segment;
use crate::sys::Deadline;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

const RING_FINGERPRINT: u64 = crate::fingerprint::start("shmproc::Queue ring v2", ring::SLOT, 64);

/// The three queue kinds share the ring layout; the fingerprint a ring's block records names
/// its kind too, so a `Queue` never attaches as a `JoinableQueue` or a `SimpleQueue`.
const QUEUE_KINDS: [&str; 4] = [
    "shmproc::Queue",
    "shmproc::SimpleQueue",
    "shmproc::JoinableQueue",
    "shmproc::ShareableQueue",
];

/// Returns the fingerprint of a ring of the queue kind `label`.
pub(super) const fn ring_fingerprint(label: &str) -> u64 {
    crate::fingerprint::extend(RING_FINGERPRINT, label.as_bytes())
}
const BLOB_FINGERPRINT: u64 = crate::fingerprint::start("shmproc::Queue message", 1, 64);

/// The capacity of [`Queue::new`]: 65,536 messages (slots use memory only once used).
pub const DEFAULT_QUEUE_CAPACITY: usize = 1 << 16;

fn type_fingerprint<T>() -> u64 {
    crate::fingerprint::start(std::any::type_name::<T>(), 0, 0)
}

/// The untyped core shared by the queue types.
pub(super) struct RawQueue {
    pub(super) obj: ObjectRef,
    pub(super) ring: Ring,
}

// SAFETY: `ring` points into the block `obj` keeps alive; the ring is only accessed through
// atomics and exclusive slot states (see `ring`'s `# Safety`), so handles may move between
// and be shared by threads like the block itself.
unsafe impl Send for RawQueue {}
// SAFETY: as for `Send`: every operation takes `&self` and follows the ring protocol.
unsafe impl Sync for RawQueue {}

impl Clone for RawQueue {
    fn clone(&self) -> Self {
        RawQueue {
            obj: self.obj.clone(),
            ring: self.ring,
        }
    }
}

impl RawQueue {
    fn create(segment: &Segment, capacity: usize, type_fp: u64, ring_fp: u64) -> Result<RawQueue> {
        Self::create_with(segment, capacity, type_fp, ring_fp, ring::SlotLayout::SERDE)
    }

    /// Creates a ring of `layout` slots.
    pub(super) fn create_with(
        segment: &Segment,
        capacity: usize,
        type_fp: u64,
        ring_fp: u64,
        layout: ring::SlotLayout,
    ) -> Result<RawQueue> {
        let capacity = u64::try_from(capacity).unwrap_or(u64::MAX);
        if capacity == 0 || capacity > ring::MAX_CAPACITY {
            return Err(Error::InvalidSize {
                reason: "queue capacity must be between 1 and 2^24",
            });
        }
        let bytes = ring::ring_bytes_with(capacity, &layout).ok_or(Error::InvalidSize {
            reason: "queue capacity overflows",
        })?;
        let obj = ObjectRef::alloc_zeroed(segment, bytes, 64, ring_fp)?;
        // SAFETY: the block was just allocated, 64-byte aligned, `bytes` long (what `layout`
        // needs), zero-filled, and `obj` keeps it alive as long as the returned `RawQueue`.
        let ring = unsafe { Ring::init_with(obj.ptr(), obj.len(), capacity, type_fp, layout)? };
        Ok(RawQueue { obj, ring })
    }

    pub(super) fn from_token(
        token: &ObjectToken,
        type_fp: u64,
        expected: &'static str,
        layout: ring::SlotLayout,
    ) -> Result<RawQueue> {
        let obj = match ObjectRef::attach(token, ring_fingerprint(expected), expected) {
            Err(Error::TypeMismatch { found, .. })
                if let Some(kind) = QUEUE_KINDS
                    .into_iter()
                    .find(|k| ring_fingerprint(k) == found) =>
            {
                return Err(Error::WrongKind {
                    expected,
                    found: kind,
                });
            }
            r => r?,
        };
        if obj.ptr().align_offset(64) != 0 {
            return Err(Error::CorruptObject {
                reason: "queue block misaligned",
            });
        }
        // SAFETY: `obj` is a live, 64-byte aligned block of `obj.len()` bytes typed as a ring,
        // kept alive by the returned `RawQueue`.
        let ring = unsafe { Ring::attach(obj.ptr(), obj.len())? };
        if ring.type_fp() != type_fp {
            return Err(Error::TypeMismatch {
                expected,
                found: ring.type_fp(),
            });
        }
        if ring.layout() != layout {
            return Err(Error::CorruptObject {
                reason: "queue slot layout not its type's",
            });
        }
        Ok(RawQueue { obj, ring })
    }

    /// Puts `value`; with `task` (a joinable queue's put), counts one more unfinished task as
    /// the message goes in (see [`Ring::task_added`]): a put that waits, fails or unwinds
    /// counts nothing.
    fn put<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Option<&Deadline>,
        block: bool,
        task: bool,
    ) -> Result<()> {
        self.put_keeping(value, deadline, block, task, &mut None)
    }

    /// As [`put`](RawQueue::put), keeping the encoding of a value too large for a slot in
    /// `spilled` (and putting `spilled`'s bytes instead of encoding `value` if it holds
    /// some): a caller that tries again after a timeout encodes the value only once.
    fn put_keeping<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Option<&Deadline>,
        block: bool,
        task: bool,
        spilled: &mut Option<Vec<u8>>,
    ) -> Result<()> {
        if let Some(bytes) = spilled {
            return self.put_blob(bytes, deadline, block, task);
        }
        // Encoded straight into the slot it claims; a value that does not fit gives the slot
        // back and goes to a heap block of its own, with the bytes of the same (single)
        // encoding.
        let ring = &self.ring;
        let encode = |off: usize| {
            // SAFETY: the ring calls this with a slot this thread holds in WRITING state; the
            // slice is dropped before we return.
            let area = unsafe { ring.inline_area_mut(off) };
            match codec::to_slice_or_vec(value, area)? {
                codec::Encoded::InSlice(n) => {
                    ring.set_inline_len(off, n);
                    if task {
                        ring.task_added();
                    }
                    Ok(())
                }
                codec::Encoded::Spilled(bytes) => {
                    *spilled = Some(bytes);
                    Err(Error::Full)
                }
            }
        };
        let r = if block {
            ring.put_by(encode, deadline)
        } else {
            match ring.try_put_by(encode) {
                Ok(Attempt::Done(())) => Ok(()),
                Ok(Attempt::WouldBlock | Attempt::Busy) => Err(Error::Full),
                Err(e) => Err(e),
            }
        };
        match spilled {
            Some(bytes) => self.put_blob(bytes, deadline, block, task),
            None => r,
        }
    }

    /// Puts an encoded message too large for a slot as a heap block of its own.
    fn put_blob(
        &self,
        bytes: &[u8],
        deadline: Option<&Deadline>,
        block: bool,
        task: bool,
    ) -> Result<()> {
        let seg = self.obj.segment();
        let blob = ObjectRef::alloc(&seg, bytes.len() as u64, 64, BLOB_FINGERPRINT)?;
        blob.write_new_bytes(bytes);
        // The slot owns a count of its own, so the message outlives this handle.
        let tok = blob.clone().into_owned_token();
        let r = self.put_payload(
            &Payload::External(tok.offset, tok.generation, bytes.len() as u64),
            deadline,
            block,
            task,
        );
        if r.is_err() {
            drop(ObjectRef::adopt(&seg, &tok, BLOB_FINGERPRINT));
        }
        r
    }

    fn put_payload(
        &self,
        p: &Payload<'_>,
        deadline: Option<&Deadline>,
        block: bool,
        task: bool,
    ) -> Result<()> {
        if block {
            return self.ring.put_counted(p, deadline, task);
        }
        match self.ring.try_put_counted(p, task)? {
            Attempt::Done(()) => Ok(()),
            Attempt::WouldBlock | Attempt::Busy => Err(Error::Full),
        }
    }

    fn get<T: DeserializeOwned>(&self, deadline: Option<&Deadline>, block: bool) -> Result<T> {
        self.get_decoded(deadline, block, codec::from_bytes)
    }

    /// Takes a message into `place` (see [`Queue::get_into`]).
    fn get_into<T: DeserializeOwned>(
        &self,
        place: &mut T,
        deadline: Option<&Deadline>,
        block: bool,
    ) -> Result<()> {
        self.get_decoded(deadline, block, |bytes| {
            codec::from_bytes_into(bytes, place)
        })
    }

    /// Takes a message and decodes it with `decode`, called once with its bytes.
    #[inline]
    fn get_decoded<R>(
        &self,
        deadline: Option<&Deadline>,
        block: bool,
        mut decode: impl FnMut(&[u8]) -> Result<R>,
    ) -> Result<R> {
        // Small messages decode straight from their slot; a large one is taken out as its
        // heap block's token and decoded after the slot is freed.
        let ring = &self.ring;
        let mut in_slot = |off: usize| -> Result<Result<R, (u64, u32)>> {
            // SAFETY: the ring calls this with a slot this thread holds in READING state; the
            // bytes are dropped before we return.
            match unsafe { ring.message_in_place(off) }? {
                InPlace::Inline(bytes) => decode(bytes).map(Ok),
                InPlace::External(offset, generation, _len) => Ok(Err((offset, generation))),
            }
        };
        let taken = if block {
            ring.get_by(&mut in_slot, deadline)?
        } else {
            match ring.try_get_by(&mut in_slot)? {
                Attempt::Done(t) => t,
                Attempt::WouldBlock | Attempt::Busy => return Err(Error::Empty),
            }
        };
        match taken? {
            Ok(v) => Ok(v),
            Err((offset, generation)) => decode(&self.adopt_blob(offset, generation)?),
        }
    }

    /// Takes over the block of a large message taken out of its slot, and reads it.
    fn adopt_blob(&self, offset: u64, generation: u32) -> Result<Vec<u8>> {
        let tok = ObjectToken {
            segment: self.obj.segment().id(),
            name: None,
            offset,
            generation,
            fingerprint: BLOB_FINGERPRINT,
        };
        let blob = ObjectRef::adopt(&self.obj.segment(), &tok, BLOB_FINGERPRINT)?;
        Ok(blob.read_published_bytes())
    }
}

macro_rules! queue_common {
    ($name:ident, $label:literal) => {
        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                $name {
                    raw: self.raw.clone(),
                    _t: PhantomData,
                }
            }
        }

        crate::handle::single_token_handle!(
            [T] $name<T>, stringify!($name), object: |s| &s.raw.obj,
            from_token_errors:
            /// A queue of another element type is `TypeMismatch` too.
        );

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                crate::handle::debug(self, f)
                    .field("len", &self.raw.ring.len())
                    .field("capacity", &self.raw.ring.capacity())
                    .finish_non_exhaustive()
            }
        }

        impl<T> $name<T> {
            /// Re-attaches a queue from its token, checking its kind and element type.
            fn attach(token: &ObjectToken) -> Result<Self> {
                let raw = RawQueue::from_token(
                    token,
                    type_fingerprint::<T>(),
                    $label,
                    ring::SlotLayout::SERDE,
                )?;
                Ok($name {
                    raw,
                    _t: PhantomData,
                })
            }

            /// Returns the number of messages in the queue (a snapshot: others may be putting
            /// and getting at the same time).
            pub fn len(&self) -> usize {
                usize::try_from(self.raw.ring.len()).unwrap_or(usize::MAX)
            }

            /// Returns whether the queue holds no message (a snapshot).
            pub fn is_empty(&self) -> bool {
                self.raw.ring.len() == 0
            }

            /// Closes the queue: later puts fail with [`Error::Closed`], gets drain what is
            /// left and then fail with [`Error::Closed`]; every blocked caller wakes up. As
            /// with Python's `Queue.close`, what was put before the close is still delivered:
            /// a put still writing its message when the queue closes either fails with
            /// `Closed` or returns `Ok`, and then a get waits for its message rather than
            /// report `Closed` first (a `try_get` reports `Empty` meanwhile).
            pub fn close(&self) {
                self.raw.ring.close();
            }

            /// Returns whether the queue was closed.
            pub fn is_closed(&self) -> bool {
                self.raw.ring.is_closed()
            }

            /// Returns a readiness descriptor for an event loop (`tokio::io::unix::AsyncFd`,
            /// `mio`, `epoll`): an eventfd readable once a `get` may succeed (a message is
            /// in the queue, or it was closed).
            ///
            /// It is process-local: a watcher thread of this process sleeps on the queue
            /// like a blocked `get` and signals the eventfd. A `put` makes a system call (one
            /// futex wake) only while a process sleeps on the queue, a watcher included, and
            /// none otherwise. After a wake-up, call [`QueueReadiness::clear`] and then
            /// `try_get` until it reports [`Error::Empty`]: a message put after `clear`
            /// always signals again, so none is missed. Dropping the readiness ends the
            /// thread.
            ///
            /// # Errors
            /// [`Error::Io`] if the eventfd or the thread cannot be created.
            ///
            /// # Examples
            /// ```
            /// use std::os::fd::AsFd;
            /// # fn main() -> shmproc::Result<()> {
            #[doc = concat!("let q = shmproc::", stringify!($name), "::<u8>::new()?;")]
            /// let ready = q.readiness()?;
            /// q.put(&5)?;
            /// // An event loop would now see `ready.as_fd()` readable.
            /// let fd = shmproc::connection::Waitable::fd(&ready);
            /// assert_eq!(shmproc::connection::wait(&[fd], None)?, [0]);
            /// ready.clear();
            /// assert_eq!(q.get()?, 5);
            /// # Ok(()) }
            /// ```
            pub fn readiness(&self) -> Result<QueueReadiness> {
                QueueReadiness::new(&self.raw)
            }
        }
    };
}

/// A multi-producer, multi-consumer FIFO queue in shared memory (`multiprocessing.Queue`).
///
/// Values are encoded with [`codec`] when put and decoded when got; handles inside them (a
/// `Value`, a `Lock`, another queue) re-attach on the other side. There is no feeder thread:
/// a value is in shared memory when [`put`](Queue::put) returns, so a process may exit, or be
/// joined, right after putting, without losing or blocking anything.
///
/// # Speed: byte fields and reused buffers
/// A message up to 304 encoded bytes is encoded straight into its slot and decoded straight
/// from it. Two things make byte payloads cheaper still:
/// - serde encodes a `Vec<u8>` element by element; a field marked
///   `#[serde(with = "shmproc::codec::bytes")]` is one length and one copy each way, with the
///   same bytes on the wire (see [`codec::bytes`]);
/// - [`get_into`](Queue::get_into) decodes into a value the caller keeps, so a consumer of
///   `String`s, `Vec`s or [`codec::ByteBuf`]s (byte payloads, one copy out of the slot) that
///   reuses one buffer allocates nothing per message. A `#[derive(Deserialize)]` struct is
///   decoded whole and assigned, so its buffers are allocated per message.
///
/// # Blocking and timeouts
/// `put` waits while the queue is full, `get` while it is empty; `put_timeout`/`get_timeout`
/// give up with [`Error::Timeout`], `try_put`/`try_get` never wait ([`Error::Full`],
/// [`Error::Empty`]).
///
/// # Process death
/// A producer killed in the middle of a `put` leaves the queue usable and loses only that
/// unacknowledged message; every `put` that returned `Ok` is delivered, whole and in order
/// per producer. A consumer killed in the middle of a `get` leaves its message to another
/// consumer (a message larger than a slot may instead be lost with it if it dies after taking
/// it out of its slot).
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let q = shmproc::Queue::new()?;
/// q.put(&(42, None::<i32>, "hello".to_string()))?;
/// let v: (i32, Option<i32>, String) = q.get()?;
/// assert_eq!(v, (42, None, "hello".to_string()));
/// assert!(matches!(q.try_get(), Err(shmproc::Error::Empty)));
/// # Ok(()) }
/// ```
pub struct Queue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

queue_common!(Queue, "shmproc::Queue");

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Creates a queue of [`DEFAULT_QUEUE_CAPACITY`] messages in the default heap.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`]; errors creating the default heap.
    pub fn new() -> Result<Self> {
        Self::with_capacity(DEFAULT_QUEUE_CAPACITY)
    }

    /// Creates a queue that holds at most `capacity` messages, in the default heap.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] for a capacity of 0 or above 2^24; [`Error::OutOfMemory`].
    pub fn with_capacity(capacity: usize) -> Result<Self> {
        Self::with_capacity_in(&crate::runtime::default_segment()?, capacity)
    }

    /// Creates a queue that holds at most `capacity` messages, in `segment` (large messages
    /// are stored in the same segment).
    ///
    /// # Errors
    /// As for [`Queue::with_capacity`].
    pub fn with_capacity_in(segment: &Segment, capacity: usize) -> Result<Self> {
        Ok(Queue {
            raw: RawQueue::create(
                segment,
                capacity,
                type_fingerprint::<T>(),
                ring_fingerprint("shmproc::Queue"),
            )?,
            _t: PhantomData,
        })
    }

    /// Puts a value, waiting while the queue is full.
    ///
    /// # Errors
    /// [`Error::Closed`]; [`Error::Codec`] if the value does not encode;
    /// [`Error::OutOfMemory`] if a large value does not fit the heap.
    pub fn put(&self, value: &T) -> Result<()> {
        self.raw.put(value, None, true, false)
    }

    /// Puts a value, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`put`](Queue::put).
    pub fn put_timeout(&self, value: &T, timeout: Duration) -> Result<()> {
        self.raw
            .put(value, Some(&Deadline::after(timeout)), true, false)
    }

    /// Puts a value if there is room now.
    ///
    /// # Errors
    /// [`Error::Full`], and as for [`put`](Queue::put).
    pub fn try_put(&self, value: &T) -> Result<()> {
        self.raw.put(value, None, false, false)
    }

    /// Takes the oldest value, waiting while the queue is empty.
    ///
    /// # Errors
    /// [`Error::Closed`] once a closed queue is drained; [`Error::Codec`] or an attach error
    /// if the message does not decode as a `T`.
    pub fn get(&self) -> Result<T> {
        self.raw.get(None, true)
    }

    /// Takes the oldest value, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`get`](Queue::get).
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.raw.get(Some(&Deadline::after(timeout)), true)
    }

    /// Takes the oldest value if there is one now.
    ///
    /// # Errors
    /// [`Error::Empty`], and as for [`get`](Queue::get).
    pub fn try_get(&self) -> Result<T> {
        self.raw.get(None, false)
    }

    /// Takes the oldest value into `place`, waiting while the queue is empty: the value is
    /// decoded in place (serde's `deserialize_in_place`), so a `String` or `Vec` keeps its
    /// allocation when the message fits it and a loop that reuses one buffer allocates
    /// nothing per message. A type without an in-place form is decoded whole and assigned.
    ///
    /// The checks are [`get`](Queue::get)'s. A message that does not decode is taken out of
    /// the queue and reported, as by `get`; `place` then holds a valid `T` with unspecified
    /// contents.
    ///
    /// # Errors
    /// As for [`get`](Queue::get).
    ///
    /// # Examples
    /// ```
    /// # fn main() -> shmproc::Result<()> {
    /// let q = shmproc::Queue::<String>::new()?;
    /// q.put(&"first".to_string())?;
    /// q.put(&"second".to_string())?;
    /// let mut s = String::with_capacity(256);
    /// q.get_into(&mut s)?;
    /// assert_eq!(s, "first");
    /// q.get_into(&mut s)?;
    /// assert_eq!(s, "second");
    /// assert_eq!(s.capacity(), 256); // the same buffer throughout
    /// # Ok(()) }
    /// ```
    pub fn get_into(&self, place: &mut T) -> Result<()> {
        self.raw.get_into(place, None, true)
    }

    /// As [`get_into`](Queue::get_into), waiting at most `timeout`.
    ///
    /// # Errors
    /// [`Error::Timeout`], and as for [`get`](Queue::get).
    pub fn get_into_timeout(&self, place: &mut T, timeout: Duration) -> Result<()> {
        self.raw
            .get_into(place, Some(&Deadline::after(timeout)), true)
    }

    /// As [`get_into`](Queue::get_into) if there is a value now.
    ///
    /// # Errors
    /// [`Error::Empty`], and as for [`get`](Queue::get).
    pub fn try_get_into(&self, place: &mut T) -> Result<()> {
        self.raw.get_into(place, None, false)
    }

    /// Returns the most messages the queue holds.
    pub fn capacity(&self) -> usize {
        usize::try_from(self.raw.ring.capacity()).unwrap_or(usize::MAX)
    }

    /// Returns whether the queue is full (a snapshot).
    pub fn is_full(&self) -> bool {
        self.raw.ring.len() >= self.raw.ring.capacity()
    }
}

/// A queue with only `put`, `get` and `is_empty` (`multiprocessing.SimpleQueue`): no
/// capacity limit to speak of ([`DEFAULT_QUEUE_CAPACITY`] messages) and no timeouts.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let q = shmproc::SimpleQueue::new()?;
/// q.put(&"x".to_string())?;
/// assert_eq!(q.get()?, "x");
/// # Ok(()) }
/// ```
pub struct SimpleQueue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

queue_common!(SimpleQueue, "shmproc::SimpleQueue");

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    /// Creates a simple queue in the default heap.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`]; errors creating the default heap.
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue {
            raw: RawQueue::create(
                &crate::runtime::default_segment()?,
                DEFAULT_QUEUE_CAPACITY,
                type_fingerprint::<T>(),
                ring_fingerprint("shmproc::SimpleQueue"),
            )?,
            _t: PhantomData,
        })
    }

    /// Puts a value (waits only if [`DEFAULT_QUEUE_CAPACITY`] messages are waiting).
    ///
    /// # Errors
    /// As for [`Queue::put`].
    pub fn put(&self, value: &T) -> Result<()> {
        self.raw.put(value, None, true, false)
    }

    /// Takes the oldest value, waiting while the queue is empty.
    ///
    /// # Errors
    /// As for [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.raw.get(None, true)
    }
}

/// A [`Queue`] that counts unfinished tasks (`multiprocessing.JoinableQueue`): every `put`
/// adds one, [`task_done`](JoinableQueue::task_done) removes one, and
/// [`join`](JoinableQueue::join) waits until none is left.
///
/// A `put` counts its task as its message goes in (written into its slot, before any `get`
/// can take it): a `put` that waits for room counts nothing until it puts, and one that
/// fails, times out or panics in the value's `Serialize` counts nothing at all.
///
/// A consumer that dies before calling `task_done` leaves its task counted; use
/// [`join_timeout`](JoinableQueue::join_timeout) where that can happen.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// let q = shmproc::JoinableQueue::new()?;
/// q.put(&1u32)?;
/// let _: u32 = q.get()?;
/// q.task_done()?;
/// q.join()?;
/// assert!(q.task_done().is_err());
/// # Ok(()) }
/// ```
pub struct JoinableQueue<T> {
    raw: RawQueue,
    _t: PhantomData<fn(T) -> T>,
}

queue_common!(JoinableQueue, "shmproc::JoinableQueue");

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    /// Creates a joinable queue of [`DEFAULT_QUEUE_CAPACITY`] messages in the default heap.
    ///
    /// # Errors
    /// As for [`Queue::new`].
    pub fn new() -> Result<Self> {
        Self::with_capacity(DEFAULT_QUEUE_CAPACITY)
    }

    /// Creates a joinable queue that holds at most `capacity` messages.
    ///
    /// # Errors
    /// As for [`Queue::with_capacity`].
    pub fn with_capacity(capacity: usize) -> Result<Self> {
        Ok(JoinableQueue {
            raw: RawQueue::create(
                &crate::runtime::default_segment()?,
                capacity,
                type_fingerprint::<T>(),
                ring_fingerprint("shmproc::JoinableQueue"),
            )?,
            _t: PhantomData,
        })
    }

    /// Puts a value and counts one more unfinished task.
    ///
    /// # Errors
    /// As for [`Queue::put`].
    pub fn put(&self, value: &T) -> Result<()> {
        self.raw.put(value, None, true, true)
    }

    /// Puts a value, waiting at most `timeout` for room.
    ///
    /// # Errors
    /// As for [`Queue::put_timeout`].
    pub fn put_timeout(&self, value: &T, timeout: Duration) -> Result<()> {
        self.raw
            .put(value, Some(&Deadline::after(timeout)), true, true)
    }

    /// Puts a value if there is room now.
    ///
    /// # Errors
    /// As for [`Queue::try_put`].
    pub fn try_put(&self, value: &T) -> Result<()> {
        self.raw.put(value, None, false, true)
    }

    /// Takes the oldest value, waiting while the queue is empty.
    ///
    /// # Errors
    /// As for [`Queue::get`].
    pub fn get(&self) -> Result<T> {
        self.raw.get(None, true)
    }

    /// Takes the oldest value, waiting at most `timeout`.
    ///
    /// # Errors
    /// As for [`Queue::get_timeout`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.raw.get(Some(&Deadline::after(timeout)), true)
    }

    /// Takes the oldest value if there is one now.
    ///
    /// # Errors
    /// As for [`Queue::try_get`].
    pub fn try_get(&self) -> Result<T> {
        self.raw.get(None, false)
    }

    /// Marks one task as done.
    ///
    /// # Errors
    /// [`Error::TaskDoneTooMany`] if every task was already marked done.
    pub fn task_done(&self) -> Result<()> {
        self.raw.ring.task_done()
    }

    /// Waits until every task put has been marked done.
    ///
    /// # Errors
    /// None in practice; the `Result` is for symmetry with [`join_timeout`](Self::join_timeout).
    pub fn join(&self) -> Result<()> {
        self.raw.ring.join(None)
    }

    /// Waits at most `timeout` until every task put has been marked done.
    ///
    /// # Errors
    /// [`Error::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.raw.ring.join(Some(&Deadline::after(timeout)))
    }
}

/// The element type fingerprint of an [`ErasedQueue`]'s ring.
fn erased_fingerprint() -> u64 {
    crate::fingerprint::start("shmproc::manager erased queue element", 0, 0)
}

/// A `Queue` or `JoinableQueue` ring of codec-encoded messages whose element type its creator
/// does not know: a manager's server creates one and serves its encoded messages to remote
/// clients, while local clients attach it and put and get their own type's encodings (the
/// same bytes, so both sides interoperate). The ring records the kind (plain or joinable)
/// and an element fingerprint of its own, so no typed handle attaches to it, nor it to one.
#[derive(Clone)]
pub(crate) struct ErasedQueue {
    raw: RawQueue,
}

impl ErasedQueue {
    fn label(joinable: bool) -> &'static str {
        if joinable {
            "shmproc::JoinableQueue"
        } else {
            "shmproc::Queue"
        }
    }

    /// Creates a ring of `capacity` messages in `segment`.
    pub(crate) fn create(segment: &Segment, capacity: usize, joinable: bool) -> Result<Self> {
        Ok(ErasedQueue {
            raw: RawQueue::create(
                segment,
                capacity,
                erased_fingerprint(),
                ring_fingerprint(Self::label(joinable)),
            )?,
        })
    }

    /// Attaches the ring `token` names, checking its kind, element fingerprint and layout
    /// like any queue's token.
    pub(crate) fn attach(token: &ObjectToken, joinable: bool) -> Result<Self> {
        Ok(ErasedQueue {
            raw: RawQueue::from_token(
                token,
                erased_fingerprint(),
                Self::label(joinable),
                ring::SlotLayout::SERDE,
            )?,
        })
    }

    /// Returns the ring's token.
    pub(crate) fn token(&self) -> ObjectToken {
        self.raw.obj.token()
    }

    /// Returns the ring (length, capacity, closing, task counts).
    pub(crate) fn ring(&self) -> &Ring {
        &self.raw.ring
    }

    /// Puts `value`'s encoding (as [`Queue::put`] and its forms, by `deadline` and `block`);
    /// with `task`, counts its task as it goes in (as [`JoinableQueue::put`]). The encoding
    /// of a value too large for a slot is kept in `spilled` (and reused from there by a
    /// retry with the same `spilled`), so a put retried after a timeout encodes once.
    pub(crate) fn put<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Option<&Deadline>,
        block: bool,
        task: bool,
        spilled: &mut Option<Vec<u8>>,
    ) -> Result<()> {
        self.raw.put_keeping(value, deadline, block, task, spilled)
    }

    /// Puts an already encoded message (with `task`, counting its task as it goes in).
    pub(crate) fn put_encoded(
        &self,
        bytes: &[u8],
        deadline: Option<&Deadline>,
        block: bool,
        task: bool,
    ) -> Result<()> {
        if bytes.len() <= ring::SlotLayout::SERDE.room().min(ring::INLINE) {
            return self
                .raw
                .put_payload(&Payload::Inline(bytes), deadline, block, task);
        }
        self.raw.put_blob(bytes, deadline, block, task)
    }

    /// Takes a message and decodes it as a `T`.
    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        deadline: Option<&Deadline>,
        block: bool,
    ) -> Result<T> {
        self.raw.get(deadline, block)
    }

    /// Takes a message's encoding.
    pub(crate) fn get_encoded(&self, deadline: Option<&Deadline>, block: bool) -> Result<Vec<u8>> {
        self.raw.get_decoded(deadline, block, |b| Ok(b.to_vec()))
    }

    /// Takes a message's encoding, waiting until `deadline`, unless `leave()` (asked once
    /// the message is claimed, before anything of it is taken) says its taker is gone: the
    /// message then stays at the head, in its place, and this returns `Ok(None)`.
    pub(crate) fn get_encoded_unless(
        &self,
        deadline: Option<&Deadline>,
        leave: impl Fn() -> bool,
    ) -> Result<Option<Vec<u8>>> {
        let ring = &self.raw.ring;
        let taken = ring.get_or_leave(
            |off| {
                if leave() {
                    return None;
                }
                // SAFETY: the ring calls this with a slot this thread holds in READING
                // state; the bytes are dropped before we return.
                Some(match unsafe { ring.message_in_place(off) } {
                    Ok(InPlace::Inline(bytes)) => Ok(Ok(bytes.to_vec())),
                    Ok(InPlace::External(offset, generation, _len)) => {
                        Ok(Err((offset, generation)))
                    }
                    Err(e) => Err(e),
                })
            },
            deadline,
        )?;
        match taken {
            None => Ok(None),
            Some(r) => match r? {
                Ok(bytes) => Ok(Some(bytes)),
                Err((offset, generation)) => self.raw.adopt_blob(offset, generation).map(Some),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Encodes as a `u32`, except 13, whose encoding panics.
    struct Touchy(u32);

    impl Serialize for Touchy {
        fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            assert_ne!(self.0, 13, "13 refuses to be encoded");
            s.serialize_u32(self.0)
        }
    }

    /// A joinable put counts its task as its item goes in: not while it waits for room, nor
    /// when it fails or its encoding panics.
    #[test]
    fn a_joinable_put_counts_its_task_only_once_its_item_is_in() {
        let seg = Segment::create(1 << 24).expect("segment");
        let q = ErasedQueue::create(&seg, 1, true).expect("queue");
        let ring = q.ring();
        q.put(&1u32, None, false, true, &mut None).expect("put");
        assert_eq!(ring.unfinished(), 1);
        // Full: a put that waits and times out, and one that does not wait.
        let waited = q.put(
            &2u32,
            Some(&Deadline::after(Duration::from_millis(20))),
            true,
            true,
            &mut None,
        );
        assert!(matches!(waited, Err(Error::Timeout)), "{waited:?}");
        assert!(matches!(
            q.put(&2u32, None, false, true, &mut None),
            Err(Error::Full)
        ));
        assert_eq!(ring.unfinished(), 1);
        assert_eq!(q.get::<u32>(None, false).expect("get"), 1);
        // An encoding that panics, small and large.
        for value in [
            &Touchy(13) as &dyn erased::Put,
            &(vec![0u8; 1000], Touchy(13)),
        ] {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| value.put(&q)));
            assert!(r.is_err());
            assert_eq!(ring.unfinished(), 1);
            assert_eq!(ring.len(), 0);
        }
        // A large item counts once.
        q.put(&vec![7u8; 1000], None, false, true, &mut None)
            .expect("put large");
        assert_eq!(ring.unfinished(), 2);
        assert_eq!(q.get::<Vec<u8>>(None, false).expect("get").len(), 1000);
        ring.task_done().expect("done");
        ring.task_done().expect("done");
        assert!(matches!(ring.task_done(), Err(Error::TaskDoneTooMany)));
    }

    mod erased {
        use super::*;

        /// A joinable put of some value (to try values of several types in one loop).
        pub(super) trait Put {
            fn put(&self, q: &ErasedQueue) -> Result<()>;
        }

        impl<T: Serialize> Put for T {
            fn put(&self, q: &ErasedQueue) -> Result<()> {
                q.put(self, None, false, true, &mut None)
            }
        }
    }
}

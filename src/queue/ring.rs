//! The queue ring: a bounded MPMC ring of slots in one heap block, crash-safe.
//!
//! # Layout (offsets from the block's payload, which is 64-byte aligned)
//!
//! | offset | size | field               | writer                                  |
//! |--------|------|---------------------|-----------------------------------------|
//! | 0      | 8    | `capacity`          | creator, once                           |
//! | 8      | 8    | `type_fp`           | creator, once: fingerprint of `T`       |
//! | 16     | 8    | `slot_bytes`        | creator, once: bytes of one slot (`SLOT` for serde queues) |
//! | 24     | 8    | `data_off`          | creator, once: where a slot's message starts (16 or 64) |
//! | 32     | 4    | `closed`            | `close`                                 |
//! | 128    | 8    | `tail`              | CAS by producers (next position to put) |
//! | 192    | 4+4  | `not_empty` seq, waiters | producers bump, consumers wait     |
//! | 256    | 8    | `head`              | CAS by consumers (next position to get) |
//! | 320    | 4+4  | `not_full` seq, waiters  | consumers bump, producers wait     |
//! | 384    | 8+4+4| `unfinished`, `join` seq, waiters | `JoinableQueue`           |
//! | 512    | …    | slots, `slot_bytes` each, 64-byte aligned                     |
//!
//! Each word has a 64-byte line of its own, and the lines are grouped in 128-byte pairs by
//! who writes them: the words written once or rarely (pair 0), the producers' (`tail`, and
//! `not_empty`, which every put reads), the consumers' (`head`, and `not_full`, which every
//! get reads), then the joinable queue's. x86-64 cores since Sandy Bridge fetch lines in
//! aligned pairs (the spatial prefetcher), so a word one side writes on every message never
//! shares a pair with a word the other side reads on every message: with `head` beside
//! `not_empty`, as before, each put could pull the consumers' `head` line into the producer's
//! cache, and the consumer's next move of `head` had to take it back.
//!
//! A slot is a state word, a length word and, from `data_off`, `slot_bytes - data_off` bytes of
//! message. The serde queues use `SLOT`-byte slots with the message at 16 (`INLINE` bytes);
//! messages longer than that live in their own heap block, and the slot then holds its token
//! (offset, generation) and the length word has its top bit set. A
//! [`ShareableQueue`](crate::ShareableQueue) sizes its slots to its element type and, for
//! elements over 48 bytes, starts the message at 64, so the value is 64-byte aligned in its
//! slot (aligned copies; the state word's cache line is not the data's) and written and read
//! in place ([`Ring::try_put_by`], [`Ring::try_get_by`]).
//!
//! # Slot states
//!
//! The state word is `lap:32 | state:2 | tid:30`. Position `p` uses slot `p % capacity` in
//! lap `p / capacity`.
//!
//! | state     | meaning                                   | next states (who)                       |
//! |-----------|-------------------------------------------|-----------------------------------------|
//! | `EMPTY`   | free for the put of lap `lap`             | `WRITING` (a producer, CAS)             |
//! | `WRITING` | producer `tid` is copying its message in  | `FULL` (that producer); `EMPTY` (anyone, if `tid` is dead) |
//! | `FULL`    | holds the message of lap `lap`            | `READING` (a consumer, CAS)             |
//! | `READING` | consumer `tid` is copying the message out | `EMPTY` of lap `lap + 1` (that consumer); `FULL` (anyone, if `tid` is dead) |
//!
//! `tail` moves past a position only once its slot is `FULL` (by the producer that filled
//! it, or by any producer that finds it filled), and `head` only once its slot is `EMPTY` of
//! the next lap. So each party finishes its copy before the position is given up, and:
//! - a producer killed mid-put leaves `WRITING`; whoever finds its thread gone resets the slot
//!   to `EMPTY` (that put never returned `Ok`, so nothing acknowledged is lost);
//! - a consumer killed mid-get leaves `READING`; whoever finds its thread gone puts the slot
//!   back to `FULL`, and the message is delivered to another consumer;
//! - a party killed after its final store but before moving `tail`/`head` is finished by the
//!   next party, which moves the index for it (a slot whose lap is ahead of the position's
//!   means the position is done, whatever its state).
//!
//! Producers thus take turns at the tail and consumers at the head (a put waits while another
//! producer copies), which keeps every message whole and each producer's messages in order.
//! A party that finds its slot claimed by a live party (a producer's `WRITING` tail, a
//! consumer's `READING` head) does not wait inside a try: it returns [`Attempt::Busy`], which
//! the try forms report as full or empty and the blocking forms wait on (see "Blocking").
//!
//! # Close
//!
//! `close` sets a flag; a put checks it before claiming its slot and again right after, and
//! gives the slot back with `Closed` if it is set then. A consumer that sees the flag reports
//! `Closed` only after confirming its `EMPTY` head slot with a compare-exchange of the slot word
//! to itself. The claims and that write are ordered in the word: a claim after it reads it
//! (Acquire after Release), so its check sees the flag and the put fails; a claim before it
//! makes it fail, and the consumer then finds the slot `WRITING` and waits for the message (Python's `Queue.close`: what was put is still
//! delivered); every put that returned `Ok` is delivered before any get of the queue reports
//! `Closed`. A producer that dies while writing is recovered as above, and the get goes on.
//!
//! # Blocking
//!
//! A waiter first spins, retrying its put or get, then sleeps on the event count of the
//! condition it waits for (`not_empty`, `not_full`, `join`: a sequence word and a sleepers
//! word), the shared one of [`park`]: it announces itself, fences
//! (`SeqCst`), retries, and sleeps on the sequence; a put or get changes the ring, fences
//! (`SeqCst`), and bumps and wakes the sequence only if somebody announced itself. The two
//! fences make the handshake hold on every architecture (see `park`'s module docs). Sleeps are
//! sliced (1 ms, doubling to 50 ms); a party that died holding a slot is recovered by the
//! retries (its thread is checked), so the slices need no check of their own.
//!
//! A waiter behind a busy slot ([`Attempt::Busy`]) sleeps on the other side's event count,
//! which the holder's finish already bumps: a producer behind a `WRITING` tail on
//! `not_empty` (the publish), a consumer behind a `READING` head on `not_full` (the
//! release); it passes the wake-up it took on (`notify(1)`), since it may have been meant for
//! a waiter of that count. A slot given back (a closure that unwound, a put that found the
//! queue closed after its claim, a get that left its message) or recovered from a dead party
//! wakes every sleeper of both counts. The handshake is the one above, with the slot word as
//! the condition.
//!
//! # Safety
//!
//! The ring lives in a heap block of at least [`ring_bytes`]`(capacity)` bytes that stays
//! allocated while the `Ring` exists (the owner holds its `ObjectRef`). Words are accessed
//! atomically through references made at checked offsets. Message bytes are copied only by the
//! party that holds the slot in `WRITING` or `READING` state, which the state word's
//! compare-exchange makes exclusive, and published by its Release store (read after an Acquire
//! load), so the copies never race. Lengths and tokens read from a slot are validated before
//! they size or locate anything.

#![allow(unsafe_code)]

use crate::error::{Error, Result};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::sync::park::{self, EventCount, Site};
use crate::sys::{self, Deadline};

/// Bytes of one slot.
pub(crate) const SLOT: usize = 320;
/// Bytes of message stored in the slot itself.
pub(crate) const INLINE: usize = SLOT - 16;
/// Bytes of the ring header before the first slot.
pub(crate) const HEADER: usize = 512;
/// Largest capacity (positions are compared within 32-bit laps).
pub(crate) const MAX_CAPACITY: u64 = 1 << 24;

const CAPACITY: usize = 0;
const TYPE_FP: usize = 8;
const SLOT_BYTES: usize = 16;
const DATA_OFF: usize = 24;
const CLOSED: usize = 32;
const TAIL: usize = 128;
const NOT_EMPTY: usize = 192;
const HEAD: usize = 256;
const NOT_FULL: usize = 320;
const UNFINISHED: usize = 384;
const JOIN: usize = 392;

const EMPTY: u64 = 0;
const WRITING: u64 = 1;
const FULL: u64 = 2;
const READING: u64 = 3;
const TID_MASK: u64 = 0x3fff_ffff;
const EXTERNAL: u64 = 1 << 63;

/// Polls of a slot claimed by another party (`WRITING`/`READING`) before its thread is checked
/// for liveness. Models explore every interleaving at each load: one is enough there.
#[cfg(not(shmproc_loom))]
const CLAIM_SPIN: u32 = 64;
#[cfg(shmproc_loom)]
const CLAIM_SPIN: u32 = 1;

/// Returns the bytes a ring of `capacity` slots of the serde queues' layout needs.
#[cfg(test)]
pub(crate) fn ring_bytes(capacity: u64) -> Option<u64> {
    ring_bytes_with(capacity, &SlotLayout::SERDE)
}

/// Returns the bytes a ring of `capacity` slots of `layout` needs.
pub(crate) fn ring_bytes_with(capacity: u64, layout: &SlotLayout) -> Option<u64> {
    capacity
        .checked_mul(u64::try_from(layout.slot).ok()?)?
        .checked_add(HEADER as u64)
}

/// The size of a ring's slots and where their message starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotLayout {
    /// Bytes of one slot: a multiple of 64, at least 64.
    pub(crate) slot: usize,
    /// Offset of the message in the slot: 16 or 64, below `slot`.
    pub(crate) data: usize,
}

impl SlotLayout {
    /// The serde queues' slots: `SLOT` bytes, message at 16.
    pub(crate) const SERDE: SlotLayout = SlotLayout {
        slot: SLOT,
        data: 16,
    };

    /// Returns the slots that hold one value of `size` bytes aligned to `align`: a 64-byte
    /// slot with the value at 16 when it fits there (48 bytes, alignment up to 16), else the
    /// value at 64 in a slot rounded up to 64 bytes. `None` if the size overflows or the
    /// alignment exceeds 64.
    pub(crate) const fn for_value(size: usize, align: usize) -> Option<SlotLayout> {
        if align > 64 {
            return None;
        }
        if size <= 48 && align <= 16 {
            return Some(SlotLayout { slot: 64, data: 16 });
        }
        let Some(end) = size.checked_add(64 + 63) else {
            return None;
        };
        Some(SlotLayout {
            slot: end / 64 * 64,
            data: 64,
        })
    }

    /// Returns whether a layout read from shared memory is one a ring can have.
    fn valid(self) -> bool {
        self.slot >= 64
            && self.slot.is_multiple_of(64)
            && (self.data == 16 || self.data == 64)
            && self.data < self.slot
    }

    /// Bytes of message a slot holds.
    pub(crate) fn room(self) -> usize {
        self.slot - self.data
    }
}

fn pack(lap: u32, state: u64, tid: u32) -> u64 {
    (u64::from(lap) << 32) | (state << 30) | (u64::from(tid) & TID_MASK)
}

fn lap_of(w: u64) -> u32 {
    (w >> 32) as u32
}

fn state_of(w: u64) -> u64 {
    (w >> 30) & 3
}

/// Returns whether a slot's lap `wl` is past the lap `lap` of the position looked at: the
/// position is finished and only its index has not moved yet.
fn lap_ahead(wl: u32, lap: u32) -> bool {
    // Laps compare within a window of 2^31 (positions are 64-bit; laps wrap at 2^32).
    (1..1 << 31).contains(&wl.wrapping_sub(lap))
}

/// The position after `pos`. Positions are 64-bit and never wrap in a working ring, so the
/// last one is only ever read from a corrupted word.
fn next_pos(pos: u64) -> Result<u64> {
    match pos.checked_add(1) {
        Some(p) => Ok(p),
        None => Err(Error::CorruptObject {
            reason: "queue position at its maximum",
        }),
    }
}

/// A slot more than one lap ahead of a position that has not moved: in a working ring the
/// slot at the tail (head) is at most one lap ahead of it (filled, or emptied, for the next
/// lap only once the position passed it), so the position word is corrupt. Walking it forward
/// one step at a time would take billions of steps.
fn far_lap() -> Error {
    Error::CorruptObject {
        reason: "queue position far from its slot's lap",
    }
}

/// Counts the retries of `try_put`/`try_get` that found their position unchanged yet its slot
/// in a lap no consistent ring shows (the position and slot words are input: a corrupted
/// one must give an error, not an endless loop in a call that never blocks).
#[derive(Default)]
struct Stuck(u32);

impl Stuck {
    /// Retries allowed with the position unchanged (each yields) before the ring is corrupt:
    /// far more than any interleaving of live parties produces.
    const LIMIT: u32 = 1000;

    fn check(&mut self, unchanged: bool) -> Result<()> {
        if !unchanged {
            self.0 = 0;
            return Ok(());
        }
        self.0 += 1;
        if self.0 >= Self::LIMIT {
            return Err(Error::CorruptObject {
                reason: "queue slot lap inconsistent with its position",
            });
        }
        crate::loom::yield_now();
        Ok(())
    }
}

/// Stores `state` into a slot's word if dropped: a slot claimed by a party whose copy
/// unwound is given back as the recovery of a dead party would (see the module docs).
/// Whoever waits for the slot (a waiter behind a busy slot, a consumer of a closed queue
/// waiting for a put still writing) is woken: `wake` are both event counts of the ring.
struct Undo<'a> {
    word: &'a AtomicU64,
    state: u64,
    wake: [EventCount<'a>; 2],
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        // Release: whatever the unwinding party wrote is ordered before the slot changes hands.
        self.word.store(self.state, Ordering::Release);
        for ev in self.wake {
            ev.notify(u32::MAX);
        }
    }
}

fn tid_of(w: u64) -> u32 {
    (w & TID_MASK) as u32
}

/// A message handed to or taken from a slot.
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))] // The copying forms serve the loom models and unit tests.
pub(crate) enum Payload<'a> {
    /// Bytes copied into the slot.
    Inline(&'a [u8]),
    /// A heap block holding the bytes: (payload offset, generation, length).
    External(u64, u32, u64),
}

/// What a message taken out of a slot is.
// The inline variant is a stack buffer on purpose: a small message costs no heap allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[allow(dead_code)] // The copying forms serve the loom models and unit tests.
pub(crate) enum Taken {
    /// The bytes, copied out (the first `n` of the buffer).
    Inline([u8; INLINE], usize),
    /// A heap block the caller now owns the queue's reference to.
    External(u64, u32, u64),
}

/// Outcome of a non-blocking attempt.
#[derive(Debug)]
pub(crate) enum Attempt<T> {
    Done(T),
    /// Full (put) or empty (get).
    WouldBlock,
    /// The slot this attempt needs is held by another live party, still copying its
    /// message in (a put behind a `WRITING` tail) or out (a get behind a `READING` head).
    /// The try forms report it as full or empty; the blocking forms sleep until that party
    /// finishes (see the module docs, "Blocking").
    Busy,
}

/// The memory a ring lives in: a heap block ([`RawMem`]), or loom-tracked cells in models.
///
/// Word accessors are safe and bounds-checked: an offset outside the memory, or misaligned, is
/// a bug in the ring (offsets are computed from constants and the checked capacity, never read
/// from shared memory) and panics rather than touching memory outside the block. Byte copies
/// are `unsafe`: besides being in bounds (also checked), they need the slot's exclusive claim.
pub(crate) trait RingMem {
    /// Returns the 8-byte word at `off`.
    ///
    /// # Panics
    /// If `off` is not a multiple of 8 or `off + 8` exceeds the memory.
    fn w64(&self, off: usize) -> &AtomicU64;
    /// Returns the 4-byte word at `off`.
    ///
    /// # Panics
    /// If `off` is not a multiple of 4 or `off + 4` exceeds the memory.
    fn w32(&self, off: usize) -> &AtomicU32;
    /// Copies `bytes` to `off`.
    ///
    /// # Safety
    /// - The caller holds the slot that contains `[off, off + bytes.len())` in `WRITING`
    ///   state (won by its compare-exchange and not yet released), so no other party reads
    ///   or writes these bytes.
    /// - The range lies in that slot's message area.
    ///
    /// # Panics
    /// If the range exceeds the memory.
    unsafe fn write_bytes(&self, off: usize, bytes: &[u8]);
    /// Copies `out.len()` bytes from `off`.
    ///
    /// # Safety
    /// - The caller holds the slot that contains `[off, off + out.len())` in `READING` state,
    ///   so no other party writes these bytes.
    /// - The range lies in that slot's message area.
    ///
    /// # Panics
    /// If the range exceeds the memory.
    #[cfg_attr(not(test), allow(dead_code))] // The copying forms serve the loom models and unit tests.
    unsafe fn read_bytes(&self, off: usize, out: &mut [u8]);
}

/// A ring in a heap block: `len` bytes of 64-byte aligned memory (see [`Ring::attach`]).
#[derive(Clone, Copy)]
pub(crate) struct RawMem {
    base: *mut u8,
    len: usize,
}

impl RawMem {
    /// Returns the address of `[off, off + size)`, panicking unless it lies inside the memory
    /// and `off` is a multiple of `align`.
    #[inline]
    fn at(&self, off: usize, size: usize, align: usize) -> *mut u8 {
        let end = off.checked_add(size);
        assert!(
            off.is_multiple_of(align) && end.is_some_and(|e| e <= self.len),
            "queue ring access out of bounds: offset {off}, size {size}, block {}",
            self.len
        );
        self.base.wrapping_add(off)
    }
}

impl RingMem for RawMem {
    #[inline]
    fn w64(&self, off: usize) -> &AtomicU64 {
        let p = self.at(off, 8, 8).cast::<AtomicU64>();
        // SAFETY: `at` checked that the 8 bytes at `off` lie inside the `len` live bytes at
        // `base` (`Ring::attach`'s contract), and `off` is a multiple of 8 from a 64-aligned
        // base, so `p` is aligned; `AtomicU64` has `u64`'s size and alignment (std docs), all
        // bit patterns are valid, every party accesses the word only atomically, and the block
        // outlives the ring (module `# Safety`).
        unsafe { &*p }
    }

    #[inline]
    fn w32(&self, off: usize) -> &AtomicU32 {
        let p = self.at(off, 4, 4).cast::<AtomicU32>();
        // SAFETY: as in `w64`, for 4 bytes at a multiple of 4.
        unsafe { &*p }
    }

    #[inline]
    unsafe fn write_bytes(&self, off: usize, bytes: &[u8]) {
        let dst = self.at(off, bytes.len(), 1);
        // SAFETY: `dst..dst + len` lies inside the live block (checked by `at`); the caller
        // holds the slot in WRITING state, so nobody else accesses these bytes (this fn's
        // contract); `bytes` is a separate allocation, so the ranges do not overlap.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, bytes.len()) };
    }

    unsafe fn read_bytes(&self, off: usize, out: &mut [u8]) {
        let src = self.at(off, out.len(), 1);
        // SAFETY: as in `write_bytes`, with the slot held in READING state, so nobody writes
        // these bytes while they are copied out.
        unsafe { core::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) };
    }
}

/// A view of a ring.
#[derive(Clone, Copy)]
pub(crate) struct Ring<M: RingMem = RawMem> {
    mem: M,
    capacity: u64,
    layout: SlotLayout,
}

impl Ring<RawMem> {
    /// Views a ring at `base`, which holds `len` bytes, checking its header.
    ///
    /// # Safety
    /// - `base` is 64-byte aligned and points to `len` bytes of a live heap block that stays
    ///   allocated while the `Ring` is used.
    pub(crate) unsafe fn attach(base: *mut u8, len: u64) -> Result<Ring> {
        Ring::attach_mem(RawMem::new(base, len)?, len)
    }

    /// Initializes a ring in a fresh zero-filled block.
    ///
    /// # Safety
    /// As for [`attach`](Ring::attach), and `len >= ring_bytes(capacity)`, and the block is
    /// zero-filled and not yet visible to any other party.
    #[cfg(test)]
    pub(crate) unsafe fn init(
        base: *mut u8,
        len: u64,
        capacity: u64,
        type_fp: u64,
    ) -> Result<Ring> {
        Ring::init_mem(RawMem::new(base, len)?, len, capacity, type_fp)
    }

    /// Initializes a ring of `layout` slots in a fresh zero-filled block.
    ///
    /// # Safety
    /// As for [`init`](Ring::init), with `len >= ring_bytes_with(capacity, layout)`.
    pub(crate) unsafe fn init_with(
        base: *mut u8,
        len: u64,
        capacity: u64,
        type_fp: u64,
        layout: SlotLayout,
    ) -> Result<Ring> {
        Ring::init_mem_with(RawMem::new(base, len)?, len, capacity, type_fp, layout)
    }

    /// Returns the address of the message area of the slot at `off` (a `slot_off`): 16- or
    /// 64-byte aligned as the layout says, `layout().room()` bytes, inside the block.
    #[inline]
    pub(crate) fn data_ptr(&self, off: usize) -> *mut u8 {
        self.mem.at(off + self.layout.data, self.layout.room(), 1)
    }

    /// Returns the inline message area of the slot at `off` (a `slot_off`), for a message
    /// encoded in place; [`set_inline_len`](Ring::set_inline_len) records its length.
    ///
    /// # Safety
    /// - This thread holds the slot at `off` in `WRITING` state (given to a `try_put_by`
    ///   closure), and the slice is dropped before that closure returns.
    #[allow(clippy::mut_from_ref)] // The slot's WRITING claim makes the borrow exclusive.
    #[inline]
    pub(crate) unsafe fn inline_area_mut(&self, off: usize) -> &mut [u8] {
        let n = INLINE.min(self.layout.room());
        let p = self.mem.at(off + self.layout.data, n, 1);
        // SAFETY: `at` checked that the `n` bytes lie inside the live block (module
        // `# Safety`); the caller holds the slot in WRITING state, so no other party reads or
        // writes them while the slice lives (this fn's contract); any bytes are valid `u8`s.
        unsafe { core::slice::from_raw_parts_mut(p, n) }
    }

    /// Records the length of an inline message written with
    /// [`inline_area_mut`](Ring::inline_area_mut) into the slot at `off`, held in `WRITING`
    /// state by this thread.
    #[inline]
    pub(crate) fn set_inline_len(&self, off: usize, n: usize) {
        self.word64(off + 8)
            .store(n.min(INLINE) as u64, Ordering::Relaxed);
    }

    /// Returns the message of the slot at `off` in place: its inline bytes (validated length),
    /// or the heap block holding it.
    ///
    /// # Safety
    /// - This thread holds the slot at `off` in `READING` state (given to a `try_get_by`
    ///   closure), and the returned bytes are dropped before that closure returns.
    #[inline]
    pub(crate) unsafe fn message_in_place(&self, off: usize) -> Result<InPlace<'_>> {
        let len = self.word64(off + 8).load(Ordering::Relaxed);
        if len & EXTERNAL != 0 {
            let offset = self.word64(off + 16).load(Ordering::Relaxed);
            let generation = self.word64(off + 24).load(Ordering::Relaxed);
            let generation = u32::try_from(generation).map_err(|_| Error::CorruptObject {
                reason: "queue slot generation out of range",
            })?;
            return Ok(InPlace::External(offset, generation, len & !EXTERNAL));
        }
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        if n > INLINE.min(self.layout.room()) {
            return Err(Error::CorruptObject {
                reason: "queue slot length out of range",
            });
        }
        let p = self.mem.at(off + self.layout.data, n, 1).cast_const();
        // SAFETY: `at` checked the `n` bytes lie inside the live block; the caller holds the
        // slot in READING state, so no party writes them while the slice lives (this fn's
        // contract); any bytes are valid `u8`s.
        Ok(InPlace::Inline(unsafe {
            core::slice::from_raw_parts(p, n)
        }))
    }
}

/// A message read in place from a slot held in `READING` state.
#[derive(Debug)]
pub(crate) enum InPlace<'a> {
    /// The message's bytes, in the slot.
    Inline(&'a [u8]),
    /// A heap block holding the bytes: (payload offset, generation, length).
    External(u64, u32, u64),
}

impl RawMem {
    fn new(base: *mut u8, len: u64) -> Result<RawMem> {
        let len = usize::try_from(len).map_err(|_| Error::CorruptObject {
            reason: "queue block larger than the address space",
        })?;
        Ok(RawMem { base, len })
    }
}

impl<M: RingMem> Ring<M> {
    /// Views a ring in `mem`, which holds `len` bytes, checking its header.
    pub(crate) fn attach_mem(mem: M, len: u64) -> Result<Ring<M>> {
        let probe = Ring {
            mem,
            capacity: 0,
            layout: SlotLayout::SERDE,
        };
        if len < HEADER as u64 {
            return Err(Error::CorruptObject {
                reason: "queue block smaller than its header",
            });
        }
        let capacity = probe.word64(CAPACITY).load(Ordering::Relaxed);
        let layout = SlotLayout {
            slot: usize::try_from(probe.word64(SLOT_BYTES).load(Ordering::Relaxed)).unwrap_or(0),
            data: usize::try_from(probe.word64(DATA_OFF).load(Ordering::Relaxed)).unwrap_or(0),
        };
        if !layout.valid() {
            return Err(Error::CorruptObject {
                reason: "queue slot layout invalid",
            });
        }
        match ring_bytes_with(capacity, &layout) {
            Some(need) if capacity > 0 && capacity <= MAX_CAPACITY && need <= len => Ok(Ring {
                mem: probe.mem,
                capacity,
                layout,
            }),
            _ => Err(Error::CorruptObject {
                reason: "queue capacity inconsistent with its block",
            }),
        }
    }

    /// Initializes a ring in zero-filled memory not yet visible to any other party.
    #[cfg(test)]
    pub(crate) fn init_mem(mem: M, len: u64, capacity: u64, type_fp: u64) -> Result<Ring<M>> {
        Ring::init_mem_with(mem, len, capacity, type_fp, SlotLayout::SERDE)
    }

    /// Initializes a ring of `layout` slots in zero-filled memory not yet visible to any
    /// other party.
    pub(crate) fn init_mem_with(
        mem: M,
        len: u64,
        capacity: u64,
        type_fp: u64,
        layout: SlotLayout,
    ) -> Result<Ring<M>> {
        let probe = Ring {
            mem,
            capacity: 0,
            layout,
        };
        probe.word64(CAPACITY).store(capacity, Ordering::Relaxed);
        probe.word64(TYPE_FP).store(type_fp, Ordering::Relaxed);
        probe
            .word64(SLOT_BYTES)
            .store(layout.slot as u64, Ordering::Relaxed);
        probe
            .word64(DATA_OFF)
            .store(layout.data as u64, Ordering::Relaxed);
        Ring::attach_mem(probe.mem, len)
    }

    /// Returns the slot layout.
    pub(crate) fn layout(&self) -> SlotLayout {
        self.layout
    }

    #[inline]
    fn word64(&self, off: usize) -> &AtomicU64 {
        self.mem.w64(off)
    }

    #[inline]
    fn word32(&self, off: usize) -> &AtomicU32 {
        self.mem.w32(off)
    }

    #[inline]
    fn slot_off(&self, pos: u64) -> usize {
        let index = usize::try_from(pos % self.capacity).unwrap_or(0);
        HEADER + index * self.layout.slot
    }

    /// Returns the capacity.
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Returns the element type fingerprint recorded at creation.
    pub(crate) fn type_fp(&self) -> u64 {
        self.word64(TYPE_FP).load(Ordering::Relaxed)
    }

    /// Returns how many messages are in the ring (a snapshot).
    pub(crate) fn len(&self) -> u64 {
        let head = self.word64(HEAD).load(Ordering::Acquire);
        let tail = self.word64(TAIL).load(Ordering::Acquire);
        tail.saturating_sub(head).min(self.capacity)
    }

    /// Returns whether the ring was closed.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        self.word32(CLOSED).load(Ordering::Acquire) != 0
    }

    /// Closes the ring and wakes every sleeper.
    pub(crate) fn close(&self) {
        // Release: a party that sees the flag sees what was put before the close.
        self.word32(CLOSED).store(1, Ordering::Release);
        for seq in [NOT_EMPTY, NOT_FULL] {
            self.events(seq).notify(u32::MAX);
        }
    }

    /// Waits until the ring holds a message or is closed, or `stop()` holds (a readiness
    /// watcher). A watcher sleeps as one more sleeper of `not_empty`, so producers wake it
    /// through the event count they already use (no system call while nobody sleeps); a put
    /// wakes one sleeper, so a watcher woken by it passes the wake-up on to any consumer
    /// sleeping too.
    pub(crate) fn wait_readable(&self, stop: impl Fn() -> bool) {
        let ev = self.events(NOT_EMPTY);
        let ready = || (stop() || self.len() > 0 || self.is_closed()).then_some(());
        let _ = ev.wait_until(None, ready, |_| None);
        if !stop() {
            ev.notify(1);
        }
    }

    /// Wakes every sleeper of `not_empty` to re-check (ends a watcher's wait after its stop
    /// flag was set; the others go back to sleep).
    pub(crate) fn wake_readable_waiters(&self) {
        self.events(NOT_EMPTY).notify(u32::MAX);
    }

    /// The event count at `off`: the sequence word, then the sleepers word.
    #[inline]
    fn events(&self, off: usize) -> EventCount<'_> {
        EventCount::new(self.word32(off), self.word32(off + 4))
    }

    /// Tries once to put a message.
    #[cfg_attr(not(shmproc_loom), allow(dead_code))] // The uncounted form serves the loom models.
    pub(crate) fn try_put(&self, msg: &Payload<'_>) -> Result<Attempt<()>> {
        self.try_put_counted(msg, false)
    }

    /// Tries once to put a message; with `task`, counts one more unfinished task as it goes
    /// in (see [`task_added`](Ring::task_added)).
    pub(crate) fn try_put_counted(&self, msg: &Payload<'_>, task: bool) -> Result<Attempt<()>> {
        self.try_put_by(|off| {
            // SAFETY: `try_put_by` calls this only with the offset of a slot it holds in
            // WRITING state for this thread until the closure returns.
            unsafe { self.write_slot(off, msg) };
            if task {
                self.task_added();
            }
            Ok(())
        })
    }

    /// Tries once to put a message written by `fill`, which is called at most once, with
    /// the offset of a slot this thread holds in `WRITING` state (exclusive: no other party
    /// touches its message area until `fill` returns). Its message area is at
    /// [`data_ptr`](Ring::data_ptr)`(off)` for a [`RawMem`] ring. If `fill` fails or unwinds,
    /// the slot is emptied again, the put did not happen, and its error is returned.
    pub(crate) fn try_put_by(
        &self,
        mut fill: impl FnMut(usize) -> Result<()>,
    ) -> Result<Attempt<()>> {
        let me = sys::current_tid();
        let tail = self.word64(TAIL);
        let mut spins = 0u32;
        let mut stuck = Stuck::default();
        loop {
            if self.is_closed() {
                return Err(Error::Closed);
            }
            let pos = tail.load(Ordering::Acquire);
            let lap = (pos / self.capacity) as u32;
            let off = self.slot_off(pos);
            let word = self.word64(off);
            let w = word.load(Ordering::Acquire);
            let (wl, st) = (lap_of(w), state_of(w));
            if wl == lap && st == EMPTY {
                // Acquire: the consumer that emptied the slot finished reading it.
                // Acquire: the consumer that emptied the slot finished reading it; a consumer
                // that confirmed the slot empty of a closed queue saw the flag before.
                if word
                    .compare_exchange(
                        w,
                        pack(lap, WRITING, me),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_err()
                {
                    continue;
                }
                // Should `fill` unwind, the slot goes back to EMPTY of this lap (what the
                // recovery of a dead producer does); nothing was acknowledged.
                let undo = Undo {
                    word,
                    state: pack(lap, EMPTY, 0),
                    wake: self.both_events(),
                };
                // After the claim: a consumer that saw the flag confirms the slot unclaimed by
                // a compare-exchange (`try_get_or_leave`); if ours read its write, its
                // Release/our Acquire make the flag it saw visible here, and we fail; else it
                // sees our claim and waits for the message.
                if self.is_closed() {
                    drop(undo);
                    return Err(Error::Closed);
                }
                fill(off)?;
                core::mem::forget(undo);
                // Release: the message bytes and length are visible to whoever sees FULL.
                word.store(pack(lap, FULL, 0), Ordering::Release);
                let _ =
                    tail.compare_exchange(pos, next_pos(pos)?, Ordering::AcqRel, Ordering::Relaxed);
                self.notify(NOT_EMPTY);
                return Ok(Attempt::Done(()));
            }
            if (wl == lap && (st == FULL || st == READING)) || lap_ahead(wl, lap) {
                // Filled (and maybe already taken), but its producer has not moved the tail
                // yet, or died before it could: move it for them.
                if wl.wrapping_sub(lap) > 1 && tail.load(Ordering::Acquire) == pos {
                    return Err(far_lap());
                }
                let _ =
                    tail.compare_exchange(pos, next_pos(pos)?, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            if wl == lap && st == WRITING {
                // Another producer is copying into this position: wait for it, or recover
                // the slot if it died.
                if self.wait_or_recover(word, w, pack(lap, EMPTY, 0), &mut spins) {
                    continue;
                }
                // Alive and still copying: a try form gives up; a blocking one sleeps until
                // the slot is published (its `not_empty` notify) or given back.
                return Ok(Attempt::Busy);
            }
            if wl == lap.wrapping_sub(1) && tail.load(Ordering::Acquire) == pos {
                // The slot still holds the previous lap's message: the ring is full.
                return Ok(Attempt::WouldBlock);
            }
            // The tail moved under us; look again.
            stuck.check(tail.load(Ordering::Acquire) == pos)?;
        }
    }

    /// Tries once to take a message.
    #[cfg_attr(not(test), allow(dead_code))] // The copying forms serve the loom models and unit tests.
    pub(crate) fn try_get(&self) -> Result<Attempt<Taken>> {
        let taken = self.try_get_by(|off| {
            // SAFETY: `try_get_by` calls this only with the offset of a slot it holds in
            // READING state for this thread until the closure returns.
            unsafe { self.read_slot(off) }
        })?;
        match taken {
            Attempt::Done(r) => r.map(Attempt::Done),
            Attempt::WouldBlock => Ok(Attempt::WouldBlock),
            Attempt::Busy => Ok(Attempt::Busy),
        }
    }

    /// Tries once to take a message read by `read`, which is called at most once, with the
    /// offset of a slot this thread holds in `READING` state (no other party writes its
    /// message area until `read` returns); the slot is emptied after it returns. If `read`
    /// unwinds, the slot goes back to `FULL` and its message is delivered to the next get.
    pub(crate) fn try_get_by<R>(&self, mut read: impl FnMut(usize) -> R) -> Result<Attempt<R>> {
        match self.try_get_or_leave(|off| Some(read(off)))? {
            Attempt::Done(Some(r)) => Ok(Attempt::Done(r)),
            // `read` always takes the message.
            Attempt::Done(None) | Attempt::WouldBlock => Ok(Attempt::WouldBlock),
            Attempt::Busy => Ok(Attempt::Busy),
        }
    }

    /// As [`try_get_by`](Ring::try_get_by), except that `read` may leave the message where it
    /// is by returning `None` (without having consumed anything it refers to): the slot goes
    /// back to `FULL` at the head, so the message keeps its place and the next get takes it
    /// (one more sleeping consumer is woken for it), and this returns `Done(None)`.
    pub(crate) fn try_get_or_leave<R>(
        &self,
        mut read: impl FnMut(usize) -> Option<R>,
    ) -> Result<Attempt<Option<R>>> {
        let me = sys::current_tid();
        let head = self.word64(HEAD);
        let mut spins = 0u32;
        let mut stuck = Stuck::default();
        loop {
            let pos = head.load(Ordering::Acquire);
            let lap = (pos / self.capacity) as u32;
            let off = self.slot_off(pos);
            let word = self.word64(off);
            let w = word.load(Ordering::Acquire);
            let (wl, st) = (lap_of(w), state_of(w));
            if wl == lap && st == FULL {
                // Acquire: the producer's message bytes are visible.
                if word
                    .compare_exchange(
                        w,
                        pack(lap, READING, me),
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_err()
                {
                    continue;
                }
                // Should `read` unwind, the message goes back to the queue (what the
                // recovery of a dead consumer does).
                let undo = Undo {
                    word,
                    state: pack(lap, FULL, 0),
                    wake: self.both_events(),
                };
                let Some(taken) = read(off) else {
                    // Back to FULL of this lap (`undo`'s store, which wakes the sleepers), at
                    // the head it never left.
                    drop(undo);
                    return Ok(Attempt::Done(None));
                };
                core::mem::forget(undo);
                // Release: our reads of the slot happen before the next producer's writes.
                word.store(pack(lap.wrapping_add(1), EMPTY, 0), Ordering::Release);
                let _ =
                    head.compare_exchange(pos, next_pos(pos)?, Ordering::AcqRel, Ordering::Relaxed);
                self.notify(NOT_FULL);
                return Ok(Attempt::Done(Some(taken)));
            }
            if lap_ahead(wl, lap) {
                // Emptied (and maybe refilled for the next lap), but its consumer has not moved
                // the head yet, or died before it could: move it for them.
                if wl.wrapping_sub(lap) > 1 && head.load(Ordering::Acquire) == pos {
                    return Err(far_lap());
                }
                let _ =
                    head.compare_exchange(pos, next_pos(pos)?, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            if wl == lap && st == READING {
                // Another consumer is copying out: wait for it, or hand the message back to
                // the queue if it died.
                if self.wait_or_recover(word, w, pack(lap, FULL, 0), &mut spins) {
                    continue;
                }
                // Alive and still copying: a try form gives up; a blocking one sleeps until
                // the slot is emptied (its `not_full` notify) or given back.
                return Ok(Attempt::Busy);
            }
            if wl == lap && st == WRITING {
                // A producer is copying in: wait briefly, recover if it died, else the queue
                // is empty for now, even if closed: that put began before the close and may
                // still return `Ok`, so its message is coming (the publish wakes us).
                if self.wait_or_recover(word, w, pack(lap, EMPTY, 0), &mut spins) {
                    continue;
                }
                return Ok(Attempt::WouldBlock);
            }
            if wl == lap && st == EMPTY && head.load(Ordering::Acquire) == pos {
                if !self.is_closed() {
                    return Ok(Attempt::WouldBlock);
                }
                // Closed: confirm the slot unclaimed with a write of the same word. A producer
                // whose claim comes after it in the word's order reads it (Acquire) and so sees
                // the flag (our Release) in its check after the claim, and fails; one whose
                // claim came first makes this fail, and we look again (and wait for its
                // message). So no put can still succeed into a queue reported drained.
                if word
                    .compare_exchange(w, w, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                    && head.load(Ordering::Acquire) == pos
                {
                    return Err(Error::Closed);
                }
                continue;
            }
            // The head moved under us; look again.
            stuck.check(head.load(Ordering::Acquire) == pos)?;
        }
    }

    /// Both event counts (`not_empty`, `not_full`), woken when a slot is given back or
    /// recovered.
    fn both_events(&self) -> [EventCount<'_>; 2] {
        [self.events(NOT_EMPTY), self.events(NOT_FULL)]
    }

    /// Spins while `word` still reads `seen`; after the spin budget, checks the claimer's
    /// thread and, if it is gone, replaces `seen` by `recovered`. Returns `true` if the word
    /// changed (by anyone), `false` if the claimer is alive and still busy.
    fn wait_or_recover(
        &self,
        word: &AtomicU64,
        seen: u64,
        recovered: u64,
        spins: &mut u32,
    ) -> bool {
        while *spins < CLAIM_SPIN {
            *spins += 1;
            core::hint::spin_loop();
            if word.load(Ordering::Acquire) != seen {
                return true;
            }
        }
        if sys::thread_alive(tid_of(seen)) {
            return word.load(Ordering::Acquire) != seen;
        }
        // Acquire/Release: whatever the dead party wrote is ordered before the recovery.
        let _won = word
            .compare_exchange(seen, recovered, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        // Parties sleeping behind the dead one's slot look again.
        for ev in self.both_events() {
            ev.notify(u32::MAX);
        }
        crate::trace::event!(
            warn,
            dead_tid = tid_of(seen),
            recovered = _won,
            "queue slot claimed by a dead process recovered"
        );
        true
    }

    /// Writes `msg` into the slot at `off`.
    ///
    /// # Safety
    /// - `off` is a slot offset (`slot_off`) whose slot this thread holds in `WRITING` state.
    unsafe fn write_slot(&self, off: usize, msg: &Payload<'_>) {
        match *msg {
            Payload::Inline(bytes) => {
                let n = bytes.len().min(INLINE).min(self.layout.room());
                // SAFETY: this thread holds the slot at `off` in WRITING state (this fn's
                // contract), and `[off + 16, off + 16 + n)` with `n <= INLINE` is the slot's
                // message area.
                unsafe {
                    self.mem
                        .write_bytes(off + 16, bytes.get(..n).unwrap_or(&[]))
                };
                self.word64(off + 8).store(n as u64, Ordering::Relaxed);
            }
            Payload::External(offset, generation, len) => {
                self.word64(off + 16).store(offset, Ordering::Relaxed);
                self.word64(off + 24)
                    .store(u64::from(generation), Ordering::Relaxed);
                self.word64(off + 8)
                    .store(len | EXTERNAL, Ordering::Relaxed);
            }
        }
    }

    /// Reads the message out of the slot at `off`, validating its length.
    ///
    /// # Safety
    /// - `off` is a slot offset (`slot_off`) whose slot this thread holds in `READING` state.
    #[cfg_attr(not(test), allow(dead_code))] // The copying forms serve the loom models and unit tests.
    unsafe fn read_slot(&self, off: usize) -> Result<Taken> {
        let len = self.word64(off + 8).load(Ordering::Relaxed);
        if len & EXTERNAL != 0 {
            let offset = self.word64(off + 16).load(Ordering::Relaxed);
            let generation = self.word64(off + 24).load(Ordering::Relaxed);
            let generation = u32::try_from(generation).map_err(|_| Error::CorruptObject {
                reason: "queue slot generation out of range",
            })?;
            return Ok(Taken::External(offset, generation, len & !EXTERNAL));
        }
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        if n > INLINE.min(self.layout.room()) {
            return Err(Error::CorruptObject {
                reason: "queue slot length out of range",
            });
        }
        let mut out = [0u8; INLINE];
        if let Some(dst) = out.get_mut(..n) {
            // SAFETY: this thread holds the slot at `off` in READING state (this fn's
            // contract), and `n <= INLINE` (checked above) keeps the range in the
            // slot's message area.
            unsafe { self.mem.read_bytes(off + 16, dst) };
        }
        Ok(Taken::Inline(out, n))
    }

    /// Wakes a sleeper of `seq` if one announced itself.
    #[inline]
    fn notify(&self, seq: usize) {
        self.events(seq).notify(1);
    }

    /// Puts a message, waiting for room until `deadline` (forever if `None`).
    #[cfg_attr(not(test), allow(dead_code))] // The uncounted form serves the unit tests.
    pub(crate) fn put(&self, msg: &Payload<'_>, deadline: Option<&Deadline>) -> Result<()> {
        self.put_counted(msg, deadline, false)
    }

    /// Puts a message, waiting for room until `deadline` (forever if `None`); with `task`,
    /// counts one more unfinished task as it goes in.
    pub(crate) fn put_counted(
        &self,
        msg: &Payload<'_>,
        deadline: Option<&Deadline>,
        task: bool,
    ) -> Result<()> {
        self.wait_for(NOT_FULL, deadline, || self.try_put_counted(msg, task))
    }

    /// Takes a message, waiting until `deadline` (forever if `None`).
    #[cfg_attr(not(test), allow(dead_code))] // The copying forms serve the loom models and unit tests.
    pub(crate) fn get(&self, deadline: Option<&Deadline>) -> Result<Taken> {
        self.wait_for(NOT_EMPTY, deadline, || self.try_get())
    }

    /// Puts a message written by `fill` (see [`try_put_by`](Ring::try_put_by)), waiting for
    /// room until `deadline` (forever if `None`).
    pub(crate) fn put_by(
        &self,
        mut fill: impl FnMut(usize) -> Result<()>,
        deadline: Option<&Deadline>,
    ) -> Result<()> {
        self.wait_for(NOT_FULL, deadline, || self.try_put_by(&mut fill))
    }

    /// Takes a message read by `read` (see [`try_get_by`](Ring::try_get_by)), waiting until
    /// `deadline` (forever if `None`).
    pub(crate) fn get_by<R>(
        &self,
        mut read: impl FnMut(usize) -> R,
        deadline: Option<&Deadline>,
    ) -> Result<R> {
        self.wait_for(NOT_EMPTY, deadline, || self.try_get_by(&mut read))
    }

    /// Takes a message read by `read`, which may leave it in place (see
    /// [`try_get_or_leave`](Ring::try_get_or_leave)), waiting until `deadline` (forever if
    /// `None`); `Ok(None)` if `read` left it.
    pub(crate) fn get_or_leave<R>(
        &self,
        mut read: impl FnMut(usize) -> Option<R>,
        deadline: Option<&Deadline>,
    ) -> Result<Option<R>> {
        self.wait_for(NOT_EMPTY, deadline, || self.try_get_or_leave(&mut read))
    }

    /// Runs `try_op` until it is done: once, then spinning, then sleeping until `deadline`
    /// (forever if `None`): on the event count at `event` while the ring is full (empty),
    /// and on the other one while the slot needed is busy (`Attempt::Busy`): a producer
    /// behind a `WRITING` tail waits for its publish, which bumps `not_empty`; a consumer
    /// behind a `READING` head for its release, which bumps `not_full`.
    fn wait_for<T>(
        &self,
        event: usize,
        deadline: Option<&Deadline>,
        mut try_op: impl FnMut() -> Result<Attempt<T>>,
    ) -> Result<T> {
        let busy = core::cell::Cell::new(false);
        let mut attempt = || match try_op() {
            Ok(Attempt::Done(t)) => Some(Ok(t)),
            Ok(Attempt::WouldBlock) => {
                busy.set(false);
                None
            }
            Ok(Attempt::Busy) => {
                busy.set(true);
                None
            }
            Err(e) => Some(Err(e)),
        };
        if let Some(r) = attempt() {
            return r;
        }
        // A dead party's claim is recovered inside `try_put` and `try_get`: nothing to check
        // after a slice.
        if let Some(r) = park::spin_at(Site::Queue, &mut attempt) {
            return r;
        }
        let other = if event == NOT_EMPTY {
            NOT_FULL
        } else {
            NOT_EMPTY
        };
        loop {
            let was_busy = busy.get();
            let ev = self.events(if was_busy { other } else { event });
            // Ends with `Some(None)` when the reason to wait changed: sleep on the other count.
            let r = ev.wait_until(
                deadline,
                || match attempt() {
                    Some(r) => Some(Some(r)),
                    None if busy.get() != was_busy => Some(None),
                    None => None,
                },
                |_| None,
            );
            if was_busy {
                // The wake-up we took from the other side's count may have been meant for
                // one of its own waiters (a put's publish wakes one sleeper): pass it on.
                ev.notify(1);
            }
            match r {
                Some(Some(r)) => return r,
                Some(None) => {}
                None => return Err(Error::Timeout),
            }
        }
    }

    /// Counts one more unfinished task: a joinable put counts it inside its slot claim, after
    /// its message is written and before the slot is published (`try_put_counted`), so a
    /// `join` or `task_done` never sees the message without its task, and a put that waits,
    /// fails or unwinds counts nothing. (A producer killed between the count and the publish,
    /// two stores apart, leaves the task counted without its message.)
    pub(crate) fn task_added(&self) {
        self.word64(UNFINISHED).fetch_add(1, Ordering::AcqRel);
    }

    /// Marks one task done; wakes joiners when none is left.
    pub(crate) fn task_done(&self) -> Result<()> {
        let unfinished = self.word64(UNFINISHED);
        let mut cur = unfinished.load(Ordering::Acquire);
        loop {
            if cur == 0 {
                return Err(Error::TaskDoneTooMany);
            }
            match unfinished.compare_exchange_weak(
                cur,
                cur - 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur == 1 {
            self.events(JOIN).notify(u32::MAX);
        }
        Ok(())
    }

    /// Returns the number of unfinished tasks.
    pub(crate) fn unfinished(&self) -> u64 {
        self.word64(UNFINISHED).load(Ordering::Acquire)
    }

    /// Waits until every task is done, or `deadline` passes (`Error::Timeout`).
    pub(crate) fn join(&self, deadline: Option<&Deadline>) -> Result<()> {
        // No spin: a join usually waits for whole tasks, far longer than a spin.
        self.events(JOIN)
            .wait_until(
                deadline,
                || (self.unfinished() == 0).then_some(()),
                |_| None,
            )
            .ok_or(Error::Timeout)
    }
}

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    use super::*;

    /// One 64-byte aligned line: a `Vec` of them is 64-aligned memory.
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct Line([u8; 64]);

    /// A 64-aligned, zeroed buffer holding a ring of `capacity` slots.
    fn buffer(capacity: u64) -> Vec<Line> {
        let len = usize::try_from(ring_bytes(capacity).expect("test setup")).expect("test setup");
        vec![Line([0; 64]); len.div_ceil(64)]
    }

    #[test]
    fn put_and_get_on_a_process_local_ring() {
        let mut buf = buffer(2);
        let len = ring_bytes(2).expect("test setup");
        // SAFETY: `buf` is 64-aligned (`Line`'s alignment) and holds at least `len` zeroed
        // bytes, unshared and alive for the rest of the test.
        let ring =
            unsafe { Ring::init(buf.as_mut_ptr().cast::<u8>(), len, 2, 7) }.expect("test setup");
        ring.put(&Payload::Inline(b"abc"), None)
            .expect("test setup");
        match ring.get(None).expect("test setup") {
            Taken::Inline(bytes, 3) => assert_eq!(&bytes[..3], b"abc"),
            other => panic!("unexpected {other:?}"),
        }
        let d = Deadline::after(std::time::Duration::from_millis(2));
        assert!(matches!(ring.get(Some(&d)), Err(Error::Timeout)));
        ring.close();
        assert!(matches!(ring.get(None), Err(Error::Closed)));
    }

    /// Regression ("safe functions with unchecked preconditions"): a word
    /// accessor given an offset past the block panics instead of making a reference outside
    /// it.
    #[test]
    #[should_panic(expected = "out of bounds")]
    fn word_outside_the_block_panics() {
        let mut buf = buffer(1);
        let len = ring_bytes(1).expect("test setup");
        let mem = RawMem::new(buf.as_mut_ptr().cast::<u8>(), len).expect("test setup");
        let _ = mem.w64(usize::try_from(len).expect("test setup"));
    }

    /// As above, for a misaligned word.
    #[test]
    #[should_panic(expected = "out of bounds")]
    fn misaligned_word_panics() {
        let mut buf = buffer(1);
        let len = ring_bytes(1).expect("test setup");
        let mem = RawMem::new(buf.as_mut_ptr().cast::<u8>(), len).expect("test setup");
        let _ = mem.w32(TAIL + 2);
    }
}

//! The queue ring: a bounded MPMC ring of slots in one heap block, crash-safe.
//!
//! # Layout (offsets from the block's payload, which is 64-byte aligned)
//!
//! | offset | size | field               | writer                                  |
//! |--------|------|---------------------|-----------------------------------------|
//! | 0      | 8    | `capacity`          | creator, once                           |
//! | 8      | 8    | `type_fp`           | creator, once: fingerprint of `T`       |
//! | 64     | 8    | `tail`              | CAS by producers (next position to put) |
//! | 128    | 8    | `head`              | CAS by consumers (next position to get) |
//! | 192    | 4+4  | `not_empty` seq, waiters | producers bump, consumers wait     |
//! | 256    | 4+4  | `not_full` seq, waiters  | consumers bump, producers wait     |
//! | 320    | 4    | `closed`            | `close`                                 |
//! | 384    | 8+4+4| `unfinished`, `join` seq, waiters | `JoinableQueue`           |
//! | 448    | …    | slots, `SLOT` bytes each, 64-byte aligned                     |
//!
//! A slot is a state word, a length word and `INLINE` bytes of message. Messages longer than
//! `INLINE` live in their own heap block; the slot then holds its token (offset, generation)
//! and the length word has its top bit set.
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
//!   next party, which moves the index for it.
//!
//! Producers thus take turns at the tail and consumers at the head (a put waits while another
//! producer copies), which keeps every message whole and each producer's messages in order.
//!
//! # Blocking
//!
//! Sleepers use an event count: a waiter reads the sequence word, announces itself in the
//! waiters word, re-checks the ring and sleeps on the sequence; a notifier changes the ring,
//! issues a `SeqCst` fence, and bumps and wakes the sequence only if someone announced itself.
//! Sleeps are sliced (1 ms, doubling to 50 ms) so a sleeper also notices dead peers.
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
use crate::loom::{AtomicU32, AtomicU64, Ordering, fence};
use crate::sys::{self, Deadline, WaitOutcome};
use std::time::Duration;

/// Bytes of one slot.
pub(crate) const SLOT: usize = 320;
/// Bytes of message stored in the slot itself.
pub(crate) const INLINE: usize = SLOT - 16;
/// Bytes of the ring header before the first slot.
pub(crate) const HEADER: usize = 448;
/// Largest capacity (positions are compared within 32-bit laps).
pub(crate) const MAX_CAPACITY: u64 = 1 << 24;

const CAPACITY: usize = 0;
const TYPE_FP: usize = 8;
const TAIL: usize = 64;
const HEAD: usize = 128;
const NOT_EMPTY: usize = 192;
const NOT_FULL: usize = 256;
const CLOSED: usize = 320;
const UNFINISHED: usize = 384;
const JOIN: usize = 392;

const EMPTY: u64 = 0;
const WRITING: u64 = 1;
const FULL: u64 = 2;
const READING: u64 = 3;
const TID_MASK: u64 = 0x3fff_ffff;
const EXTERNAL: u64 = 1 << 63;

const SPIN: u32 = 64;
const FIRST_SLICE: Duration = Duration::from_millis(1);
const MAX_SLICE: Duration = Duration::from_millis(50);

/// A bounded spin before sleeping: waking a sleeper on another core costs microseconds, so a
/// waiter first polls for about as long (exponential pauses, then a few yields).
struct Backoff {
    step: u32,
}

impl Backoff {
    const SPIN_STEPS: u32 = 10;
    const YIELD_STEPS: u32 = 14;

    fn new() -> Self {
        Backoff { step: 0 }
    }

    /// Waits a little and returns `true`, or returns `false` when it is time to sleep.
    fn spin(&mut self) -> bool {
        if self.step < Self::SPIN_STEPS {
            for _ in 0..(1u32 << self.step) {
                core::hint::spin_loop();
            }
        } else if self.step < Self::YIELD_STEPS {
            std::thread::yield_now();
        } else {
            return false;
        }
        self.step += 1;
        true
    }
}

/// Returns the bytes a ring of `capacity` slots needs.
pub(crate) fn ring_bytes(capacity: u64) -> Option<u64> {
    capacity
        .checked_mul(SLOT as u64)?
        .checked_add(HEADER as u64)
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

fn tid_of(w: u64) -> u32 {
    (w & TID_MASK) as u32
}

/// A message handed to or taken from a slot.
#[derive(Debug)]
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
}

/// A view of a ring in a heap block.
#[derive(Clone, Copy)]
pub(crate) struct Ring {
    base: *mut u8,
    capacity: u64,
}

impl Ring {
    /// Views a ring at `base`, which holds `len` bytes, checking its header.
    ///
    /// # Safety
    /// - `base` is 64-byte aligned and points to `len` bytes of a live heap block that stays
    ///   allocated while the `Ring` is used.
    pub(crate) unsafe fn attach(base: *mut u8, len: u64) -> Result<Ring> {
        let probe = Ring { base, capacity: 0 };
        if len < HEADER as u64 {
            return Err(Error::CorruptObject {
                reason: "queue block smaller than its header",
            });
        }
        let capacity = probe.word64(CAPACITY).load(Ordering::Relaxed);
        match ring_bytes(capacity) {
            Some(need) if capacity > 0 && capacity <= MAX_CAPACITY && need <= len => {
                Ok(Ring { base, capacity })
            }
            _ => Err(Error::CorruptObject {
                reason: "queue capacity inconsistent with its block",
            }),
        }
    }

    /// Initializes a ring in a fresh zero-filled block.
    ///
    /// # Safety
    /// As for [`attach`](Ring::attach), and `len >= ring_bytes(capacity)`, and the block is
    /// zero-filled and not yet visible to any other party.
    pub(crate) unsafe fn init(
        base: *mut u8,
        len: u64,
        capacity: u64,
        type_fp: u64,
    ) -> Result<Ring> {
        let probe = Ring { base, capacity: 0 };
        probe.word64(CAPACITY).store(capacity, Ordering::Relaxed);
        probe.word64(TYPE_FP).store(type_fp, Ordering::Relaxed);
        // SAFETY: forwarded from the caller.
        unsafe { Ring::attach(base, len) }
    }

    fn word64(&self, off: usize) -> &AtomicU64 {
        let p = self.base.wrapping_add(off).cast::<AtomicU64>();
        // SAFETY: `off` is a header offset below `HEADER` or a slot offset below
        // `ring_bytes(capacity)`, inside the block (`attach` checked), 8-aligned (the base is
        // 64-aligned, offsets are multiples of 8); `AtomicU64` has `u64`'s layout, all bit
        // patterns are valid, and the block outlives `self` (type-level `# Safety`).
        unsafe { &*p }
    }

    fn word32(&self, off: usize) -> &AtomicU32 {
        let p = self.base.wrapping_add(off).cast::<AtomicU32>();
        // SAFETY: as in `word64`, for 4-byte, 4-aligned header words.
        unsafe { &*p }
    }

    fn slot_off(&self, pos: u64) -> usize {
        let index = usize::try_from(pos % self.capacity).unwrap_or(0);
        HEADER + index * SLOT
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
    pub(crate) fn is_closed(&self) -> bool {
        self.word32(CLOSED).load(Ordering::Acquire) != 0
    }

    /// Closes the ring and wakes every sleeper.
    pub(crate) fn close(&self) {
        self.word32(CLOSED).store(1, Ordering::Release);
        for seq in [NOT_EMPTY, NOT_FULL] {
            self.word32(seq).fetch_add(1, Ordering::Release);
            sys::futex_wake(self.word32(seq), u32::MAX);
        }
    }

    /// Tries once to put a message.
    pub(crate) fn try_put(&self, msg: &Payload<'_>) -> Result<Attempt<()>> {
        let me = sys::current_tid();
        let tail = self.word64(TAIL);
        let mut spins = 0u32;
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
                self.write_slot(off, msg);
                // Release: the message bytes and length are visible to whoever sees FULL.
                word.store(pack(lap, FULL, 0), Ordering::Release);
                let _ = tail.compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
                self.notify(NOT_EMPTY);
                return Ok(Attempt::Done(()));
            }
            if wl == lap && (st == FULL || st == READING) {
                // Filled, but its producer has not moved the tail yet (or died before): help.
                let _ = tail.compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            if wl == lap && st == WRITING {
                // Another producer is copying into this position: wait for it, or recover
                // the slot if it died.
                if self.wait_or_recover(word, w, pack(lap, EMPTY, 0), &mut spins) {
                    continue;
                }
                std::thread::yield_now();
                continue;
            }
            if wl == lap.wrapping_sub(1) && tail.load(Ordering::Acquire) == pos {
                // The slot still holds the previous lap's message: the ring is full.
                return Ok(Attempt::WouldBlock);
            }
            // The tail moved under us; look again.
        }
    }

    /// Tries once to take a message.
    pub(crate) fn try_get(&self) -> Result<Attempt<Taken>> {
        let me = sys::current_tid();
        let head = self.word64(HEAD);
        let mut spins = 0u32;
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
                let taken = self.read_slot(off);
                // Release: our reads of the slot happen before the next producer's writes.
                word.store(pack(lap.wrapping_add(1), EMPTY, 0), Ordering::Release);
                let _ = head.compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
                self.notify(NOT_FULL);
                return taken.map(Attempt::Done);
            }
            if wl == lap.wrapping_add(1) && st == EMPTY {
                // Emptied, but its consumer has not moved the head yet (or died before): help.
                let _ = head.compare_exchange(pos, pos + 1, Ordering::AcqRel, Ordering::Relaxed);
                continue;
            }
            if wl == lap && st == READING {
                // Another consumer is copying out: wait for it, or hand the message back to
                // the queue if it died.
                if !self.wait_or_recover(word, w, pack(lap, FULL, 0), &mut spins) {
                    std::thread::yield_now();
                }
                continue;
            }
            if wl == lap && st == WRITING {
                // A producer is copying in: wait briefly, recover if it died, else empty.
                if self.wait_or_recover(word, w, pack(lap, EMPTY, 0), &mut spins) {
                    continue;
                }
                return self.empty_or_closed();
            }
            if wl == lap && st == EMPTY && head.load(Ordering::Acquire) == pos {
                return self.empty_or_closed();
            }
            // The head moved under us; look again.
        }
    }

    fn empty_or_closed(&self) -> Result<Attempt<Taken>> {
        if self.is_closed() {
            Err(Error::Closed)
        } else {
            Ok(Attempt::WouldBlock)
        }
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
        while *spins < SPIN {
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
        let _ = word.compare_exchange(seen, recovered, Ordering::AcqRel, Ordering::Relaxed);
        true
    }

    fn write_slot(&self, off: usize, msg: &Payload<'_>) {
        let data = self.base.wrapping_add(off + 16);
        match *msg {
            Payload::Inline(bytes) => {
                let n = bytes.len().min(INLINE);
                // SAFETY: this thread holds the slot in WRITING state (exclusive, see module
                // `# Safety`); `n <= INLINE` bytes fit the slot's message area.
                unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), data, n) };
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

    fn read_slot(&self, off: usize) -> Result<Taken> {
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
        if n > INLINE {
            return Err(Error::CorruptObject {
                reason: "queue slot length out of range",
            });
        }
        let mut out = [0u8; INLINE];
        let data = self.base.wrapping_add(off + 16);
        // SAFETY: this thread holds the slot in READING state (exclusive); `n <= INLINE`
        // bytes lie in the slot's message area; `out` has room for `INLINE` bytes.
        unsafe { core::ptr::copy_nonoverlapping(data, out.as_mut_ptr(), n) };
        Ok(Taken::Inline(out, n))
    }

    /// Wakes a sleeper of `seq` if one announced itself.
    fn notify(&self, seq: usize) {
        // SeqCst fence: orders our ring update before the waiters check (event count; see the
        // module's "Blocking").
        fence(Ordering::SeqCst);
        if self.word32(seq + 4).load(Ordering::Relaxed) > 0 {
            self.word32(seq).fetch_add(1, Ordering::Release);
            sys::futex_wake(self.word32(seq), 1);
        }
    }

    /// Sleeps until a put (`NOT_EMPTY`) or a get (`NOT_FULL`) may have happened, `deadline`
    /// passes, or one slice elapses; `ready` re-checks the ring after announcing. Returns
    /// `false` once the deadline has passed.
    fn sleep(
        &self,
        seq: usize,
        deadline: Option<&Deadline>,
        slice: Duration,
        ready: impl Fn() -> bool,
    ) -> bool {
        let word = self.word32(seq);
        let waiters = self.word32(seq + 4);
        let seen = word.load(Ordering::Acquire);
        waiters.fetch_add(1, Ordering::SeqCst);
        if !ready() {
            let wake_by = Deadline::after(slice);
            let until = deadline.map_or(wake_by, |d| d.min(wake_by));
            let _ = sys::futex_wait(word, seen, Some(&until)) == WaitOutcome::TimedOut;
        }
        waiters.fetch_sub(1, Ordering::Relaxed);
        !deadline.is_some_and(Deadline::has_passed)
    }

    /// Puts a message, waiting for room until `deadline` (forever if `None`).
    pub(crate) fn put(&self, msg: &Payload<'_>, deadline: Option<&Deadline>) -> Result<()> {
        let mut slice = FIRST_SLICE;
        let mut backoff = Backoff::new();
        loop {
            if let Attempt::Done(()) = self.try_put(msg)? {
                return Ok(());
            }
            if backoff.spin() {
                continue;
            }
            let full = || self.len() >= self.capacity && !self.is_closed();
            if !self.sleep(NOT_FULL, deadline, slice, || !full()) {
                return match self.try_put(msg)? {
                    Attempt::Done(()) => Ok(()),
                    Attempt::WouldBlock => Err(Error::Timeout),
                };
            }
            slice = (slice * 2).min(MAX_SLICE);
        }
    }

    /// Takes a message, waiting until `deadline` (forever if `None`).
    pub(crate) fn get(&self, deadline: Option<&Deadline>) -> Result<Taken> {
        let mut slice = FIRST_SLICE;
        let mut backoff = Backoff::new();
        loop {
            if let Attempt::Done(t) = self.try_get()? {
                return Ok(t);
            }
            if backoff.spin() {
                continue;
            }
            if !self.sleep(NOT_EMPTY, deadline, slice, || {
                self.len() > 0 || self.is_closed()
            }) {
                return match self.try_get()? {
                    Attempt::Done(t) => Ok(t),
                    Attempt::WouldBlock => Err(Error::Timeout),
                };
            }
            slice = (slice * 2).min(MAX_SLICE);
        }
    }

    /// Counts one more unfinished task (`JoinableQueue::put`).
    pub(crate) fn task_added(&self) {
        self.word64(UNFINISHED).fetch_add(1, Ordering::AcqRel);
    }

    /// Undoes [`task_added`](Ring::task_added) for a put that failed.
    pub(crate) fn task_unadded(&self) {
        let _ = self.task_done();
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
            fence(Ordering::SeqCst);
            let seq = self.word32(JOIN);
            seq.fetch_add(1, Ordering::Release);
            if self.word32(JOIN + 4).load(Ordering::Relaxed) > 0 {
                sys::futex_wake(seq, u32::MAX);
            }
        }
        Ok(())
    }

    /// Returns the number of unfinished tasks.
    pub(crate) fn unfinished(&self) -> u64 {
        self.word64(UNFINISHED).load(Ordering::Acquire)
    }

    /// Waits until every task is done, or `deadline` passes (`Error::Timeout`).
    pub(crate) fn join(&self, deadline: Option<&Deadline>) -> Result<()> {
        let seq = self.word32(JOIN);
        let waiters = self.word32(JOIN + 4);
        loop {
            let seen = seq.load(Ordering::Acquire);
            waiters.fetch_add(1, Ordering::SeqCst);
            let done = self.unfinished() == 0;
            if !done {
                let wake_by = Deadline::after(MAX_SLICE);
                let until = deadline.map_or(wake_by, |d| d.min(wake_by));
                let _ = sys::futex_wait(seq, seen, Some(&until));
            }
            waiters.fetch_sub(1, Ordering::Relaxed);
            if self.unfinished() == 0 {
                return Ok(());
            }
            if deadline.is_some_and(Deadline::has_passed) {
                return Err(Error::Timeout);
            }
        }
    }
}

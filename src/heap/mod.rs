//! The segment allocator: one heap per segment, shared by every process that maps it.
//!
//! Every shared object (values, arrays, locks, and the queues, pipes and manager state built
//! on them) is a block in a heap. Blocks are named by their offset in the segment, never by
//! pointer, so they mean the same thing in every process.
//!
//! # Layout
//!
//! | offset      | size | field                                   | writer               |
//! |-------------|------|-----------------------------------------|----------------------|
//! | 0           | 56   | segment header (see `segment::header`)  | creator, once        |
//! | 64          | 8    | `top`: first never-allocated byte        | under the lock       |
//! | 72          | 8    | `root`: published blob (`idx:32|gen:32`) | swap by publisher    |
//! | 80          | 8    | `used`: bytes in live blocks             | under the lock       |
//! | 88          | 8    | `journals`: bytes in journal chunks      | under the lock       |
//! | 96          | 488  | free lists, one per class (`tag:32|idx:32`) | under the lock    |
//! | 584         | 8    | free list of journal chunks              | under the lock       |
//! | 640         | 16   | heap lock (`sync::raw::LockWord`)        | lockers              |
//! | 656         | 232  | redo record: commit word, 14 (target, value) slots (`redo`) | lock holder |
//! | 1024        | `len / 256` | block-start bitmap: bit `i` set iff a block starts at `32 * i` | the carver, once, under the lock |
//! | `holders`   | 32 × slots | holder table (`holder`; one slot per 16 KiB, 16 to 4096) | under the lock |
//! | `data_start`| …    | blocks (`data_start`: past the holder table, 4 KiB aligned) |  |
//!
//! Each block starts with a 32-byte header, 32-byte aligned:
//!
//! | offset | size | field      | meaning                                                  |
//! |--------|------|------------|----------------------------------------------------------|
//! | 0      | 4    | `tag`      | the block's size: small class or page count (`size_class`) |
//! | 4      | 4    | `delta`    | payload offset minus block offset; 0 while free          |
//! | 8      | 8    | `rc_gen`   | `generation:32 | refcount:32`; refcount 0 means free     |
//! | 16     | 8    | `type`     | fingerprint of the payload's type *and kind*             |
//! | 24     | 8    | `len_next` | payload length while allocated; next free block while free |
//!
//! A payload that needs more than 32-byte alignment starts further in; the 32 bytes before it
//! then hold a forward header (`FORWARD_MAGIC`, `delta`) that leads back to the block header.
//!
//! The `type` word is what makes a token attach only as the handle that made it. Typed
//! shared memory records its element type's fingerprint extended with its kind (`Value`,
//! `Array`, `RawValue`, `RawArray`; `shared::kind`), queue rings their queue kind, and every
//! synchronization primitive its own name, so no kind of handle attaches to a block made by
//! another. Objects used under a lock (`Value`, `Array`, `Condition`) also hold in their
//! payload a 32-byte link record naming that lock (segment, offset, type, generation;
//! `ObjectRef::write_link`), and re-attaching checks the lock token against it: an object is
//! only ever paired with the lock it was created with.
//!
//! # Trusting the header
//!
//! Payload bytes are written by whoever holds a handle, so bytes that look like a block
//! header may appear inside any payload. Only the block-start bitmap, which lies outside
//! every block, says where blocks are: a block is carved once at a fixed offset and never
//! moves, splits or merges, so its bit is set when it is carved and never cleared. Locating a
//! payload (attach, adopt, free by offset) and popping a free list accept only offsets whose
//! bit is set, so a token pointing at a header forged inside another object's payload finds
//! no block ([`Error::ObjectGone`](crate::Error::ObjectGone)) and can never alias it.
//!
//! Header words are shared memory and may be scribbled on, so each is checked against what
//! it could be before it is used. A block's extent (`extent`: magic, a valid class, aligned
//! for it, wholly below `top`) is checked before a free touches anything, and the class must
//! still give the size the freeing handle took when it made its reference; the payload delta
//! must fall inside the block. A block popped from a free list is checked the same way, and
//! must carry the list's class and no references, before it is handed out. A failed check is
//! [`Error::CorruptHeap`](crate::Error::CorruptHeap) and the block is lost, never reused.
//!
//! # Concurrency and crashes
//!
//! Every change of the heap's shared state (free lists, `top`, `used`, the bitmap, block
//! headers and counts, holder slots and journal entries) is made under the heap lock, a robust
//! lock word at `LOCK` (`sync::raw`: a dead holder is found by the same conservative liveness
//! test as every shmproc lock), as one transaction of absolute stores in the redo record at
//! `REDO`. A process killed at any instruction leaves the record either uncommitted (nothing
//! happened) or committed (the next taker redoes it all); see `redo` for the state table. So
//! the heap is never left half-changed, and no block is lost by a death inside `alloc` or
//! `free`: a popped or carved block is recorded in its owner's journal entry in the very
//! transaction that takes it off the list, and a freed one leaves the entry in the transaction
//! that pushes it. A block allocated for a structure can instead be named in a word of that
//! structure by the same transaction (`alloc_named`: the containers' `FRESH` word), which the
//! structure resolves after a death as it resolves its own records.
//!
//! Free lists are stacks whose head word carries a 32-bit tag bumped by every push and pop.
//!
//! # Reference counts and holders
//!
//! A block's count (`rc_gen`) counts its holders' journal entries and the references that
//! structures own (a queue slot's message, a container's entries and tables, the root slot),
//! not handles: the clones of a handle in one process share its journal entry, whose own
//! count they change without the lock; only an entry's first and last handle change the
//! block's count (see `holder` for the table of slots, journals and entry states). A process
//! that dies leaves its entries behind, and releasing its holder (when it is reaped, or when
//! an allocation finds the heap full) drops them. Journal chunks are accounted in `journals`,
//! not in `used`, so `used` counts objects only.
//!
//! The generation is bumped on free, and re-attaching a handle from a token checks it, so a
//! token for a freed (and possibly reused) block is
//! [`Error::ObjectGone`](crate::Error::ObjectGone), never an alias (also when the payload had
//! a forward header: freeing clears its magic, and an offset with neither header before it
//! names no live object). Every offset, tag and
//! length read from the segment is validated before use; a failed check is
//! [`Error::CorruptObject`](crate::Error::CorruptObject).
//!
//! # Format
//!
//! The layout fingerprint (`HEAP_LAYOUT`, recorded in the segment header) names version 3: a
//! segment made with an earlier layout (no heap lock, record or holder table) is refused when
//! it is opened or attached ([`Error::TypeMismatch`](crate::Error::TypeMismatch) naming the
//! layout), never used.
//!
//! # Safety
//!
//! The unsafe code here turns validated offsets into references to atomics inside the mapping.
//! Invariants: every offset is checked to be in bounds and aligned for the atomic's type before
//! the reference is made, and the mapping outlives the reference (it is borrowed from the
//! `SegmentInner`, which owns the mapping).

#![allow(unsafe_code)]
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

pub(crate) mod handle;
pub(crate) mod holder;
#[cfg(all(test, shmproc_loom))]
mod loom_tests;
pub(crate) mod redo;
pub(crate) mod root;
pub(crate) mod size_class;
#[cfg(feature = "test-support")]
pub mod testing;
#[cfg(all(test, feature = "test-support", not(shmproc_loom)))]
mod tests;

use crate::error::{Error, Result};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::segment::SegmentInner;
use crate::sync::raw::{self, Acquired, LockWord};
use crate::sys;
use redo::{Record, Txn};
use size_class::{Class, LARGE_CLASSES, SMALL};

pub use handle::ObjectToken;
pub(crate) use handle::{LINK_BYTES, ObjectRef};
pub(crate) use holder::release_holders_of;

/// Fingerprint of this heap layout, recorded in the segment header.
pub(crate) const HEAP_LAYOUT: u64 = crate::fingerprint::start(
    "shmproc::heap v3: 32-byte headers, 61 classes, start bitmap, heap lock, redo record, holders",
    4096,
    32,
);

const TOP: u64 = 64;
const ROOT: u64 = 72;
const USED: u64 = 80;
/// Bytes in holders' journal chunks (kept apart from `USED`, which counts objects).
const JOURNAL: u64 = 88;
const LISTS: u64 = 96;
const N_LISTS: usize = SMALL.len() + LARGE_CLASSES;
/// The free list of journal chunks (right after the class lists).
const JOURNAL_LIST: u64 = 584; // LISTS + 8 * N_LISTS
/// The heap lock: a robust lock word (`sync::raw::LockWord`, 16 bytes).
const LOCK: u64 = 640;
/// The redo record: the commit word, then `2 * redo::CAPACITY` slot words.
const REDO: u64 = 656;
/// Where the block-start bitmap begins (after the free lists, the lock and the record).
const BITMAP: u64 = 1024;
/// Bytes of block header before every payload.
pub(crate) const BLOCK_HEADER: u64 = 32;
const FORWARD_MAGIC: u32 = 0x5348_46ff;
const IDX_UNIT: u64 = 16;
const RC_MASK: u64 = 0xffff_ffff;
/// Index bits of a free-list head or `next` word.
const IDX_MASK: u64 = 0xffff_ffff;
const RC_MAX: u64 = 0x7fff_ffff;

/// Statistics of a heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes in live blocks (headers and rounding included).
    pub used: u64,
    /// Bytes ever carved from the segment (the high-water mark).
    pub carved: u64,
    /// Bytes the heap can hand out in all.
    pub capacity: u64,
    /// Bytes in the journals that record which process holds which references (not in
    /// `used`).
    pub journals: u64,
}

/// A view of the heap inside a segment.
#[derive(Clone, Copy)]
pub(crate) struct RawHeap<'a> {
    seg: &'a SegmentInner,
    page: u64,
    /// `data_start` for this segment's length, computed once per view (every block check
    /// needs it).
    data_start: u64,
    /// `holders_at` for this segment's length: where the block-start bitmap ends (every
    /// bitmap lookup checks against it).
    bitmap_end: u64,
}

/// A freshly allocated block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block {
    pub(crate) block: u64,
    pub(crate) payload: u64,
    pub(crate) len: u64,
    /// The block's size (its class's size, header included): its checked extent.
    pub(crate) size: u64,
    pub(crate) generation: u32,
    /// Offset from which the block's bytes are known to be zero (pages never written, or given
    /// back when the block was last freed), so zero-filling can stop there.
    pub(crate) zero_from: u64,
}

/// Whom a reference belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A structure: a queue slot, a container, the root slot, or a process whose holder
    /// table was full. Nobody releases it if its process dies.
    Structure,
    /// The journal entry at this offset (its first word), in the caller's holder.
    Entry(u64),
}

impl Owner {
    /// Adds to `txn` the stores that record the reference in the entry (a count of 1).
    fn hold(self, txn: &mut Txn, block: u64, generation: u32) -> Result<()> {
        if let Owner::Entry(e) = self {
            txn.set64(e, block)?;
            txn.set64(add(e, 8)?, u64::from(generation) << 32 | 1)?;
        }
        Ok(())
    }

    /// Adds to `txn` the stores that clear the entry.
    fn clear(self, txn: &mut Txn) -> Result<()> {
        if let Owner::Entry(e) = self {
            txn.set64(e, 0)?;
            txn.set64(add(e, 8)?, 0)?;
        }
        Ok(())
    }
}

impl redo::Memory for RawHeap<'_> {
    fn check(&self, target: u64, wide: bool) -> Result<()> {
        // The segment header, the lock and the record are never a transaction's target.
        let ok = target >= TOP
            && !(LOCK..BITMAP).contains(&target)
            && if wide {
                self.u32_at(target).is_ok()
            } else {
                self.u64_at(target).is_ok()
            };
        if ok {
            Ok(())
        } else {
            Err(Error::CorruptHeap {
                reason: "heap store outside the heap state and blocks",
            })
        }
    }

    fn store(&self, target: u64, value: u64, wide: bool) -> Result<()> {
        // Release: a reader that sees the value (lock-free checks of a block's generation,
        // `is_start`) sees the stores before it in the transaction.
        if wide {
            let v = u32::try_from(value).unwrap_or(u32::MAX);
            self.u32_at(target)?.store(v, Ordering::Release);
        } else {
            self.u64_at(target)?.store(value, Ordering::Release);
        }
        Ok(())
    }
}

// A `match`, not `ok_or`: an eagerly built `Error` is dropped on the success path, and that
// drop (a jump table over the variants) was most of the cost of checking a block.
fn add(a: u64, b: u64) -> Result<u64> {
    match a.checked_add(b) {
        Some(v) => Ok(v),
        None => Err(Error::CorruptObject {
            reason: "offset overflow",
        }),
    }
}

fn sub(a: u64, b: u64) -> Result<u64> {
    match a.checked_sub(b) {
        Some(v) => Ok(v),
        None => Err(Error::CorruptObject {
            reason: "offset underflow",
        }),
    }
}

/// The first byte of the first block of a heap `len` bytes long (see `RawHeap::data_start`),
/// whose holder table starts at `holders` (`holders_at(len)`).
fn data_start_after(holders: u64, len: u64) -> u64 {
    holders
        .saturating_add(holder::slots_for(len).saturating_mul(holder::SLOT_BYTES))
        .next_multiple_of(4096)
        .max(4096)
}

/// Where the holder table begins: past the block-start bitmap (one bit per 32-byte unit of
/// the segment), 32-byte aligned.
fn holders_at(len: u64) -> u64 {
    let bytes = len
        .div_ceil(BLOCK_HEADER.saturating_mul(8))
        .next_multiple_of(8);
    BITMAP.saturating_add(bytes).next_multiple_of(32)
}

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl<'a> RawHeap<'a> {
    #[inline]
    pub(crate) fn new(seg: &'a SegmentInner) -> Self {
        let len = seg.len();
        let bitmap_end = holders_at(len);
        RawHeap {
            seg,
            page: u64::try_from(sys::page_size()).unwrap_or(4096),
            data_start: data_start_after(bitmap_end, len),
            bitmap_end,
        }
    }

    fn len(&self) -> u64 {
        self.seg.len()
    }

    /// Returns the first byte of the first block: past the block-start bitmap (one bit per
    /// 32-byte unit of the segment), 4 KiB aligned; 4096 for segments up to 768 KiB.
    #[inline]
    pub(crate) fn data_start(&self) -> u64 {
        self.data_start
    }

    /// Returns the offset of the bitmap word, and the bit, that record whether a block starts
    /// at `off`.
    fn start_bit_at(&self, off: u64) -> Result<(u64, u64)> {
        let unit = off / BLOCK_HEADER;
        let word = add(BITMAP, (unit / 64).saturating_mul(8))?;
        if add(word, 8)? > self.bitmap_end {
            return Err(Error::CorruptObject {
                reason: "offset past the block-start bitmap",
            });
        }
        let bit = 1u64
            .checked_shl(u32::try_from(unit % 64).unwrap_or(0))
            .unwrap_or(0);
        Ok((word, bit))
    }

    /// Returns the bitmap word and bit that record whether a block starts at `off`.
    fn start_bit(&self, off: u64) -> Result<(&'a AtomicU64, u64)> {
        let (word, bit) = self.start_bit_at(off)?;
        Ok((self.u64_at(word)?, bit))
    }

    /// Records in `txn` that a block starts at `block` (once, when it is carved: blocks never
    /// move, split or merge, so the bit is never cleared).
    fn mark_start_in(&self, txn: &mut Txn, block: u64) -> Result<()> {
        let (at, bit) = self.start_bit_at(block)?;
        // Acquire: pairs with the Release stores of the transactions that set other bits of
        // the word (the heap lock orders them too).
        let old = txn.pending(at).unwrap_or_else(|| self.state_or_zero(at));
        if old & bit != 0 {
            return Err(Error::CorruptHeap {
                reason: "a block was carved twice at one offset",
            });
        }
        txn.set64(at, old | bit)
    }

    /// Returns the word at `off`, or 0 if `off` is not a word of the segment.
    fn state_or_zero(&self, off: u64) -> u64 {
        self.u64_at(off).map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// Returns whether any block was carved in `[from, to)` (both multiples of 32).
    fn any_start_in(&self, from: u64, to: u64) -> Result<bool> {
        let mut unit = from / BLOCK_HEADER;
        let end = to / BLOCK_HEADER;
        while unit < end {
            let (word, _) = self.start_bit(unit.saturating_mul(BLOCK_HEADER))?;
            let first = unit % 64;
            let last = end.saturating_sub(unit).min(64u64.saturating_sub(first));
            // Bits `first .. first + last` of this word (`first + last <= 64`).
            let mask = u64::MAX
                .checked_shr(u32::try_from(64u64.saturating_sub(last)).unwrap_or(64))
                .unwrap_or(0)
                .checked_shl(u32::try_from(first).unwrap_or(0))
                .unwrap_or(0);
            // Acquire: pairs with `mark_start`.
            if word.load(Ordering::Acquire) & mask != 0 {
                return Ok(true);
            }
            unit = unit.saturating_add(last);
        }
        Ok(false)
    }

    /// Returns whether a block was carved at `block`. The bitmap lies outside every block,
    /// so no payload bytes (which any handle's owner may write) can forge a block start.
    #[inline]
    fn is_start(&self, block: u64) -> bool {
        // Acquire: pairs with `mark_start`.
        self.start_bit(block)
            .is_ok_and(|(word, bit)| word.load(Ordering::Acquire) & bit != 0)
    }

    /// Returns the atomic `u64` at `off`, after checking bounds and alignment.
    #[inline]
    fn u64_at(&self, off: u64) -> Result<&'a AtomicU64> {
        let end = add(off, 8)?;
        if !off.is_multiple_of(8) || end > self.len() {
            return Err(Error::CorruptObject {
                reason: "word offset out of bounds",
            });
        }
        let ptr = self
            .seg
            .base()
            .wrapping_add(usize_of(off))
            .cast::<AtomicU64>();
        // SAFETY: `off + 8 <= len` keeps the word inside the mapping and `off % 8 == 0` (with
        // a page-aligned base) aligns it for `AtomicU64`, which has `u64`'s size and alignment
        // (std docs). Any bit pattern is a valid `u64`; other processes access the word only
        // atomically. The reference borrows `self.seg`, which owns the mapping.
        Ok(unsafe { &*ptr })
    }

    /// Returns the atomic `u32` at `off`, after checking bounds and alignment.
    #[inline]
    fn u32_at(&self, off: u64) -> Result<&'a AtomicU32> {
        let end = add(off, 4)?;
        if !off.is_multiple_of(4) || end > self.len() {
            return Err(Error::CorruptObject {
                reason: "word offset out of bounds",
            });
        }
        let ptr = self
            .seg
            .base()
            .wrapping_add(usize_of(off))
            .cast::<AtomicU32>();
        // SAFETY: as in `u64_at`, for a 4-byte, 4-aligned word inside the mapping.
        Ok(unsafe { &*ptr })
    }

    fn state(&self, off: u64) -> &'a AtomicU64 {
        match self.u64_at(off) {
            Ok(w) => w,
            // The state words are below the bitmap, inside every valid segment.
            Err(_) => unreachable!("heap state word {off} outside a checked segment"),
        }
    }

    #[cfg(test)]
    fn list(&self, class: Class) -> Result<&'a AtomicU64> {
        self.u64_at(self.list_off(class, 0)?)
    }

    /// Returns the offset of the free list for blocks of `class` typed `fp`: journal chunks
    /// have a list of their own, so they never take or give back an object's block.
    fn list_off(&self, class: Class, fp: u64) -> Result<u64> {
        if fp == holder::CHUNK_FP {
            return Ok(JOURNAL_LIST);
        }
        let idx = u64::try_from(class.list_index()).unwrap_or(u64::MAX);
        if class.list_index() >= N_LISTS {
            return Err(Error::CorruptObject {
                reason: "bad size class",
            });
        }
        add(LISTS, idx.saturating_mul(8))
    }

    /// Initializes the heap state of a new (zero-filled) segment.
    pub(crate) fn init(&self) {
        self.state(TOP).store(self.data_start(), Ordering::Relaxed);
    }

    /// Checks the heap state of a segment being attached.
    pub(crate) fn check_state(&self) -> Result<()> {
        let top = self.state(TOP).load(Ordering::Acquire);
        if !(self.data_start()..=self.len()).contains(&top) {
            return Err(Error::CorruptHeader {
                reason: "heap top out of range",
            });
        }
        Ok(())
    }

    /// Returns the heap's statistics.
    pub(crate) fn stats(&self) -> HeapStats {
        HeapStats {
            used: self.state(USED).load(Ordering::Relaxed),
            carved: self
                .state(TOP)
                .load(Ordering::Relaxed)
                .saturating_sub(self.data_start()),
            capacity: self.len().saturating_sub(self.data_start()),
            journals: self.state(JOURNAL).load(Ordering::Relaxed),
        }
    }

    /// Returns the heap lock.
    fn lock_word(&self) -> &'a LockWord {
        let ptr = self
            .seg
            .base()
            .wrapping_add(usize_of(LOCK))
            .cast::<LockWord>();
        // SAFETY: `LOCK .. LOCK + 16` lies in the heap state (below the bitmap) of every
        // segment, which is at least `MIN_SEGMENT_LEN` long; `LOCK` is 8-aligned and the base
        // is page-aligned, so the pointer is aligned for `LockWord` (`repr(C)`, two `AtomicU32`
        // and an `AtomicU64`: 16 bytes, 8-aligned, every bit pattern valid; std docs). The
        // words are only ever accessed atomically; the reference borrows the mapping.
        unsafe { &*ptr }
    }

    /// Returns the redo record's words.
    fn record(&self) -> Record<'a> {
        let slots = self
            .seg
            .base()
            .wrapping_add(usize_of(REDO.saturating_add(8)))
            .cast::<AtomicU64>();
        let n = redo::CAPACITY.saturating_mul(2);
        Record {
            commit: self.state(REDO),
            // SAFETY: `REDO + 8 .. REDO + 8 + 16 * CAPACITY` (= 888) lies below the bitmap in
            // every segment, 8-aligned; `AtomicU64` has `u64`'s size and alignment (std docs),
            // every bit pattern is valid, and the slots are only accessed atomically.
            slots: unsafe { core::slice::from_raw_parts(slots, n) },
        }
    }

    /// Runs `f` under the heap lock and executes the transaction it builds (see `redo`).
    ///
    /// A record left by a holder of the lock that died is resolved first. `f` reads the state
    /// the lock protects and adds stores to the transaction; if it returns an error, nothing it
    /// added is stored.
    fn locked<T>(&self, f: impl FnOnce(&mut Txn) -> Result<T>) -> Result<T> {
        struct Unlock<'w>(&'w LockWord);
        impl Drop for Unlock<'_> {
            fn drop(&mut self) {
                raw::unlock(self.0);
            }
        }
        let word = self.lock_word();
        let acquired = raw::lock(word, None);
        let _unlock = Unlock(word);
        if acquired == Acquired::TimedOut {
            unreachable!("a lock without a deadline does not time out");
        }
        // Acquire: pairs with the Release stores of the commit word; a set word means the
        // previous holder died between its commit and its clear (also when the death was not
        // reported to us: the lock may have been taken over by a waiter that died in turn).
        if self.record().commit.load(Ordering::Acquire) != 0 {
            redo::recover(&self.record(), self)?;
        }
        let mut txn = Txn::new();
        let out = f(&mut txn)?;
        txn.commit(&self.record(), self)?;
        Ok(out)
    }

    /// Takes and releases the heap lock, resolving a record a dead holder left: afterwards
    /// every transaction of a process that has died has happened or never will.
    pub(crate) fn settle(&self) -> Result<()> {
        self.locked(|_| Ok(()))
    }

    /// Allocates a block whose payload holds `size` bytes aligned to `align`, typed `fp`; the
    /// block's one reference belongs to a structure (see [`Owner`]).
    ///
    /// The payload's contents are unspecified (zero for fresh memory, old bytes for reused
    /// blocks); the caller initializes them before publishing a handle.
    #[cfg(test)]
    pub(crate) fn alloc(&self, size: u64, align: u64, fp: u64) -> Result<Block> {
        self.alloc_owned(size, align, fp, Owner::Structure)
    }

    /// Allocates like [`alloc`](RawHeap::alloc); the reference belongs to `owner`.
    ///
    /// When the heap is full, the holders of dead processes are released and the allocation
    /// is tried once more.
    pub(crate) fn alloc_owned(
        &self,
        size: u64,
        align: u64,
        fp: u64,
        owner: Owner,
    ) -> Result<Block> {
        self.alloc_with(size, align, fp, owner, None)
    }

    /// Allocates like [`alloc`](RawHeap::alloc), for a structure, and names the new block in
    /// the word at `name` (a word of a structure's block) in the same transaction: the word
    /// becomes `generation << 32 | payload / 32`, the form of a reference word (as the root
    /// word). No death can leave the block allocated and unnamed: the structure finds it in
    /// that word and frees it if it never published it.
    ///
    /// # Errors
    /// As for `alloc`; [`Error::InvalidSize`] if the payload lies past the first 128 GiB of
    /// the segment (its index does not fit the word).
    pub(crate) fn alloc_named(&self, size: u64, align: u64, fp: u64, name: u64) -> Result<Block> {
        self.alloc_with(size, align, fp, Owner::Structure, Some(name))
    }

    fn alloc_with(
        &self,
        size: u64,
        align: u64,
        fp: u64,
        owner: Owner,
        name: Option<u64>,
    ) -> Result<Block> {
        if !align.is_power_of_two() || align > self.page {
            return Err(Error::InvalidSize {
                reason: "alignment must be a power of two no larger than a page",
            });
        }
        let oom = || Error::OutOfMemory {
            requested: size,
            capacity: self.len(),
        };
        let need = align.max(BLOCK_HEADER).checked_add(size).ok_or_else(oom)?;
        let class = Class::for_block(need, self.page).ok_or_else(oom)?;
        let attempt = || {
            self.locked(|txn| {
                let b = self.alloc_in(txn, class, size, align, fp, owner)?;
                if let Some(name) = name {
                    let idx = u32::try_from(b.payload / BLOCK_HEADER).map_err(|_| {
                        Error::InvalidSize {
                            reason: "a named block must lie in the first 128 GiB of a segment",
                        }
                    })?;
                    txn.set64(name, u64::from(b.generation) << 32 | u64::from(idx))?;
                }
                Ok(b)
            })
        };
        match attempt() {
            // Damage found while releasing was dealt with (the damaged holder is dropped);
            // other holders may have been released meanwhile, so try again.
            Err(Error::OutOfMemory { .. }) if holder::release_dead(self).unwrap_or(true) => {
                attempt()
            }
            r => r,
        }
        .map_err(|e| match e {
            Error::OutOfMemory { .. } => oom(),
            e => e,
        })
    }

    /// Adds to `txn` the allocation of a block of `class` (the caller holds the lock).
    fn alloc_in(
        &self,
        txn: &mut Txn,
        class: Class,
        size: u64,
        align: u64,
        fp: u64,
        owner: Owner,
    ) -> Result<Block> {
        let (block, class) = match self.pop_in(txn, class, fp)? {
            Some(found) => found,
            None => {
                let bsize = class.block_size(self.page).ok_or(Error::CorruptObject {
                    reason: "bad size class",
                })?;
                (self.carve_in(txn, class, bsize)?, class)
            }
        };
        let bsize = class.block_size(self.page).ok_or(Error::CorruptObject {
            reason: "bad size class",
        })?;
        let first = add(block, BLOCK_HEADER)?;
        let payload = add(first, sub(first.next_multiple_of(align), first)?)?;
        let delta = u32::try_from(sub(payload, block)?).map_err(|_| Error::CorruptObject {
            reason: "payload delta too large",
        })?;
        let generation = match self.u64_at(add(block, 8)?)?.load(Ordering::Acquire) >> 32 {
            0 => 1,
            g => u32::try_from(g).unwrap_or(1),
        };
        // A block popped from a free list keeps its tag (checked by `pop_from`) and often its
        // type; a store of the value a word already holds (read under the lock, and stored by
        // no earlier store of this transaction) changes nothing, redone or not, so it is left
        // out of the record.
        if self.u32_at(block)?.load(Ordering::Relaxed) != class.tag() {
            txn.set32(block, class.tag())?;
        }
        txn.set32(add(block, 4)?, delta)?;
        if self.u64_at(add(block, 16)?)?.load(Ordering::Relaxed) != fp {
            txn.set64(add(block, 16)?, fp)?;
        }
        txn.set64(add(block, 24)?, size)?;
        if u64::from(delta) > BLOCK_HEADER {
            let fwd = sub(payload, BLOCK_HEADER)?;
            txn.set32(add(fwd, 4)?, delta)?;
            txn.set32(fwd, FORWARD_MAGIC)?;
        }
        // The transaction's stores are Release: the header fields above are visible to
        // whoever reads the count (attach takes the lock, which orders them anyway).
        txn.set64(add(block, 8)?, u64::from(generation) << 32 | 1)?;
        let counter = if fp == holder::CHUNK_FP {
            JOURNAL
        } else {
            USED
        };
        let used = self.state(counter).load(Ordering::Relaxed);
        txn.set64(counter, used.saturating_add(bsize))?;
        owner.hold(txn, block, generation)?;
        // Large blocks' pages past the first are fresh or were punched when freed.
        let zero_from = if class.is_large() {
            add(block, self.page)?.max(payload)
        } else {
            add(block, bsize)?
        };
        Ok(Block {
            block,
            payload,
            len: size,
            size: bsize,
            generation,
            zero_from,
        })
    }

    /// Adds to `txn` the carving of a fresh block of `bsize` bytes from `top`.
    fn carve_in(&self, txn: &mut Txn, class: Class, bsize: u64) -> Result<u64> {
        let align = if class.is_large() {
            self.page
        } else {
            BLOCK_HEADER
        };
        let oom = || Error::OutOfMemory {
            requested: bsize,
            capacity: self.len(),
        };
        let cur = self.state(TOP).load(Ordering::Relaxed);
        if cur < self.data_start() {
            return Err(Error::CorruptHeap {
                reason: "heap top below the data area",
            });
        }
        let start = cur.checked_next_multiple_of(align).ok_or_else(oom)?;
        let end = start
            .checked_add(bsize)
            .filter(|&e| e <= self.len())
            .ok_or_else(oom)?;
        // `top` is a shared word: a range that holds a block start was carved before (the
        // word was moved back), and handing it out would alias live objects.
        if self.any_start_in(start, end)? {
            return Err(Error::CorruptHeap {
                reason: "heap top points into carved blocks",
            });
        }
        self.mark_start_in(txn, start)?;
        txn.set64(TOP, end)?;
        Ok(start)
    }

    /// Adds to `txn` the pop of a free block that serves `class`, checked before it is handed
    /// out: inside the carved heap, aligned for its class, headed by a tag of its list's class
    /// and unreferenced. A list that fails a check is [`Error::CorruptHeap`], and nothing is
    /// popped. Returns the block and its own class (a large block may have a few pages more
    /// than asked for; see `size_class`).
    fn pop_in(&self, txn: &mut Txn, class: Class, fp: u64) -> Result<Option<(u64, Class)>> {
        if let Some(found) = self.pop_from(txn, class, class, fp)? {
            return Ok(Some(found));
        }
        // The blocks that may serve a large request can lie on the next list up (a request
        // for 29 pages may take a free block of 32).
        if let Some(p) = class.page_count() {
            let top = Class::pages(p.saturating_add(p / 8));
            if top.list_index() != class.list_index() {
                return self.pop_from(txn, top, class, fp);
            }
        }
        Ok(None)
    }

    /// Adds to `txn` the pop of the best block that serves `class` from the list of
    /// `list_class` (see `pop_in`).
    fn pop_from(
        &self,
        txn: &mut Txn,
        list_class: Class,
        class: Class,
        fp: u64,
    ) -> Result<Option<(u64, Class)>> {
        let list_off = self.list_off(list_class, fp)?;
        let list = self.u64_at(list_off)?;
        // Acquire: the popped block's header was written before its push.
        let head = list.load(Ordering::Acquire);
        let scan = if class.is_large() {
            size_class::LARGE_SCAN
        } else {
            1
        };
        // (block, its class, the word that links to it) of the best block seen.
        let mut best: Option<(u64, Class, u64)> = None;
        let (mut idx, mut link) = (head & IDX_MASK, list_off);
        for _ in 0..scan {
            if idx == 0 {
                break;
            }
            let block = idx.saturating_mul(IDX_UNIT);
            self.check_block_offset(block)
                .map_err(|_| Error::CorruptHeap {
                    reason: "free list names a block outside the heap",
                })?;
            let (found, _) = self.extent(block)?;
            let rc = self.u64_at(add(block, 8)?)?.load(Ordering::Relaxed) & RC_MASK;
            if found.list_index() != list_class.list_index() || rc != 0 {
                return Err(Error::CorruptHeap {
                    reason: "free list holds a block of another class or in use",
                });
            }
            let smaller = |b: &(u64, Class, u64)| match (found.page_count(), b.1.page_count()) {
                (Some(x), Some(y)) => x < y,
                _ => false,
            };
            if found.serves(class) && best.as_ref().is_none_or(smaller) {
                best = Some((block, found, link));
            }
            link = add(block, 24)?;
            idx = self.u64_at(link)?.load(Ordering::Relaxed) & IDX_MASK;
        }
        let Some((block, found, link)) = best else {
            return Ok(None);
        };
        let next = self.u64_at(add(block, 24)?)?.load(Ordering::Relaxed) & IDX_MASK;
        if link == list_off {
            let tag = (head >> 32).wrapping_add(1) & IDX_MASK;
            txn.set64(list_off, tag << 32 | next)?;
        } else {
            // A block further down (large lists only): its predecessor skips it.
            txn.set64(link, next)?;
        }
        Ok(Some((block, found)))
    }

    /// Takes a new reference, for `owner`, to the live block at `payload` with generation
    /// `generation` and type `fp`; returns (block, payload length, block size).
    pub(crate) fn attach_owned(
        &self,
        payload: u64,
        generation: u32,
        fp: u64,
        expected: &'static str,
        owner: Owner,
    ) -> Result<(u64, u64, u64)> {
        self.locked(|txn| {
            let (block, bsize) = self.locate(payload)?;
            let rc_gen = self.u64_at(add(block, 8)?)?.load(Ordering::Acquire);
            let (g, rc) = (rc_gen >> 32, rc_gen & RC_MASK);
            if g != u64::from(generation) || rc == 0 {
                return Err(Error::ObjectGone);
            }
            if rc >= RC_MAX {
                return Err(Error::CorruptObject {
                    reason: "reference count overflow",
                });
            }
            let found = self.u64_at(add(block, 16)?)?.load(Ordering::Relaxed);
            let len = self.u64_at(add(block, 24)?)?.load(Ordering::Relaxed);
            if found != fp {
                return Err(Error::TypeMismatch { expected, found });
            }
            if add(payload, len)? > add(block, bsize)? {
                return Err(Error::CorruptObject {
                    reason: "payload length past its block",
                });
            }
            txn.set64(add(block, 8)?, add(rc_gen, 1)?)?;
            owner.hold(txn, block, generation)?;
            Ok((block, len, bsize))
        })
    }

    /// Moves a reference that a structure held (given up by `into_owned_token`) to journal
    /// entry `entry`, checking the block is live and of type `fp`; returns (block, payload
    /// length, block size).
    pub(crate) fn adopt_into(
        &self,
        payload: u64,
        generation: u32,
        fp: u64,
        entry: u64,
    ) -> Result<(u64, u64, u64)> {
        self.locked(|txn| {
            let r = self.adopt(payload, generation, fp)?;
            Owner::Entry(entry).hold(txn, r.0, generation)?;
            Ok(r)
        })
    }

    /// Adds a reference, for `owner`, to the live block `block` of generation `generation`.
    /// Returns whether it was counted: a count at its maximum (only a corrupted word gets
    /// there) is left pinned, and the new handle must not release.
    pub(crate) fn retain_owned(&self, block: u64, generation: u32, owner: Owner) -> Result<bool> {
        self.locked(|txn| {
            let rc_gen = self.u64_at(add(block, 8)?)?.load(Ordering::Acquire);
            if rc_gen >> 32 != u64::from(generation) || rc_gen & RC_MASK == 0 {
                return Err(Error::ObjectGone);
            }
            if rc_gen & RC_MASK >= RC_MAX {
                return Ok(false);
            }
            txn.set64(add(block, 8)?, add(rc_gen, 1)?)?;
            owner.hold(txn, block, generation)?;
            Ok(true)
        })
    }

    /// Hands the reference held by journal entry `entry` (for `block`) to a structure: the
    /// entry is cleared, the block's count is unchanged.
    pub(crate) fn transfer(&self, block: u64, entry: u64) -> Result<()> {
        self.locked(|txn| {
            if self.u64_at(entry)?.load(Ordering::Relaxed) != block {
                return Err(Error::CorruptHeap {
                    reason: "journal entry names another block",
                });
            }
            Owner::Entry(entry).clear(txn)
        })
    }

    /// Drops a reference that a structure held; frees the block when it was the last.
    /// Returns whether it freed.
    ///
    /// `size` is the block's size as checked when the reference was taken (by `alloc`,
    /// `attach` or `adopt`): the free touches nothing outside `[block, block + size)`.
    pub(crate) fn release(&self, block: u64, size: u64) -> Result<bool> {
        self.release_owned(block, size, Owner::Structure)
    }

    /// Drops the reference `owner` held; frees the block when it was the last. Returns
    /// whether it freed.
    pub(crate) fn release_owned(&self, block: u64, size: u64, owner: Owner) -> Result<bool> {
        self.locked(|txn| self.release_in(txn, block, size, owner))?
    }

    /// Adds to `txn` the release of `owner`'s reference to `block`. The outer result is an
    /// error that stores nothing; the inner one an error that the transaction records (a
    /// corrupt block is taken out of use: its count is zeroed, it goes on no list).
    fn release_in(
        &self,
        txn: &mut Txn,
        block: u64,
        size: u64,
        owner: Owner,
    ) -> Result<Result<bool>> {
        let rc_gen = self.u64_at(add(block, 8)?)?.load(Ordering::Acquire);
        match rc_gen & RC_MASK {
            0 => {
                return Err(Error::CorruptObject {
                    reason: "reference count already zero",
                });
            }
            1 => {}
            _ => {
                txn.set64(add(block, 8)?, sub(rc_gen, 1)?)?;
                owner.clear(txn)?;
                return Ok(Ok(false));
            }
        }
        owner.clear(txn)?;
        let next_gen = ((rc_gen >> 32).wrapping_add(1) & RC_MASK).max(1);
        txn.set64(add(block, 8)?, next_gen << 32)?;
        Ok(match self.free_in(txn, block, size) {
            Ok(()) => Ok(true),
            Err(e) => Err(e),
        })
    }

    /// Adds to `txn` the return of a block whose last reference was dropped to its free list.
    ///
    /// Everything read from the header is checked against the block's extent before it is
    /// used: the class must be valid, agree with `size` (the extent checked when the reference
    /// was taken) and keep the block inside the carved heap, and the payload delta must fall
    /// inside the block. A block that fails is left off every list (lost, never reused) and
    /// the free is [`Error::CorruptHeap`]; nothing outside the block is written.
    fn free_in(&self, txn: &mut Txn, block: u64, size: u64) -> Result<()> {
        let (class, bsize) = self.extent(block)?;
        if bsize != size {
            return Err(Error::CorruptHeap {
                reason: "block header's size class changed while the block was live",
            });
        }
        let end = add(block, bsize)?;
        let delta = u64::from(self.u32_at(add(block, 4)?)?.load(Ordering::Relaxed));
        let fwd = if delta > BLOCK_HEADER {
            // The forward header sits in the 32 bytes before the payload, inside the block.
            let fwd = sub(add(block, delta)?, BLOCK_HEADER)?;
            if !delta.is_multiple_of(BLOCK_HEADER) || add(fwd, BLOCK_HEADER)? > end {
                return Err(Error::CorruptHeap {
                    reason: "payload delta outside its block",
                });
            }
            Some(fwd)
        } else {
            None
        };
        if class.is_large() && bsize > self.page {
            // Give every page but the header's back to the system. `extent` checked that
            // `[block, end)` is page-aligned and inside the carved heap. Done before the
            // transaction: nobody else holds a reference, so a death right after changes
            // nothing anybody reads (module `redo`).
            let start = add(block, self.page)?;
            let len = sub(end, start)?;
            // Allocation relies on these pages reading as zero (`Block::zero_from`); the
            // segment punches a hole, or zeroes the range where it cannot.
            self.seg.discard(start, len)?;
        }
        let fp = self.u64_at(add(block, 16)?)?.load(Ordering::Relaxed);
        let list_off = self.list_off(class, fp)?;
        let head = self.u64_at(list_off)?.load(Ordering::Acquire);
        let tag = (head >> 32).wrapping_add(1) & IDX_MASK;
        let counter = if fp == holder::CHUNK_FP {
            JOURNAL
        } else {
            USED
        };
        let used = self.state(counter).load(Ordering::Relaxed);
        txn.set32(add(block, 4)?, 0)?;
        if let Some(fwd) = fwd {
            txn.set32(fwd, 0)?;
        }
        txn.set64(add(block, 24)?, head & IDX_MASK)?;
        txn.set64(list_off, tag << 32 | (block / IDX_UNIT))?;
        txn.set64(counter, used.saturating_sub(bsize))
    }

    /// Reads and checks the extent of the block at `block`: its header carries the block
    /// magic and a valid class, it is aligned for that class (a page for large classes) and
    /// it lies wholly inside the carved part of the heap (below `top`, inside the segment).
    /// Returns (class, block size). Failures are [`Error::CorruptHeap`].
    fn extent(&self, block: u64) -> Result<(Class, u64)> {
        let corrupt = |reason| Error::CorruptHeap { reason };
        self.check_block_offset(block)
            .map_err(|_| corrupt("block offset out of range"))?;
        let tag = self.u32_at(block)?.load(Ordering::Relaxed);
        let class = Class::from_tag(tag).ok_or(corrupt("block header lost its magic"))?;
        let bsize = class
            .block_size(self.page)
            .ok_or(corrupt("bad size class in a block header"))?;
        if class.is_large() && !block.is_multiple_of(self.page) {
            return Err(corrupt("large block not page-aligned"));
        }
        let top = self.state(TOP).load(Ordering::Relaxed).min(self.len());
        match block.checked_add(bsize) {
            Some(end) if end <= top => Ok((class, bsize)),
            _ => Err(corrupt("block runs past the carved heap")),
        }
    }

    /// Checks that `block` is where a carved block starts: inside the data area, aligned,
    /// with room for a header, and marked in the block-start bitmap.
    fn check_block_offset(&self, block: u64) -> Result<()> {
        if block < self.data_start()
            || !block.is_multiple_of(BLOCK_HEADER)
            || add(block, BLOCK_HEADER)? > self.len()
            || !self.is_start(block)
        {
            return Err(Error::CorruptObject {
                reason: "block offset out of range",
            });
        }
        Ok(())
    }

    /// Finds and checks the block that holds `payload`; returns (block, class size).
    ///
    /// A payload right after its header (every payload aligned to at most 32) costs one
    /// bitmap lookup; one behind a forward header is found by `forwarded`.
    #[inline]
    fn locate(&self, payload: u64) -> Result<(u64, u64)> {
        if !payload.is_multiple_of(BLOCK_HEADER)
            || payload < add(self.data_start(), BLOCK_HEADER)?
            // A zero-length payload of the segment's last block starts at its very end.
            || payload > self.len()
        {
            return Err(Error::CorruptObject {
                reason: "payload offset misaligned or out of range",
            });
        }
        let before = sub(payload, BLOCK_HEADER)?;
        // Marked in the bitmap, `before` passes every check of `check_block_offset`: it is
        // 32-aligned and at or past `data_start` (as `payload` is 32-aligned and at or past
        // `data_start + 32`), and its header ends at `payload`, inside the segment.
        let block = if self.is_start(before) {
            before
        } else {
            self.forwarded(payload, before)?
        };
        let tag = self.u32_at(block)?.load(Ordering::Acquire);
        let Some(class) = Class::from_tag(tag) else {
            return Err(Error::CorruptObject {
                reason: "no block header before payload",
            });
        };
        let Some(bsize) = class.block_size(self.page) else {
            return Err(Error::CorruptObject {
                reason: "bad size class",
            });
        };
        if add(block, bsize)? > self.len() {
            return Err(Error::CorruptObject {
                reason: "block runs past the segment",
            });
        }
        let delta = self.u32_at(add(block, 4)?)?.load(Ordering::Relaxed);
        if add(block, u64::from(delta))? != payload {
            return Err(Error::ObjectGone);
        }
        Ok((block, bsize))
    }

    /// Finds the block of a `payload` whose 32 bytes before (`before`) are no block start:
    /// they must be a forward header leading to one.
    #[inline(never)]
    fn forwarded(&self, payload: u64, before: u64) -> Result<u64> {
        if self.u32_at(before)?.load(Ordering::Acquire) != FORWARD_MAGIC {
            // Neither a block start nor a forward header: a payload that needed a forward
            // header and was freed (freeing clears the forward magic), or an offset that never
            // named a payload. Either way no live object is there.
            return Err(Error::ObjectGone);
        }
        let delta = self.u32_at(add(before, 4)?)?.load(Ordering::Relaxed);
        let block = sub(payload, u64::from(delta))?;
        if !self.is_start(block) {
            // A forward header that leads to no block: bytes that are not a header (a stale
            // offset now inside another payload, or a forged one).
            return Err(Error::ObjectGone);
        }
        self.check_block_offset(block)?;
        Ok(block)
    }

    /// Checks that `payload` is the live block of generation `generation` and type `fp`,
    /// without taking a reference (the caller takes over one it was handed); returns (block,
    /// payload length, block size).
    #[inline]
    pub(crate) fn adopt(&self, payload: u64, generation: u32, fp: u64) -> Result<(u64, u64, u64)> {
        let (block, bsize) = self.locate(payload)?;
        let cur = self.u64_at(add(block, 8)?)?.load(Ordering::Acquire);
        if cur >> 32 != u64::from(generation) || cur & RC_MASK == 0 {
            return Err(Error::ObjectGone);
        }
        let found = self.u64_at(add(block, 16)?)?.load(Ordering::Relaxed);
        let len = self.u64_at(add(block, 24)?)?.load(Ordering::Relaxed);
        if found != fp || add(payload, len)? > add(block, bsize)? {
            return Err(Error::CorruptObject {
                reason: "adopted block has another type or length",
            });
        }
        Ok((block, len, bsize))
    }

    /// Returns a pointer to `payload` (already validated by `alloc` or `attach`).
    pub(crate) fn ptr(&self, payload: u64) -> *mut u8 {
        self.seg.base().wrapping_add(usize_of(payload))
    }

    /// Returns the atomic word that publishes the segment's root blob
    /// (`payload / 32` in the low 32 bits, generation in the high 32; 0 = none).
    pub(crate) fn root_word(&self) -> &'a AtomicU64 {
        self.state(ROOT)
    }

    /// Drops a reference a structure held to the live block at `payload` of generation
    /// `generation` and type `fp`, checked under the heap lock in the transaction that drops
    /// it (so a death leaves the reference either dropped or held); frees the block when it
    /// was the last. Returns whether it freed.
    ///
    /// # Errors
    /// [`Error::ObjectGone`] if the block is no longer that generation (a repeated drop finds
    /// it so); as for `adopt`.
    pub(crate) fn release_checked(&self, payload: u64, generation: u32, fp: u64) -> Result<bool> {
        self.locked(|txn| {
            let (block, _, size) = self.adopt(payload, generation, fp)?;
            self.release_in(txn, block, size, Owner::Structure)
        })?
    }

    /// Drops the reference held for a payload (after validating it), e.g. an old root blob.
    pub(crate) fn release_payload(&self, payload: u64) -> Result<bool> {
        let (block, size) = self.locate(payload)?;
        self.release(block, size)
    }
}

#[cfg(all(test, not(shmproc_loom)))]
mod corruption_tests {
    #![allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]

    use super::*;
    use crate::segment::Segment;

    /// A memory-file segment, or (under miri, which has no `memfd_create`) a process-local one.
    fn test_segment(len: u64) -> Segment {
        if cfg!(miri) {
            Segment::process_local(len).unwrap()
        } else {
            Segment::create(len).unwrap()
        }
    }

    fn fill(heap: &RawHeap<'_>, b: &Block, byte: u8) {
        let p = heap.ptr(b.payload);
        // SAFETY: `[payload, payload + len)` is the fresh block's payload, inside the mapping,
        // and no other reference to it exists in this test.
        unsafe { p.write_bytes(byte, usize_of(b.len)) };
    }

    fn intact(heap: &RawHeap<'_>, b: &Block, byte: u8) -> bool {
        (0..b.len).step_by(512).all(|i| {
            let w = heap.u32_at((b.payload + i) & !3).unwrap();
            w.load(Ordering::Relaxed).to_le_bytes().contains(&byte)
        })
    }

    fn set_class(heap: &RawHeap<'_>, block: u64, class: u8) {
        heap.u32_at(block).unwrap().store(
            size_class::BLOCK_MAGIC | u32::from(class),
            Ordering::Relaxed,
        );
    }

    /// Regression: a size class scribbled into a live block's header makes its
    /// free an error; nothing outside the block is zeroed or put on a free list.
    #[test]
    fn free_with_a_corrupt_size_class_stays_inside_its_block() {
        let seg = test_segment(8 << 20);
        let heap = RawHeap::new(&seg.inner);
        for (size, bigger) in [(100u64, 20u8), (70_000, 19)] {
            let a = heap.alloc(size, 8, 1).unwrap();
            let b = heap.alloc(300_000, 8, 1).unwrap();
            fill(&heap, &b, 0xab);
            set_class(&heap, a.block, bigger);
            let used = heap.stats().used;
            assert!(matches!(
                heap.release(a.block, a.size),
                Err(Error::CorruptHeap { .. })
            ));
            assert!(intact(&heap, &b, 0xab), "free wrote outside its block");
            assert_eq!(
                heap.stats().used,
                used,
                "a corrupt block was accounted as freed"
            );
            let again = heap.alloc(size, 8, 1).unwrap();
            assert_ne!(again.block, a.block, "a corrupt block was reused");
            // An invalid class byte is refused the same way.
            set_class(&heap, again.block, 0xff);
            assert!(matches!(
                heap.release(again.block, again.size),
                Err(Error::CorruptHeap { .. })
            ));
        }
    }

    /// Regression: a free list whose head names a block outside the heap, a
    /// misaligned one or one of another class is `CorruptHeap`, never handed out.
    #[test]
    fn pop_checks_the_block_before_handing_it_out() {
        let seg = test_segment(1 << 20);
        let heap = RawHeap::new(&seg.inner);
        let class = Class::for_block(BLOCK_HEADER + 8, heap.page).unwrap();
        let list = heap.list(class).unwrap();
        let big = heap.alloc(5000, 8, 1).unwrap();
        for bad in [seg.len() / IDX_UNIT, 17, big.block / IDX_UNIT] {
            list.store(bad, Ordering::Relaxed);
            assert!(
                matches!(heap.alloc(8, 8, 1), Err(Error::CorruptHeap { .. })),
                "head {bad}"
            );
        }
    }
}

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
//! | 64          | 8    | `top`: first never-allocated byte        | CAS by any allocator |
//! | 72          | 8    | `root`: published blob (`idx:32|gen:32`) | swap by publisher    |
//! | 80          | 8    | `used`: bytes in live blocks             | add/sub by any       |
//! | 96          | 488  | free lists, one per class (`tag:32|idx:32`) | CAS by any        |
//! | 1024        | `len / 256` | block-start bitmap: bit `i` set iff a block starts at `32 * i` | `fetch_or` by the carver, once |
//! | `data_start`| …    | blocks (`data_start`: past the bitmap, 4 KiB aligned; 4096 up to 768 KiB) |  |
//!
//! Each block starts with a 32-byte header, 32-byte aligned:
//!
//! | offset | size | field      | meaning                                                  |
//! |--------|------|------------|----------------------------------------------------------|
//! | 0      | 4    | `tag`      | `BLOCK_MAGIC | class`                                    |
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
//! Free lists are Treiber stacks whose head word carries a 32-bit tag bumped by every push and
//! pop, so a stale head never succeeds a compare-exchange (ABA). Fresh blocks are carved from
//! `top` with a compare-exchange. Every step is one atomic instruction on shared state, so a
//! process killed at any point leaves the heap consistent; at worst the one block it was
//! allocating or freeing is lost until the segment goes away.
//!
//! Reference counts live in the block: cloning a handle increments, dropping decrements, and
//! the last drop frees. The generation is bumped on free, and re-attaching a handle from a
//! token checks it, so a token for a freed (and possibly reused) block is
//! [`Error::ObjectGone`](crate::Error::ObjectGone), never an alias (also when the payload had
//! a forward header: freeing clears its magic, and an offset with neither header before it
//! names no live object). Every offset, tag and
//! length read from the segment is validated before use; a failed check is
//! [`Error::CorruptObject`](crate::Error::CorruptObject).
//!
//! # Safety
//!
//! The unsafe code here turns validated offsets into references to atomics inside the mapping.
//! Invariants: every offset is checked to be in bounds and aligned for the atomic's type before
//! the reference is made, and the mapping outlives the reference (it is borrowed from the
//! `SegmentInner`, which owns the mapping).

#![allow(unsafe_code)]
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

pub(crate) mod free_list;
pub(crate) mod handle;
#[cfg(all(test, shmproc_loom))]
mod loom_tests;
pub(crate) mod root;
pub(crate) mod size_class;
#[cfg(feature = "test-support")]
pub mod testing;
#[cfg(all(test, feature = "test-support", not(shmproc_loom)))]
mod tests;

use crate::error::{Error, Result};
use crate::loom::{AtomicU32, AtomicU64, Ordering, fence};
use crate::segment::SegmentInner;
use crate::sys;
use size_class::{Class, LARGE_CLASSES, SMALL};

pub use handle::ObjectToken;
pub(crate) use handle::{LINK_BYTES, ObjectRef};

/// Fingerprint of this heap layout, recorded in the segment header.
pub(crate) const HEAP_LAYOUT: u64 = crate::fingerprint::start(
    "shmproc::heap v2: 32-byte headers, 61 classes, start bitmap",
    4096,
    32,
);

const TOP: u64 = 64;
const ROOT: u64 = 72;
const USED: u64 = 80;
const LISTS: u64 = 96;
const N_LISTS: usize = SMALL.len() + LARGE_CLASSES;
/// Where the block-start bitmap begins (after the free lists).
const BITMAP: u64 = 1024;
/// Bytes of block header before every payload.
pub(crate) const BLOCK_HEADER: u64 = 32;
const BLOCK_MAGIC: u32 = 0x5348_4200;
const FORWARD_MAGIC: u32 = 0x5348_46ff;
const IDX_UNIT: u64 = 16;
const RC_MASK: u64 = 0xffff_ffff;
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
}

/// A view of the heap inside a segment.
#[derive(Clone, Copy)]
pub(crate) struct RawHeap<'a> {
    seg: &'a SegmentInner,
    page: u64,
    /// `data_start` for this segment's length, computed once per view (every block check
    /// needs it).
    data_start: u64,
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

/// The first byte of the first block of a heap `len` bytes long (see `RawHeap::data_start`).
fn data_start_for(len: u64) -> u64 {
    let bytes = len
        .div_ceil(BLOCK_HEADER.saturating_mul(8))
        .next_multiple_of(8);
    BITMAP
        .saturating_add(bytes)
        .next_multiple_of(4096)
        .max(4096)
}

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl<'a> RawHeap<'a> {
    pub(crate) fn new(seg: &'a SegmentInner) -> Self {
        RawHeap {
            seg,
            page: u64::try_from(sys::page_size()).unwrap_or(4096),
            data_start: data_start_for(seg.len()),
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

    /// Returns the bitmap word and bit that record whether a block starts at `off`.
    fn start_bit(&self, off: u64) -> Result<(&'a AtomicU64, u64)> {
        let unit = off / BLOCK_HEADER;
        let word = add(BITMAP, (unit / 64).saturating_mul(8))?;
        if add(word, 8)? > self.data_start() {
            return Err(Error::CorruptObject {
                reason: "offset past the block-start bitmap",
            });
        }
        let bit = 1u64
            .checked_shl(u32::try_from(unit % 64).unwrap_or(0))
            .unwrap_or(0);
        Ok((self.u64_at(word)?, bit))
    }

    /// Records that a block starts at `block` (once, when it is carved: blocks never move,
    /// split or merge, so the bit is never cleared).
    fn mark_start(&self, block: u64) -> Result<()> {
        let (word, bit) = self.start_bit(block)?;
        // Release: pairs with the Acquire in `is_start`; the bit is set before the block's
        // header is written and long before any token for it exists.
        if word.fetch_or(bit, Ordering::Release) & bit != 0 {
            return Err(Error::CorruptHeap {
                reason: "a block was carved twice at one offset",
            });
        }
        Ok(())
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
    fn is_start(&self, block: u64) -> bool {
        // Acquire: pairs with `mark_start`.
        self.start_bit(block)
            .is_ok_and(|(word, bit)| word.load(Ordering::Acquire) & bit != 0)
    }

    /// Returns the atomic `u64` at `off`, after checking bounds and alignment.
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

    fn list(&self, class: Class) -> Result<&'a AtomicU64> {
        let idx = u64::try_from(class.list_index()).unwrap_or(u64::MAX);
        if class.list_index() >= N_LISTS {
            return Err(Error::CorruptObject {
                reason: "bad size class",
            });
        }
        self.u64_at(add(LISTS, idx.saturating_mul(8))?)
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
        }
    }

    /// Allocates a block whose payload holds `size` bytes aligned to `align`, typed `fp`.
    ///
    /// The payload's contents are unspecified (zero for fresh memory, old bytes for reused
    /// blocks); the caller initializes them before publishing a handle.
    pub(crate) fn alloc(&self, size: u64, align: u64, fp: u64) -> Result<Block> {
        if !align.is_power_of_two() || align > self.page {
            return Err(Error::InvalidSize {
                reason: "alignment must be a power of two no larger than a page",
            });
        }
        let head = align.max(BLOCK_HEADER);
        let oom = Error::OutOfMemory {
            requested: size,
            capacity: self.len(),
        };
        let Some(need) = head.checked_add(size) else {
            return Err(oom);
        };
        let Some(class) = Class::for_block(need, self.page) else {
            return Err(oom);
        };
        let bsize = class.block_size(self.page).ok_or(Error::CorruptObject {
            reason: "bad size class",
        })?;
        let block = match self.pop(class)? {
            Some(b) => b,
            None => self.carve(class, bsize).map_err(|_| oom)?,
        };
        let first = add(block, BLOCK_HEADER)?;
        let payload = add(first, sub(first.next_multiple_of(align), first)?)?;
        let delta = u32::try_from(sub(payload, block)?).map_err(|_| Error::CorruptObject {
            reason: "payload delta too large",
        })?;
        let rc_gen = self.u64_at(add(block, 8)?)?;
        let generation = match rc_gen.load(Ordering::Relaxed) >> 32 {
            0 => 1,
            g => u32::try_from(g).unwrap_or(1),
        };
        self.u32_at(block)?
            .store(BLOCK_MAGIC | u32::from(class.0), Ordering::Relaxed);
        self.u32_at(add(block, 4)?)?.store(delta, Ordering::Relaxed);
        self.u64_at(add(block, 16)?)?.store(fp, Ordering::Relaxed);
        self.u64_at(add(block, 24)?)?.store(size, Ordering::Relaxed);
        if u64::from(delta) > BLOCK_HEADER {
            let fwd = sub(payload, BLOCK_HEADER)?;
            self.u32_at(add(fwd, 4)?)?.store(delta, Ordering::Relaxed);
            self.u32_at(fwd)?.store(FORWARD_MAGIC, Ordering::Relaxed);
        }
        // Release: the header fields above are visible to whoever attaches after seeing rc 1.
        rc_gen.store(u64::from(generation) << 32 | 1, Ordering::Release);
        self.state(USED).fetch_add(bsize, Ordering::Relaxed);
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

    fn carve(&self, class: Class, bsize: u64) -> Result<u64> {
        let align = if class.is_large() {
            self.page
        } else {
            BLOCK_HEADER
        };
        let top = self.state(TOP);
        let mut cur = top.load(Ordering::Relaxed);
        loop {
            if cur < self.data_start() {
                return Err(Error::CorruptHeap {
                    reason: "heap top below the data area",
                });
            }
            let start = cur
                .checked_next_multiple_of(align)
                .ok_or(Error::OutOfMemory {
                    requested: bsize,
                    capacity: self.len(),
                })?;
            let end = start
                .checked_add(bsize)
                .filter(|&e| e <= self.len())
                .ok_or(Error::OutOfMemory {
                    requested: bsize,
                    capacity: self.len(),
                })?;
            // Relaxed: `top` only partitions address space; the block's contents are
            // published by the Release store of its `rc_gen`.
            match top.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    // `top` is a shared word: a range that holds a block start was carved
                    // before (the word was moved back), and handing it out would alias live
                    // objects.
                    if self.any_start_in(start, end)? {
                        return Err(Error::CorruptHeap {
                            reason: "heap top points into carved blocks",
                        });
                    }
                    self.mark_start(start)?;
                    return Ok(start);
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Pops a free block of `class`, checked before it is handed out: inside the carved heap,
    /// aligned for its class, headed by this class's tag and unreferenced. A block that fails
    /// is left off the list (lost, never reused) and the pop is [`Error::CorruptHeap`].
    fn pop(&self, class: Class) -> Result<Option<u64>> {
        let list = self.list(class)?;
        let idx = free_list::pop(list, |idx| {
            let block = idx.saturating_mul(IDX_UNIT);
            self.check_block_offset(block)
                .map_err(|_| Error::CorruptHeap {
                    reason: "free list names a block outside the heap",
                })?;
            self.u64_at(add(block, 24)?)
        })?;
        let Some(block) = idx.map(|i| i.saturating_mul(IDX_UNIT)) else {
            return Ok(None);
        };
        let (found, _) = self.extent(block)?;
        let rc = self.u64_at(add(block, 8)?)?.load(Ordering::Relaxed) & RC_MASK;
        if found != class || rc != 0 {
            return Err(Error::CorruptHeap {
                reason: "free list holds a block of another class or in use",
            });
        }
        Ok(Some(block))
    }

    fn push(&self, class: Class, block: u64) -> Result<()> {
        let list = self.list(class)?;
        let next = self.u64_at(add(block, 24)?)?;
        free_list::push(list, block / IDX_UNIT, next);
        Ok(())
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
        if tag & 0xffff_ff00 != BLOCK_MAGIC {
            return Err(corrupt("block header lost its magic"));
        }
        let class = Class(u8::try_from(tag & 0xff).unwrap_or(u8::MAX));
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
        let block = if self.is_start(before) {
            before
        } else if self.u32_at(before)?.load(Ordering::Acquire) == FORWARD_MAGIC {
            let delta = self.u32_at(add(before, 4)?)?.load(Ordering::Relaxed);
            sub(payload, u64::from(delta))?
        } else {
            // Neither a block start nor a forward header: a payload that needed a forward
            // header and was freed (freeing clears the forward magic), or an offset that never
            // named a payload. Either way no live object is there.
            return Err(Error::ObjectGone);
        };
        if !self.is_start(block) {
            // A forward header that leads to no block: bytes that are not a header (a stale
            // offset now inside another payload, or a forged one).
            return Err(Error::ObjectGone);
        }
        self.check_block_offset(block)?;
        let tag = self.u32_at(block)?.load(Ordering::Acquire);
        if tag & 0xffff_ff00 != BLOCK_MAGIC {
            return Err(Error::CorruptObject {
                reason: "no block header before payload",
            });
        }
        let class = Class(u8::try_from(tag & 0xff).unwrap_or(u8::MAX));
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

    /// Takes a new reference to the live block at `payload` with generation `generation` and
    /// type `fp`; returns (block, payload length, block size).
    pub(crate) fn attach(
        &self,
        payload: u64,
        generation: u32,
        fp: u64,
        expected: &'static str,
    ) -> Result<(u64, u64, u64)> {
        let (block, bsize) = self.locate(payload)?;
        let found = self.u64_at(add(block, 16)?)?.load(Ordering::Relaxed);
        let len = self.u64_at(add(block, 24)?)?.load(Ordering::Relaxed);
        let rc_gen = self.u64_at(add(block, 8)?)?;
        let mut cur = rc_gen.load(Ordering::Relaxed);
        loop {
            let (g, rc) = (cur >> 32, cur & RC_MASK);
            if g != u64::from(generation) || rc == 0 {
                return Err(Error::ObjectGone);
            }
            if rc >= RC_MAX {
                return Err(Error::CorruptObject {
                    reason: "reference count overflow",
                });
            }
            // Acquire on success pairs with the allocator's Release store of `rc_gen`: the
            // header fields and the initialized payload are visible from here on.
            match rc_gen.compare_exchange_weak(
                cur,
                add(cur, 1)?,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        let ok = found == fp && add(payload, len)? <= add(block, bsize)?;
        if !ok {
            self.release(block, bsize)?;
            return Err(if found != fp {
                Error::TypeMismatch { expected, found }
            } else {
                Error::CorruptObject {
                    reason: "payload length past its block",
                }
            });
        }
        Ok((block, len, bsize))
    }

    /// Checks that `payload` is the live block of generation `generation` and type `fp`,
    /// without taking a reference (the caller takes over one it was handed); returns (block,
    /// payload length, block size).
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

    /// Adds a reference to a block the caller already holds a reference to. Returns whether
    /// the reference was counted: a count already at its maximum (only a corrupted word gets
    /// there: it would take 2^31 live handles) is left pinned, and the new handle must not
    /// release (the block is then leaked, never freed under a live handle).
    pub(crate) fn retain(&self, block: u64) -> Result<bool> {
        let rc_gen = self.u64_at(add(block, 8)?)?;
        // Relaxed: as `Arc::clone`, a new reference is made from an existing one, which keeps
        // the block alive; no data is published by the increment.
        let old = rc_gen.fetch_add(1, Ordering::Relaxed);
        if old & RC_MASK >= RC_MAX {
            // Undo; a count this high stays high, so the block is never freed.
            rc_gen.fetch_sub(1, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    /// Drops a reference; frees the block when it was the last. Returns whether it freed.
    ///
    /// `size` is the block's size as checked when the reference was taken (by `alloc`,
    /// `attach` or `adopt`): the free touches nothing outside `[block, block + size)`.
    pub(crate) fn release(&self, block: u64, size: u64) -> Result<bool> {
        let rc_gen = self.u64_at(add(block, 8)?)?;
        // Release: this process's writes to the payload happen before the free (as `Arc`).
        let old = rc_gen.fetch_sub(1, Ordering::Release);
        match old & RC_MASK {
            1 => {}
            0 => {
                // Undo: the count was already zero (double release or corruption).
                rc_gen.fetch_add(1, Ordering::Relaxed);
                return Err(Error::CorruptObject {
                    reason: "reference count already zero",
                });
            }
            _ => return Ok(false),
        }
        // Acquire: every other process's last writes happen before the block is reused.
        fence(Ordering::Acquire);
        let next_gen = ((old >> 32).wrapping_add(1) & RC_MASK).max(1);
        rc_gen.store(next_gen << 32, Ordering::Relaxed);
        self.free_block(block, size)?;
        Ok(true)
    }

    /// Gives a block whose last reference was dropped back to its free list.
    ///
    /// Everything read from the header is checked against the block's extent before it is
    /// used: the class must be valid, agree with `size` (the extent checked when the reference
    /// was taken) and keep the block inside the carved heap, and the payload delta must fall
    /// inside the block. A block that fails is left off every list (lost, never reused) and
    /// the free is [`Error::CorruptHeap`]; nothing outside the block is written.
    fn free_block(&self, block: u64, size: u64) -> Result<()> {
        let (class, bsize) = self.extent(block)?;
        if bsize != size {
            return Err(Error::CorruptHeap {
                reason: "block header's size class changed while the block was live",
            });
        }
        let end = add(block, bsize)?;
        let delta_w = self.u32_at(add(block, 4)?)?;
        let delta = u64::from(delta_w.swap(0, Ordering::Relaxed));
        if delta > BLOCK_HEADER {
            // The forward header sits in the 32 bytes before the payload, inside the block.
            let fwd = sub(add(block, delta)?, BLOCK_HEADER)?;
            if !delta.is_multiple_of(BLOCK_HEADER) || add(fwd, BLOCK_HEADER)? > end {
                return Err(Error::CorruptHeap {
                    reason: "payload delta outside its block",
                });
            }
            self.u32_at(fwd)?.store(0, Ordering::Relaxed);
        }
        if class.is_large() && bsize > self.page {
            // Give every page but the header's back to the system. `extent` checked that
            // `[block, end)` is page-aligned and inside the carved heap.
            let start = add(block, self.page)?;
            let len = sub(end, start)?;
            // Allocation relies on these pages reading as zero (`Block::zero_from`); the
            // segment punches a hole, or zeroes the range where it cannot.
            self.seg.discard(start, len)?;
        }
        self.state(USED).fetch_sub(bsize, Ordering::Relaxed);
        self.push(class, block)
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
        heap.u32_at(block)
            .unwrap()
            .store(BLOCK_MAGIC | u32::from(class), Ordering::Relaxed);
    }

    /// Regression: a size class scribbled into a live block's header makes its
    /// free an error; nothing outside the block is zeroed or put on a free list.
    #[test]
    fn free_with_a_corrupt_size_class_stays_inside_its_block() {
        let seg = test_segment(8 << 20);
        let heap = RawHeap::new(&seg.inner);
        for (size, bigger) in [(100u64, 20u8), (70_000, size_class::LARGE_BASE + 6)] {
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

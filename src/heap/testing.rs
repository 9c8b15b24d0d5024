//! A test API over the heap: raw alloc/free by offset, pattern fills and a consistency walk.
//! Not public API (`test-support` only); used by the heap tests, fuzzers and the kill suite.
//!
//! # Safety
//!
//! Payload bytes are read and written through `AtomicU8` references made from offsets that
//! `RawHeap::locate` has validated to lie inside a block inside the mapping; `AtomicU8` has the
//! size and alignment of `u8` (std docs), so any byte is a valid one, and atomic access is
//! sound even if a buggy test races another process on the same bytes. The mapping outlives
//! the references (they borrow the `Segment`).

#![allow(unsafe_code)]
#![allow(missing_docs, clippy::arithmetic_side_effects, clippy::as_conversions)]

use super::size_class::Class;
use super::{BLOCK_HEADER, IDX_UNIT, LISTS, N_LISTS, Owner, RC_MASK, RawHeap, holder};
use crate::error::{Error, Result};
use crate::loom::{AtomicU8, Ordering};
use crate::segment::Segment;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

pub use super::HeapStats;

/// A heap in its own anonymous segment (or a view of an existing one), addressed by offsets.
///
/// Allocations are recorded in this process's holder, as handles' are: a process killed
/// while holding them (or inside `alloc`/`free`) has them released when it is reaped.
#[derive(Debug, Clone)]
pub struct TestHeap {
    seg: Segment,
    /// Payload offset -> (allocating pid, journal entry) of this process's allocations.
    owned: Arc<Mutex<HashMap<u64, (u32, u64)>>>,
}

/// What a consistency walk of the heap found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeapReport {
    /// Blocks with a nonzero reference count.
    pub live_blocks: u64,
    /// Bytes (block sizes) of the live blocks.
    pub live_bytes: u64,
    /// Blocks on a free list.
    pub free_blocks: u64,
    /// Blocks with a zero count that are on no free list (lost by a process killed while
    /// allocating or freeing).
    pub lost_blocks: u64,
    /// 32-byte units of carved space with no block header (a carve interrupted by a kill, or
    /// padding before a page-aligned block).
    pub gap_units: u64,
    /// Live blocks that hold holders' journals (not counted in `live_blocks`).
    pub journal_blocks: u64,
}

fn corrupt(reason: &'static str) -> Error {
    Error::CorruptObject { reason }
}

impl TestHeap {
    /// Creates a heap in a new anonymous segment of `len` bytes.
    ///
    /// # Errors
    /// As for [`Segment::create`].
    pub fn new(len: u64) -> Result<TestHeap> {
        Ok(TestHeap::on(&Segment::create(len)?))
    }

    /// Returns a view of the heap in `seg`.
    pub fn on(seg: &Segment) -> TestHeap {
        TestHeap {
            seg: seg.clone(),
            owned: Arc::default(),
        }
    }

    /// Returns the segment.
    pub fn segment(&self) -> &Segment {
        &self.seg
    }

    fn raw(&self) -> RawHeap<'_> {
        RawHeap::new(&self.seg.inner)
    }

    /// Allocates `size` bytes aligned to `align`; returns the payload offset.
    ///
    /// # Errors
    /// [`Error::OutOfMemory`], [`Error::InvalidSize`] for a bad alignment.
    pub fn alloc(&self, size: u64, align: u64) -> Result<u64> {
        let owner = holder::take_entry(&self.seg.inner)?;
        let b = match self.raw().alloc_owned(size, align, 0x7e57, owner) {
            Ok(b) => b,
            Err(e) => {
                if let Owner::Entry(e) = owner {
                    holder::put_entry(&self.seg.inner, e);
                }
                return Err(e);
            }
        };
        if let Owner::Entry(e) = owner {
            self.owned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(b.payload, (crate::sys::current_pid(), e));
        }
        Ok(b.payload)
    }

    /// Releases the holders of dead processes in this heap; returns whether any was found.
    ///
    /// # Errors
    /// [`Error::CorruptHeap`] if a holder's journal is damaged.
    pub fn release_dead(&self) -> Result<bool> {
        holder::release_dead(&self.raw())
    }

    /// Frees the block whose payload is at `offset` (drops its one reference).
    ///
    /// # Errors
    /// [`Error::CorruptObject`]/[`Error::ObjectGone`] if `offset` is not a live payload.
    pub fn free(&self, offset: u64) -> Result<()> {
        let (block, size) = self.raw().locate(offset)?;
        if self.raw().u64_at(block + 8)?.load(Ordering::Acquire) & RC_MASK == 0 {
            return Err(Error::ObjectGone);
        }
        let me = crate::sys::current_pid();
        let mine = {
            let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
            match owned.get(&offset) {
                Some(&(pid, e)) if pid == me => {
                    owned.remove(&offset);
                    Some(e)
                }
                _ => None,
            }
        };
        match mine {
            Some(e) => {
                self.raw().release_owned(block, size, Owner::Entry(e))?;
                holder::put_entry(&self.seg.inner, e);
            }
            None => {
                self.raw().release(block, size)?;
            }
        }
        Ok(())
    }

    /// Returns the size of the block that holds the live payload at `offset` (its true size:
    /// a reused large block may have a few pages more than its request needed).
    ///
    /// # Errors
    /// As for [`TestHeap::free`].
    pub fn block_size_at(&self, offset: u64) -> Result<u64> {
        Ok(self.raw().locate(offset)?.1)
    }

    /// Returns the offset of the block header of the live payload at `offset`.
    ///
    /// # Errors
    /// As for [`TestHeap::free`].
    pub fn block_of(&self, offset: u64) -> Result<u64> {
        Ok(self.raw().locate(offset)?.0)
    }

    /// Returns the byte at `offset` of the segment (anywhere inside it: heap state, headers,
    /// payloads), read atomically.
    ///
    /// # Errors
    /// [`Error::CorruptObject`] if `offset` is outside the segment.
    pub fn peek_u8(&self, offset: u64) -> Result<u8> {
        Ok(self.byte(offset)?.load(Ordering::Relaxed))
    }

    /// Overwrites the byte at `offset` of the segment, atomically: a scribble that corrupts
    /// heap metadata the way a buggy or hostile process could.
    ///
    /// # Errors
    /// [`Error::CorruptObject`] if `offset` is outside the segment.
    pub fn poke_u8(&self, offset: u64, byte: u8) -> Result<()> {
        self.byte(offset)?.store(byte, Ordering::Relaxed);
        Ok(())
    }

    fn byte(&self, offset: u64) -> Result<&AtomicU8> {
        if offset >= self.raw().len() {
            return Err(corrupt("offset outside the segment"));
        }
        let ptr = self.raw().ptr(offset).cast::<AtomicU8>();
        // SAFETY: `offset < len`, so the byte is inside the mapping the `Segment` keeps alive;
        // see the module's `# Safety`.
        Ok(unsafe { &*ptr })
    }

    /// Returns a pointer to the payload at `offset` (not validated).
    pub fn payload(&self, offset: u64) -> *mut u8 {
        self.raw().ptr(offset)
    }

    /// Returns the block size (header and rounding included) an allocation would take.
    pub fn block_size(&self, size: u64, align: u64) -> Option<u64> {
        let page = crate::sys::page_size() as u64;
        Class::for_block(align.max(BLOCK_HEADER).checked_add(size)?, page)?.block_size(page)
    }

    /// Returns the heap's statistics.
    pub fn stats(&self) -> HeapStats {
        self.raw().stats()
    }

    fn bytes(&self, offset: u64, start: u64, len: u64) -> Result<&[AtomicU8]> {
        let (block, bsize) = self.raw().locate(offset)?;
        let from = offset + start;
        if from + len > block + bsize {
            return Err(corrupt("range past its block"));
        }
        let ptr = self.raw().ptr(from).cast::<AtomicU8>();
        // SAFETY: `locate` checked that `block + bsize` lies inside the mapping, and
        // `from + len <= block + bsize`; see the module's `# Safety`.
        Ok(unsafe { core::slice::from_raw_parts(ptr, len as usize) })
    }

    /// Fills `len` bytes, `start` bytes into the payload at `offset`, with the pattern of
    /// `seed`.
    ///
    /// # Errors
    /// As for [`TestHeap::free`], or if the range runs past the block.
    pub fn fill(&self, offset: u64, start: u64, len: u64, seed: u64) -> Result<()> {
        for (i, b) in self.bytes(offset, start, len)?.iter().enumerate() {
            b.store(pattern(seed, i), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Returns whether the bytes [`TestHeap::fill`] wrote hold the pattern of `seed`.
    ///
    /// # Errors
    /// As for [`TestHeap::fill`].
    pub fn check(&self, offset: u64, start: u64, len: u64, seed: u64) -> Result<bool> {
        Ok(self
            .bytes(offset, start, len)?
            .iter()
            .enumerate()
            .all(|(i, b)| b.load(Ordering::Relaxed) == pattern(seed, i)))
    }

    /// Walks the free lists and every carved block and checks them; only valid while no other
    /// process uses the heap.
    ///
    /// # Errors
    /// [`Error::CorruptObject`] naming the first inconsistency found.
    pub fn walk(&self) -> Result<HeapReport> {
        let raw = self.raw();
        let page = crate::sys::page_size() as u64;
        let top = raw.state(super::TOP).load(Ordering::Acquire);
        if top < raw.data_start() || top > self.seg.len() {
            return Err(Error::CorruptObject {
                reason: "heap top outside the data area",
            });
        }
        let max_steps = (top - raw.data_start()) / BLOCK_HEADER + 1;
        let mut on_list = std::collections::BTreeSet::new();
        // The class lists, then the journal chunks' list (a 1 KiB class).
        let chunk_list = Class::for_block(1024, page).map_or(0, Class::list_index) as u64;
        for i in 0..=N_LISTS as u64 {
            let head = raw.u64_at(LISTS + i * 8)?.load(Ordering::Acquire);
            let mut idx = head & RC_MASK;
            let mut steps = 0;
            while idx != 0 {
                steps += 1;
                if steps > max_steps {
                    return Err(corrupt("free list has a cycle"));
                }
                let block = idx * IDX_UNIT;
                raw.check_block_offset(block)?;
                if block >= top {
                    return Err(corrupt("free block above top"));
                }
                let tag = raw.u32_at(block)?.load(Ordering::Relaxed);
                let want = if i == N_LISTS as u64 { chunk_list } else { i };
                if Class::from_tag(tag).is_none_or(|c| c.list_index() as u64 != want) {
                    return Err(corrupt("free block on the wrong list"));
                }
                if raw.u64_at(block + 8)?.load(Ordering::Relaxed) & RC_MASK != 0 {
                    return Err(corrupt("block on a free list is referenced"));
                }
                if !on_list.insert(block) {
                    return Err(corrupt("block twice on free lists"));
                }
                idx = raw.u64_at(block + 24)?.load(Ordering::Relaxed) & RC_MASK;
            }
        }
        let mut r = HeapReport {
            free_blocks: on_list.len() as u64,
            ..HeapReport::default()
        };
        let mut off = raw.data_start();
        while off < top {
            let tag = raw.u32_at(off)?.load(Ordering::Relaxed);
            let Some(class) = Class::from_tag(tag).filter(|_| raw.is_start(off)) else {
                r.gap_units += 1;
                off += BLOCK_HEADER;
                continue;
            };
            let bsize = class
                .block_size(page)
                .ok_or(corrupt("bad class in a block header"))?;
            if class.is_large() && !off.is_multiple_of(page) {
                return Err(corrupt("large block not page-aligned"));
            }
            if off + bsize > top {
                return Err(corrupt("block runs past top"));
            }
            let rc = raw.u64_at(off + 8)?.load(Ordering::Relaxed) & RC_MASK;
            let journal = raw.u64_at(off + 16)?.load(Ordering::Relaxed) == holder::CHUNK_FP;
            if rc != 0 && journal {
                r.journal_blocks += 1;
            } else if rc != 0 {
                r.live_blocks += 1;
                r.live_bytes += bsize;
                raw.locate(off + u64::from(raw.u32_at(off + 4)?.load(Ordering::Relaxed)))?;
            } else if !on_list.contains(&off) {
                r.lost_blocks += 1;
            }
            off += bsize;
        }
        if off != top {
            return Err(corrupt("last block does not end at top"));
        }
        Ok(r)
    }
}

/// The fill pattern: byte `i` of a payload filled with `seed`.
pub fn pattern(seed: u64, i: usize) -> u8 {
    let x = seed
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add((i as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9));
    (x >> 56) as u8
}

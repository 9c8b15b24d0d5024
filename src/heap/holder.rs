//! Holders: which process holds which references, so a dead process's can be released.
//!
//! Every process that takes references in a heap claims a *holder slot* there, named by its
//! stamp (pid in the high 32 bits, the low 32 bits of the process's start time in the low
//! ones), and records each reference it takes in a *journal entry* of its own. The block's
//! shared count counts entries (and structure-owned references such as a queue slot's), not
//! handles: the clones of a handle share its entry and count in the entry's private count.
//!
//! # Layout
//!
//! The holder table lies between the block-start bitmap and the first block; it has
//! `slots_for(len)` slots of 32 bytes:
//!
//! | offset | size | field     | meaning                                            | writer (under the heap lock) |
//! |--------|------|-----------|----------------------------------------------------|------------------------------|
//! | 0      | 8    | `stamp`   | holder's pid:32 and start time:32; 0 = free slot   | claimer; releaser (clear, last) |
//! | 8      | 8    | `journal` | payload offset of the first journal chunk; 0 none | owner (push); releaser (pop) |
//! | 16     | 8    | `high`    | slot 0 only: one past the highest slot index ever claimed (a hint, see below); other slots: 0 | claimer (raise); a full scan (repair) |
//! | 24     | 8    | reserved  | 0                                                  |                              |
//!
//! A journal chunk is a heap block (type `CHUNK_FP`, 992-byte payload, owned by its slot):
//!
//! | offset | size | field    | meaning                                              |
//! |--------|------|----------|------------------------------------------------------|
//! | 0      | 8    | `next`   | payload offset of the next chunk; 0 = last           |
//! | 8      | 24   | reserved | 0                                                    |
//! | 32     | 16×60| entries  | `block` (8: block offset, 0 = free), `gen_count` (8: generation:32, count:32) |
//!
//! # Entry states
//!
//! | state | `block` | `gen_count` | block's shared count includes it | changed by |
//! |-------|---------|-------------|----------------------------------|------------|
//! | free  | 0       | 0           | no                               | —          |
//! | held  | B       | gen:n (n ≥ 1 live handles in the owner) | yes  | owner: `n ± 1` (atomic, no lock); free ⇄ held only in a heap transaction |
//! | held, owner dead | B | any    | yes                              | a releaser: → free, with the count's decrement, in one transaction |
//!
//! The transitions between free and held (and the matching change of the block's count, and
//! the free of a block whose count reaches 0) are one heap transaction each (`redo`), so a
//! process killed at any instruction leaves every entry either held with its count taken or
//! free without it. A popped or carved block is in an entry (or a structure) from the same
//! transaction that takes it off the free list, and a freed block leaves its entry in the
//! transaction that pushes it. Nothing is in between.
//!
//! # Releasing dead holders
//!
//! A holder is dead only when its process is provably dead
//! (`sync::raw::process_of_stamp_is_dead`: no such process, a zombie with no thread left, or
//! the pid now names a process with another start time; a process whose main thread ended
//! while its other threads run is alive). Its references are released (each held entry cleared and the
//! count dropped, freeing blocks that reach 0, one transaction per entry), then its chunks
//! (one transaction per chunk, which also unlinks it), then the slot (stamp cleared, last).
//! Each step re-checks under the lock what it changes (the slot still carries the dead stamp,
//! the chunk is still live with the generation it had when it was the journal's head), so
//! releasing is idempotent and never touches a slot or chunk a live process has taken since:
//! releasers may run at once or die midway, and the next one carries on. A damaged journal (a word
//! that names no chunk, an entry that names no live block, a chunk whose header changed) is
//! dropped, its blocks lost, and reported as [`Error::CorruptHeap`] after the other dead
//! holders are released: damage in one holder never keeps the others, or its own slot, from
//! being released. Releasing happens:
//! - lazily, when an allocation finds the heap full (then it is retried once), or a slot is
//!   wanted and the table is full;
//! - when this process reaps a child ([`release_holders_of`], from `process`).
//!
//! A reap looks only at slots below the table's high-water mark `high` (slot 0's third word):
//! a claim takes the lowest free slot and raises `high` past it in the same transaction, so
//! the mark is one past the most slots ever held at once, usually a handful of the 4096. The
//! mark is only a hint, read from shared memory: it is clamped to the table, and a mark
//! scribbled too low cannot hide a dead holder for long, because every full scan (the lazy
//! releases above, and the reap of a child whose pid is a multiple of [`FULL_SCAN_EVERY`])
//! reads all slots and raises the mark past any claimed slot it finds above it. A wrong mark
//! costs time, never a release: the lazy releases, which run before an allocation or a claim
//! fails, always scan the whole table.
//!
//! A forked child inherits its parent's handles uncounted (they never release; the parent's
//! entries keep the blocks alive), and claims a slot of its own for what it takes itself.
//!
//! A process whose table slot cannot be claimed (the table is full of live holders) counts
//! its references as structure-owned, as a heap without holders would: they are then not
//! released if it dies.

#![allow(unsafe_code)]
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use super::{Owner, RawHeap, add, size_class::Class};
use crate::error::{Error, Result};
use crate::loom::Ordering;
use crate::segment::{SegmentInner, registry};
use crate::sys;
use std::sync::{Mutex, PoisonError};

/// Bytes of a holder slot.
pub(crate) const SLOT_BYTES: u64 = 32;
/// Payload bytes of a journal chunk (a 1 KiB block).
const CHUNK_BYTES: u64 = 992;
/// Bytes before the first entry of a chunk.
const CHUNK_HEADER: u64 = 32;
/// Bytes of an entry.
const ENTRY_BYTES: u64 = 16;
/// Entries in a chunk.
const CHUNK_ENTRIES: u64 = (CHUNK_BYTES - CHUNK_HEADER) / ENTRY_BYTES;
/// Type fingerprint of a journal chunk.
pub(crate) const CHUNK_FP: u64 = crate::fingerprint::start("shmproc::heap journal chunk", 8, 32);

/// Returns the number of holder slots of a heap `len` bytes long: one per 16 KiB, at least
/// 16 and at most 4096.
pub(crate) fn slots_for(len: u64) -> u64 {
    (len >> 14).clamp(16, 4096)
}

/// This process's side of a holder: its slot and its free entries, per segment.
struct Local {
    seg: u64,
    pid: u32,
    slot: Option<u64>,
    /// The table was full when a slot was wanted: references are structure-owned.
    no_slot: bool,
    free: Vec<u64>,
}

/// Per segment (by identity), a short list: a process maps few segments at once.
static LOCAL: Mutex<Vec<Local>> = Mutex::new(Vec::new());

/// Returns this process's stamp: pid and the low 32 bits of its start time.
pub(crate) fn process_stamp() -> u64 {
    thread_local! {
        static CACHED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    let pid = sys::current_pid();
    let cached = CACHED.with(std::cell::Cell::get);
    // The cache holds the stamp of the process the thread ran in when it was filled (a
    // forked child's thread inherits its parent's): used only if it names our pid.
    if cached >> 32 == u64::from(pid) && cached != 0 {
        return cached;
    }
    let start = match sys::probe_thread(pid) {
        sys::Liveness::Running { start: Some(s) } => s,
        _ => sys::START_UNKNOWN,
    };
    let stamp = u64::from(pid) << 32 | u64::from(start);
    CACHED.with(|c| c.set(stamp));
    stamp
}

/// Returns an entry of this process's holder in `seg` for a new reference, or
/// [`Owner::Structure`] when no slot can be had.
///
/// # Errors
/// [`Error::CorruptHeap`] if the holder table or a journal is damaged.
pub(crate) fn take_entry(seg: &SegmentInner) -> Result<Owner> {
    let me = sys::current_pid();
    let id = seg.id();
    // The calling thread's cache first: no lock, no atomic read-modify-write.
    if let Ok(Some(e)) = CACHE.try_with(|c| c.borrow_mut().pop(id, me)) {
        return Ok(Owner::Entry(e));
    }
    let mut batch = take_batch(seg, me)?;
    let first = batch.pop();
    if !batch.is_empty() {
        // A thread that is exiting has no cache any more: the batch goes back.
        if CACHE
            .try_with(|c| c.borrow_mut().extend(id, me, &mut batch))
            .is_err()
        {
            put_entries(id, me, &mut batch);
        }
    }
    Ok(first.map_or(Owner::Structure, Owner::Entry))
}

/// Entries a thread takes from its process's list at once.
const BATCH: usize = 16;
/// Entries a thread's cache keeps for one segment before it gives half back.
const CACHE_MAX: usize = 64;

/// A thread's free entries, per segment; given back to the process's list when the thread
/// ends.
struct ThreadCache(Vec<(u64, u32, Vec<u64>)>);

impl ThreadCache {
    fn pop(&mut self, seg: u64, pid: u32) -> Option<u64> {
        let (_, owner, free) = self.0.iter_mut().find(|(s, _, _)| *s == seg)?;
        if *owner != pid {
            // Inherited through `fork`: the parent's entries.
            free.clear();
            *owner = pid;
            return None;
        }
        free.pop()
    }

    fn extend(&mut self, seg: u64, pid: u32, entries: &mut Vec<u64>) {
        match self.0.iter_mut().find(|(s, _, _)| *s == seg) {
            Some((_, owner, free)) => {
                if *owner != pid {
                    free.clear();
                    *owner = pid;
                }
                free.append(entries);
            }
            None => self.0.push((seg, pid, std::mem::take(entries))),
        }
    }

    /// Keeps `e`; returns entries to give back to the process's list if the cache is full.
    fn push(&mut self, seg: u64, pid: u32, e: u64) -> Option<Vec<u64>> {
        let mut one = vec![e];
        self.extend(seg, pid, &mut one);
        let (_, _, free) = self.0.iter_mut().find(|(s, _, _)| *s == seg)?;
        (free.len() > CACHE_MAX).then(|| free.split_off(CACHE_MAX / 2))
    }
}

impl Drop for ThreadCache {
    fn drop(&mut self) {
        let me = sys::current_pid();
        for (seg, pid, mut free) in std::mem::take(&mut self.0) {
            if pid == me {
                put_entries(seg, pid, &mut free);
            }
        }
    }
}

thread_local! {
    static CACHE: std::cell::RefCell<ThreadCache> =
        const { std::cell::RefCell::new(ThreadCache(Vec::new())) };
}

/// Gives free entries back to this process's list for segment `seg`.
fn put_entries(seg: u64, pid: u32, entries: &mut Vec<u64>) {
    let mut locals = LOCAL.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(local) = locals.iter_mut().find(|l| l.seg == seg)
        && local.pid == pid
    {
        local.free.append(entries);
    }
}

/// Takes up to `BATCH` free entries from this process's list for `seg`, claiming a slot and
/// making a journal chunk as needed; none if no slot can be had.
fn take_batch(seg: &SegmentInner, me: u32) -> Result<Vec<u64>> {
    let mut locals = LOCAL.lock().unwrap_or_else(PoisonError::into_inner);
    let id = seg.id();
    let at = match locals.iter().position(|l| l.seg == id) {
        Some(at) => at,
        None => {
            if locals.len() >= 64 {
                // Forget segments this process no longer maps (their slots are released when
                // the process ends).
                locals.retain(|l| registry::lookup(l.seg).is_some());
            }
            locals.push(Local {
                seg: id,
                pid: me,
                slot: None,
                no_slot: false,
                free: Vec::new(),
            });
            locals.len().saturating_sub(1)
        }
    };
    let Some(local) = locals.get_mut(at) else {
        unreachable!("the entry was just found or pushed");
    };
    if local.pid != me {
        // A forked child: the slot and entries are its parent's.
        *local = Local {
            seg: id,
            pid: me,
            slot: None,
            no_slot: false,
            free: Vec::new(),
        };
    }
    if !local.free.is_empty() {
        let keep = local.free.len().saturating_sub(BATCH);
        return Ok(local.free.split_off(keep));
    }
    if local.no_slot {
        return Ok(Vec::new());
    }
    let heap = RawHeap::new(seg);
    let slot = match local.slot {
        Some(s) => s,
        None => match heap.claim_slot(process_stamp())? {
            Some(s) => *local.slot.insert(s),
            None => {
                local.no_slot = true;
                return Ok(Vec::new());
            }
        },
    };
    let Ok(chunk) = heap.new_chunk(slot) else {
        // No room for a journal: count this reference as a structure's.
        return Ok(Vec::new());
    };
    let first = add(chunk, CHUNK_HEADER)?;
    for i in (0..CHUNK_ENTRIES).rev() {
        local.free.push(add(first, i.saturating_mul(ENTRY_BYTES))?);
    }
    let keep = local.free.len().saturating_sub(BATCH);
    Ok(local.free.split_off(keep))
}

/// Gives entry `e` (now free) back for `seg`: to the calling thread's cache, which gives half
/// of its entries to the process's list when it holds too many.
pub(crate) fn put_entry(seg: &SegmentInner, e: u64) {
    let me = sys::current_pid();
    let id = seg.id();
    match CACHE.try_with(|c| c.borrow_mut().push(id, me, e)) {
        Ok(None) => {}
        Ok(Some(mut spill)) => put_entries(id, me, &mut spill),
        Err(_) => put_entries(id, me, &mut vec![e]),
    }
}

/// The reap of a child whose pid is a multiple of this looks at the whole holder table (not
/// only below its high-water mark), so a mark scribbled too low is repaired within about this
/// many reaps. Chosen by pid rather than by a counter: a counter in this process's memory
/// would be one more page written, and copied, on every `Fork` start.
pub(crate) const FULL_SCAN_EVERY: u32 = 64;

/// Releases the holders of process `pid` (just reaped by this process) in every segment this
/// process maps.
///
/// Scans the slots below each table's high-water mark, and the whole table when `pid` is a
/// multiple of [`FULL_SCAN_EVERY`].
pub(crate) fn release_holders_of(pid: u32) {
    let full = pid.is_multiple_of(FULL_SCAN_EVERY);
    for seg in registry::all() {
        let heap = RawHeap::new(&seg);
        let _ = heap.release_dead_where(|stamp| stamp >> 32 == u64::from(pid), full);
    }
}

/// Releases every dead holder of `heap` (reading the whole table); returns whether any was
/// released.
pub(crate) fn release_dead(heap: &RawHeap<'_>) -> Result<bool> {
    heap.release_dead_where(|_| true, true)
}

impl RawHeap<'_> {
    fn slot_at(&self, i: u64) -> Result<u64> {
        add(super::holders_at(self.len()), i.saturating_mul(SLOT_BYTES))
    }

    /// Where the table's high-water mark lives: slot 0's third word.
    fn high_at(&self) -> Result<u64> {
        add(self.slot_at(0)?, 16)
    }

    /// Returns how many slots a scan for dead holders reads: the high-water mark clamped to
    /// the table (a hint from shared memory; see the module docs), or all of them if `full`.
    fn scan_len(&self, full: bool) -> Result<u64> {
        let n = slots_for(self.len());
        if full {
            return Ok(n);
        }
        Ok(self.u64_at(self.high_at()?)?.load(Ordering::Acquire).min(n))
    }

    /// Raises the high-water mark to at least `to` (a full scan found a claimed slot at
    /// `to - 1` above it: the mark had been scribbled).
    fn raise_high(&self, to: u64) -> Result<()> {
        self.locked(|txn| {
            let at = self.high_at()?;
            if self.u64_at(at)?.load(Ordering::Acquire) < to {
                txn.set64(at, to)?;
            }
            Ok(())
        })
    }

    /// Claims a free slot for `stamp`; `None` if every slot is held by a live process.
    fn claim_slot(&self, stamp: u64) -> Result<Option<u64>> {
        for attempt in 0..2 {
            let got = self.locked(|txn| {
                for i in 0..slots_for(self.len()) {
                    let slot = self.slot_at(i)?;
                    if self.u64_at(slot)?.load(Ordering::Acquire) == 0 {
                        txn.set64(slot, stamp)?;
                        txn.set64(add(slot, 8)?, 0)?;
                        // Reaps scan below the mark: it covers this slot before anyone could
                        // see the slot claimed (same transaction).
                        let high = self.high_at()?;
                        let past = add(i, 1)?;
                        if self.u64_at(high)?.load(Ordering::Acquire) < past {
                            txn.set64(high, past)?;
                        }
                        return Ok(Some(slot));
                    }
                }
                Ok(None)
            })?;
            // Damage found while releasing was dealt with (the holder dropped); whatever was
            // released meanwhile may have freed a slot, so look again.
            if got.is_some() || attempt == 1 || !release_dead(self).unwrap_or(true) {
                return Ok(got);
            }
        }
        Ok(None)
    }

    /// Allocates a zeroed journal chunk and links it first in `slot`'s journal; returns its
    /// payload offset.
    fn new_chunk(&self, slot: u64) -> Result<u64> {
        let need = add(CHUNK_BYTES, super::BLOCK_HEADER)?;
        let class = Class::for_block(need, self.page).ok_or(Error::CorruptObject {
            reason: "bad size class",
        })?;
        let make = || {
            self.locked(|txn| {
                let b = self.alloc_in(txn, class, CHUNK_BYTES, 32, CHUNK_FP, Owner::Structure)?;
                // The block is off no list yet (the transaction has not run): nobody reads its
                // payload, so zeroing it first changes nothing if we die (module `redo`).
                let p = self.ptr(b.payload);
                // SAFETY: `[payload, payload + CHUNK_BYTES)` lies inside the block `alloc_in`
                // checked (a free block or one carved below the segment's end); the heap lock
                // is held and the block is free, so no other thread or process reads or writes
                // its payload.
                unsafe { p.write_bytes(0, super::usize_of(CHUNK_BYTES)) };
                let head = self.u64_at(add(slot, 8)?)?.load(Ordering::Acquire);
                txn.set64(b.payload, head)?;
                txn.set64(add(slot, 8)?, b.payload)?;
                Ok(b.payload)
            })
        };
        match make() {
            Err(Error::OutOfMemory { .. }) if release_dead(self).unwrap_or(true) => make(),
            r => r,
        }
    }

    /// Releases every holder whose stamp passes `pick` and whose process is provably dead,
    /// among the slots below the high-water mark, or among all slots if `full` (which also
    /// repairs a mark found too low).
    ///
    /// A damaged holder does not stop the others from being released: every one is tried,
    /// and the first damage found is returned afterwards.
    fn release_dead_where(&self, pick: impl Fn(u64) -> bool, full: bool) -> Result<bool> {
        // Our own slot is never released; a slot with our pid but another start time is a
        // process that had our pid before us (`process_of_stamp_is_dead` tells them apart).
        let me = process_stamp();
        let mut any = false;
        let mut damage = None;
        let mut claimed_end = 0;
        for i in 0..self.scan_len(full)? {
            let slot = self.slot_at(i)?;
            let stamp = self.u64_at(slot)?.load(Ordering::Acquire);
            if stamp != 0 {
                claimed_end = add(i, 1)?;
            }
            if stamp == 0 || stamp == me || !pick(stamp) {
                continue;
            }
            if !crate::sync::raw::process_of_stamp_is_dead(stamp) {
                continue;
            }
            if let Err(e) = self.release_holder(slot, stamp) {
                damage.get_or_insert(e);
            }
            any = true;
        }
        if full && claimed_end > self.u64_at(self.high_at()?)?.load(Ordering::Acquire) {
            self.raise_high(claimed_end)?;
        }
        damage.map_or(Ok(any), Err)
    }

    /// Releases everything the dead holder in `slot` (stamp `stamp`) holds, then the slot.
    fn release_holder(&self, slot: u64, stamp: u64) -> Result<()> {
        // Take the lock once first: a transaction the dead process committed but did not
        // finish (it may record an entry or link a chunk) is redone before we read its journal
        // without the lock. Nobody else writes a dead holder's journal but releasers, which
        // re-check under the lock what they change.
        self.locked(|_| Ok(()))?;
        let journal = add(slot, 8)?;
        // Whether the slot is still the dead holder's (the caller holds the lock).
        let ours = || Ok::<_, Error>(self.u64_at(slot)?.load(Ordering::Acquire) == stamp);
        let mut damage = None;
        // Each chunk is at least 1 KiB: a longer chain is a cycle.
        let max_chunks = self.len() / 1024;
        for _ in 0..max_chunks {
            // Under the lock: the head chunk and its generation are read together, so the
            // chunk was this holder's when its generation was (see `release_entry`).
            let (chunk, checked) = self.locked(|_| {
                // Another releaser may have finished this holder and a live process claimed
                // the slot since: its journal is not ours to release.
                if !ours()? {
                    return Ok((0, None));
                }
                let chunk = self.u64_at(journal)?.load(Ordering::Acquire);
                if chunk == 0 {
                    return Ok((0, None));
                }
                // A journal word that names no block at all is damage like one naming a
                // block of another kind: the chain is dropped below, never a reason to stop.
                let checked = self
                    .generation_at_payload(chunk)
                    .and_then(|generation| {
                        let (block, len, size) = self.adopt(chunk, generation, CHUNK_FP)?;
                        Ok((block, len, size, generation))
                    })
                    .ok()
                    .filter(|&(_, len, _, _)| len >= CHUNK_BYTES);
                Ok((chunk, checked))
            })?;
            if chunk == 0 {
                break;
            }
            let Some((block, _, size, generation)) = checked else {
                // A journal that names no chunk: drop the chain (its blocks, if any, are lost).
                self.locked(|txn| {
                    if ours()? && self.u64_at(journal)?.load(Ordering::Acquire) == chunk {
                        txn.set64(journal, 0)?;
                    }
                    Ok(())
                })?;
                damage = Some(Error::CorruptHeap {
                    reason: "holder journal names no chunk",
                });
                break;
            };
            let first = add(chunk, CHUNK_HEADER)?;
            for i in 0..CHUNK_ENTRIES {
                let e = add(first, i.saturating_mul(ENTRY_BYTES))?;
                if self.u64_at(e)?.load(Ordering::Acquire) != 0
                    && let Err(err) = self.release_entry(e, block, generation)
                {
                    damage = Some(err);
                }
            }
            let unlinked = self.locked(|txn| {
                if !ours()? || self.u64_at(journal)?.load(Ordering::Acquire) != chunk {
                    return Ok(Ok(false));
                }
                let next = self.u64_at(chunk)?.load(Ordering::Acquire);
                txn.set64(journal, next)?;
                self.release_in(txn, block, size, Owner::Structure)
            })?;
            // A chunk whose header was damaged is unlinked and taken out of use (the
            // transaction recorded that); the rest of the journal is still released.
            if let Err(err) = unlinked {
                damage = Some(err);
            }
        }
        self.locked(|txn| {
            if self.u64_at(slot)?.load(Ordering::Acquire) == stamp
                && self.u64_at(journal)?.load(Ordering::Acquire) == 0
            {
                txn.set64(slot, 0)?;
            }
            Ok(())
        })?;
        damage.map_or(Ok(()), Err)
    }

    /// Returns the generation recorded for the block whose payload is at `payload` (for
    /// chunks, which are never re-attached by token).
    fn generation_at_payload(&self, payload: u64) -> Result<u32> {
        let (block, _) = self.locate(payload)?;
        let rc_gen = self.u64_at(add(block, 8)?)?.load(Ordering::Acquire);
        Ok(u32::try_from(rc_gen >> 32).unwrap_or(0))
    }

    /// Releases the reference a dead holder's entry `e` records (clearing the entry), if it
    /// still records one and its chunk (the block `chunk`, read as live with generation
    /// `chunk_gen` before the lock was taken) is still that holder's.
    ///
    /// The entries are read without the lock, so another releaser may meanwhile have
    /// released this chunk and a live process taken it as a journal chunk of its own: its
    /// entries are then that process's live references, never released here. Freeing bumps
    /// the chunk's generation, so a chunk still live with the generation read before is
    /// still the dead holder's.
    fn release_entry(&self, e: u64, chunk: u64, chunk_gen: u32) -> Result<()> {
        self.locked(|txn| {
            let chunk_rc_gen = self.u64_at(add(chunk, 8)?)?.load(Ordering::Acquire);
            if chunk_rc_gen >> 32 != u64::from(chunk_gen) || chunk_rc_gen & 0xffff_ffff == 0 {
                return Ok(Ok(false));
            }
            let block = self.u64_at(e)?.load(Ordering::Acquire);
            if block == 0 {
                return Ok(Ok(false));
            }
            let generation = self.u64_at(add(e, 8)?)?.load(Ordering::Acquire) >> 32;
            let live = self.check_block_offset(block).is_ok()
                && self
                    .u64_at(add(block, 8)?)
                    .map(|w| w.load(Ordering::Acquire))
                    .is_ok_and(|rc_gen| rc_gen >> 32 == generation && rc_gen & 0xffff_ffff != 0);
            let extent = if live { self.extent(block).ok() } else { None };
            let Some((_, size)) = extent else {
                // The entry names no live block of its generation: clear it, release nothing.
                Owner::Entry(e).clear(txn)?;
                return Ok(Err(Error::CorruptHeap {
                    reason: "journal entry names no live block",
                }));
            };
            self.release_in(txn, block, size, Owner::Entry(e))
        })??;
        Ok(())
    }
}

//! The one place where the containers meet the heap and the lock.
//!
//! A container is a *header* block (its words are laid out in the table below), a [`Lock`],
//! and blocks the header reaches: a *table* (an array of words) and *entries* (immutable byte
//! blobs). Every other file of `containers` goes through [`Core`]: allocating, reading and
//! freeing those blocks, and taking the lock (with the intent repair on owner death).
//!
//! # Header words
//!
//! | word  | name      | meaning                                                        |
//! |-------|-----------|----------------------------------------------------------------|
//! | 0     | `KIND`    | fingerprint of the container type (kind and element types)     |
//! | 3     | `HANDLES` | handles counted in this block; the last one frees the contents |
//! | 4     | `ROOT`    | the published root: a table (`Dict`, `List`) or entry (`Slot`) |
//! | 5, 6  | `LEN`, `TOMBS` | derived counts (`Dict`): recomputed after an owner death  |
//! | 8–15  | intent    | the intent record of `protocol`                                |
//! | 16–19 | link      | the heap's link record naming the container's [`Lock`] (checked on attach) |
//!
//! # References
//!
//! A word that names a block holds `generation << 32 | payload / 32` (0 = none). Before a
//! reference read from shared memory is used, the heap checks that the block is live, has
//! that generation and the expected type, and how long it is.
//!
//! # Safety
//!
//! The header and table blocks are arrays of `u64` words accessed only atomically (the heap
//! checks block length and type; payloads are 32-byte aligned). Entry blobs are written only
//! before their reference is published and never after, and are freed only by the lock holder
//! after their reference is unpublished; a byte slice of one is handed out only while the lock
//! is held (its lifetime is tied to the guard), so no write or free races with it.

#![allow(unsafe_code)]

use super::protocol;
use crate::error::{Error, OwnerDied, Result};
use crate::heap::{ObjectRef, ObjectToken, RawHeap};
use crate::loom::{AtomicU64, Ordering};
use crate::segment::Segment;
use crate::sync::{Lock, LockGuard};
use crate::sys;
use std::fmt;
use std::time::Duration;

pub(crate) const KIND: usize = 0;
const HANDLES: usize = 3;
pub(crate) const ROOT: usize = 4;
pub(crate) const LEN: usize = 5;
pub(crate) const TOMBS: usize = 6;
pub(crate) const INTENT: usize = 8;
/// The link record (four words: segment, offset, type, generation of the lock).
const LINK: usize = 16;
const HEADER_WORDS: usize = 20;

pub(crate) const ENTRY_FP: u64 = crate::fingerprint::start("shmproc::containers entry v1", 1, 8);
pub(crate) const TABLE_FP: u64 = crate::fingerprint::start("shmproc::containers table v1", 8, 8);

/// How long an operation may wait for the lock.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// Until the lock is free.
    Block,
    /// Not at all.
    Try,
    /// At most this long.
    Timeout(Duration),
}

/// Returns the default heap's segment (where `new` puts a container).
pub(crate) fn default_segment() -> Result<Segment> {
    crate::runtime::default_segment()
}

/// Returns the fingerprint of a container kind with its element type names.
///
/// Serde types carry no layout fingerprint, so the type *names* stand in: two builds that
/// name a type the same way but encode it differently are not told apart.
pub(crate) fn kind_fingerprint(kind: &str, elems: &[&str]) -> u64 {
    let mut h = crate::fingerprint::start(kind, 0, 0);
    for e in elems {
        h = crate::fingerprint::extend(h, b"\0");
        h = crate::fingerprint::extend(h, e.as_bytes());
    }
    h
}

/// Encodes a block reference as a word.
fn encode_ref(payload: u64, generation: u32) -> Result<u64> {
    if !payload.is_multiple_of(32) {
        return Err(Error::CorruptObject {
            reason: "container block not 32-byte aligned",
        });
    }
    let idx = u32::try_from(payload / 32).map_err(|_| Error::InvalidSize {
        reason: "containers need their blocks in the first 128 GiB of a segment",
    })?;
    Ok(u64::from(generation) << 32 | u64::from(idx))
}

/// Decodes a reference word into (payload, generation).
fn decode_ref(r: u64) -> (u64, u32) {
    ((r & 0xffff_ffff) * 32, (r >> 32) as u32)
}

/// What a container's handle holds: its header, lock and segment.
pub(crate) struct Core {
    obj: ObjectRef,
    seg: Segment,
    lock: Lock,
    /// The process whose count in `HANDLES` this handle is (0: inherited through `fork`).
    owner_pid: u32,
    /// Frees everything the root reaches; run by the last handle.
    destroy: fn(&Core, &LockGuard<'_>),
    /// Repairs derived state after an owner death (after the intent is resolved).
    repair: fn(&Core, &LockGuard<'_>) -> Result<()>,
    /// The root table reference this handle last validated, and its length in bytes.
    cache: [AtomicU64; 2],
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.obj.fmt(f)
    }
}

/// The hooks a container kind gives its [`Core`].
#[derive(Clone, Copy)]
pub(crate) struct Hooks {
    pub(crate) destroy: fn(&Core, &LockGuard<'_>),
    pub(crate) repair: fn(&Core, &LockGuard<'_>) -> Result<()>,
}

impl Core {
    /// Creates an empty container of kind `fp` in `seg`: header, lock, no root.
    pub(crate) fn create(seg: &Segment, fp: u64, hooks: Hooks) -> Result<Core> {
        let lock = Lock::new_in(seg)?;
        let obj = ObjectRef::alloc_zeroed(seg, (HEADER_WORDS * 8) as u64, 64, fp)?;
        let core = Core {
            obj,
            seg: seg.clone(),
            lock,
            owner_pid: sys::current_pid(),
            destroy: hooks.destroy,
            repair: hooks.repair,
            cache: [AtomicU64::new(0), AtomicU64::new(0)],
        };
        core.obj.write_link((LINK * 8) as u64, core.lock.object())?;
        core.word(KIND).store(fp, Ordering::Relaxed);
        // Release: a handle passed on after this sees the initialized header.
        core.word(HANDLES).store(1, Ordering::Release);
        Ok(core)
    }

    /// Re-attaches a container from its token, checking kind and element types (`fp`).
    pub(crate) fn attach(
        tok: &ObjectToken,
        fp: u64,
        expected: &'static str,
        hooks: Hooks,
    ) -> Result<Core> {
        let obj = ObjectRef::attach(tok, fp, expected)?;
        if obj.len() < (HEADER_WORDS * 8) as u64 || obj.ptr().align_offset(64) != 0 {
            return Err(Error::CorruptObject {
                reason: "container header too small or misaligned",
            });
        }
        let words = header_words(&obj);
        // Acquire: pairs with `create`'s Release store of `HANDLES`, so the header words are
        // initialized (zero: the contents are being freed, or never were set up).
        if words[HANDLES].load(Ordering::Acquire) == 0 {
            return Err(Error::ObjectGone);
        }
        if words[KIND].load(Ordering::Relaxed) != fp {
            return Err(Error::TypeMismatch {
                expected,
                found: words[KIND].load(Ordering::Relaxed),
            });
        }
        // The lock first: a handle counted in `HANDLES` must always hold the lock, and the
        // lock outlives every counted handle.
        let seg = obj.segment();
        let mut lt = obj.token();
        lt.offset = words[LINK + 1].load(Ordering::Relaxed);
        lt.generation = u32::try_from(words[LINK + 3].load(Ordering::Relaxed)).unwrap_or(0);
        lt.fingerprint = crate::sync::lock::LOCK_FINGERPRINT;
        let lock = Lock::from_token(&lt)?;
        obj.check_link((LINK * 8) as u64, lock.object())?;
        // A count of zero means the last handle is freeing the contents: too late to attach.
        let handles = &words[HANDLES];
        let mut cur = handles.load(Ordering::Relaxed);
        loop {
            if cur == 0 {
                return Err(Error::ObjectGone);
            }
            // Acquire: as the load above.
            match handles.compare_exchange_weak(
                cur,
                cur.saturating_add(1),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        Ok(Core {
            obj,
            seg,
            lock,
            owner_pid: sys::current_pid(),
            destroy: hooks.destroy,
            repair: hooks.repair,
            cache: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// Returns the header block (for serialization).
    pub(crate) fn object(&self) -> &ObjectRef {
        &self.obj
    }

    /// Returns header word `i` (a constant below `HEADER_WORDS` at every call site).
    #[inline(always)]
    pub(crate) fn word(&self, i: usize) -> &AtomicU64 {
        &header_words(&self.obj)[i]
    }

    /// Returns the intent record's words.
    pub(crate) fn intent_words(&self) -> &[AtomicU64] {
        &header_words(&self.obj)[INTENT..HEADER_WORDS]
    }

    /// Takes the lock; after an owner death, resolves the intent record and repairs derived
    /// state first, so the caller always finds the container consistent.
    pub(crate) fn enter(&self, wait: Wait) -> Result<Option<LockGuard<'_>>> {
        let r = match wait {
            Wait::Block => self.lock.lock().map(Some),
            Wait::Try => self.lock.try_lock(),
            Wait::Timeout(d) => self.lock.lock_timeout(d),
        };
        let (g, died) = match r {
            Ok(Some(g)) => (g, false),
            Ok(None) => return Ok(None),
            Err(died) => (OwnerDied::into_inner(died), true),
        };
        if died || protocol::pending(self.intent_words()) {
            if died {
                // The dead holder may have died inside a heap transaction made for this
                // container (one that names a block in `FRESH`): resolve the heap's record
                // first, so the words read below are final.
                RawHeap::new(&self.seg.inner).settle()?;
            }
            protocol::recover(self, &g)?;
            (self.repair)(self, &g)?;
            protocol::clear(self.intent_words());
        }
        Ok(Some(g))
    }

    /// Allocates an entry blob holding `parts` one after another; returns its reference.
    ///
    /// The blob's count belongs to whoever the reference is published in (or the intent
    /// record until then).
    pub(crate) fn alloc_entry(&self, parts: &[&[u8]]) -> Result<u64> {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        let obj = ObjectRef::alloc(&self.seg, len as u64, 8, ENTRY_FP)?;
        let mut at = 0usize;
        for p in parts {
            let dst = obj.ptr().wrapping_add(at);
            // SAFETY: `at + p.len() <= len`, the payload's length, and the block is fresh:
            // no other handle or process can reach it yet (module `# Safety`).
            unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), dst, p.len()) };
            at += p.len();
        }
        let tok = obj.into_owned_token();
        encode_ref(tok.offset, tok.generation)
    }

    /// Allocates an entry blob holding `parts` for a mutation of the locked container (`g`),
    /// which arms an intent naming it before publishing it; returns its reference.
    ///
    /// The heap names the block in the intent's `FRESH` word in the allocation's own
    /// transaction, so no death loses it (`protocol`). If `FRESH` already names a block (a
    /// mutation that prepares two), this one is allocated as by `alloc_entry`.
    pub(crate) fn prepare_entry(&self, g: &LockGuard<'_>, parts: &[&[u8]]) -> Result<u64> {
        let len = parts.iter().map(|p| p.len()).sum::<usize>();
        let Some((r, b)) = self.alloc_fresh(g, len as u64, ENTRY_FP)? else {
            return self.alloc_entry(parts);
        };
        let base = RawHeap::new(&self.seg.inner).ptr(b.payload);
        let mut at = 0usize;
        for p in parts {
            let dst = base.wrapping_add(at);
            // SAFETY: `at + p.len() <= len`, the payload's length, and the block is fresh:
            // only `FRESH` names it, and nobody reads it before it is published (module
            // `# Safety`).
            unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), dst, p.len()) };
            at += p.len();
        }
        Ok(r)
    }

    /// Allocates a table of `n` words (zero-filled if `zeroed`) for a mutation of the locked
    /// container (`g`), named in `FRESH` as by `prepare_entry`; returns its reference.
    ///
    /// A copy that is filled after the intent naming it is armed need not be zeroed.
    pub(crate) fn prepare_table(&self, g: &LockGuard<'_>, n: usize, zeroed: bool) -> Result<u64> {
        let bytes = table_bytes(n)?;
        let Some((r, b)) = self.alloc_fresh(g, bytes, TABLE_FP)? else {
            return self.new_table(n, zeroed);
        };
        if zeroed {
            let end = b.payload.saturating_add(b.len);
            let dirty = b.zero_from.clamp(b.payload, end).saturating_sub(b.payload);
            let ptr = RawHeap::new(&self.seg.inner).ptr(b.payload);
            // SAFETY: `dirty <= len`, so the bytes written are inside the fresh payload, which
            // nobody reads before it is published (module `# Safety`).
            unsafe { ptr.write_bytes(0, usize::try_from(dirty).unwrap_or(0)) };
        }
        Ok(r)
    }

    /// Allocates a block of `len` bytes typed `fp`, named in `FRESH`; `None` if `FRESH`
    /// already names one.
    fn alloc_fresh(
        &self,
        _g: &LockGuard<'_>,
        len: u64,
        fp: u64,
    ) -> Result<Option<(u64, crate::heap::Block)>> {
        let words = self.intent_words();
        if protocol::fresh(words) != 0 {
            return Ok(None);
        }
        let name = ((INTENT + protocol::FRESH) * 8) as u64;
        let name = self
            .obj
            .offset()
            .checked_add(name)
            .ok_or(Error::CorruptObject {
                reason: "container header past the segment",
            })?;
        let b = RawHeap::new(&self.seg.inner).alloc_named(len, 8, fp, name)?;
        // A death here (before the intent names the block) loses nothing: `FRESH` names it.
        protocol::crash_point();
        Ok(Some((encode_ref(b.payload, b.generation)?, b)))
    }

    /// Allocates a zero-filled table of `n` words; returns its reference.
    pub(crate) fn alloc_table(&self, n: usize) -> Result<u64> {
        self.new_table(n, true)
    }

    fn new_table(&self, n: usize, zeroed: bool) -> Result<u64> {
        let bytes = table_bytes(n)?;
        let obj = if zeroed {
            ObjectRef::alloc_zeroed(&self.seg, bytes, 8, TABLE_FP)?
        } else {
            ObjectRef::alloc(&self.seg, bytes, 8, TABLE_FP)?
        };
        let tok = obj.into_owned_token();
        encode_ref(tok.offset, tok.generation)
    }

    /// Checks the live block `r` has type `fp`; returns its payload pointer and length.
    fn checked(&self, r: u64, fp: u64) -> Result<(*mut u8, u64)> {
        let (payload, generation) = decode_ref(r);
        let heap = RawHeap::new(&self.seg.inner);
        let (_, len, _) = heap.adopt(payload, generation, fp)?;
        Ok((heap.ptr(payload), len))
    }

    /// Returns the bytes of entry `r`; only while the lock is held (`_g`).
    pub(crate) fn entry<'g>(&'g self, _g: &'g LockGuard<'_>, r: u64) -> Result<&'g [u8]> {
        let (ptr, len) = self.checked(r, ENTRY_FP)?;
        let len = usize::try_from(len).unwrap_or(0);
        // SAFETY: the heap checked that `ptr` is the payload of a live entry of `len` bytes;
        // the caller holds the container's lock for `'g`, so the blob is neither written nor
        // freed while the slice lives (module `# Safety`).
        Ok(unsafe { core::slice::from_raw_parts(ptr, len) })
    }

    /// Returns the published root table (its reference and words); only while the lock is
    /// held (`g`).
    ///
    /// The check of the block is cached per handle: while the root word still holds the same
    /// reference, it names the same live block (a reference carries the block's generation,
    /// which changes whenever the block is freed, and a published table is freed only after
    /// it was unpublished, under the lock).
    pub(crate) fn root_table<'g>(&'g self, g: &'g LockGuard<'_>) -> Result<(u64, &'g [AtomicU64])> {
        let r = self.word(ROOT).load(Ordering::Acquire);
        // Relaxed: the cache is private to this handle and read and written only while the
        // container's lock is held, which orders the accesses of this process's threads.
        if r != 0 && self.cache[0].load(Ordering::Relaxed) == r {
            let len = self.cache[1].load(Ordering::Relaxed);
            // SAFETY: `r` was checked to be a live table of `len` bytes when it was cached,
            // and is still that block (above); the lock is held for `'g`.
            return Ok((r, unsafe { self.words_at(decode_ref(r).0, len) }?));
        }
        let words = self.table(g, r)?;
        self.cache[0].store(r, Ordering::Relaxed);
        self.cache[1].store((words.len() * 8) as u64, Ordering::Relaxed);
        Ok((r, words))
    }

    /// Returns the words of table `r`; only while the lock is held (`_g`).
    pub(crate) fn table<'g>(&'g self, _g: &'g LockGuard<'_>, r: u64) -> Result<&'g [AtomicU64]> {
        let (_, len) = self.checked(r, TABLE_FP)?;
        // SAFETY: the heap just checked that `r` is a live table of `len` bytes; the lock is
        // held for `'g`, and only its holder frees tables.
        unsafe { self.words_at(decode_ref(r).0, len) }
    }

    /// Returns `len` bytes of words at `payload`.
    ///
    /// # Safety
    /// - `payload` is the payload of a live table block of at least `len` bytes (checked by
    ///   the heap), and
    /// - the block stays allocated while the returned slice lives (the caller holds the
    ///   container's lock for that long).
    unsafe fn words_at(&self, payload: u64, len: u64) -> Result<&[AtomicU64]> {
        let ptr = RawHeap::new(&self.seg.inner).ptr(payload);
        let n = usize::try_from(len / 8).unwrap_or(0);
        if ptr.align_offset(8) != 0 {
            return Err(Error::CorruptObject {
                reason: "container table misaligned",
            });
        }
        // SAFETY: by the caller's contract a live table of `len` bytes is at `ptr` (8-aligned,
        // checked above) for the slice's lifetime; `AtomicU64` has `u64`'s size and alignment
        // (std docs), every bit pattern is valid, and the table is accessed only atomically.
        Ok(unsafe { core::slice::from_raw_parts(ptr.cast::<AtomicU64>(), n) })
    }

    /// Drops the count that `r` (of type `fp`) held; a block already freed (a repair that
    /// repeats a free the dead owner did) is skipped.
    fn free(&self, r: u64, fp: u64) -> Result<()> {
        if r == 0 || r == TOMBSTONE {
            return Ok(());
        }
        let r_word = r;
        let (offset, generation) = decode_ref(r);
        // One heap transaction checks the block and drops the container's reference.
        let r = match RawHeap::new(&self.seg.inner).release_checked(offset, generation, fp) {
            Ok(_) | Err(Error::ObjectGone) => Ok(()),
            Err(e) => return Err(e),
        };
        // A prepared block freed without an intent (an error before arming) is no longer
        // `FRESH`'s to free.
        protocol::forget_fresh(self.intent_words(), r_word);
        r
    }

    /// Frees the block `r` that `FRESH` named: an entry or a table (0 is a no-op).
    pub(crate) fn free_prepared(&self, r: u64) -> Result<()> {
        match self.free(r, ENTRY_FP) {
            // Another type: a table.
            Err(Error::CorruptObject { .. }) => self.free(r, TABLE_FP),
            other => other,
        }
    }

    /// Frees entry `r` (0 and the tombstone are no-ops).
    pub(crate) fn free_entry(&self, r: u64) -> Result<()> {
        self.free(r, ENTRY_FP)
    }

    /// Frees table `r` (not the entries it names).
    pub(crate) fn free_table(&self, r: u64) -> Result<()> {
        self.free(r, TABLE_FP)
    }
}

/// Returns the bytes of a table of `n` words (at least one word).
fn table_bytes(n: usize) -> Result<u64> {
    Ok(u64::try_from(n)
        .ok()
        .and_then(|n| n.checked_mul(8))
        .ok_or(Error::InvalidSize {
            reason: "container table too large",
        })?
        .max(8))
}

/// The dictionary's "deleted" slot word: generation 0 never names a live block.
pub(crate) const TOMBSTONE: u64 = 1;

fn header_words(obj: &ObjectRef) -> &[AtomicU64] {
    let ptr = obj.ptr().cast::<AtomicU64>();
    // SAFETY: the header block holds `HEADER_WORDS` 8-byte words, 64-aligned (checked by
    // `create`/`attach`), lives as long as `obj`, and is accessed only atomically; every bit
    // pattern is a valid `u64` (module `# Safety`).
    unsafe { core::slice::from_raw_parts(ptr, HEADER_WORDS) }
}

impl Clone for Core {
    fn clone(&self) -> Self {
        // Relaxed: as `Arc::clone`; this handle's count keeps the contents alive.
        self.word(HANDLES).fetch_add(1, Ordering::Relaxed);
        Core {
            obj: self.obj.clone(),
            seg: self.seg.clone(),
            lock: self.lock.clone(),
            owner_pid: sys::current_pid(),
            destroy: self.destroy,
            repair: self.repair,
            cache: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.owner_pid != sys::current_pid() {
            return;
        }
        // AcqRel: as `Arc`'s drop; the last handle sees every other handle's writes.
        if self.word(HANDLES).fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // The last handle: nobody can attach any more (the count is 0). Take the lock to
        // finish whatever a dead holder left, then free the contents.
        if let Ok(Some(g)) = self.enter(Wait::Block) {
            (self.destroy)(self, &g);
        }
    }
}

//! Handles: a counted reference to a block, and the token it travels as.
//!
//! An [`ObjectRef`] keeps its block alive (the block's reference count) and its segment mapped
//! (an `Arc` of the segment). Serialized, it becomes an [`ObjectToken`]: segment identity,
//! offset, generation and type fingerprint. Decoding a token in another process (or the same
//! one) looks the segment up, checks the block and the type, and takes a new reference.
//!
//! A reference is recorded in a journal entry of this process's holder (`holder`): the
//! block's shared count has one count for the entry, and the entry counts the handles that
//! share it (clones bump the entry's count, without the heap lock). The last handle of an
//! entry drops the shared count, so a process that dies without dropping leaves entries that
//! a releaser finds and drops for it.

//!
//! # Safety
//!
//! The byte copies below read and write a block's payload through raw pointers: the block is
//! live while the `ObjectRef` exists and holds `len` bytes, and byte blobs are written only
//! before their token is published and never after, so the copies race with nothing.

#![allow(unsafe_code)]
#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use super::{Owner, RawHeap, holder};
use crate::error::{Error, Result};
use crate::loom::{AtomicU64, Ordering, fence};
use crate::segment::{Segment, SegmentInner, registry};
use crate::sys;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The serialized form of a shared object handle.
///
/// Tokens are what `Value`, `Array`, `Lock` and the other handles serialize to. A token does
/// not keep its object alive: the handle it was made from (or another) must live until the
/// token has been turned back into a handle, else that fails with
/// [`Error::ObjectGone`](crate::Error::ObjectGone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectToken {
    /// Identity of the segment (from its header).
    pub segment: u64,
    /// Name of the segment, for named segments, so unrelated processes can open it.
    pub name: Option<String>,
    /// Offset of the payload in the segment.
    pub offset: u64,
    /// Generation of the block when the token was made.
    pub generation: u32,
    /// Fingerprint of the payload's type.
    pub fingerprint: u64,
}

/// A counted reference to a live block.
///
/// The reference belongs to the process that took it (`owner_pid`), in journal entry `owner`
/// of its holder (or directly in the block, as a structure's, when it has no holder slot). A
/// copy inherited through `fork` is not counted in the block, so it never releases: the
/// parent's reference keeps the block alive, exactly as before the fork. A clone made in the
/// child is counted anew, in the child's holder.
pub(crate) struct ObjectRef {
    /// The payload's address in this process's mapping (cached: every access needs it).
    ptr: *mut u8,
    owner_pid: u32,
    /// Offset of the journal entry that holds the reference; 0 if a structure-owned count
    /// (see [`Owner`]).
    entry: u64,
    seg: Arc<SegmentInner>,
    block: u64,
    /// The block's size as checked when the reference was taken; a free stays inside it.
    size: u64,
    payload: u64,
    len: u64,
    generation: u32,
    fp: u64,
}

impl fmt::Debug for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectRef")
            .field("segment", &format_args!("{:#018x}", self.seg.id()))
            .field("offset", &self.payload)
            .field("len", &self.len)
            .finish()
    }
}

impl ObjectRef {
    /// Allocates a block of `size` bytes aligned to `align`, typed `fp`, in `seg`.
    pub(crate) fn alloc(seg: &Segment, size: u64, align: u64, fp: u64) -> Result<ObjectRef> {
        Self::alloc_block(seg, size, align, fp).map(|(obj, _)| obj)
    }

    /// Allocates and returns the handle with the offset from which the block is known zero.
    fn alloc_block(seg: &Segment, size: u64, align: u64, fp: u64) -> Result<(ObjectRef, u64)> {
        let heap = RawHeap::new(&seg.inner);
        let owner = holder::take_entry(&seg.inner)?;
        let b = match heap.alloc_owned(size, align, fp, owner) {
            Ok(b) => b,
            Err(e) => {
                give_back(&seg.inner, owner);
                return Err(e);
            }
        };
        let obj = ObjectRef {
            ptr: heap.ptr(b.payload),
            owner_pid: sys::current_pid(),
            entry: entry_of(owner),
            seg: Arc::clone(&seg.inner),
            block: b.block,
            size: b.size,
            payload: b.payload,
            len: b.len,
            generation: b.generation,
            fp,
        };
        Ok((obj, b.zero_from))
    }

    /// Allocates like [`alloc`](ObjectRef::alloc), with the payload zero-filled (only the
    /// bytes not already known to be zero are written, so a large block costs no memory until
    /// it is used).
    pub(crate) fn alloc_zeroed(seg: &Segment, size: u64, align: u64, fp: u64) -> Result<ObjectRef> {
        let (obj, zero_from) = Self::alloc_block(seg, size, align, fp)?;
        let end = obj.payload.saturating_add(obj.len);
        let dirty = zero_from
            .clamp(obj.payload, end)
            .saturating_sub(obj.payload);
        // SAFETY: `dirty <= len`, so the bytes written are inside the fresh payload, which no
        // other handle can reach yet (module `# Safety`).
        unsafe { obj.ptr.write_bytes(0, usize::try_from(dirty).unwrap_or(0)) };
        Ok(obj)
    }

    /// Re-attaches the object a token names, checking it has type `fp`.
    pub(crate) fn attach(tok: &ObjectToken, fp: u64, expected: &'static str) -> Result<ObjectRef> {
        if tok.fingerprint != fp {
            return Err(Error::TypeMismatch {
                expected,
                found: tok.fingerprint,
            });
        }
        let seg = match registry::lookup(tok.segment) {
            Some(s) => s,
            None => match &tok.name {
                Some(name) => {
                    let s = Segment::open(name)?;
                    if s.id() != tok.segment {
                        return Err(Error::UnknownSegment { id: tok.segment });
                    }
                    s.inner
                }
                None => return Err(Error::UnknownSegment { id: tok.segment }),
            },
        };
        let owner = holder::take_entry(&seg)?;
        let (block, len, size) = match RawHeap::new(&seg).attach_owned(
            tok.offset,
            tok.generation,
            fp,
            expected,
            owner,
        ) {
            Ok(r) => r,
            Err(e) => {
                give_back(&seg, owner);
                return Err(e);
            }
        };
        Ok(ObjectRef {
            ptr: RawHeap::new(&seg).ptr(tok.offset),
            owner_pid: sys::current_pid(),
            entry: entry_of(owner),
            seg,
            block,
            size,
            payload: tok.offset,
            len,
            generation: tok.generation,
            fp,
        })
    }

    /// Takes over the reference count that `into_owned_token` gave up (for example the one a
    /// queue slot held), checking the block is live and of type `fp`.
    pub(crate) fn adopt(seg: &Segment, tok: &ObjectToken, fp: u64) -> Result<ObjectRef> {
        let heap = RawHeap::new(&seg.inner);
        let owner = holder::take_entry(&seg.inner)?;
        let r = match owner {
            Owner::Entry(e) => heap.adopt_into(tok.offset, tok.generation, fp, e),
            Owner::Structure => heap.adopt(tok.offset, tok.generation, fp),
        };
        let (block, len, size) = match r {
            Ok(r) => r,
            Err(e) => {
                give_back(&seg.inner, owner);
                return Err(e);
            }
        };
        Ok(ObjectRef {
            ptr: heap.ptr(tok.offset),
            owner_pid: sys::current_pid(),
            entry: entry_of(owner),
            seg: Arc::clone(&seg.inner),
            block,
            size,
            payload: tok.offset,
            len,
            generation: tok.generation,
            fp,
        })
    }

    /// Returns the token for this object.
    pub(crate) fn token(&self) -> ObjectToken {
        ObjectToken {
            segment: self.seg.id(),
            name: self.seg.name().map(str::to_owned),
            offset: self.payload,
            generation: self.generation,
            fingerprint: self.fp,
        }
    }

    /// Sets the fingerprint this handle's token carries, when it differs from the one the
    /// block records (typed shared memory records its kind too; its tokens name the element
    /// type only, and the kind is checked against the block).
    pub(crate) fn with_token_fingerprint(mut self, fp: u64) -> ObjectRef {
        self.fp = fp;
        self
    }

    /// Returns a pointer to the payload; valid while `self` lives.
    #[inline(always)]
    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Fills the payload with `bytes` (at most the payload's length); only for a block that no
    /// other process can see yet.
    pub(crate) fn write_new_bytes(&self, bytes: &[u8]) {
        let n = bytes
            .len()
            .min(usize::try_from(self.len).unwrap_or(usize::MAX));
        // SAFETY: `n` is at most the payload's length, the payload is live while `self` is,
        // and no other handle to this fresh block exists yet (module `# Safety`).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), self.ptr(), n) };
    }

    /// Copies the payload out; only for blobs that are immutable once published.
    pub(crate) fn read_published_bytes(&self) -> Vec<u8> {
        let n = usize::try_from(self.len).unwrap_or(0);
        let mut out = vec![0u8; n];
        // SAFETY: the payload holds `n` live bytes while `self` lives and is never written
        // after publication (module `# Safety`); `out` has room for `n` bytes.
        unsafe { core::ptr::copy_nonoverlapping(self.ptr(), out.as_mut_ptr(), n) };
        out
    }

    /// Gives up this handle without releasing its reference (the count is now owned by
    /// whatever recorded the token, such as a segment's root slot).
    ///
    /// If this handle is the only one of its journal entry, the entry's count moves to the
    /// structure (the entry is cleared, the block's count is unchanged); otherwise (clones
    /// share the entry, or the handle is an uncounted inherited copy) the structure gets a
    /// count of its own and this handle is dropped as usual.
    pub(crate) fn into_owned_token(mut self) -> ObjectToken {
        let tok = self.token();
        let heap = RawHeap::new(&self.seg);
        if self.owner_pid == sys::current_pid() {
            match self.owner() {
                Owner::Structure => {
                    // No process has pid 0: the drop below releases the segment but not the
                    // count, which the structure now owns.
                    self.owner_pid = 0;
                    return tok;
                }
                Owner::Entry(e) => {
                    // Acquire: pairs with the Release decrements of dropped clones. A count of
                    // 1 is this handle alone: no other handle shares the entry, and none can
                    // be cloned from it while we own it.
                    let only = heap
                        .u64_at(e.saturating_add(8))
                        .is_ok_and(|w| w.load(Ordering::Acquire) & COUNT_MASK == 1);
                    if only && heap.transfer(self.block, e).is_ok() {
                        holder::put_entry(&self.seg, e);
                        self.owner_pid = 0;
                        return tok;
                    }
                }
            }
        }
        // The structure's own count; if it cannot be taken (a pinned count) the block is
        // never freed, which is what an extra count does too.
        let _ = heap.retain_owned(self.block, self.generation, Owner::Structure);
        tok
    }

    /// Returns the payload length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Returns the segment this object lives in.
    pub(crate) fn segment(&self) -> Segment {
        Segment {
            inner: Arc::clone(&self.seg),
        }
    }

    /// Returns the identity of the object's segment.
    pub(crate) fn segment_id(&self) -> u64 {
        self.seg.id()
    }

    /// Returns the payload's offset in the segment.
    pub(crate) fn offset(&self) -> u64 {
        self.payload
    }

    /// Returns whether two references name the same object.
    pub(crate) fn same_object(&self, other: &ObjectRef) -> bool {
        Arc::ptr_eq(&self.seg, &other.seg) && self.payload == other.payload
    }

    /// Returns the link record's four words at byte `at` of the payload, after checking that
    /// they lie inside it and are 8-aligned.
    fn link_words(&self, at: u64) -> Result<&[AtomicU64]> {
        let fits = at
            .checked_add(LINK_BYTES)
            .is_some_and(|end| end <= self.len);
        let p = self
            .ptr
            .wrapping_add(usize::try_from(at).unwrap_or(usize::MAX));
        if !fits || p.align_offset(8) != 0 {
            return Err(Error::CorruptObject {
                reason: "link record outside its block or misaligned",
            });
        }
        // SAFETY: `[at, at + LINK_BYTES)` lies inside the live payload (checked above), which
        // `self` keeps allocated and mapped; `p` is 8-aligned; `AtomicU64` has the size and
        // alignment of `u64` (std docs), every bit pattern is valid, and link words are only
        // accessed atomically.
        Ok(unsafe { core::slice::from_raw_parts(p.cast::<AtomicU64>(), 4) })
    }

    /// Records `target`'s identity (segment, offset, generation, type) in the link record at
    /// byte `at` of this payload. Only for a fresh block whose token is not published yet.
    pub(crate) fn write_link(&self, at: u64, target: &ObjectRef) -> Result<()> {
        let words = self.link_words(at)?;
        let values = link_record(target);
        for (w, v) in words.iter().zip(values) {
            // Relaxed: the handle's token reaches another process only through a channel that
            // synchronizes (as the payload's initial contents do).
            w.store(v, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Checks that the link record at byte `at` of this payload names `target`.
    ///
    /// # Errors
    /// [`Error::LockMismatch`] if it names another object; [`Error::CorruptObject`] if the
    /// record does not fit the payload.
    pub(crate) fn check_link(&self, at: u64, target: &ObjectRef) -> Result<()> {
        let words = self.link_words(at)?;
        let expected = link_record(target);
        // Relaxed: written once before the object's token was published.
        if words
            .iter()
            .zip(expected)
            .all(|(w, v)| w.load(Ordering::Relaxed) == v)
        {
            Ok(())
        } else {
            Err(Error::LockMismatch)
        }
    }

    /// Returns the type fingerprint recorded in the link record at byte `at` (which kind of
    /// object the link names).
    pub(crate) fn link_fingerprint(&self, at: u64) -> Result<u64> {
        let words = self.link_words(at)?;
        // Relaxed: written once before the object's token was published.
        Ok(words.get(2).map_or(0, |w| w.load(Ordering::Relaxed)))
    }
}

/// Bytes of a link record: segment id, payload offset, type fingerprint, generation (each a
/// little-endian `u64` word).
pub(crate) const LINK_BYTES: u64 = 32;

fn link_record(target: &ObjectRef) -> [u64; 4] {
    [
        target.seg.id(),
        target.payload,
        target.fp,
        u64::from(target.generation),
    ]
}

// SAFETY: `ptr` points into the mapping owned by `seg` (an `Arc` of a `Send + Sync` segment)
// and is never dereferenced by `ObjectRef` itself; the handle types built on it access the
// payload only atomically or under a lock, as their own `Send`/`Sync` reasoning states.
unsafe impl Send for ObjectRef {}
// SAFETY: as for `Send`: shared references expose only the pointer value and the token.
unsafe impl Sync for ObjectRef {}

/// Bits of an entry's handle count (the low half of its `gen_count` word).
const COUNT_MASK: u64 = 0xffff_ffff;
/// Most handles of one entry (a count this high only comes from a corrupted word).
const COUNT_MAX: u64 = 0x7fff_ffff;

/// Returns the entry offset a handle stores for `owner` (0 for a structure).
fn entry_of(owner: Owner) -> u64 {
    match owner {
        Owner::Entry(e) => e,
        Owner::Structure => 0,
    }
}

/// Returns an entry whose reference could not be taken to this process's free list.
fn give_back(seg: &SegmentInner, owner: Owner) {
    if let Owner::Entry(e) = owner {
        holder::put_entry(seg, e);
    }
}

impl ObjectRef {
    /// Returns whom this handle's reference belongs to.
    fn owner(&self) -> Owner {
        match self.entry {
            0 => Owner::Structure,
            e => Owner::Entry(e),
        }
    }

    /// Returns the entry's handle count word, if this handle has an entry.
    #[inline]
    fn count(&self) -> Option<&AtomicU64> {
        let off = self.entry.checked_add(8)?;
        if self.entry == 0 || !off.is_multiple_of(8) || off.checked_add(8)? > self.seg.len() {
            return None;
        }
        let ptr = self
            .seg
            .base()
            .wrapping_add(usize::try_from(off).ok()?)
            .cast::<AtomicU64>();
        // SAFETY: `off + 8 <= len` keeps the word inside the mapping that `self.seg` owns and
        // keeps mapped while `self` lives, and `off % 8 == 0` (with a page-aligned base)
        // aligns it for `AtomicU64` (`u64`'s size and alignment, std docs); any bit pattern is
        // valid, and the word is only ever accessed atomically.
        Some(unsafe { &*ptr })
    }

    /// Takes a new counted reference to this handle's block for another handle; returns its
    /// owner, or `None` if it could not be counted.
    fn count_again(&self) -> Option<Owner> {
        if self.owner_pid == sys::current_pid()
            && let Some(w) = self.count()
        {
            // Relaxed: as `Arc::clone`, a new handle is made from a live one, which keeps the
            // entry held; no data is published by the increment.
            let old = w.fetch_add(1, Ordering::Relaxed);
            if old & COUNT_MASK < COUNT_MAX && old & COUNT_MASK != 0 {
                return Some(self.owner());
            }
            w.fetch_sub(1, Ordering::Relaxed);
        }
        // An inherited or structure-owned handle, or an entry count gone wrong: a reference of
        // its own, in this process's holder.
        let heap = RawHeap::new(&self.seg);
        let owner = holder::take_entry(&self.seg).ok()?;
        match heap.retain_owned(self.block, self.generation, owner) {
            Ok(true) => Some(owner),
            _ => {
                give_back(&self.seg, owner);
                None
            }
        }
    }
}

impl Clone for ObjectRef {
    fn clone(&self) -> Self {
        // The block is live (we hold a reference). A count that could not be taken (a
        // corrupted count word) makes a handle that never releases: the block leaks rather
        // than being freed under the handles that remain.
        let owner = self.count_again();
        ObjectRef {
            ptr: self.ptr,
            // No process has pid 0 (see `into_owned_token`): an uncounted clone never releases.
            owner_pid: if owner.is_some() {
                sys::current_pid()
            } else {
                0
            },
            entry: owner.map_or(0, entry_of),
            seg: Arc::clone(&self.seg),
            block: self.block,
            size: self.size,
            payload: self.payload,
            len: self.len,
            generation: self.generation,
            fp: self.fp,
        }
    }
}

impl Drop for ObjectRef {
    fn drop(&mut self) {
        if self.owner_pid != sys::current_pid() {
            return;
        }
        match self.owner() {
            Owner::Structure => {
                let _ = RawHeap::new(&self.seg).release(self.block, self.size);
            }
            Owner::Entry(e) => {
                let Some(w) = self.count() else {
                    return;
                };
                // Release: this thread's writes to the payload happen before the entry's last
                // handle drops the shared count (as `Arc`).
                let old = w.fetch_sub(1, Ordering::Release);
                match old & COUNT_MASK {
                    1 => {}
                    0 => {
                        // A count gone wrong (corruption): undo, and leak rather than free.
                        w.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    _ => return,
                }
                fence(Ordering::Acquire);
                if RawHeap::new(&self.seg)
                    .release_owned(self.block, self.size, self.owner())
                    .is_ok()
                {
                    holder::put_entry(&self.seg, e);
                }
            }
        }
    }
}

impl Serialize for ObjectRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        registry::note_serialized(&self.seg);
        self.token().serialize(s)
    }
}

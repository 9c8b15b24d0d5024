//! A heap block of 32-bit futex words: the storage of every synchronization primitive except
//! `Lock` (which keeps its own [`LockWord`]).
//!
//! A kind whose block starts with a robust lock (`RLock`) declares `ALIGN = 8` and at least
//! four words, and reads words 0..4 as a [`LockWord`] through [`Block::lock_word`] (never as
//! single words: the owner record is one 64-bit atomic).
//!
//! # Safety
//!
//! A `Block<K>` owns a counted reference to a heap block of at least `4 * K::WORDS` bytes,
//! `K::ALIGN`-aligned, typed `K::FINGERPRINT` (checked by `alloc` or, on attach, by the heap
//! plus the length and alignment checks in [`Block::attach`]). The block stays allocated and
//! mapped while the `Block` lives, so the slice of `AtomicU32` (or, for the first 16 bytes of
//! an 8-aligned block of at least four words, the `LockWord`) made from its address is valid
//! for `&self`, and it is only ever accessed atomically. The words of a `LockWord` are
//! written as single `u32`s only by `alloc`, before the block is shared.

#![allow(unsafe_code)]

use super::raw::LockWord;
use crate::error::{Error, Result};
use crate::heap::{LINK_BYTES, ObjectRef, ObjectToken};
use crate::loom::{AtomicU32, Ordering};
use crate::segment::Segment;
use std::fmt;
use std::marker::PhantomData;

/// What a block holds: its word count, type fingerprint and type name.
pub(crate) trait BlockKind {
    /// Number of 32-bit words.
    const WORDS: usize;
    /// Type fingerprint recorded with the block.
    const FINGERPRINT: u64;
    /// Type name for `TypeMismatch` errors.
    const NAME: &'static str;
    /// Alignment of the block in bytes (8 for a block that starts with a [`LockWord`]).
    const ALIGN: u64 = 4;
}

/// A counted reference to a block of `K::WORDS` atomic words in shared memory.
pub(crate) struct Block<K> {
    obj: ObjectRef,
    _kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Block<K> {
    fn clone(&self) -> Self {
        Block {
            obj: self.obj.clone(),
            _kind: PhantomData,
        }
    }
}

impl<K> fmt::Debug for Block<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.obj.fmt(f)
    }
}

const fn byte_len(words: usize) -> u64 {
    // A word count is a small constant; `usize` is at most 64 bits on every target.
    (words as u64).saturating_mul(4)
}

impl<K: BlockKind> Block<K> {
    /// Allocates a block in `segment` and stores `init` into its words.
    pub(crate) fn alloc(segment: &Segment, init: &[u32]) -> Result<Self> {
        debug_assert_eq!(init.len(), K::WORDS);
        let obj = ObjectRef::alloc(segment, byte_len(K::WORDS), K::ALIGN, K::FINGERPRINT)?;
        Ok(Self::initialized(obj, init))
    }

    /// Wraps a freshly allocated block and stores `init` into its words.
    fn initialized(obj: ObjectRef, init: &[u32]) -> Self {
        let block = Block {
            obj,
            _kind: PhantomData,
        };
        for (w, v) in block.words().iter().zip(init) {
            // Release: a handle passed to another process after this (through a channel that
            // synchronizes) sees the initial state.
            w.store(*v, Ordering::Release);
        }
        block
    }

    /// Offset of the link record in a linked block: after the words, 8-aligned.
    pub(crate) const LINK_AT: u64 = byte_len(K::WORDS).next_multiple_of(8);

    /// Allocates a block like [`alloc`](Block::alloc), followed by a link record naming
    /// `target` (the lock a condition waits with), checked on attach with
    /// [`check_link`](Block::check_link).
    pub(crate) fn alloc_linked(
        segment: &Segment,
        init: &[u32],
        target: &ObjectRef,
    ) -> Result<Self> {
        debug_assert_eq!(init.len(), K::WORDS);
        let size = Self::LINK_AT.saturating_add(LINK_BYTES);
        let obj = ObjectRef::alloc(segment, size, 8, K::FINGERPRINT)?;
        obj.write_link(Self::LINK_AT, target)?;
        Ok(Self::initialized(obj, init))
    }

    /// Checks that a linked block's record names `target`.
    ///
    /// # Errors
    /// [`Error::LockMismatch`] if it names another object; [`Error::CorruptObject`] if the
    /// block has no room for a record.
    pub(crate) fn check_link(&self, target: &ObjectRef) -> Result<()> {
        self.obj.check_link(Self::LINK_AT, target)
    }

    /// Returns the type fingerprint a linked block's record holds (what kind of object it
    /// names).
    pub(crate) fn link_fingerprint(&self) -> Result<u64> {
        self.obj.link_fingerprint(Self::LINK_AT)
    }

    /// Returns the block's object reference.
    pub(crate) fn object(&self) -> &ObjectRef {
        &self.obj
    }

    /// Re-attaches a block from its token.
    pub(crate) fn attach(token: &ObjectToken) -> Result<Self> {
        let obj = ObjectRef::attach(token, K::FINGERPRINT, K::NAME)?;
        let align = usize::try_from(K::ALIGN).unwrap_or(usize::MAX);
        if obj.len() < byte_len(K::WORDS) || obj.ptr().align_offset(align) != 0 {
            return Err(Error::CorruptObject {
                reason: "synchronization block too small or misaligned",
            });
        }
        Ok(Block {
            obj,
            _kind: PhantomData,
        })
    }

    /// Returns the block's words.
    #[inline(always)]
    pub(crate) fn words(&self) -> &[AtomicU32] {
        let ptr = self.obj.ptr().cast::<AtomicU32>();
        // SAFETY: see the module's `# Safety`: the block holds at least `K::WORDS` 4-byte,
        // 4-aligned words (`AtomicU32` has the size and alignment of `u32`, std docs), lives
        // as long as `self.obj`, is only accessed atomically, and every bit pattern is a
        // valid `u32`.
        unsafe { core::slice::from_raw_parts(ptr, K::WORDS) }
    }

    /// Returns word `i` (a constant index below `K::WORDS` at every call site).
    #[inline(always)]
    pub(crate) fn word(&self, i: usize) -> &AtomicU32 {
        match self.words().get(i) {
            Some(w) => w,
            None => unreachable!("word index {i} past a {}-word block", K::WORDS),
        }
    }

    /// Returns words 0..4 as the robust lock word the block starts with.
    #[inline(always)]
    pub(crate) fn lock_word(&self) -> &LockWord {
        const {
            assert!(K::WORDS >= 4 && K::ALIGN >= LockWord::ALIGN);
        }
        let ptr = self.obj.ptr().cast::<LockWord>();
        // SAFETY: see the module's `# Safety`: the block holds at least 16 bytes (`K::WORDS >=
        // 4`, asserted above), is 8-aligned (`K::ALIGN`, checked on alloc and attach), lives as
        // long as `self.obj` and is only accessed atomically; `LockWord` is `repr(C)` of
        // atomics with the size, alignment and validity of their integers (std docs).
        unsafe { &*ptr }
    }

    /// Returns the token the block serializes to.
    pub(crate) fn token(&self) -> ObjectToken {
        self.obj.token()
    }

    /// Returns whether two blocks are the same object.
    pub(crate) fn same_as(&self, other: &Block<K>) -> bool {
        self.obj.same_object(&other.obj)
    }
}

//! The free-list protocol: a Treiber stack of block indices whose head carries an ABA tag.
//!
//! # State table (the head word)
//!
//! | bits   | name  | meaning                                           | changed by            |
//! |--------|-------|---------------------------------------------------|-----------------------|
//! | 0..32  | `idx` | index of the first free block (16-byte units); 0 = empty | push/pop (CAS) |
//! | 32..64 | `tag` | bumped by every successful push and pop           | push/pop (CAS)        |
//!
//! Each free block's `next` word holds the index of the block below it. A pop reads the head,
//! then the head block's `next`, and swings the head with one compare-exchange; because every
//! push and pop bumps the tag, a head that was popped and pushed back in between (ABA) no
//! longer compares equal, so a stale `next` is never installed.
//!
//! The algorithm is written over a head word and an accessor for `next` words, so the heap
//! runs it on words inside a segment and the loom model on a plain slice of loom atomics.

#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use crate::error::Result;
use crate::loom::{AtomicU64, Ordering};

const IDX_MASK: u64 = 0xffff_ffff;

/// Pops the first index, or `None` if the list is empty.
///
/// `next_of(idx)` returns the `next` word of block `idx` (after validating `idx`).
pub(crate) fn pop<'a>(
    list: &AtomicU64,
    next_of: impl Fn(u64) -> Result<&'a AtomicU64>,
) -> Result<Option<u64>> {
    let mut head = list.load(Ordering::Acquire);
    loop {
        let idx = head & IDX_MASK;
        if idx == 0 {
            return Ok(None);
        }
        let next = next_of(idx)?.load(Ordering::Relaxed);
        let tag = (head >> 32).wrapping_add(1) & IDX_MASK;
        let new = tag << 32 | (next & IDX_MASK);
        // Acquire on success: the popped block's header was written before its push.
        match list.compare_exchange_weak(head, new, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => return Ok(Some(idx)),
            Err(now) => head = now,
        }
    }
}

/// Pushes index `idx`, whose `next` word is `next`.
pub(crate) fn push(list: &AtomicU64, idx: u64, next: &AtomicU64) {
    let mut head = list.load(Ordering::Relaxed);
    loop {
        next.store(head & IDX_MASK, Ordering::Relaxed);
        let tag = (head >> 32).wrapping_add(1) & IDX_MASK;
        // Release: the `next` link and the freed header are visible to the popper.
        match list.compare_exchange_weak(
            head,
            tag << 32 | (idx & IDX_MASK),
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

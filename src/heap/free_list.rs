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

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    use super::*;
    use crate::error::Error;

    fn next_of(words: &[AtomicU64], idx: u64) -> Result<&AtomicU64> {
        words
            .get(usize::try_from(idx).unwrap_or(usize::MAX))
            .ok_or(Error::CorruptObject {
                reason: "index out of range",
            })
    }

    /// Single-threaded protocol check (also run under miri): LIFO order, tags bumped, and a
    /// corrupt link is an error, not a wild access.
    #[test]
    fn push_pop_is_lifo_and_bumps_the_tag() {
        let head = AtomicU64::new(0);
        let next: Vec<AtomicU64> = (0..4).map(|_| AtomicU64::new(0)).collect();
        for i in 1..4u8 {
            push(&head, u64::from(i), &next[usize::from(i)]);
        }
        assert_eq!(head.load(Ordering::Relaxed) >> 32, 3);
        let popped: Vec<_> = (0..3)
            .map(|_| {
                pop(&head, |i| next_of(&next, i))
                    .expect("valid")
                    .expect("nonempty")
            })
            .collect();
        assert_eq!(popped, [3, 2, 1]);
        assert_eq!(pop(&head, |i| next_of(&next, i)).expect("valid"), None);
        assert_eq!(head.load(Ordering::Relaxed) >> 32, 6);
        head.store(99, Ordering::Relaxed);
        assert!(pop(&head, |i| next_of(&next, i)).is_err());
    }
}

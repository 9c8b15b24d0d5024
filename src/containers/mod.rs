//! Shared containers in the heap: [`Dict`], [`List`] and [`Slot`], used directly by every
//! process that maps their segment, with no server in the path.
//!
//! # What this layer owns
//!
//! A container is a header block, a robust [`Lock`](crate::Lock), a root block (a table of
//! words, or for a `Slot` one entry) and entry blocks (encoded keys and values, immutable once
//! published). Every handle counts itself in the header; the last one frees everything the
//! root reaches. `store` is the one place that allocates, reads and frees those blocks and
//! takes the lock; `protocol` is the update protocol every mutation follows.
//!
//! # Invariants (while nobody holds the lock)
//!
//! - Every block the root reaches is live; no entry is reachable from two words.
//! - Entries are never written after their reference is published.
//! - Every entry a container allocated is reachable from the root, or freed, or named by an
//!   armed intent record (which the next lock holder resolves).
//!
//! # When a process dies at any line
//!
//! Outside a mutation nothing is at stake. Inside one, the intent record tells the next lock
//! holder (which learns of the death from the lock's owner-died report, handled inside every
//! operation) whether the one published word changed: if so it finishes the frees, if not it
//! frees what was prepared (the state table is in `protocol`'s docs). Then the container
//! recomputes derived state (a dictionary's counts). The caller is not told: the container is
//! whole. A block a mutation allocates is named in the intent's `FRESH` word by the heap
//! transaction that allocates it, so a death before the intent is armed loses nothing (the
//! next holder frees it). What can leak is one block per death: the second block of a
//! mutation that prepares two (a list insert's table copy, armed before it is filled, so the
//! window is a few instructions), or the block the heap itself was allocating or freeing at
//! that instant (the heap's own bound).
//!
//! A process killed while freeing the contents as the last handle leaks them (nobody can
//! reach them any more). A handle inherited through `fork` is not counted, as with every
//! handle: the parent's handle keeps the container alive.

pub(crate) mod dict;
pub(crate) mod list;
pub(crate) mod protocol;
pub(crate) mod slot;
pub(crate) mod store;

#[cfg(all(test, not(shmproc_loom)))]
mod crash_tests;
#[cfg(all(test, shmproc_loom))]
mod loom_tests;

pub use dict::{Dict, DictGuard};
pub use list::{List, ListGuard};
pub use slot::{Slot, SlotGuard};

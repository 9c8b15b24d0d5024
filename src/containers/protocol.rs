//! The update protocol: every mutation replaces one published word, under an intent record.
//!
//! A mutation prepares everything new where nobody can see it (an entry blob, a table copy,
//! the word past a list's end), writes an *intent* into the header, publishes the one word
//! `W` that makes the change visible, frees what the change made unreachable, and clears the
//! intent. All of it runs under the container's lock. If the holder dies, the next holder
//! (told by the lock's owner-died report) resolves the intent before doing anything else:
//! `W == new` means the change was published, so the frees are finished (`commit`); otherwise
//! it was not, so what was prepared is freed (`rollback`).
//!
//! # Intent words (header words 8–15)
//!
//! | word | name      | meaning                                                         |
//! |------|-----------|-----------------------------------------------------------------|
//! | 0    | `STATE`   | 0 = no intent; 1 = armed (stored last, Release)                 |
//! | 1    | `OP`      | `SET`, `LEN`, `SWAP` or `CLEAR` (below)                          |
//! | 2    | `W_INDEX` | which word is `W`: `ROOT_W` = the header's root, else a word of the current table |
//! | 3, 4 | `OLD`, `NEW` | `W`'s value before and after                                 |
//! | 5, 6 | `A`, `B`  | an entry to free on commit (`A`) and on rollback (`B`); 0 = none |
//! | 7    | `FRESH`   | a block allocated for the mutation and not yet named by an armed intent; 0 = none |
//!
//! | op      | `W`                   | commit frees                         | rollback frees  |
//! |---------|-----------------------|--------------------------------------|-----------------|
//! | `SET`   | a slot / element / root word: entry `OLD` → entry `NEW` (or tombstone) | `A` (the old entry) | `B` (the new entry) |
//! | `LEN`   | a list's length word  | entries at `[NEW, OLD)` if it shrank | `B` (a pushed entry) |
//! | `SWAP`  | the root: table `OLD` → table `NEW` | table `OLD` (not its entries), `A` | table `NEW`, `B` |
//! | `CLEAR` | the root: table `OLD` → empty table `NEW` | table `OLD` and every entry in it | table `NEW` |
//!
//! # States of one mutation, and what a death in each leaves
//!
//! | step | done so far                      | the next holder finds | and does                   |
//! |------|----------------------------------|-----------------------|----------------------------|
//! | 0    | a block allocated and named in `FRESH` (one heap transaction) | `STATE` 0, `FRESH` set | frees `FRESH` |
//! | 1    | other new blocks allocated       | `STATE` 0             | frees `FRESH` (≤ the others leak) |
//! | 2    | intent armed, then `FRESH` cleared | `W == OLD`          | rollback                   |
//! | 3    | `W` published                    | `W == NEW`            | commit                     |
//! | 4    | some or all frees done           | `W == NEW`            | commit (a block already freed has a new generation and is skipped) |
//! | 5    | `FRESH` and the intent cleared   | `STATE` 0, `FRESH` 0  | nothing                    |
//!
//! A new value of `W` is always distinct from the old (a fresh block's reference carries its
//! generation; lengths differ), so `W == NEW` exactly when step 3 happened. Derived state
//! (a dictionary's counts) is recomputed by the container after every owner death.
//!
//! `FRESH` is written by the heap, in the very transaction that allocates the block (`heap`'s
//! `alloc_named`), so a death inside the allocation leaves the block either unallocated or
//! named there. While `STATE` is 0, `FRESH` never names a published block: a prepared block
//! is published only after the intent naming it is armed, arming clears `FRESH` after `STATE`
//! is 1, and clearing the intent clears `FRESH` before `STATE` is 0. So whoever takes the lock
//! and finds `STATE` 0 and `FRESH` set frees that block (a block freed already carries a new
//! generation and is skipped). A mutation that prepares two blocks (a list insert that grows
//! its table) names the first in `FRESH`; the second may leak, as in step 1. After the
//! holder's death the heap's own record is resolved first, so `FRESH` is read only once every
//! heap transaction of the dead holder has happened or never will.
//!
//! # Orderings
//!
//! Everything runs under the container's lock, so the lock's Acquire/Release orders the words
//! for live processes. The Release stores of `STATE` and of `W` keep program order for a
//! process killed between instructions: its stores become visible as a prefix of its program,
//! so the intent is complete before `STATE` is 1, and it is armed before `W` changes.

use super::store::{Core, ROOT};
use crate::error::{Error, Result};
use crate::loom::{AtomicU64, Ordering};
use crate::sync::LockGuard;

const STATE: usize = 0;
const OP: usize = 1;
const W_INDEX: usize = 2;
const OLD: usize = 3;
const NEW: usize = 4;
const A: usize = 5;
const B: usize = 6;
/// The word that names a block prepared before the intent is armed (module docs).
pub(crate) const FRESH: usize = 7;
/// Number of intent words.
pub(crate) const WORDS: usize = 8;

/// `W_INDEX` naming the header's root word.
pub(crate) const ROOT_W: u64 = u64::MAX;

/// The kinds of mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Op {
    /// Replace one reference word (a slot, an element, the root of a `Slot`).
    Set = 1,
    /// Change a list's length word.
    Len = 2,
    /// Replace the root table by a copy (entries move, they are not copied).
    Swap = 3,
    /// Replace a dictionary's root table by an empty one and free every entry of the old.
    Clear = 4,
}

/// An intent record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Intent {
    pub(crate) op: Op,
    pub(crate) w_index: u64,
    pub(crate) old: u64,
    pub(crate) new: u64,
    pub(crate) a: u64,
    pub(crate) b: u64,
}

/// What commit and rollback act on: the words and blocks of one container.
pub(crate) trait Blocks {
    /// Returns word `W` of an intent (`ROOT_W` or a word of the current root table).
    fn w(&self, w_index: u64) -> Result<&AtomicU64>;
    /// Frees an entry (0 and the tombstone are no-ops; a freed one is skipped).
    fn free_entry(&self, r: u64) -> Result<()>;
    /// Frees a table, not its entries (a freed one is skipped).
    fn free_table(&self, r: u64) -> Result<()>;
    /// Frees the entries at list positions `[from, to)` of the current root table.
    fn free_list_range(&self, from: u64, to: u64) -> Result<()>;
    /// Frees every entry a dictionary table names (a freed table is skipped).
    fn free_dict_entries(&self, table: u64) -> Result<()>;
    /// Frees the block `FRESH` names, an entry or a table (a freed one is skipped).
    fn free_prepared(&self, r: u64) -> Result<()>;
}

#[cfg(test)]
thread_local! {
    /// Test hook: the number of crash points to pass before a simulated death (0 = never).
    pub(crate) static CRASH_AFTER: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A point where the unit tests simulate the holder's death (a panic: the lock is released
/// with the intent still armed, which the next holder resolves as after an owner death).
#[inline(always)]
pub(crate) fn crash_point() {
    #[cfg(test)]
    CRASH_AFTER.with(|c| match c.get() {
        0 => {}
        1 => {
            c.set(0);
            panic!("simulated death at a crash point");
        }
        n => c.set(n - 1),
    });
}

/// Writes the intent record and arms it.
pub(crate) fn arm(words: &[AtomicU64], i: &Intent) {
    words[OP].store(i.op as u64, Ordering::Relaxed);
    words[W_INDEX].store(i.w_index, Ordering::Relaxed);
    words[OLD].store(i.old, Ordering::Relaxed);
    words[NEW].store(i.new, Ordering::Relaxed);
    words[A].store(i.a, Ordering::Relaxed);
    words[B].store(i.b, Ordering::Relaxed);
    // Release: the fields above precede the arming in every process's view (module docs).
    words[STATE].store(1, Ordering::Release);
    crash_point();
    // Release: the intent names the prepared block before `FRESH` stops naming it.
    words[FRESH].store(0, Ordering::Release);
}

/// Publishes `W`'s new value.
pub(crate) fn publish(w: &AtomicU64, new: u64) {
    // Release: the intent and the prepared blocks precede the publication.
    w.store(new, Ordering::Release);
    crash_point();
}

/// Clears the intent record.
pub(crate) fn clear(words: &[AtomicU64]) {
    crash_point();
    // Relaxed: ordered before the disarming by its Release store.
    words[FRESH].store(0, Ordering::Relaxed);
    // Release: the frees precede the clearing.
    words[STATE].store(0, Ordering::Release);
}

/// Returns whether a mutation left work for the next holder: an armed intent, or a block
/// named in `FRESH`.
pub(crate) fn pending(words: &[AtomicU64]) -> bool {
    // Acquire: pairs with the Release stores of `arm` and `clear`.
    words[STATE].load(Ordering::Acquire) != 0 || words[FRESH].load(Ordering::Acquire) != 0
}

/// Returns the block `FRESH` names (0 = none); only for the lock holder.
pub(crate) fn fresh(words: &[AtomicU64]) -> u64 {
    // Relaxed: written only by the lock's holders (and the heap transactions run for them,
    // which complete before the allocation returns), ordered by the lock.
    words[FRESH].load(Ordering::Relaxed)
}

/// Forgets the block `FRESH` names if it is `r` (freed by the caller).
pub(crate) fn forget_fresh(words: &[AtomicU64], r: u64) {
    if fresh(words) == r {
        words[FRESH].store(0, Ordering::Relaxed);
    }
}

/// Reads an armed intent record.
pub(crate) fn read(words: &[AtomicU64]) -> Result<Option<Intent>> {
    if words[STATE].load(Ordering::Acquire) == 0 {
        return Ok(None);
    }
    let op = match words[OP].load(Ordering::Relaxed) {
        1 => Op::Set,
        2 => Op::Len,
        3 => Op::Swap,
        4 => Op::Clear,
        _ => {
            return Err(Error::CorruptObject {
                reason: "container intent record has an unknown operation",
            });
        }
    };
    Ok(Some(Intent {
        op,
        w_index: words[W_INDEX].load(Ordering::Relaxed),
        old: words[OLD].load(Ordering::Relaxed),
        new: words[NEW].load(Ordering::Relaxed),
        a: words[A].load(Ordering::Relaxed),
        b: words[B].load(Ordering::Relaxed),
    }))
}

/// Frees what a published mutation made unreachable.
pub(crate) fn commit(b: &impl Blocks, i: &Intent) -> Result<()> {
    match i.op {
        Op::Set => b.free_entry(i.a),
        Op::Len => {
            if i.new < i.old {
                b.free_list_range(i.new, i.old)?;
            }
            Ok(())
        }
        Op::Swap => {
            b.free_table(i.old)?;
            b.free_entry(i.a)
        }
        Op::Clear => {
            b.free_dict_entries(i.old)?;
            b.free_table(i.old)
        }
    }
}

/// Frees what an unpublished mutation prepared.
pub(crate) fn rollback(b: &impl Blocks, i: &Intent) -> Result<()> {
    match i.op {
        Op::Set | Op::Len => b.free_entry(i.b),
        Op::Swap => {
            b.free_table(i.new)?;
            b.free_entry(i.b)
        }
        Op::Clear => b.free_table(i.new),
    }
}

/// Runs a whole mutation: arm, publish, commit, clear. If `W` cannot be found (a corrupt
/// table) the prepared blocks are freed and nothing is published; an error while freeing (a
/// corrupt block) leaves the change published and the intent cleared.
pub(crate) fn apply(b: &impl Blocks, words: &[AtomicU64], i: &Intent) -> Result<()> {
    let w = match b.w(i.w_index) {
        Ok(w) => w,
        Err(e) => {
            let _ = rollback(b, i);
            return Err(e);
        }
    };
    arm(words, i);
    publish(w, i.new);
    let r = commit(b, i);
    clear(words);
    r
}

/// Runs a whole `SET` mutation replacing entry `old` by entry `new` in word `w_index`: commit
/// frees `old`, rollback frees `new` (see [`apply`]).
pub(crate) fn replace_entry(
    b: &impl Blocks,
    words: &[AtomicU64],
    w_index: u64,
    old: u64,
    new: u64,
) -> Result<()> {
    let intent = Intent {
        op: Op::Set,
        w_index,
        old,
        new,
        a: old,
        b: new,
    };
    apply(b, words, &intent)
}

/// Resolves an armed intent (commit if `W` was published, rollback if not); leaves it armed
/// (the caller clears it after repairing derived state). Returns whether it committed.
/// Without an armed intent, frees the block `FRESH` names, if any (never published).
pub(crate) fn resolve(b: &impl Blocks, words: &[AtomicU64]) -> Result<Option<bool>> {
    let Some(i) = read(words)? else {
        let r = fresh(words);
        if r != 0 {
            b.free_prepared(r)?;
        }
        return Ok(None);
    };
    // Acquire: pairs with `publish` (the lock orders it already; this is for clarity).
    let published = b.w(i.w_index)?.load(Ordering::Acquire) == i.new;
    if published {
        commit(b, &i)?;
    } else {
        rollback(b, &i)?;
    }
    Ok(Some(published))
}

/// The blocks of a real container, while its lock is held.
pub(crate) struct Held<'a, 'g> {
    pub(crate) core: &'a Core,
    pub(crate) guard: &'a LockGuard<'g>,
}

impl Blocks for Held<'_, '_> {
    fn w(&self, w_index: u64) -> Result<&AtomicU64> {
        if w_index == ROOT_W {
            return Ok(self.core.word(ROOT));
        }
        let (_, words) = self.core.root_table(self.guard)?;
        usize::try_from(w_index)
            .ok()
            .and_then(|i| words.get(i))
            .ok_or(Error::CorruptObject {
                reason: "container intent names a word past its table",
            })
    }

    fn free_entry(&self, r: u64) -> Result<()> {
        self.core.free_entry(r)?;
        crash_point();
        Ok(())
    }

    fn free_table(&self, r: u64) -> Result<()> {
        self.core.free_table(r)?;
        crash_point();
        Ok(())
    }

    fn free_list_range(&self, from: u64, to: u64) -> Result<()> {
        let (_, words) = self.core.root_table(self.guard)?;
        for pos in from..to {
            let i = usize::try_from(pos).unwrap_or(usize::MAX).saturating_add(1);
            let Some(w) = words.get(i) else {
                return Err(Error::CorruptObject {
                    reason: "list length past its table",
                });
            };
            self.core.free_entry(w.load(Ordering::Relaxed))?;
            crash_point();
        }
        Ok(())
    }

    fn free_dict_entries(&self, table: u64) -> Result<()> {
        let words = match self.core.table(self.guard, table) {
            Ok(w) => w,
            // Freed already: its entries were freed before it.
            Err(Error::ObjectGone) => return Ok(()),
            Err(e) => return Err(e),
        };
        for slot in words.chunks_exact(2) {
            self.core.free_entry(slot[0].load(Ordering::Relaxed))?;
            crash_point();
        }
        Ok(())
    }

    fn free_prepared(&self, r: u64) -> Result<()> {
        self.core.free_prepared(r)?;
        crash_point();
        Ok(())
    }
}

/// Resolves the intent a dead holder left (see [`resolve`]).
pub(crate) fn recover(core: &Core, guard: &LockGuard<'_>) -> Result<()> {
    resolve(&Held { core, guard }, core.intent_words()).map(drop)
}

const _: () = assert!(WORDS == 8 && B < WORDS);

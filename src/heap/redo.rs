//! The heap's redo record: how a change made under the heap lock survives its maker's death.
//!
//! Every change to the heap's shared state (free lists, `top`, `used`, the block-start bitmap,
//! block headers and reference counts, holder slots and journal entries) is made by one
//! process at a time, under the heap lock (a robust lock word, `sync::raw`), as one
//! *transaction*: a list of at most [`CAPACITY`] stores of absolute values, all computed under
//! the lock from the state the lock protects. The transaction is executed in four steps:
//!
//! 1. write the stores (target, value) into the record's slots;
//! 2. write the commit word (`COMMITTED | n`): from here on the transaction has happened;
//! 3. perform the stores, in order;
//! 4. clear the commit word.
//!
//! A process killed at any instruction leaves the record in one of these states, which the
//! next taker of the heap lock (it learns of the death as `OwnerDied`) resolves before it
//! does anything else:
//!
//! | state at death             | commit word   | shared state                  | taker does          |
//! |----------------------------|---------------|-------------------------------|---------------------|
//! | before or during step 1    | `0`           | untouched                     | nothing             |
//! | after step 2, during 3     | `COMMITTED|n` | a prefix of the stores done   | performs all `n` stores again |
//! | after step 3               | `COMMITTED|n` | all stores done               | performs them again (no change) |
//! | after step 4               | `0`           | all stores done               | nothing             |
//!
//! Redoing is exact because every store writes an absolute value that was computed while no
//! other process could change the words involved (the lock was held, and it was not taken
//! over before the record was resolved), so performing a store twice, or a prefix of them and
//! then all of them, ends in the same state as performing them once. A taker that dies while
//! redoing leaves the commit word set, and its own taker redoes again.
//!
//! Side effects that are not stores (giving a freed large block's pages back, zeroing a fresh
//! journal chunk) happen under the lock *before* step 1, and only to memory that no live
//! handle can reach; done without the transaction that follows they change nothing anybody
//! reads.
//!
//! The record's slots are shared memory, so a taker checks every target before performing
//! any store: inside the segment, aligned for its width, outside the segment header, the lock
//! and the record itself. A record that fails is [`Error::CorruptHeap`] and is dropped
//! without performing anything.

#![deny(clippy::arithmetic_side_effects, clippy::as_conversions)]

use crate::error::{Error, Result};
use crate::loom::{AtomicU64, Ordering};

/// Most stores in one transaction.
pub(crate) const CAPACITY: usize = 14;

/// High half of a set commit word; the low half is the number of stores.
const COMMITTED: u64 = 0x5244_4f00 << 32;

/// Bit 0 of a target: the store is 4 bytes wide (targets are at least 4-aligned, so the bit
/// is free).
const WIDTH32: u64 = 1;

/// Where stores land: the heap's segment, or a model's words.
pub(crate) trait Memory {
    /// Checks that a store to `target` (a byte offset, `WIDTH32` clear) of `wide` bytes is
    /// allowed.
    fn check(&self, target: u64, wide: bool) -> Result<()>;
    /// Stores `value` at `target` (already checked).
    fn store(&self, target: u64, value: u64, wide: bool) -> Result<()>;
}

/// The record's words in shared memory: the commit word, then `2 * CAPACITY` slot words.
pub(crate) struct Record<'a> {
    pub(crate) commit: &'a AtomicU64,
    pub(crate) slots: &'a [AtomicU64],
}

/// A transaction being built under the heap lock.
#[derive(Debug)]
pub(crate) struct Txn {
    n: usize,
    stores: [(u64, u64); CAPACITY],
}

fn full() -> Error {
    Error::CorruptHeap {
        reason: "heap transaction too large",
    }
}

impl Txn {
    pub(crate) fn new() -> Txn {
        Txn {
            n: 0,
            stores: [(0, 0); CAPACITY],
        }
    }

    fn push(&mut self, target: u64, value: u64) -> Result<()> {
        let slot = self.stores.get_mut(self.n).ok_or_else(full)?;
        *slot = (target, value);
        self.n = self.n.checked_add(1).ok_or_else(full)?;
        Ok(())
    }

    /// Adds an 8-byte store.
    pub(crate) fn set64(&mut self, target: u64, value: u64) -> Result<()> {
        self.push(target, value)
    }

    /// Adds a 4-byte store.
    pub(crate) fn set32(&mut self, target: u64, value: u32) -> Result<()> {
        self.push(target | WIDTH32, u64::from(value))
    }

    /// Returns the value this transaction stores at `target` (8 bytes wide), if it does.
    pub(crate) fn pending(&self, target: u64) -> Option<u64> {
        self.stores
            .iter()
            .take(self.n)
            .rev()
            .find(|(t, _)| *t == target)
            .map(|&(_, v)| v)
    }

    /// Executes the transaction (steps 1 to 4 of the module docs). The caller holds the lock.
    pub(crate) fn commit(&self, rec: &Record<'_>, mem: &impl Memory) -> Result<()> {
        let stores = self.stores.get(..self.n).unwrap_or(&[]);
        if stores.is_empty() {
            return Ok(());
        }
        for &(target, _) in stores {
            mem.check(target & !WIDTH32, target & WIDTH32 != 0)?;
        }
        for (&(target, value), slot) in stores.iter().zip(rec.slots.chunks_exact(2)) {
            if let [t, v] = slot {
                // Relaxed: the record is read only by a later holder of the lock, which
                // acquires it after this process's last write (or, after a death, by the
                // takeover CAS), and only after the commit word's Release store below.
                t.store(target, Ordering::Relaxed);
                // Relaxed: as above.
                v.store(value, Ordering::Relaxed);
            }
        }
        let n = u64::try_from(self.n).map_err(|_| full())?;
        // Release: the slots are written before the commit word says they are complete.
        rec.commit.store(COMMITTED | n, Ordering::Release);
        for &(target, value) in stores {
            mem.store(target & !WIDTH32, value, target & WIDTH32 != 0)?;
        }
        // Release: the stores above happen before the record reads as resolved.
        rec.commit.store(0, Ordering::Release);
        Ok(())
    }

    /// Executes at most `limit` shared-memory writes of the transaction, in the order
    /// [`commit`](Txn::commit) makes them; returns whether it completed. A `limit` below the
    /// full count models a process killed after that many writes (loom models, unit tests).
    #[cfg(test)]
    pub(crate) fn commit_steps(
        &self,
        rec: &Record<'_>,
        mem: &impl Memory,
        limit: usize,
    ) -> Result<bool> {
        let stores = self.stores.get(..self.n).unwrap_or(&[]);
        for &(target, _) in stores {
            mem.check(target & !WIDTH32, target & WIDTH32 != 0)?;
        }
        let mut budget = limit;
        let mut step = || match budget.checked_sub(1) {
            Some(b) => {
                budget = b;
                true
            }
            None => false,
        };
        for (&(target, value), slot) in stores.iter().zip(rec.slots.chunks_exact(2)) {
            if let [t, v] = slot {
                if !step() {
                    return Ok(false);
                }
                t.store(target, Ordering::Relaxed);
                if !step() {
                    return Ok(false);
                }
                v.store(value, Ordering::Relaxed);
            }
        }
        if !step() {
            return Ok(false);
        }
        let n = u64::try_from(self.n).map_err(|_| full())?;
        rec.commit.store(COMMITTED | n, Ordering::Release);
        for &(target, value) in stores {
            if !step() {
                return Ok(false);
            }
            mem.store(target & !WIDTH32, value, target & WIDTH32 != 0)?;
        }
        if !step() {
            return Ok(false);
        }
        rec.commit.store(0, Ordering::Release);
        Ok(true)
    }
}

/// Resolves the record a dead holder of the lock left (the caller now holds the lock):
/// redoes a committed transaction, ignores an uncommitted one. Returns whether it redid.
///
/// # Errors
/// [`Error::CorruptHeap`] if the commit word or a target is not one a transaction writes
/// (nothing is stored then, and the record is cleared).
pub(crate) fn recover(rec: &Record<'_>, mem: &impl Memory) -> Result<bool> {
    // Acquire: the dead holder's slot writes happen before its commit word.
    let commit = rec.commit.load(Ordering::Acquire);
    if commit == 0 {
        return Ok(false);
    }
    let n = usize::try_from(commit & 0xffff_ffff).unwrap_or(usize::MAX);
    let corrupt = Error::CorruptHeap {
        reason: "heap redo record damaged",
    };
    if commit & !0xffff_ffff != COMMITTED || n == 0 || n > CAPACITY {
        rec.commit.store(0, Ordering::Release);
        return Err(corrupt);
    }
    let mut txn = Txn::new();
    for i in 0..n {
        let at = i.checked_mul(2).ok_or_else(full)?;
        let (Some(t), Some(v)) = (rec.slots.get(at), rec.slots.get(at.saturating_add(1))) else {
            return Err(full());
        };
        // Relaxed: ordered after the commit word by its Acquire load.
        txn.push(t.load(Ordering::Relaxed), v.load(Ordering::Relaxed))?;
    }
    for &(target, _) in txn.stores.iter().take(txn.n) {
        if mem.check(target & !WIDTH32, target & WIDTH32 != 0).is_err() {
            rec.commit.store(0, Ordering::Release);
            return Err(corrupt);
        }
    }
    for &(target, value) in txn.stores.iter().take(txn.n) {
        mem.store(target & !WIDTH32, value, target & WIDTH32 != 0)?;
    }
    // Release: as in `commit_steps`.
    rec.commit.store(0, Ordering::Release);
    Ok(true)
}

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::arithmetic_side_effects,
        clippy::as_conversions
    )]

    use super::*;

    struct Words(Vec<AtomicU64>);

    impl Memory for Words {
        fn check(&self, target: u64, wide: bool) -> Result<()> {
            if wide || !target.is_multiple_of(8) || target / 8 >= self.0.len() as u64 {
                return Err(Error::CorruptHeap { reason: "test" });
            }
            Ok(())
        }

        fn store(&self, target: u64, value: u64, _wide: bool) -> Result<()> {
            self.0[(target / 8) as usize].store(value, Ordering::Relaxed);
            Ok(())
        }
    }

    fn words(v: &[u64]) -> Words {
        Words(v.iter().map(|&x| AtomicU64::new(x)).collect())
    }

    fn values(w: &Words) -> Vec<u64> {
        w.0.iter().map(|x| x.load(Ordering::Relaxed)).collect()
    }

    /// A maker killed after any number of writes leaves a state that recovery turns into
    /// either the state before (uncommitted) or the state after (committed), never between;
    /// recovering twice changes nothing more. Also run under miri.
    #[test]
    fn a_death_after_any_write_resolves_to_before_or_after() {
        let before = [5, 6, 7, 8];
        let after = [50, 6, 70, 80];
        let mut txn = Txn::new();
        txn.set64(0, 50).unwrap();
        txn.set64(16, 70).unwrap();
        txn.set64(24, 80).unwrap();
        // 3 stores: 6 slot writes, the commit word, 3 stores, the clear.
        for k in 0..=11 {
            let mem = words(&before);
            let commit = AtomicU64::new(0);
            let slots: Vec<AtomicU64> = (0..CAPACITY * 2).map(|_| AtomicU64::new(0)).collect();
            let rec = Record {
                commit: &commit,
                slots: &slots,
            };
            let done = txn.commit_steps(&rec, &mem, k).unwrap();
            assert_eq!(done, k == 11, "after {k} writes");
            recover(&rec, &mem).unwrap();
            recover(&rec, &mem).unwrap();
            let expected: &[u64] = if k >= 7 { &after } else { &before };
            assert_eq!(values(&mem), expected, "death after {k} writes");
            assert_eq!(commit.load(Ordering::Relaxed), 0);
        }
    }

    /// A damaged record (bad commit word, a target outside the memory) stores nothing.
    #[test]
    fn a_damaged_record_stores_nothing() {
        let mem = words(&[1, 2]);
        let commit = AtomicU64::new(COMMITTED | 2);
        let slots: Vec<AtomicU64> = (0..CAPACITY * 2).map(|_| AtomicU64::new(0)).collect();
        slots[0].store(0, Ordering::Relaxed);
        slots[1].store(9, Ordering::Relaxed);
        slots[2].store(800, Ordering::Relaxed);
        slots[3].store(9, Ordering::Relaxed);
        let rec = Record {
            commit: &commit,
            slots: &slots,
        };
        assert!(matches!(
            recover(&rec, &mem),
            Err(Error::CorruptHeap { .. })
        ));
        assert_eq!(values(&mem), [1, 2]);
        commit.store(0xdead << 32 | 1, Ordering::Relaxed);
        assert!(recover(&rec, &mem).is_err());
        assert_eq!(commit.load(Ordering::Relaxed), 0);
    }
}

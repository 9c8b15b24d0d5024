//! Loom models of the heap's crash-exact step (run with `scripts/loom`): a transaction under
//! the heap lock whose maker dies after any number of its writes, resolved by the next taker
//! (`redo`), while another thread of the same process drops a handle of a shared entry.
//!
//! The model's memory is a slice of loom atomics standing for the words a release touches:
//! the block's shared count, a dead process's journal entry, `used`, and a free-list head.
//! The heap lock is modelled by a word whose states are free, held and "held by a dead
//! owner" (what the robust lock's takeover sees); the redo record is the real one, run by
//! the real `Txn::commit_steps` and `redo::recover`.

use super::redo::{self, Memory, Record, Txn};
use crate::error::{Error, Result};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;

const COUNT: u64 = 0;
const ENTRY: u64 = 8;
const USED: u64 = 16;
const HEAD: u64 = 24;
const WORDS: usize = 4;

const FREE: u32 = 0;
const HELD: u32 = 1;
const DEAD: u32 = 2;

struct Model {
    lock: AtomicU32,
    words: Vec<AtomicU64>,
    commit: AtomicU64,
    slots: Vec<AtomicU64>,
}

impl Memory for Model {
    fn check(&self, target: u64, wide: bool) -> Result<()> {
        if wide || target % 8 != 0 || target / 8 >= WORDS as u64 {
            return Err(Error::CorruptHeap { reason: "model" });
        }
        Ok(())
    }

    fn store(&self, target: u64, value: u64, _wide: bool) -> Result<()> {
        self.words[(target / 8) as usize].store(value, Ordering::Release);
        Ok(())
    }
}

impl Model {
    /// A block with shared count 2 (a dead process's entry and a live structure), 64 bytes
    /// used, an empty free list.
    fn new() -> Model {
        let m = Model {
            lock: AtomicU32::new(FREE),
            words: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
            commit: AtomicU64::new(0),
            slots: (0..redo::CAPACITY * 2).map(|_| AtomicU64::new(0)).collect(),
        };
        m.words[0].store(2, Ordering::Relaxed);
        m.words[1].store(1, Ordering::Relaxed);
        m.words[2].store(64, Ordering::Relaxed);
        m
    }

    fn record(&self) -> Record<'_> {
        Record {
            commit: &self.commit,
            slots: &self.slots,
        }
    }

    fn word(&self, off: u64) -> u64 {
        self.words[(off / 8) as usize].load(Ordering::Acquire)
    }

    /// Takes the lock; a dead owner's lock is taken over and its record resolved.
    fn lock(&self) {
        loop {
            match self
                .lock
                .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(DEAD) => {
                    if self
                        .lock
                        .compare_exchange(DEAD, HELD, Ordering::AcqRel, Ordering::Relaxed)
                        .is_ok()
                    {
                        break;
                    }
                }
                Err(_) => loom::thread::yield_now(),
            }
        }
        if self.commit.load(Ordering::Acquire) != 0 {
            redo::recover(&self.record(), self).expect("valid record");
        }
    }

    fn unlock(&self) {
        self.lock.store(FREE, Ordering::Release);
    }

    /// Builds, under the lock, the release of a reference held by `entry` (or by the
    /// structure if `entry` is false): the count drops; at 0 the block goes on the free list
    /// and `used` drops.
    fn release_txn(&self, entry: bool) -> Option<Txn> {
        let mut txn = Txn::new();
        if entry {
            if self.word(ENTRY) == 0 {
                return None;
            }
            txn.set64(ENTRY, 0).expect("room");
        }
        let count = self.word(COUNT);
        assert!(count > 0, "a reference released twice");
        txn.set64(COUNT, count - 1).expect("room");
        if count == 1 {
            txn.set64(HEAD, 1).expect("room");
            txn.set64(USED, self.word(USED) - 64).expect("room");
        }
        Some(txn)
    }
}

/// A process that releases its entry dies after `k` writes (for every `k`), while a live one
/// drops the structure's reference; then a releaser of the dead holder runs. Whatever the
/// interleaving, the block ends freed exactly once: count 0, entry clear, on the list, `used`
/// back to 0.
#[test]
fn release_survives_a_death_after_any_write() {
    for k in 0..12usize {
        loom::model(move || {
            let m = Arc::new(Model::new());
            let dying = {
                let m = Arc::clone(&m);
                loom::thread::spawn(move || {
                    m.lock();
                    if let Some(txn) = m.release_txn(true) {
                        let done = txn.commit_steps(&m.record(), &*m, k).expect("commit");
                        if done {
                            m.unlock();
                            return;
                        }
                    }
                    // Killed while holding the lock: the takeover finds the owner dead.
                    m.lock.store(DEAD, Ordering::Release);
                })
            };
            let live = {
                let m = Arc::clone(&m);
                loom::thread::spawn(move || {
                    m.lock();
                    let txn = m.release_txn(false).expect("structure reference");
                    txn.commit(&m.record(), &*m).expect("commit");
                    m.unlock();
                })
            };
            dying.join().expect("dying");
            live.join().expect("live");
            // The releaser of the dead holder: resolves the record first (by taking the
            // lock), then releases the entry if it still holds one.
            m.lock();
            if let Some(txn) = m.release_txn(true) {
                txn.commit(&m.record(), &*m).expect("commit");
            }
            m.unlock();
            assert_eq!(m.word(COUNT), 0, "count (death after {k} writes)");
            assert_eq!(m.word(ENTRY), 0, "entry (death after {k} writes)");
            assert_eq!(m.word(HEAD), 1, "free list (death after {k} writes)");
            assert_eq!(m.word(USED), 0, "used (death after {k} writes)");
            assert_eq!(m.commit.load(Ordering::Relaxed), 0, "record resolved");
        });
    }
}

/// A redo after a death during the redo itself (the taker dies too) ends in the same state.
#[test]
fn recovery_is_idempotent() {
    loom::model(|| {
        let m = Model::new();
        m.lock();
        let txn = m.release_txn(true).expect("entry");
        assert!(!txn.commit_steps(&m.record(), &m, 6).expect("commit"));
        // Partly applied, then redone twice.
        redo::recover(&m.record(), &m).expect("recover");
        redo::recover(&m.record(), &m).expect("recover again");
        assert_eq!((m.word(COUNT), m.word(ENTRY), m.word(USED)), (1, 0, 64));
    });
}

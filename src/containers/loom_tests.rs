//! Loom models of the containers' update protocol (run with `scripts/loom`).
//!
//! The protocol in `protocol` runs here on loom atomics: a table of reference words, blocks
//! with a live flag, and a lock word whose holder may "die" after any step of its mutation
//! (it stops and hands the lock over with a death notice, as the robust lock reports
//! `OwnerDied`). A second thread takes the lock, resolves the intent and mutates in turn.
//! Afterwards every block is reachable exactly once or freed, never both, and nothing is lost:
//! the block a mutation prepares is named in `FRESH` as it is allocated (the heap's allocation
//! transaction stores it there), so a death before the intent is armed loses nothing either.

use super::protocol::{self, Blocks, Intent, Op, ROOT_W};
use crate::error::{Error, Result};
use crate::loom::{AtomicU32, AtomicU64, Ordering};
use loom::sync::Arc;

const FREE: u32 = 0;
const HELD: u32 = 1;
const DEAD: u32 = 2;
/// Blocks 1..=4 are entries, 5 and 6 tables.
const BLOCKS: usize = 7;

struct Model {
    lock: AtomicU32,
    root: AtomicU64,
    tables: Vec<Vec<AtomicU64>>,
    live: Vec<AtomicU32>,
    intent: Vec<AtomicU64>,
}

impl Model {
    /// A model in which every block but `unused` is allocated.
    fn new(unused: usize) -> Model {
        let m = Model {
            lock: AtomicU32::new(FREE),
            root: AtomicU64::new(5),
            // Table 5 holds entries 1 and 3; table 6 is a spare copy target.
            tables: (0..BLOCKS)
                .map(|_| (0..2).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            live: (0..BLOCKS).map(|_| AtomicU32::new(1)).collect(),
            intent: (0..protocol::WORDS).map(|_| AtomicU64::new(0)).collect(),
        };
        m.live[unused].store(0, Ordering::Relaxed);
        m.tables[5][0].store(1, Ordering::Relaxed);
        m.tables[5][1].store(3, Ordering::Relaxed);
        m
    }

    fn free(&self, r: u64) {
        if r != 0 {
            // Swap: a block freed already is skipped (the heap sees a new generation).
            self.live[r as usize].swap(0, Ordering::Relaxed);
        }
    }

    fn reachable(&self) -> Vec<u64> {
        let root = self.root.load(Ordering::Acquire);
        let mut out = vec![root];
        out.extend(
            self.tables[root as usize]
                .iter()
                .map(|w| w.load(Ordering::Relaxed))
                .filter(|&r| r != 0),
        );
        out
    }
}

impl Blocks for Model {
    fn w(&self, w_index: u64) -> Result<&AtomicU64> {
        if w_index == ROOT_W {
            return Ok(&self.root);
        }
        let root = self.root.load(Ordering::Acquire) as usize;
        self.tables[root]
            .get(w_index as usize)
            .ok_or(Error::CorruptObject { reason: "index" })
    }
    fn free_entry(&self, r: u64) -> Result<()> {
        self.free(r);
        Ok(())
    }
    fn free_table(&self, r: u64) -> Result<()> {
        self.free(r);
        Ok(())
    }
    fn free_list_range(&self, _from: u64, _to: u64) -> Result<()> {
        unreachable!("not modelled")
    }
    fn free_dict_entries(&self, _table: u64) -> Result<()> {
        unreachable!("not modelled")
    }
    fn free_prepared(&self, r: u64) -> Result<()> {
        self.free(r);
        Ok(())
    }
}

/// Runs `intent` step by step, dying after `steps` steps (5 = completes). The prepared block
/// (`intent.new` for a swap, `intent.b` for a set) was allocated and named in `FRESH` first,
/// in one step, as the heap's allocation transaction does.
fn mutate(m: &Model, intent: &Intent, steps: u32, prepare: impl FnOnce(&Model)) -> bool {
    let w = m.w(intent.w_index).expect("word");
    let fresh = if intent.op == Op::Swap {
        intent.new
    } else {
        intent.b
    };
    // Relaxed: the heap's transaction is ordered by the heap lock, and the lock word's
    // Release hand-over below publishes it.
    m.intent[protocol::FRESH].store(fresh, Ordering::Relaxed);
    if steps == 0 {
        return false;
    }
    protocol::arm(&m.intent, intent);
    if steps == 1 {
        return false;
    }
    prepare(m);
    if steps == 2 {
        return false;
    }
    protocol::publish(w, intent.new);
    if steps == 3 {
        return false;
    }
    protocol::commit(m, intent).expect("commit");
    if steps == 4 {
        return false;
    }
    protocol::clear(&m.intent);
    true
}

fn acquire(m: &Model) {
    loop {
        let s = m.lock.load(Ordering::Relaxed);
        // Acquire: the previous holder's writes (its Release unlock, or the Release death
        // notice standing for the kernel's barrier at exit) are visible.
        if (s == FREE || s == DEAD)
            && m.lock
                .compare_exchange(s, HELD, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            if s == DEAD || protocol::pending(&m.intent) {
                protocol::resolve(m, &m.intent).expect("resolve");
                protocol::clear(&m.intent);
            }
            return;
        }
        loom::thread::yield_now();
    }
}

fn check(m: &Model, lost_ok: &[u64]) {
    let reach = m.reachable();
    for (i, r) in reach.iter().enumerate() {
        assert!(!reach[..i].contains(r), "block {r} reachable twice");
        assert_eq!(
            m.live[*r as usize].load(Ordering::Relaxed),
            1,
            "block {r} reachable but freed"
        );
    }
    for b in 1..BLOCKS as u64 {
        let live = m.live[b as usize].load(Ordering::Relaxed) == 1;
        if live && !reach.contains(&b) {
            assert!(lost_ok.contains(&b), "block {b} leaked");
        }
    }
}

/// A holder replacing entry 1 by entry 2 dies after each step in turn; another thread then
/// replaces entry 3 by entry 4 (both `SET`).
#[test]
fn loom_tests_set_with_death_at_every_step() {
    for steps in 0..=5 {
        loom::model(move || {
            let m = Arc::new(Model::new(6));
            let a = {
                let m = Arc::clone(&m);
                loom::thread::spawn(move || {
                    acquire(&m);
                    let i = Intent {
                        op: Op::Set,
                        w_index: 0,
                        old: 1,
                        new: 2,
                        a: 1,
                        b: 2,
                    };
                    let done = mutate(&m, &i, steps, |_| {});
                    m.lock
                        .store(if done { FREE } else { DEAD }, Ordering::Release);
                })
            };
            let b = {
                let m = Arc::clone(&m);
                loom::thread::spawn(move || {
                    acquire(&m);
                    let i = Intent {
                        op: Op::Set,
                        w_index: 1,
                        old: 3,
                        new: 4,
                        a: 3,
                        b: 4,
                    };
                    assert!(mutate(&m, &i, 5, |_| {}));
                    m.lock.store(FREE, Ordering::Release);
                })
            };
            a.join().expect("a");
            b.join().expect("b");
            acquire(&m);
            // Entry 2 was prepared before the intent named it, and named in `FRESH`: never
            // lost.
            check(&m, &[]);
            let w0 = m.tables[m.root.load(Ordering::Relaxed) as usize][0].load(Ordering::Relaxed);
            assert_eq!(
                w0,
                if steps >= 3 { 2 } else { 1 },
                "published iff step 3 ran"
            );
        });
    }
}

/// A holder swapping table 5 for a copy (table 6) dies after each step; the copy is filled
/// after arming. Another thread then sets a word of whichever table is current.
#[test]
fn loom_tests_swap_with_death_at_every_step() {
    for steps in 0..=5 {
        loom::model(move || {
            let m = Arc::new(Model::new(2));
            let a = {
                let m = Arc::clone(&m);
                loom::thread::spawn(move || {
                    acquire(&m);
                    let i = Intent {
                        op: Op::Swap,
                        w_index: ROOT_W,
                        old: 5,
                        new: 6,
                        a: 0,
                        b: 0,
                    };
                    // The copy reverses the two words (as `List::reverse`).
                    let done = mutate(&m, &i, steps, |m| {
                        let (w0, w1) = (&m.tables[5][0], &m.tables[5][1]);
                        m.tables[6][0].store(w1.load(Ordering::Relaxed), Ordering::Relaxed);
                        m.tables[6][1].store(w0.load(Ordering::Relaxed), Ordering::Relaxed);
                    });
                    m.lock
                        .store(if done { FREE } else { DEAD }, Ordering::Release);
                })
            };
            let b = {
                let m = Arc::clone(&m);
                loom::thread::spawn(move || {
                    acquire(&m);
                    let old = m.w(1).expect("word").load(Ordering::Relaxed);
                    let i = Intent {
                        op: Op::Set,
                        w_index: 1,
                        old,
                        new: 4,
                        a: old,
                        b: 4,
                    };
                    assert!(mutate(&m, &i, 5, |_| {}));
                    m.lock.store(FREE, Ordering::Release);
                })
            };
            a.join().expect("a");
            b.join().expect("b");
            acquire(&m);
            check(&m, &[]);
        });
    }
}

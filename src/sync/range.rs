//! The range table: exclusive claims on disjoint index ranges of one locked array.
//!
//! An `Array` keeps one [`RangeTable`] in its block, beside the [`Lock`] that guards it. A claim
//! on `[start, end)` occupies one of [`SLOTS`] slots; claims on disjoint ranges coexist, so
//! workers on disjoint slices of one array run at the same time, while a claim that overlaps a
//! held one waits for it. The whole-array lock (`Array::lock`, `get`, `set`, `to_vec`) waits
//! until no claim is held.
//!
//! # Why a table and not stripes
//!
//! Stripe locks (one lock per fixed chunk of elements) would make two workers whose slices
//! share a chunk wait for each other although their elements are disjoint, and would make the
//! cost of a claim grow with its length. A table of claimed ranges serializes only what truly
//! overlaps, costs the same for any length, and fits in a fixed header (`SLOTS` claims at once;
//! a claimant finding every slot held waits for one to be freed).
//!
//! # Layout
//!
//! | offset        | size | field                | written by                                    |
//! |---------------|------|----------------------|-----------------------------------------------|
//! | 0             | 4    | `mask`: bit i = slot i holds a claim | a claimant under the array lock (set); the holder or a taker (clear) |
//! | 4             | 4    | `mirror`: a copy of `mask` (fast-path check) | as `mask`, right after it |
//! | 8 + 40 i      | 16   | slot i's [`LockWord`]: held by the claim's thread | claimant, holder, taker |
//! | 24 + 40 i     | 8    | slot i's `start`     | a claimant under the array lock               |
//! | 32 + 40 i     | 8    | slot i's `end`       | a claimant under the array lock               |
//! | 40 + 40 i     | 4    | slot i's `check`: the check word of `start`/`end` | a claimant under the array lock |
//! | 44 + 40 i     | 4    | 0                    | nobody                                        |
//!
//! All-zero bytes are an empty table.
//!
//! # Protocol and invariants
//!
//! - **Claim** (under the array lock): read `mask`; if a set slot's range overlaps, wait (below);
//!   else take a clear slot's word (`try_lock_or_take_over`), write `start`/`end`, set its bit,
//!   release the array lock. **Release** (no array lock): clear the bit, then unlock the word.
//!   **Wait** (no array lock held): lock the conflicting slot's word (robust: a dead holder is
//!   found and taken over), unlock it, and claim again.
//! - (S) *A set bit's slot word is locked* (by the claim's holder or by a dead thread): a claim
//!   locks the word before setting the bit, a release clears the bit before unlocking, and a
//!   taker clears the bit before unlocking.
//! - `start`/`end` and their check word are written and read only under the array lock, so a
//!   scan sees whole ranges.
//! - `mirror` repeats `mask`: set right after it, cleared right after it. Whole-array access
//!   takes its fast path (no slot words read) only when both are 0; otherwise it scans.
//! - A slot may hold a claim when its bit is set *or* its word is locked; scans look at both,
//!   so a scribbled mask never frees a held claim's elements (a scribble would have to clear
//!   the same bit in `mask` and `mirror` to skip the scan). A slot whose range is empty or
//!   does not match its check word (scribbled, or its claimant died writing it) is taken to
//!   overlap every range, so a scribbled range is waited for, never granted twice.
//! - Bits are set only under the array lock, so a holder of the array lock that sees an empty
//!   mask keeps it empty. Whole-array access ([`lock_unclaimed`]) takes the lock; while the
//!   mask is not empty it releases the lock, waits on a set slot's word, and tries again. It
//!   must not wait holding the lock: the claim's holder may be taking a second, disjoint claim,
//!   which needs the lock (the two would wait for each other forever). So a steady stream of
//!   claims can keep whole-array access waiting, as readers can a writer.
//! - A claimant finding no free slot waits on a slot held by another thread, in short slices,
//!   looking again after each (the holder of any one slot may be waiting for the claimant);
//!   only when every slot is the claimant's own does it report a self-conflict.
//!
//! # Owner death
//!
//! A claim's holder that dies keeps its slot word locked; the robust wait of [`raw::lock`]
//! finds it dead (definite evidence of its process's death only, as for every lock: a guard
//! leaked by a thread that ends keeps its range while the process lives) and takes the slot
//! over; the taker
//! clears the bit and reports the dead thread (`OwnerDied`): the elements of that range may be
//! half-updated. A claimant that dies while claiming dies holding the array lock, which reports
//! it the same way; its slot word is then taken over by the next claim that picks the slot.
//!
//! # Orderings
//!
//! A release clears its bit with `Release` and unlocks with `Release`; a claimant reads `mask`
//! with `Acquire` (a claim that sees the bit cleared sees the elements written under it) or
//! acquires the slot word (`Acquire`); a holder of the array lock reads `mask` with `Acquire`.

use super::lock::{Lock, LockGuard};
use super::raw::{self, Acquired, LockWord};
use crate::error::OwnerDied;
use crate::loom::{AtomicU32, AtomicU64, Ordering, fence};
use crate::sys::Deadline;

/// How many claims one array can hold at once.
pub(crate) const SLOTS: usize = 16;

/// How long a claimant that found every slot held waits on one before looking again.
const FULL_TABLE_SLICE: std::time::Duration = std::time::Duration::from_millis(5);

/// One claim: the claiming thread holds `word`; `[start, end)` is the claimed range.
#[repr(C)]
#[derive(Debug)]
struct Slot {
    word: LockWord,
    start: AtomicU64,
    end: AtomicU64,
    check: AtomicU32,
    _pad: AtomicU32,
}

/// The range table (see the module's layout table); lives in shared memory.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct RangeTable {
    mask: AtomicU32,
    mirror: AtomicU32,
    slots: [Slot; SLOTS],
}

const _: () = assert!(SLOTS <= 32, "the mask has 32 bits");

/// The bits of `mask` that name slots; others (only a scribbled table has them) are ignored.
const SLOT_BITS: u32 = if SLOTS == 32 {
    u32::MAX
} else {
    (1 << SLOTS) - 1
};
// The layout table above (loom's model atomics are larger; no table lives in shared memory
// under loom).
#[cfg(not(shmproc_loom))]
const _: () = assert!(core::mem::size_of::<RangeTable>() == 8 + 40 * SLOTS);

impl RangeTable {
    /// Size in bytes of the table in shared memory.
    pub(crate) const SIZE: usize = core::mem::size_of::<RangeTable>();
    /// Alignment of the table in shared memory.
    pub(crate) const ALIGN: usize = core::mem::align_of::<RangeTable>();

    /// Returns an empty table (for tests; in shared memory, zeroed bytes are one).
    #[cfg(all(test, not(shmproc_loom)))]
    pub(crate) fn new() -> Self {
        RangeTable {
            mask: AtomicU32::new(0),
            mirror: AtomicU32::new(0),
            slots: core::array::from_fn(|_| Slot {
                word: LockWord::new(),
                start: AtomicU64::new(0),
                end: AtomicU64::new(0),
                check: AtomicU32::new(0),
                _pad: AtomicU32::new(0),
            }),
        }
    }
}

/// How long a claim may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait<'d> {
    /// Until the claim is granted.
    Forever,
    /// Until the deadline.
    Until(&'d Deadline),
    /// Not at all.
    Never,
}

/// How a claim went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Claim {
    /// The calling thread holds slot `slot`; `died` names a holder found dead on the way
    /// (of an overlapping claim or of the array lock).
    Held {
        /// The slot held.
        slot: usize,
        /// The dead holder's thread id, if one was found.
        died: Option<u32>,
    },
    /// Not granted in time (or, with [`Wait::Never`], at once).
    NotNow,
    /// The calling thread itself holds an overlapping claim: waiting would never end.
    SelfConflict,
}

/// Acquires the array lock as `wait` allows; `None` if it was not granted in time.
fn lock_main<'l>(lock: &'l Lock, wait: Wait<'_>, died: &mut Option<u32>) -> Option<LockGuard<'l>> {
    let got: Result<Option<LockGuard<'l>>, OwnerDied<LockGuard<'l>>> = match wait {
        Wait::Forever => lock.lock().map(Some),
        Wait::Until(d) => lock.lock_timeout(d.remaining()),
        Wait::Never => lock.try_lock(),
    };
    match got {
        Ok(g) => g,
        Err(e) => {
            *died = Some(e.tid());
            Some(e.into_inner())
        }
    }
}

/// The check word of slot `i` claiming `[start, end)`, kept beside them: a range whose check word does not match was scribbled (or its claimant died writing it).
fn check_of(i: usize, start: u64, end: u64) -> u32 {
    let x = (start ^ (i as u64).rotate_right(6)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ end.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
    let x = x ^ (x >> 29);
    // Truncation intended: the check word is 32 bits. Never 0, so a zeroed slot never checks.
    (x ^ (x >> 32)) as u32 | 1
}

/// The range slot `i` claims, or `None` if its words are not a claim's (scribbled, or a
/// claimant died writing them): such a slot is taken to overlap every range. Read under the
/// array lock.
fn range_of(slot: &Slot, i: usize) -> Option<(u64, u64)> {
    // Relaxed (all three): written only under the array lock, which the caller holds.
    let (start, end) = (
        slot.start.load(Ordering::Relaxed),
        slot.end.load(Ordering::Relaxed),
    );
    (start < end && slot.check.load(Ordering::Relaxed) == check_of(i, start, end))
        .then_some((start, end))
}

/// Whether slot `i` may hold a claim: its bit is set, or its word is locked (a release in
/// progress, a claimant that died claiming, or a claim whose bit was scribbled away). The
/// mask alone is not trusted: a cleared bit must not make a held claim's elements free.
fn busy(table: &RangeTable, mask: u32, i: usize) -> bool {
    mask & (1 << i) != 0 || table.slots.get(i).is_some_and(|s| raw::is_locked(&s.word))
}

/// Claims `[start, end)` (`start < end`) for the calling thread; `lock` is the array's lock.
pub(crate) fn claim(
    table: &RangeTable,
    lock: &Lock,
    start: u64,
    end: u64,
    wait: Wait<'_>,
) -> Claim {
    let mut died = None;
    loop {
        let Some(main) = lock_main(lock, wait, &mut died) else {
            return Claim::NotNow;
        };
        // Acquire: a release whose cleared bit we see published the elements it wrote.
        let mask = table.mask.load(Ordering::Acquire) & SLOT_BITS;
        let mut target = None;
        for (i, slot) in table.slots.iter().enumerate() {
            if busy(table, mask, i) && range_of(slot, i).is_none_or(|(s, e)| s < end && start < e) {
                target = Some(i);
                break;
            }
        }
        if target.is_none() {
            for (i, slot) in table.slots.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    continue;
                }
                // A clear bit with a locked word is a release in progress, or a claimant or
                // taker that died before setting or after clearing the bit (taken over here,
                // silently: it held no range).
                if raw::try_lock_or_take_over(&slot.word).is_none() {
                    target.get_or_insert(i);
                    continue;
                }
                // Relaxed: read only under the array lock.
                slot.start.store(start, Ordering::Relaxed);
                // Relaxed: as above.
                slot.end.store(end, Ordering::Relaxed);
                // Relaxed: as above.
                slot.check.store(check_of(i, start, end), Ordering::Relaxed);
                // Relaxed: bits are read under the array lock or with `Acquire` after its
                // release, which publishes this.
                table.mask.fetch_or(1 << i, Ordering::Relaxed);
                table.mirror.fetch_or(1 << i, Ordering::Relaxed);
                drop(main);
                // Acquire: as in `lock_unclaimed`, for the words of earlier overlapping claims
                // seen unlocked.
                fence(Ordering::Acquire);
                return Claim::Held { slot: i, died };
            }
        }
        // No overlapping claim but no free slot: wait for a slot held by another thread (its
        // holders are all different; one that waits for this thread must not stall it), in
        // short slices, looking again after each, so whichever slot frees first is taken.
        let full = target.is_none();
        let Some(i) = target
            .or_else(|| (0..SLOTS).find(|&i| !raw::held_by_current_thread(&table.slots[i].word)))
        else {
            // Every slot is a claim of this thread: none would ever be freed.
            return Claim::SelfConflict;
        };
        let slot = &table.slots[i];
        let mine = raw::held_by_current_thread(&slot.word);
        drop(main);
        if mine {
            return Claim::SelfConflict;
        }
        let slice = Deadline::after(FULL_TABLE_SLICE);
        let got = match wait {
            Wait::Forever if full => raw::lock(&slot.word, Some(&slice)),
            Wait::Forever => raw::lock(&slot.word, None),
            Wait::Until(d) if full => raw::lock(&slot.word, Some(&slice.min(*d))),
            Wait::Until(d) => raw::lock(&slot.word, Some(d)),
            Wait::Never => raw::try_lock_or_take_over(&slot.word).unwrap_or(Acquired::TimedOut),
        };
        match got {
            Acquired::TimedOut => {
                let passed = match wait {
                    Wait::Forever => false,
                    Wait::Until(d) => d.has_passed(),
                    Wait::Never => true,
                };
                if !full || passed {
                    return Claim::NotNow;
                }
            }
            Acquired::Clean => {
                end_stale_claim(table, i);
            }
            Acquired::OwnerDied(tid) => {
                if end_stale_claim(table, i) {
                    died = Some(tid);
                }
            }
        }
    }
}

/// Clears slot `i`'s bit and unlocks its word, which the caller acquired; returns whether the
/// bit was set. By (S) a set bit with a word the caller could acquire is a dead holder's claim
/// (or, if the holder released normally, the bit is clear already; a set bit beside a word that
/// was free is only a scribbled table's, and clearing it keeps waiters from spinning on it).
fn end_stale_claim(table: &RangeTable, i: usize) -> bool {
    // AcqRel: acquire the dead holder's writes; release to the next claimant that sees the
    // bit clear.
    let was = table.mask.fetch_and(!(1 << i), Ordering::AcqRel) & (1 << i) != 0;
    table.mirror.fetch_and(!(1 << i), Ordering::Relaxed);
    if let Some(slot) = table.slots.get(i) {
        raw::unlock(&slot.word);
    }
    was
}

/// Releases the claim on slot `slot`, held by the calling thread; does nothing if the slot's
/// word does not name the calling thread (a copy of a range guard dropped in a forked child).
pub(crate) fn release(table: &RangeTable, slot: usize) {
    if !raw::names_current_thread(&table.slots[slot].word) {
        return;
    }
    // Release: the next claimant or array-lock holder that sees the bit clear sees the
    // elements written under the claim.
    table.mask.fetch_and(!(1 << slot), Ordering::Release);
    table.mirror.fetch_and(!(1 << slot), Ordering::Relaxed);
    raw::unlock(&table.slots[slot].word);
}

/// Takes the array lock with no claim held: the whole array is the caller's while the guard
/// lives; also returns a dead holder (of the lock or of a claim) found on the way. The lock is
/// not held while waiting for a claim to end: its holder may be taking another, disjoint
/// claim, which needs the lock. A claim of the calling thread would never end: `Err(())` then.
pub(crate) fn lock_unclaimed<'l>(
    table: &RangeTable,
    lock: &'l Lock,
) -> Result<(LockGuard<'l>, Option<u32>), ()> {
    let mut died = None;
    loop {
        let Some(main) = lock_main(lock, Wait::Forever, &mut died) else {
            unreachable!("an unbounded wait ends only with the lock")
        };
        // Acquire: see the elements written under every claim released so far.
        let raw_mask = table.mask.load(Ordering::Acquire);
        // The common case, no claim at all, costs two loads of one cache line: claims are made
        // under the array lock (held here), and a release clears `mask` before `mirror`, so
        // both at 0 means every claim has ended and published its writes (seen through the
        // `Acquire` above). Any difference between them (a release half done, or a scribble
        // that cleared a bit of one word) takes the slot-by-slot check below.
        // Relaxed: `mirror` is only compared; the `Acquire` on `mask` orders the elements.
        if raw_mask == 0 && table.mirror.load(Ordering::Relaxed) == 0 {
            return Ok((main, died));
        }
        let mask = raw_mask & SLOT_BITS;
        let busy_slots = (0..SLOTS).fold(
            0u32,
            |m, i| {
                if busy(table, mask, i) { m | 1 << i } else { m }
            },
        );
        if busy_slots == 0 {
            // Acquire: a word seen unlocked (its load is `Relaxed`) was released with
            // `Release`: see the elements written under it even if the mask's bit was cleared
            // by a scribble rather than by the release.
            fence(Ordering::Acquire);
            // Claims are made only under the array lock: none will be while `main` lives.
            return Ok((main, died));
        }
        let mask = busy_slots;
        let i = mask.trailing_zeros() as usize;
        let Some(slot) = table.slots.get(i) else {
            unreachable!("bits above SLOTS are never set")
        };
        if raw::held_by_current_thread(&slot.word) {
            return Err(());
        }
        drop(main);
        // (S) keeps a set bit's word locked, and only the word's holder sets its bit, so once
        // we acquire the word its claim ended (or its holder died) and a set bit is stale.
        match raw::lock(&slot.word, None) {
            Acquired::OwnerDied(tid) => {
                if end_stale_claim(table, i) {
                    died = Some(tid);
                }
            }
            Acquired::Clean => {
                end_stale_claim(table, i);
            }
            Acquired::TimedOut => unreachable!("an unbounded wait ends only with the lock"),
        }
    }
}

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn disjoint_claims_coexist_and_overlapping_ones_wait() {
        let lock = Lock::new().expect("lock");
        let table = RangeTable::new();
        let Claim::Held {
            slot: a,
            died: None,
        } = claim(&table, &lock, 0, 10, Wait::Forever)
        else {
            panic!("first claim")
        };
        let Claim::Held {
            slot: b,
            died: None,
        } = claim(&table, &lock, 10, 20, Wait::Forever)
        else {
            panic!("disjoint claim")
        };
        assert_ne!(a, b);
        // Overlapping a claim of this thread: waiting would never end.
        assert_eq!(
            claim(&table, &lock, 5, 15, Wait::Never),
            Claim::SelfConflict
        );
        assert_eq!(
            claim(&table, &lock, 9, 10, Wait::Forever),
            Claim::SelfConflict
        );
        // Overlapping a claim of another thread: not now, or not before the deadline.
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(claim(&table, &lock, 5, 15, Wait::Never), Claim::NotNow);
                let d = Deadline::after(Duration::from_millis(20));
                assert_eq!(claim(&table, &lock, 19, 25, Wait::Until(&d)), Claim::NotNow);
                assert!(d.has_passed());
            });
        });
        release(&table, a);
        release(&table, b);
        assert_eq!(lock_unclaimed(&table, &lock).map(|(_, d)| d), Ok(None));
    }

    #[test]
    fn overlapping_claim_of_another_thread_waits_for_the_release() {
        let lock = Arc::new(Lock::new().expect("lock"));
        let table = Arc::new(RangeTable::new());
        let Claim::Held { slot, .. } = claim(&table, &lock, 0, 4, Wait::Forever) else {
            panic!("claim")
        };
        let (l, t) = (Arc::clone(&lock), Arc::clone(&table));
        let waiter = std::thread::spawn(move || {
            let got = claim(&t, &l, 3, 8, Wait::Forever);
            if let Claim::Held { slot, .. } = got {
                release(&t, slot);
            }
            got
        });
        // The waiter cannot finish while the claim is held.
        std::thread::sleep(Duration::from_millis(30));
        assert!(!waiter.is_finished());
        release(&table, slot);
        assert!(matches!(
            waiter.join().expect("waiter"),
            Claim::Held { died: None, .. }
        ));
    }

    #[test]
    fn a_scribbled_mask_neither_hangs_nor_panics() {
        let lock = Lock::new().expect("lock");
        let table = RangeTable::new();
        // Bits beside free words, and bits naming no slot: no claim holds them.
        table.mask.store(0xffff_0005, Ordering::Relaxed);
        table.slots[2].end.store(u64::MAX, Ordering::Relaxed);
        assert_eq!(lock_unclaimed(&table, &lock).map(|(_, d)| d), Ok(None));
        table.mask.store(0b100, Ordering::Relaxed);
        let Claim::Held { slot, died: None } = claim(&table, &lock, 0, 4, Wait::Forever) else {
            panic!("claim over a stale bit")
        };
        release(&table, slot);
        assert_eq!(table.mask.load(Ordering::Relaxed) & SLOT_BITS, 0);
    }

    #[test]
    fn whole_table_waiter_reports_self_conflict() {
        let lock = Lock::new().expect("lock");
        let table = RangeTable::new();
        let Claim::Held { slot, .. } = claim(&table, &lock, 0, 1, Wait::Forever) else {
            panic!("claim")
        };
        assert!(lock_unclaimed(&table, &lock).is_err());
        release(&table, slot);
    }

    /// Claims `[start, end)` from another thread (which keeps it until `release` is sent).
    fn held_elsewhere<'s>(
        s: &'s std::thread::Scope<'s, '_>,
        table: &'s RangeTable,
        lock: &'s Lock,
        start: u64,
        end: u64,
    ) -> (
        usize,
        std::sync::mpsc::Sender<()>,
        std::thread::ScopedJoinHandle<'s, ()>,
    ) {
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let t = s.spawn(move || {
            let Claim::Held { slot, .. } = claim(table, lock, start, end, Wait::Forever) else {
                panic!("claim")
            };
            held_tx.send(slot).expect("send");
            let _ = release_rx.recv();
            release(table, slot);
        });
        (held_rx.recv().expect("held"), release_tx, t)
    }

    #[test]
    fn a_scribbled_range_of_a_held_claim_is_never_granted_twice() {
        let lock = Lock::new().expect("lock");
        let table = RangeTable::new();
        std::thread::scope(|s| {
            let (slot, release_tx, t) = held_elsewhere(s, &table, &lock, 0, 4);
            for (start, end) in [(100, 50), (0, 0), (u64::MAX, u64::MAX), (10, 20)] {
                table.slots[slot].start.store(start, Ordering::Relaxed);
                table.slots[slot].end.store(end, Ordering::Relaxed);
                assert_eq!(
                    claim(&table, &lock, 0, 4, Wait::Never),
                    Claim::NotNow,
                    "range scribbled to {start}..{end}: granted over a held claim"
                );
                let d = Deadline::after(Duration::from_millis(10));
                assert_eq!(claim(&table, &lock, 1, 2, Wait::Until(&d)), Claim::NotNow);
            }
            release_tx.send(()).expect("release");
            t.join().expect("holder");
        });
        let Claim::Held { slot, died: None } = claim(&table, &lock, 0, 4, Wait::Never) else {
            panic!("free again after the release")
        };
        release(&table, slot);
    }

    #[test]
    fn a_scribbled_mask_hiding_a_held_claim_is_never_granted_twice() {
        let lock = Lock::new().expect("lock");
        let table = RangeTable::new();
        std::thread::scope(|s| {
            let (_, release_tx, t) = held_elsewhere(s, &table, &lock, 0, 4);
            table.mask.store(0, Ordering::Relaxed);
            assert_eq!(
                claim(&table, &lock, 2, 3, Wait::Never),
                Claim::NotNow,
                "a held claim whose bit was cleared was granted again"
            );
            // Whole-array access waits for it too.
            let (tx, rx) = std::sync::mpsc::channel();
            let (lk, tb) = (&lock, &table);
            let whole = s.spawn(move || {
                let got = lock_unclaimed(tb, lk).map(|(_, d)| d);
                tx.send(()).expect("send");
                got
            });
            assert!(
                rx.recv_timeout(Duration::from_millis(50)).is_err(),
                "whole-array access granted over a held claim whose bit was cleared"
            );
            release_tx.send(()).expect("release");
            t.join().expect("holder");
            assert_eq!(whole.join().expect("whole"), Ok(None));
        });
    }
}

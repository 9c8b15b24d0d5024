//! The robust lock word: the raw core under `Lock`, `RLock`, `Condition`, `Value` and `Array`.
//!
//! # Layout
//!
//! Every robust lock is a [`LockWord`], 16 bytes, 8-aligned, in shared memory:
//!
//! | offset | size | field    | meaning                                          | written by                 |
//! |--------|------|----------|--------------------------------------------------|----------------------------|
//! | 0      | 4    | `word`   | the lock word (state table below); the futex     | acquirers, waiters, releaser |
//! | 4      | 4    | `pid`    | the process id of the holder that wrote `record` (0: none yet) | the owner, right before its record store |
//! | 8      | 8    | `record` | the owner record: the last holder's stamp, or `EMPTY` (0) | the owner; an acquirer or taker (clear of its own id's stale record only) |
//!
//! The primitives keep their own data beside the 16 bytes (`RLock`'s depth, a range slot's
//! check word), never inside them.
//!
//! # State table
//!
//! | bits  | name      | meaning                                        | set by               |
//! |-------|-----------|------------------------------------------------|----------------------|
//! | 0..30 | owner     | thread id of the holder; 0 = `UNLOCKED`        | acquirer (CAS)       |
//! | 31    | `WAITERS` | a thread may be asleep on the futex            | a waiter, before sleeping |
//!
//! Transitions: `UNLOCKED → tid` (uncontended acquire, one CAS); `tid → tid|WAITERS` (a
//! waiter announces itself, CAS); `any → UNLOCKED` (release, one swap; a futex wake only if
//! `WAITERS` was set); `dead|… → tid|WAITERS` (takeover after the owner was found dead, CAS
//! against the exact word observed, so two waiters never both take over). No store writes a
//! word with stray bits (bit 30, or `WAITERS` alone) but no owner; a scribbled one names no
//! holder and is taken as free (`stray → tid|WAITERS`, CAS), never waited on.
//!
//! # Owner death
//!
//! A waiter spins and then sleeps in slices (1 ms, doubling to 50 ms), the policies of
//! [`park`]; after each slice it asks whether the holder is dead. If so, it takes the lock
//! over and reports `OwnerDied`. So a dead holder costs the next acquirer at most one slice,
//! and the lock keeps working afterwards. An uncontended acquire never checks (a free word has
//! no owner).
//!
//! **Death is per process.** A holder is dead only when its *process* is provably dead. A
//! thread can end while its guard lives on (`mem::forget`, `Box::leak`, and a `&mut` into the
//! data handed out of the thread): taking the lock over then would give safe code a second
//! live `&mut` to the same data. So a guard leaked by a thread that ends keeps the lock held
//! for as long as its process lives, exactly like a forgotten `std::sync::MutexGuard`: `lock`
//! waits, a deadline times out, a try finds it busy, whichever thread asks (a later thread
//! that got the ended thread's id included: it neither re-enters nor reads the hold as its
//! own).
//!
//! **Doubt means alive.** Every probe answers "gone" only on definite evidence
//! (`sys::probe_thread`, `sys::probe_process`): the id names no thread or process (`/proc`
//! says `ENOENT`/`ESRCH` *and* `kill(id, 0)` says `ESRCH`), or a zombie or dead one (a process
//! whose stat line says zombie but counts other threads is a leader that ended alone: alive).
//! A probe that cannot answer (no `/proc`, `EMFILE`, a `/proc` of another PID namespace, an
//! unparsable stat line) means alive: the waiter keeps waiting, until its deadline if it has
//! one. A lock whose holder may live is never handed to a second holder because a probe
//! failed.
//!
//! The verdict for a word naming thread id T, given `record` (read with `Acquire` after the
//! word) and `pid` (read after `record`), the caller being thread C:
//!
//! | `record` | thread probe of T | process probe of `pid` | verdict | why |
//! |----------|-------------------|------------------------|---------|-----|
//! | does not name T (`EMPTY`, another id) | gone, or T = C | not asked | dead | the holder stopped between its CAS and its record store; a thread cannot end there short of its process's death (T = C: the holder was an earlier thread with C's id, so it ended) |
//! | does not name T | running or unknown | not asked | alive | the holder may be storing its record right now |
//! | names T with start S | running with start S, or unknown, or S unknown | not asked | alive | the holder's thread lives (or may) |
//! | T's stamp = C's stamp | (C itself) | not asked | alive | C holds it (the caller's own hold, never taken over) |
//! | names T with start S | gone, or running with another start (T reused), or T = C with another start | gone or zombie | dead | the holder's thread ended and its process is dead |
//! | as above | as above | running, started after S (see below) | dead | the pid was reused by a later process: the holder's is dead |
//! | as above | as above | running, started no later than S, or start unknown | alive | the holder's thread ended, its process lives: a leaked guard |
//!
//! "Started after S": S is the low 32 bits of the holder thread's start time in clock ticks
//! since boot, the process's start time is known in full, and so is the present (boot time,
//! read after the probe). The holder's full start time t has the low bits S and t ≤ now; had
//! the holder been a thread of that process, the process started at p ≤ t ≤ now. So the
//! process started after the holder if the first time at or after p with the low bits S lies
//! past now (plus a slack of 2^20 ticks for the present's clock): no wrap-around misreading
//! whatever the process's age; a process older than 2^32 ticks (about 497 days at 100 Hz)
//! never reads as started after (doubt: alive).
//!
//! # Owner records
//!
//! The owner's thread id alone cannot tell the owner from a later thread that got the same
//! id. So the owner makes `record` hold its *stamp* (`sys::current_stamp`: id in the high
//! half, low 32 bits of its start time in the low half) right after acquiring, with its pid
//! stored into `pid` right before (both only when the record names someone else: a lock taken
//! again by its last holder keeps its record and pid), and leaves them there on release: the
//! record names the last holder until a holder with another id replaces it. The pid store is
//! `Relaxed`, the record store `Release`, and the prober reads the record with `Acquire` and
//! the pid after it: a record naming T that a prober reads comes with T's pid (or a later
//! holder's, which only comes with a later record, see the re-check below), never the previous
//! holder's. A prober that finds a live thread with the owner's id declares the owner's thread
//! ended only if `record` names that same id with a *known* start time different from the live
//! thread's.
//!
//! Invariant (R): *while `word` names a live thread T, `record` is `EMPTY`, names another id,
//! or is T's own stamp (with T's pid beside it).* Hence a record naming T with another start
//! time proves that the thread that stored T into `word` is not the live T, i.e. it was an
//! earlier thread with that id, now ended (whether its process is dead is the process probe's
//! to say). (R) holds because:
//!
//! | moment | record | why |
//! |--------|--------|-----|
//! | before T's CAS that makes `word` name T (free acquire, contended acquire, `RLock`) | not a stale record of T's id | T reads it first (`forget_stale_record`); a record naming T's id with another stamp is an earlier T's leftover, which T clears (CAS, then a release fence) if the word is free. No later write can name T's id but T's own: the earlier threads with that id have ended. If the word names a holder T's CAS from free fails, and the record stays: it may be what proves a dead holder with T's id dead to the other waiters (erasing it would keep the lock held while T lives), or a leaked guard's holder alive |
//! | `UNLOCKED → T` (free acquire) | the last holder's stamp (T's own or another id's), or `EMPTY` | as above; nobody writes it while the word is free |
//! | `dead X → T` (takeover) | not naming T | T checks it first; a record naming T is an earlier T's leftover (the live T holds nothing), and T clears it (CAS) before its takeover CAS, and puts it back (CAS from `EMPTY`) if that CAS fails |
//! | T holds, before its record store | unchanged from above; `pid` unchanged, or T's pid | only the holder writes records and pids; a taker writes only after winning the word |
//! | T holds, after its record store | T's stamp, T's pid beside it | as above; the pid store precedes the record store (release) |
//! | T releases | T's stamp, then `UNLOCKED` | the release swap alone; the record and pid stay, naming T |
//!
//! The caller's own id is the one case the thread probe cannot judge (the caller is alive):
//! every acquisition makes the record its stamp before it returns, so a word naming the
//! caller's id beside a record that is not the caller's stamp was left by an earlier thread
//! with that id, now ended (two live threads never share an id); it is taken over only if
//! that thread's process is dead by the table above (an earlier thread of the caller's own
//! process leaves a lock held: the process lives). `held_by_current_thread` asks for both
//! id and stamp, so such a word never reads as the caller's own (no false self-deadlock
//! report, no `RLock` re-entry). A record holding the caller's stamp beside a word that does
//! not name the caller is only what the caller's own last release left.
//!
//! The windows all resolve to "alive": a holder killed between its CAS and its record store
//! leaves `EMPTY` or a record naming someone else, so only a definite "gone" of its thread
//! frees the lock (a thread that ended there took its process with it); a prober that reads
//! `record` before the owner's store sees such a record and waits another slice; a stale
//! record of an owner that died mid-takeover names an id other than the word's and is ignored.
//! A holder thread that ended after its record store is judged by that record, which the
//! prober sees: the thread's stores precede its exit, which precedes the probe that finds it
//! gone (the kernel orders the two), and the prober reads `record` again after probing and
//! gives up if it changed (a takeover, or the holder's own store, happened meanwhile); then it
//! CASes the word against the exact value it observed. Orderings: a prober re-reads the word
//! with `Acquire` before reading `record`, so it sees the record state as of that word value or
//! newer (the previous holder's record store precedes its release swap, which heads the
//! release sequence the acquiring CAS continues); a stale-record clear before an acquiring CAS
//! is published by the release fence after it; a taker's own-record clear is published by its
//! `AcqRel` takeover CAS.
//!
//! What remains: the word can return to the exact observed value between the prober's last
//! check and its CAS only if the dead owner's id is reused by a thread that then takes this
//! very lock within those nanoseconds; a 32-bit start-time match between two threads of one
//! id (2^32 clock ticks, about 497 days at 100 Hz, apart) reads as alive; a pid reused by a
//! process more than 2^32 ticks older than the holder thread reads as alive; and a process that
//! `exec`s while one of its threads holds a lock keeps it held (the pid and start time of the
//! process survive the `exec`), as it would a leaked guard.
//!
//! # What the bookkeeping costs
//!
//! An uncontended acquire + release by the lock's last holder (a `Lock` guard) is: one
//! thread-local load of the stamp (`sys::current_stamp`, cached after the first call; a
//! `const`-initialised thread-local, which in an executable is one `%fs`-relative load, no
//! `__tls_get_addr` call), one `Relaxed` load and compare of `record` (it holds our stamp, so
//! there is no stale record of our id to clear), the compare-exchange of `word`, a second
//! `Relaxed` load and compare of `record` (another holder may have come and gone since the
//! first), and, at the guard's drop, one thread-local load of the cached id compared with the
//! id the guard kept, then the release swap of `word` (`unlock_as`). `std::sync::Mutex` does
//! the compare-exchange and the swap plus its poison checks (a load of the global panic count
//! and of the poison flag, at lock and at unlock). The loads hit the cache line the
//! compare-exchange takes exclusive anyway (or the thread's own block), and neither locked
//! instruction waits for one of them: the release swap stores a constant, and the owner check
//! before it is a predicted branch, not an operand (a compare-exchange from the cached id,
//! which `unlock_own` still does for `Condition`, waits for that load and measured about 4 %
//! slower than the swap here). So the robust bookkeeping adds no store, no fence and no
//! coherence traffic to a lock that one thread takes again and again; a lock that changes hands
//! pays two stores per change of holder (the pid, `Relaxed`, and the record, `Release`: a plain
//! store on x86-64, `stlr` on AArch64), out of line (`try_lock_new_holder`,
//! `record_new_owner`), as is the wake-up of the release (`wake_one`).
//!
//! Measured on x86-64 (the `benchmarks` program's `Lock, lock() guard` loop, disassembled):
//! 24 instructions per acquire + release, against 19 for `std::sync::Mutex` and 8 for a bare
//! compare-exchange + swap; the same loop took 28 instructions when the stale-record check ran
//! branch-free before every compare-exchange and the release was a compare-exchange. In time,
//! the two locked instructions are all that shows: about 16 ns per acquire + release on the
//! 2-core Xeon the README's tables come from, for the robust lock, `std::sync::Mutex` and the
//! bare pair alike (best of 41 interleaved rounds of 2 million each: 15.96, 16.24 and 16.19 ns;
//! the robust bookkeeping is below the run-to-run noise, under half a nanosecond). The record
//! cannot go without weakening owner-death detection: without the stamp a reused thread id
//! reads as a live owner (the lock is never recovered), and without the pid a leaked guard
//! cannot be told from a dead holder.
//!
//! # Why not the kernel's robust futex list
//!
//! `set_robust_list(2)` makes the kernel set `FUTEX_OWNER_DIED` in a dying thread's lock
//! words, which needs no liveness probe at all. It does not fit here: a thread has one robust
//! list, and the C library owns it (`pthread` robust mutexes); each lock would need a list
//! entry holding a pointer into the owner's own mapping (shared memory holds no pointers here,
//! and segments map at different addresses in different processes); every acquire and release
//! would add the list's `list_op_pending` protocol, several stores more than the record above;
//! and the kernel walks at most `ROBUST_LIST_LIMIT` (2048) entries.
//!
//! # PID namespaces
//!
//! Thread ids are per PID namespace. All processes that use one lock must share a PID
//! namespace (every process shmproc starts does). A waiter in a namespace that cannot see the
//! owner reads the owner's id as no thread or as an unrelated one: it may take the lock over
//! while the owner lives, or wait for a dead owner until its deadline.

use super::park::{self, Site, Slept, Slices};
use crate::loom::{AtomicU32, AtomicU64, Ordering, fence};
use crate::sys::{self, Deadline, Liveness};
use std::ops::Deref;

/// Bits of the owner's thread id.
pub(crate) const TID_MASK: u32 = 0x3fff_ffff;
/// A thread may be asleep on the word.
pub(crate) const WAITERS: u32 = 0x8000_0000;
/// The unlocked state.
pub(crate) const UNLOCKED: u32 = 0;

/// No owner record.
pub(crate) const EMPTY: u64 = 0;

/// A robust lock word with its owner record (see the module's layout table).
///
/// It dereferences to its futex word, so the wait loop reads it as one.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct LockWord {
    word: AtomicU32,
    pid: AtomicU32,
    record: AtomicU64,
}

impl LockWord {
    /// Size in bytes of the layout in shared memory.
    pub(crate) const SIZE: u64 = 16;
    /// Alignment of the layout in shared memory.
    pub(crate) const ALIGN: u64 = 8;

    /// Returns a free lock word (for tests and models; in shared memory, zeroed bytes are one).
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        LockWord {
            word: AtomicU32::new(UNLOCKED),
            pid: AtomicU32::new(0),
            record: AtomicU64::new(EMPTY),
        }
    }

    /// Returns the owner record (for models that start from a record left behind).
    #[cfg(all(test, shmproc_loom))]
    pub(crate) fn record(&self) -> &AtomicU64 {
        &self.record
    }

    /// Returns the owner's process id (for models that start from a record left behind).
    #[cfg(all(test, shmproc_loom))]
    pub(crate) fn pid(&self) -> &AtomicU32 {
        &self.pid
    }

    /// Makes a freshly allocated lock free: every field 0.
    pub(crate) fn init(&self) {
        // Relaxed: the release store of the word below publishes the other fields.
        self.pid.store(0, Ordering::Relaxed);
        // Relaxed: as above.
        self.record.store(EMPTY, Ordering::Relaxed);
        // Release: a handle passed to another process after this (through a channel that
        // synchronizes) sees the initial state.
        self.word.store(UNLOCKED, Ordering::Release);
    }
}

impl Deref for LockWord {
    type Target = AtomicU32;

    #[inline(always)]
    fn deref(&self) -> &AtomicU32 {
        &self.word
    }
}

/// The thread id a stamp or record names.
#[inline(always)]
fn id_of(stamp: u64) -> u32 {
    (stamp >> 32) as u32
}

/// The low 32 bits of the start time a stamp or record carries.
#[inline(always)]
fn start_of(stamp: u64) -> u32 {
    stamp as u32
}

/// How an acquisition went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The lock was free or released normally.
    Clean,
    /// The previous owner (this thread id) died holding it; the caller holds it now.
    OwnerDied(u32),
    /// The deadline passed first; the caller does not hold the lock.
    TimedOut,
}

/// Tries once to take a free lock for the calling thread.
#[inline]
pub(crate) fn try_lock(word: &LockWord) -> bool {
    try_lock_id(word) != UNLOCKED
}

/// Tries once to take a free lock for the calling thread; returns the calling thread's id if it
/// took it, else [`UNLOCKED`] (0).
///
/// The fast path is the last holder taking the lock again: the record already holds its
/// stamp, so it is one load and compare of the record (no stale record of our id can be there:
/// it holds our own stamp), the compare-exchange, and one more load and compare of the record
/// (another holder may have come and gone between the first load and the compare-exchange).
/// Everything else (a record naming someone else: the holder changes) is out of line.
#[inline]
pub(crate) fn try_lock_id(word: &LockWord) -> u32 {
    let stamp = sys::current_stamp();
    // Relaxed: a first look, re-read after the compare-exchange; a record holding our stamp is
    // not a stale record of our id (see `forget_stale_record`).
    if word.record.load(Ordering::Relaxed) != stamp {
        return try_lock_new_holder(word, stamp);
    }
    take_free(word, stamp)
}

/// The compare-exchange from free to the caller's id, and the caller's record if it won;
/// returns the caller's id, or [`UNLOCKED`] if the lock was held.
#[inline(always)]
fn take_free(word: &LockWord, stamp: u64) -> u32 {
    // Acquire: the protected data written by the previous holder is visible.
    if word
        .word
        .compare_exchange(UNLOCKED, id_of(stamp), Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        return UNLOCKED;
    }
    record_owner(word, stamp);
    id_of(stamp)
}

/// [`try_lock_id`] when the record does not hold the caller's stamp: clears a stale record of
/// the caller's id, tries the compare-exchange, and writes the caller's record if it won.
#[inline(never)]
fn try_lock_new_holder(word: &LockWord, stamp: u64) -> u32 {
    forget_stale_record(word, stamp);
    take_free(word, stamp)
}

/// Clears a record that names the calling thread's id with another start time: an earlier
/// thread with this id left it and has ended (two live threads never share an id). Called
/// before every compare-exchange that can make the word name this thread, so such a record
/// never sits beside this thread's id in the word (invariant (R)). Once cleared it cannot come
/// back: only a thread with this id writes a record naming it, and the earlier ones are gone.
#[inline(always)]
pub(crate) fn forget_stale_record(word: &LockWord, stamp: u64) {
    // Relaxed: the earlier thread's stores preceded its death, which preceded the reuse of
    // its id by this thread.
    let r = word.record.load(Ordering::Relaxed);
    if id_of(r) == id_of(stamp) && r != stamp {
        clear_record(word, r);
    }
}

/// Clears `record` if it still holds `stale` (the cold half of [`forget_stale_record`]).
#[cold]
#[inline(never)]
fn clear_record(word: &LockWord, stale: u64) {
    // A word naming a holder cannot become ours by a compare-exchange from free, and a record
    // is left beside it only by a holder that died before its own store, or by the earlier
    // thread with our id that holds it, dead: then the record is what proves that holder dead
    // to the other waiters (they compare start times), and erasing it would keep the lock held
    // for as long as we live. The takeover clears it right before its own compare-exchange.
    // Relaxed: a record of our id is left beside a free word only by the earlier thread's
    // release, which happened before this thread existed; a later word value was written by
    // a holder that replaces the record before releasing.
    if word.word.load(Ordering::Relaxed) & TID_MASK != UNLOCKED {
        return;
    }
    // Relaxed: a failure means another holder wrote its own record meanwhile, which names
    // another id; nothing is left to clear.
    let _ = word
        .record
        .compare_exchange(stale, EMPTY, Ordering::Relaxed, Ordering::Relaxed);
    // Release: the caller's next compare-exchange of the word (whose fast-path ordering is
    // only `Acquire`) carries the clear, so a prober whose `Acquire` load reads our id there
    // (or a later waiter bit on it) sees the record cleared or newer, never the stale one.
    fence(Ordering::Release);
}

/// Makes the record name the holder (`stamp`, the calling thread's), storing only when it
/// names someone else: a lock taken again by its last holder keeps its record (and the pid
/// beside it) as it was.
#[inline(always)]
fn record_owner(word: &LockWord, stamp: u64) {
    // Relaxed: only the holder writes the record while it holds the word.
    if word.record.load(Ordering::Relaxed) != stamp {
        record_new_owner(word, stamp);
    }
}

/// Writes the holder's pid, then its stamp into the record (the holder changed).
#[inline(never)]
fn record_new_owner(word: &LockWord, stamp: u64) {
    // Relaxed: published by the release store of the record right after it.
    word.pid.store(sys::current_pid(), Ordering::Relaxed);
    // Release: a prober that reads this record (`Acquire`) reads the pid stored above (or a
    // later holder's, which comes with a later record), never the previous holder's pid
    // beside this record. A prober that misses the store only waits another slice.
    word.record.store(stamp, Ordering::Release);
}

/// Writes the calling thread's owner record; every path that acquires the lock ends here.
#[inline]
pub(crate) fn note_owner(word: &LockWord) {
    record_owner(word, sys::current_stamp());
}

/// Tries once, and also takes over a lock whose recorded owner is dead.
pub(crate) fn try_lock_or_take_over(word: &LockWord) -> Option<Acquired> {
    if try_lock(word) {
        return Some(Acquired::Clean);
    }
    let s = word.load(Ordering::Relaxed);
    let a = take_over_if_dead(word, s)?;
    note_owner(word);
    Some(a)
}

/// Takes the lock, waiting until `deadline` (forever if `None`).
#[inline]
pub(crate) fn lock(word: &LockWord, deadline: Option<&Deadline>) -> Acquired {
    if try_lock(word) {
        return Acquired::Clean;
    }
    let a = lock_contended(word, deadline);
    if a != Acquired::TimedOut {
        note_owner(word);
    }
    a
}

#[cold]
fn lock_contended(word: &LockWord, deadline: Option<&Deadline>) -> Acquired {
    let tid = sys::current_tid();
    // The compare-exchanges below take a free word for this thread too.
    forget_stale_record(word, sys::current_stamp());
    let spun = park::spin_at(Site::Lock, || {
        // Relaxed: a first look; `try_lock`'s CAS synchronizes.
        (word.load(Ordering::Relaxed) == UNLOCKED && try_lock(word)).then_some(())
    });
    if spun.is_some() {
        return Acquired::Clean;
    }
    let mut slices = Slices::new();
    loop {
        let s = word.load(Ordering::Relaxed);
        // No owner: free (a word with stray bits but no owner is a scribble; it names nobody
        // to wait for).
        if s & TID_MASK == UNLOCKED {
            // Take it with WAITERS set: other sleepers may exist, and the next release must
            // wake one of them.
            if word
                .compare_exchange(s, tid | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Acquired::Clean;
            }
            continue;
        }
        if s & WAITERS == 0
            && word
                .compare_exchange(s, s | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        match park::sleep(word, s | WAITERS, deadline, &mut slices) {
            Slept::Woken => {}
            Slept::TimedOut => return Acquired::TimedOut,
            Slept::SliceEnded => {
                if let Some(a) = take_over_if_dead(word, word.load(Ordering::Relaxed)) {
                    return a;
                }
            }
        }
    }
}

/// If `observed` names an owner that is definitely dead, takes the lock over (the caller
/// writes the new owner record). Doubt means alive: see the module's "Owner records".
fn take_over_if_dead(word: &LockWord, observed: u32) -> Option<Acquired> {
    let owner = observed & TID_MASK;
    let me = sys::current_tid();
    if owner == UNLOCKED {
        // Free; stray bits beside no owner (a scribble, no store writes one) are taken as
        // free too, keeping WAITERS (sleepers may exist). Acquire: as for `try_lock`.
        return (observed != UNLOCKED
            && word
                .word
                .compare_exchange(observed, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)
                .is_ok())
        .then_some(Acquired::Clean);
    }
    // Acquire: the record read next is at least the one in place when `observed` was
    // published (records are written before the release that publishes a word value).
    if word.word.load(Ordering::Acquire) != observed {
        return None;
    }
    // Acquire: pairs with the release store of the record, so the pid read next is the one
    // its writer stored before it (or a later holder's).
    let record = word.record.load(Ordering::Acquire);
    // Relaxed: ordered after the record by the acquire load above.
    let pid = word.pid.load(Ordering::Relaxed);
    if !holder_is_dead(owner, sys::current_stamp(), record, pid) {
        return None;
    }
    // Relaxed: a changed record means a takeover happened while we probed; look again later.
    if word.record.load(Ordering::Relaxed) != record {
        return None;
    }
    // A record naming us was left by an earlier thread with our id (we hold nothing): clear
    // it, so it never sits beside our id in the word (invariant (R)). Relaxed: the release
    // half of the takeover CAS below publishes it.
    if id_of(record) == me
        && word
            .record
            .compare_exchange(record, EMPTY, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return None;
    }
    // AcqRel: acquire, so whatever the dead owner wrote is visible; release, so a prober that
    // reads our id sees the record as cleared above. The CAS is against the exact word
    // observed, so of several waiters that found the owner dead exactly one takes over.
    match word
        .word
        .compare_exchange(observed, me | WAITERS, Ordering::AcqRel, Ordering::Relaxed)
    {
        Ok(_) => Some(Acquired::OwnerDied(owner)),
        Err(_) => {
            // The word changed (a waiter set WAITERS, or another taker won): put back the
            // record cleared above if nobody replaced it, so it still proves a dead holder
            // with our id dead to the other waiters. It names our id and we hold nothing, so
            // it never sits beside our id in the word. Relaxed: as for the clear.
            if id_of(record) == me {
                let _ = word.record.compare_exchange(
                    EMPTY,
                    record,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            None
        }
    }
}

/// Returns whether the holder of a word naming thread `owner` is definitely dead, given the
/// owner record and the pid beside it, read after the word, and the caller's stamp `me`: the
/// verdict table of the module's "Owner death". Dead means its *process* is dead: a thread
/// that ended while its guard lives on (leaked) keeps the lock held while its process lives.
pub(crate) fn holder_is_dead(owner: u32, me: u64, record: u64, pid: u32) -> bool {
    if id_of(record) != owner {
        // The holder stopped between its compare-exchange and its record store: a thread
        // cannot end there short of its process's death. Our own id: the holder was an
        // earlier thread with it (we hold nothing without our stamp in the record), ended.
        return owner == id_of(me) || sys::probe_thread(owner) == Liveness::Gone;
    }
    let start = start_of(record);
    let ended = if owner == id_of(me) {
        // Our id beside a record that is not our stamp: an earlier thread with our id, ended
        // (two live threads never share an id).
        record != me
    } else {
        match sys::probe_thread(owner) {
            Liveness::Gone => true,
            // A live thread has the id: it is the holder unless the start times differ.
            Liveness::Running { start: Some(s) } => start != sys::START_UNKNOWN && start != s,
            Liveness::Running { start: None } => false,
        }
    };
    ended && process_is_dead(pid, start)
}

/// Returns whether the process `pid` that a thread started at `start` (low 32 bits of its
/// start time, or `START_UNKNOWN`) ran in is definitely dead: gone, a zombie, or a process
/// that started after that thread (the pid was reused).
pub(crate) fn process_is_dead(pid: u32, start: u32) -> bool {
    match sys::probe_process(pid) {
        sys::ProcessLiveness::Gone => true,
        sys::ProcessLiveness::Running { start: Some(p) } => {
            start != sys::START_UNKNOWN
                && sys::boot_ticks().is_some_and(|now| started_after(p, start, now))
        }
        sys::ProcessLiveness::Running { start: None } => false,
    }
}

/// Slack for the clock reading of [`started_after`] (about 3 hours at 100 ticks a second).
const CLOCK_SLACK: u64 = 1 << 20;

/// Whether a process that started at tick `process` (all 64 bits) started after a thread whose
/// start time has `thread` as its low 32 bits, the time being `now` (read after `process`).
///
/// The thread's full start time `t` has those low bits and `t <= now`. Had the thread run in
/// that process, `process <= t <= now`. So the process started after the thread if no time
/// with those low bits lies in `[process, now]`: the first one at or after `process` is later
/// than `now`. `CLOCK_SLACK` widens the window for a present read on another clock than the
/// start times (it only makes a reused pid of a process older than 2^32 ticks less than the
/// slack read as alive).
fn started_after(process: u64, thread: u32, now: u64) -> bool {
    let first = process.saturating_add(u64::from(thread.wrapping_sub(process as u32)));
    first > now.saturating_add(CLOCK_SLACK)
}

/// Returns whether the process that recorded `stamp` (its pid in the high half, the low 32
/// bits of its start time in the low half, as the heap's holder slots keep it) is
/// definitely dead: no process has the pid, or it is a zombie with no thread left, or the
/// pid now names a process that started at another time. A process whose leader thread
/// ended while its other threads run is alive (a per-thread probe would call it a zombie).
pub(crate) fn process_of_stamp_is_dead(stamp: u64) -> bool {
    match sys::probe_process(id_of(stamp)) {
        sys::ProcessLiveness::Gone => true,
        sys::ProcessLiveness::Running { start: Some(p) } => {
            start_of(stamp) != sys::START_UNKNOWN && start_of(stamp) != p as u32
        }
        sys::ProcessLiveness::Running { start: None } => false,
    }
}

/// Returns whether the thread `owner` is definitely dead, given a stamp `record` that may name
/// it (its id and start time): no thread has the id, or the one that has it started at
/// another time. For words that record a thread's stamp alone (not a lock's holder, which
/// [`holder_is_dead`] judges by its process).
pub(crate) fn owner_is_dead(owner: u32, record: u64) -> bool {
    match sys::probe_thread(owner) {
        Liveness::Gone => true,
        // A live thread has the id: it is the owner unless the record proves otherwise.
        Liveness::Running { start: Some(start) } => {
            id_of(record) == owner
                && start_of(record) != sys::START_UNKNOWN
                && start_of(record) != start
        }
        Liveness::Running { start: None } => false,
    }
}

/// Releases the lock and wakes one sleeper if there may be one. The owner record stays: it
/// names the last holder until the next holder with another id replaces it.
#[inline]
pub(crate) fn unlock(word: &LockWord) {
    // Release: the protected data written while holding is visible to the next holder.
    if word.word.swap(UNLOCKED, Ordering::Release) & WAITERS != 0 {
        wake_one(word);
    }
}

/// Releases the lock if the word names the calling thread; else does nothing (a guard's drop).
///
/// A guard copied into a forked child (kept in a thread-local, or leaked and reachable from
/// one) is dropped there by a thread with another id: the parent's hold must stay. Costs one
/// thread-local read of the cached id: the release is a compare-exchange from that id instead
/// of a swap (a word with `WAITERS` set takes the out-of-line path, as the swap's wake does).
#[inline]
pub(crate) fn unlock_own(word: &LockWord) {
    // Release: as in `unlock`. One compare-exchange from exactly our id (no waiter) to free:
    // the same locked instruction as `unlock`'s swap, with the owner check folded in. The id
    // is the cache as it is, with no check that it is filled: a thread that holds the lock
    // filled it when it acquired; one whose cache is empty (0, a forked child's thread) holds
    // nothing, and its compare-exchange from 0 either fails on a held word (the slow path
    // below then asks for the real id, which the word does not name) or writes 0 over 0.
    if word
        .word
        .compare_exchange(
            sys::cached_tid(),
            UNLOCKED,
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_err()
    {
        unlock_own_slow(word);
    }
}

/// Releases a hold that thread `holder` took (a guard's drop; `holder` is what the guard kept
/// when it was made) if the calling thread is `holder`; else does what [`unlock_own`] does.
///
/// A guard lives and is dropped on the thread that made it (it is not `Send`), so the caller
/// is `holder` and the word names it (only the holder releases its own hold, and nobody takes
/// a live holder's lock over): the release is the swap of [`unlock`], whose operand does not
/// wait for any load. A copy of the guard in a forked child runs on another thread (whose
/// cached id is the child's own or 0, never `holder`) and takes the checked path, which
/// releases nothing there.
#[inline]
pub(crate) fn unlock_as(word: &LockWord, holder: u32) {
    if sys::cached_tid() == holder {
        unlock(word);
    } else {
        unlock_own_slow(word);
    }
}

/// [`unlock_own`] with waiters (or another owner): releases and wakes one if the word names
/// the calling thread, else does nothing.
#[cold]
#[inline(never)]
fn unlock_own_slow(word: &LockWord) {
    if names_current_thread(word) {
        unlock(word);
    }
}

/// Returns whether the word names the calling thread's id (its own hold, for a guard's drop;
/// `held_by_current_thread` also asks for the record).
#[inline(always)]
pub(crate) fn names_current_thread(word: &LockWord) -> bool {
    // Relaxed: only this thread writes its own id into the word; a word naming it is its hold.
    word.word.load(Ordering::Relaxed) & TID_MASK == sys::current_tid()
}

/// Wakes one sleeper (the release's slow path, kept out of line so `unlock` inlines small).
#[cold]
#[inline(never)]
fn wake_one(word: &LockWord) {
    sys::futex_wake(&word.word, 1);
}

/// Returns whether the calling thread holds the lock.
#[inline]
pub(crate) fn held_by_current_thread(word: &LockWord) -> bool {
    // Relaxed: only this thread stores its own id and stamp into the word and the record.
    // Our id in the word without our stamp in the record is an earlier thread with our id
    // that ended holding the lock (see `take_over_if_dead`), not us.
    word.word.load(Ordering::Relaxed) & TID_MASK == sys::current_tid()
        && word.record.load(Ordering::Relaxed) == sys::current_stamp()
}

/// Returns whether anybody holds the lock.
pub(crate) fn is_locked(word: &LockWord) -> bool {
    word.word.load(Ordering::Relaxed) & TID_MASK != UNLOCKED
}

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Runs `f` with a live thread's stamp; the thread lives until `f` returns.
    fn with_live_thread(f: impl FnOnce(u64)) {
        let (stamp_tx, stamp_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            stamp_tx.send(sys::current_stamp()).expect("send");
            let _ = done_rx.recv();
        });
        f(stamp_rx.recv().expect("stamp"));
        drop(done_tx);
        t.join().expect("thread");
    }

    /// A word held by `owner` with owner record `record` (and no pid beside it).
    fn held(owner: u32, record: u64) -> LockWord {
        held_in(owner, record, 0)
    }

    /// A word held by `owner` with owner record `record` written by process `pid`.
    fn held_in(owner: u32, record: u64, pid: u32) -> LockWord {
        let w = LockWord::new();
        w.word.store(owner, Ordering::Relaxed);
        w.pid.store(pid, Ordering::Relaxed);
        w.record.store(record, Ordering::Relaxed);
        w
    }

    /// The id of a process that has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    }

    /// The low 32 bits of this process's start time.
    fn own_process_start() -> u32 {
        match sys::probe_process(sys::current_pid()) {
            sys::ProcessLiveness::Running { start: Some(s) } => s as u32,
            other => panic!("own process: {other:?}"),
        }
    }

    /// The record of a thread with id `tid` that started one tick after this thread: a thread
    /// of this process (whichever process `tid` is in) that has ended.
    fn ended_thread_record(tid: u32) -> u64 {
        (u64::from(tid) << 32) | u64::from(start_of(sys::current_stamp()).wrapping_add(1))
    }

    /// The record of a thread with id `tid` that started before this process did: beside this
    /// process's pid, a thread of a process that had our pid before us.
    fn before_us_record(tid: u32) -> u64 {
        (u64::from(tid) << 32) | u64::from(own_process_start().wrapping_sub(10))
    }

    #[test]
    fn a_process_started_after_a_thread_only_if_no_start_time_fits_before_now() {
        // The thread started 5 ticks after the process: not after, whatever the wrap.
        for process in [100u64, (7 << 32) + 100, (7 << 32) + u64::from(u32::MAX) - 2] {
            let thread = (process as u32).wrapping_add(5);
            assert!(!started_after(process, thread, process + 5));
            assert!(!started_after(process, thread, process + 1_000_000));
            // The thread started 10 ticks before the process (its pid was reused).
            let before = (process as u32).wrapping_sub(10);
            assert!(started_after(process, before, process + 1_000));
            // ... unless the process is so old that the low bits fit again (doubt: alive).
            assert!(!started_after(process, before, process + (1 << 32)));
        }
        // A present read a little behind the start times is within the slack.
        assert!(!started_after(1_000, 1_005, 1_000));
    }

    #[test]
    fn records_are_written_on_acquire_and_kept_on_release() {
        let w = LockWord::new();
        assert!(try_lock(&w));
        assert_eq!(w.record.load(Ordering::Relaxed), sys::current_stamp());
        unlock(&w);
        // The release is one swap: the record still names its last holder.
        assert_eq!(w.record.load(Ordering::Relaxed), sys::current_stamp());
        assert!(!held_by_current_thread(&w));
        assert_eq!(lock(&w, None), Acquired::Clean);
        assert!(held_by_current_thread(&w));
        unlock(&w);
        assert!(!is_locked(&w));
        // A record left by another thread's release is replaced by the next holder's stamp.
        with_live_thread(|other| {
            w.record.store(other, Ordering::Relaxed);
            assert!(try_lock(&w));
            assert_eq!(w.record.load(Ordering::Relaxed), sys::current_stamp());
            unlock(&w);
        });
    }

    /// A free word beside a record of an earlier (dead) thread with our id: the record is
    /// cleared before the word can name us, then replaced by our stamp.
    #[test]
    fn a_stale_record_of_our_id_never_sits_beside_our_word() {
        let me = sys::current_stamp();
        let stale = (u64::from(id_of(me)) << 32) | u64::from(start_of(me) ^ 1);
        let w = held(UNLOCKED, stale);
        forget_stale_record(&w, me);
        assert_eq!(w.record.load(Ordering::Relaxed), EMPTY);
        w.record.store(stale, Ordering::Relaxed);
        assert!(try_lock(&w));
        assert_eq!(w.record.load(Ordering::Relaxed), me);
        unlock(&w);
        // A record of another id is left alone by the check (only its holder replaces it).
        let other = (u64::from(id_of(me) ^ 1) << 32) | u64::from(start_of(me));
        w.record.store(other, Ordering::Relaxed);
        forget_stale_record(&w, me);
        assert_eq!(w.record.load(Ordering::Relaxed), other);
    }

    #[test]
    fn a_live_owner_is_never_taken_over_whatever_its_record() {
        with_live_thread(|stamp| {
            let tid = id_of(stamp);
            let other = (u64::from(tid ^ 1) << 32) | u64::from(start_of(stamp) ^ 1);
            let unknown = (u64::from(tid) << 32) | u64::from(sys::START_UNKNOWN);
            for record in [EMPTY, stamp, other, unknown] {
                let w = held(tid, record);
                assert_eq!(try_lock_or_take_over(&w), None, "record {record:#x}");
                let deadline = Deadline::after(Duration::from_millis(5));
                assert_eq!(lock(&w, Some(&deadline)), Acquired::TimedOut);
                assert_eq!(w.word.load(Ordering::Relaxed) & TID_MASK, tid);
            }
        });
    }

    /// The thread that holds the id now started at another time than the owner that recorded
    /// itself: the owner's thread has ended and its id was reused. It is dead only if its
    /// process is: gone, or a process that got its pid later.
    #[test]
    fn a_reused_thread_id_is_taken_over_only_if_the_holders_process_is_dead() {
        with_live_thread(|stamp| {
            let tid = id_of(stamp);
            let earlier = (u64::from(tid) << 32) | u64::from(start_of(stamp).wrapping_sub(7));
            for (record, pid) in [
                (earlier, dead_pid()),
                (before_us_record(tid), sys::current_pid()),
            ] {
                let w = held_in(tid, record, pid);
                assert_eq!(try_lock_or_take_over(&w), Some(Acquired::OwnerDied(tid)));
                assert!(held_by_current_thread(&w));
                assert_eq!(w.record.load(Ordering::Relaxed), sys::current_stamp());
                assert_eq!(w.pid.load(Ordering::Relaxed), sys::current_pid());
                unlock(&w);
            }
            // The holder's thread ended but its process (ours) lives: its guard may live on.
            // No pid beside the record: doubt.
            for (record, pid) in [(ended_thread_record(tid), sys::current_pid()), (earlier, 0)] {
                let w = held_in(tid, record, pid);
                assert_eq!(try_lock_or_take_over(&w), None);
                let deadline = Deadline::after(Duration::from_millis(5));
                assert_eq!(lock(&w, Some(&deadline)), Acquired::TimedOut);
                assert_eq!(w.record.load(Ordering::Relaxed), record);
            }
        });
    }

    /// A holder whose thread is gone, with its record in place: dead only with its process.
    #[test]
    fn a_gone_holder_that_recorded_itself_is_dead_only_with_its_process() {
        let (dead, start) = std::thread::spawn(|| {
            let s = sys::current_stamp();
            (id_of(s), start_of(s))
        })
        .join()
        .expect("thread");
        let record = (u64::from(dead) << 32) | u64::from(start);
        let w = held_in(dead, record, sys::current_pid());
        assert_eq!(try_lock_or_take_over(&w), None);
        assert_eq!(
            lock(&w, Some(&Deadline::after(Duration::from_millis(5)))),
            Acquired::TimedOut
        );
        let w = held_in(dead, record, dead_pid());
        assert_eq!(try_lock_or_take_over(&w), Some(Acquired::OwnerDied(dead)));
        unlock(&w);
    }

    /// An earlier thread with our id died holding the lock: the word names our id, the record
    /// does not hold our stamp. We do not hold it, so locking takes it over (no self-deadlock
    /// report, no wait). If that thread was one of our process's (which lives), its guard may
    /// live on: we wait like anyone else, and never count it as ours.
    #[test]
    fn a_dead_earlier_thread_with_our_id_is_taken_over() {
        let me = sys::current_stamp();
        let tid = id_of(me);
        let earlier = (u64::from(tid) << 32) | u64::from(start_of(me) ^ 1);
        for (record, pid) in [
            (EMPTY, 0),
            (earlier, dead_pid()),
            (before_us_record(tid), sys::current_pid()),
        ] {
            let w = held_in(tid, record, pid);
            assert!(!held_by_current_thread(&w), "record {record:#x}");
            assert_eq!(lock(&w, None), Acquired::OwnerDied(tid));
            assert!(held_by_current_thread(&w));
            unlock(&w);
        }
        let ended = (u64::from(tid) << 32) | u64::from(start_of(me).wrapping_add(1));
        let w = held_in(tid, ended, sys::current_pid());
        assert!(!held_by_current_thread(&w));
        assert_eq!(try_lock_or_take_over(&w), None);
        let deadline = Deadline::after(Duration::from_millis(5));
        assert_eq!(lock(&w, Some(&deadline)), Acquired::TimedOut);
        assert_eq!(w.record.load(Ordering::Relaxed), ended);
        // While we hold it, it is ours: a timed lock times out, try reports it held.
        let w = LockWord::new();
        assert!(try_lock(&w));
        assert_eq!(try_lock_or_take_over(&w), None);
        let deadline = Deadline::after(Duration::from_millis(5));
        assert_eq!(lock(&w, Some(&deadline)), Acquired::TimedOut);
        unlock(&w);
    }

    /// The same for `RLock`: a word naming our id beside a record that is not our stamp is an
    /// earlier thread's (dead) hold, not one more level of ours.
    #[test]
    fn rlock_taken_by_a_reused_id_reports_the_dead_holder() {
        use crate::sync::rlock::algo;
        let me = sys::current_stamp();
        let tid = id_of(me);
        let earlier = (u64::from(tid) << 32) | u64::from(start_of(me) ^ 1);
        let other = (u64::from(tid ^ 1) << 32) | u64::from(start_of(me));
        for (record, pid) in [(EMPTY, 0), (earlier, dead_pid()), (other, 0)] {
            let w = held_in(tid, record, pid);
            let count = AtomicU32::new(3);
            assert_eq!(
                algo::lock(&w, &count, None),
                Acquired::OwnerDied(tid),
                "record {record:#x}"
            );
            assert_eq!(count.load(Ordering::Relaxed), 1);
            assert!(held_by_current_thread(&w));
            assert!(algo::unlock(&w, &count));
            assert!(!is_locked(&w));
        }
        // An earlier thread of this process with our id that ended holding it: not one more
        // level of ours (no re-entry), and not dead (its guard may live on).
        let ended = (u64::from(tid) << 32) | u64::from(start_of(me).wrapping_add(1));
        let w = held_in(tid, ended, sys::current_pid());
        let count = AtomicU32::new(3);
        assert_eq!(algo::try_lock(&w, &count), None);
        let deadline = Deadline::after(Duration::from_millis(5));
        assert_eq!(algo::lock(&w, &count, Some(&deadline)), Acquired::TimedOut);
        assert!(!algo::unlock(&w, &count));
        assert_eq!(count.load(Ordering::Relaxed), 3);
        assert_eq!(w.word.load(Ordering::Relaxed) & TID_MASK, tid);
    }

    #[test]
    fn a_gone_owner_is_taken_over_and_a_stale_record_of_our_id_cleared() {
        let dead = std::thread::spawn(sys::current_tid).join().expect("thread");
        let me = sys::current_stamp();
        let stale_mine = (u64::from(id_of(me)) << 32) | u64::from(start_of(me) ^ 1);
        for record in [EMPTY, stale_mine] {
            let w = held(dead | WAITERS, record);
            assert_eq!(try_lock_or_take_over(&w), Some(Acquired::OwnerDied(dead)));
            assert_eq!(w.record.load(Ordering::Relaxed), me);
            unlock(&w);
        }
    }

    /// A holder killed between its compare-exchange and its record store leaves the record of
    /// the previous holder (left behind by its release) beside its own id: that record names
    /// another thread, so the verdict is the probe's alone. Gone is taken over; a live thread
    /// with that id is never taken from, whoever the record names.
    #[test]
    fn a_record_left_behind_beside_a_new_holders_id_defers_to_the_probe() {
        let dead = std::thread::spawn(sys::current_tid).join().expect("thread");
        with_live_thread(|last_holder| {
            let w = held(dead, last_holder);
            assert_eq!(try_lock_or_take_over(&w), Some(Acquired::OwnerDied(dead)));
            assert_eq!(w.record.load(Ordering::Relaxed), sys::current_stamp());
            unlock(&w);
            with_live_thread(|holder| {
                let w = held(id_of(holder), last_holder);
                assert_eq!(try_lock_or_take_over(&w), None);
                let deadline = Deadline::after(Duration::from_millis(5));
                assert_eq!(lock(&w, Some(&deadline)), Acquired::TimedOut);
                assert_eq!(w.record.load(Ordering::Relaxed), last_holder);
            });
        });
    }

    /// A guard dropped by a thread that has never asked for its id (its cache is empty, as a
    /// forked child's is after the fork) releases nothing: a word held by another thread, with
    /// or without waiters, stays held, and a free word stays free. The same for a guard that
    /// kept its holder's id (`unlock_as`) and is dropped on another thread.
    #[test]
    fn a_release_by_a_thread_with_no_cached_id_releases_nothing() {
        let w = LockWord::new();
        let mine = sys::current_stamp();
        let holder = try_lock_id(&w);
        assert_eq!(holder, id_of(mine));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(sys::cached_tid(), 0);
                unlock_own(&w);
                assert_eq!(w.word.load(Ordering::Relaxed), holder);
                unlock_as(&w, holder);
                assert_eq!(w.word.load(Ordering::Relaxed), holder);
                w.word.store(holder | WAITERS, Ordering::Relaxed);
                unlock_own(&w);
                unlock_as(&w, holder);
                assert_eq!(w.word.load(Ordering::Relaxed), holder | WAITERS);
                // Asking for its id fills the cache with an id that is not the holder's.
                assert_ne!(sys::current_tid(), holder);
                unlock_as(&w, holder);
                assert_eq!(w.word.load(Ordering::Relaxed), holder | WAITERS);
            });
        });
        w.word.store(holder, Ordering::Relaxed);
        unlock_as(&w, holder);
        assert!(!is_locked(&w));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(sys::cached_tid(), 0);
                unlock_own(&w);
                unlock_as(&w, holder);
                assert_eq!(w.word.load(Ordering::Relaxed), UNLOCKED);
                assert_eq!(w.record.load(Ordering::Relaxed), mine);
            });
        });
    }

    /// An `RLock` guard's release on the thread that made it takes one level, the last one
    /// with the word; on another thread (a forked child's copy) it takes nothing.
    #[test]
    fn an_rlock_guard_release_takes_its_level_only_on_its_own_thread() {
        use crate::sync::rlock::algo;
        let w = LockWord::new();
        let count = AtomicU32::new(0);
        assert_eq!(algo::lock(&w, &count, None), Acquired::Clean);
        assert_eq!(algo::lock(&w, &count, None), Acquired::Clean);
        assert_eq!(count.load(Ordering::Relaxed), 2);
        let me = sys::current_tid();
        std::thread::scope(|s| {
            s.spawn(|| {
                algo::unlock_as(&w, &count, me);
                let _ = sys::current_tid();
                algo::unlock_as(&w, &count, me);
            });
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
        assert!(held_by_current_thread(&w));
        algo::unlock_as(&w, &count, me);
        assert_eq!(count.load(Ordering::Relaxed), 1);
        assert!(held_by_current_thread(&w));
        algo::unlock_as(&w, &count, me);
        assert_eq!(count.load(Ordering::Relaxed), 0);
        assert!(!is_locked(&w));
    }

    /// A scribbled word whose owner field is 0 but other bits are set (no release or CAS ever
    /// writes one) names no holder: it is taken as free, never waited on until the deadline
    /// (a `lock` without one would hang forever).
    #[test]
    fn a_word_with_no_owner_but_stray_bits_is_free() {
        for bits in [WAITERS, 1 << 30, WAITERS | 1 << 30] {
            let w = held(bits, EMPTY);
            assert!(!is_locked(&w));
            let deadline = Deadline::after(Duration::from_secs(5));
            assert_eq!(lock(&w, Some(&deadline)), Acquired::Clean, "word {bits:#x}");
            assert!(held_by_current_thread(&w));
            unlock(&w);
            let w = held(bits, EMPTY);
            assert_eq!(
                try_lock_or_take_over(&w),
                Some(Acquired::Clean),
                "word {bits:#x}"
            );
            assert!(held_by_current_thread(&w));
            unlock(&w);
            assert_eq!(w.word.load(Ordering::Relaxed), UNLOCKED);
        }
    }

    /// a probe that cannot answer (no `/proc`, `EMFILE`) means alive, so neither a
    /// gone owner nor a reused id is taken over while it fails.
    #[test]
    fn a_failing_probe_never_takes_over() {
        let dead = std::thread::spawn(sys::current_tid).join().expect("thread");
        with_live_thread(|stamp| {
            let tid = id_of(stamp);
            let earlier = (u64::from(tid) << 32) | u64::from(start_of(stamp).wrapping_sub(7));
            for errno in [sys::ENOENT, sys::EMFILE] {
                let reused = held_in(tid, earlier, dead_pid());
                sys::set_probe_fault(Some(errno));
                let gone = held(dead, EMPTY);
                let got = (
                    try_lock_or_take_over(&gone),
                    try_lock_or_take_over(&reused),
                    lock(&gone, Some(&Deadline::after(Duration::from_millis(5)))),
                );
                sys::set_probe_fault(None);
                assert_eq!(got, (None, None, Acquired::TimedOut), "errno {errno}");
                assert_eq!(
                    try_lock_or_take_over(&gone),
                    Some(Acquired::OwnerDied(dead))
                );
                assert_eq!(
                    try_lock_or_take_over(&reused),
                    Some(Acquired::OwnerDied(tid))
                );
            }
        });
    }
}

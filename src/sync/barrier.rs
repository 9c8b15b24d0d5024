//! `Barrier`: a process-shared rendezvous for a fixed number of parties.
//!
//! # State table
//!
//! | word | name       | meaning                                                  | written by |
//! |------|------------|----------------------------------------------------------|------------|
//! | 0    | `state`    | the futex word, below                                    | every operation, by CAS |
//! | 1    | `leader`   | thread id of the last arriver while it runs the action   | that leader |
//! | 2    | `outcomes` | bit `g mod 32` = generation `g` ended broken             | the party that ends `g` |
//! | 3    | `config`   | bits 0..15 parties; bit 31 `HAS_ACTION`                  | the creator only |
//!
//! `state`:
//!
//! | bits   | name      | meaning                                                       |
//! |--------|-----------|---------------------------------------------------------------|
//! | 0..15  | `count`   | arrivals in this generation; `== parties` while the leader releases |
//! | 15..30 | `gen`     | the generation (pass) number, wrapping                        |
//! | 30     | `BROKEN`  | this generation is broken (abort, timeout, dead leader, failed action) |
//! | 31     | `WAITERS` | a thread may be asleep on the word                            |
//!
//! Transitions, each one CAS on `state`:
//! - arrive: `(g, c < parties−1) → (g, c+1)`; the caller's index is `c`, and it sleeps until
//!   `gen ≠ g` or `BROKEN`.
//! - lead: `(g, parties−1) → (g, parties)` ("releasing"): the last arriver records itself in
//!   `leader`, runs the action, clears bit `g` of `outcomes`, and moves `(g, parties) →
//!   (g+1, 0)`, waking all sleepers if `WAITERS` was set.
//! - break: `(g, c < parties) → (g, c, BROKEN)` by a timed-out waiter or `abort`; in the
//!   releasing state only by the leader (its action panicked or is missing here) or by a
//!   waiter that found the leader's thread dead. The breaker sets bit `g` of `outcomes`.
//! - reset: `(g, _, BROKEN) → (g+1, 0)` after setting bit `g` of `outcomes` (idempotent with
//!   the breaker's); a barrier with waiters is broken first, so they all see it.
//!
//! A waiter of generation `g` that sees `gen ≠ g` learns how `g` ended from bit `g` of
//! `outcomes`, which is written before `gen` moves on (and read after, `Acquire`). Bits are
//! reused every 32 generations: a waiter that does not run at all while 32 further
//! generations pass may misreport its own pass.
//!
//! # Process death
//!
//! A party that dies before arriving makes the others wait until their timeout, which breaks
//! the barrier for all of them (so with parties that may crash, always wait with a timeout).
//! One that dies after arriving was already counted, so its generation still completes. A
//! leader that dies while running the action is detected by the waiters (they probe its
//! thread after each sleep slice of at most 50 ms) and the generation breaks. After a break,
//! [`Barrier::reset`] makes the barrier usable again.

use super::block::{Block, BlockKind};
use super::park::{self, Site, Slept, Slices};
use crate::error::{Error, Result};
use crate::heap::ObjectToken;
use crate::loom::{AtomicU32, Ordering};
use crate::segment::Segment;
use crate::sys::{self, Deadline};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub(crate) const COUNT_MASK: u32 = 0x7fff;
pub(crate) const GEN_SHIFT: u32 = 15;
pub(crate) const GEN_MASK: u32 = 0x3fff_8000;
pub(crate) const BROKEN: u32 = 1 << 30;
pub(crate) const WAITERS: u32 = 1 << 31;
/// The most parties a barrier can have.
pub(crate) const MAX_PARTIES: u32 = COUNT_MASK;
const HAS_ACTION: u32 = 1 << 31;

/// The words of a barrier.
#[derive(Clone, Copy)]
pub(crate) struct BarrierWords<'a> {
    pub(crate) state: &'a AtomicU32,
    pub(crate) leader: &'a AtomicU32,
    pub(crate) outcomes: &'a AtomicU32,
}

/// The barrier algorithm over its words, without syscalls of its own.
pub(crate) mod algo {
    use super::*;

    fn gen_of(s: u32) -> u32 {
        (s & GEN_MASK) >> GEN_SHIFT
    }

    fn bit(g: u32) -> u32 {
        1 << (g % 32)
    }

    fn next_gen(s: u32) -> u32 {
        ((gen_of(s).wrapping_add(1)) << GEN_SHIFT) & GEN_MASK
    }

    /// Breaks generation `gen_of(s)` if the word still is `s`; wakes sleepers.
    fn try_break(w: BarrierWords<'_>, s: u32) -> bool {
        // AcqRel: the release publishes nothing new but keeps the word's history in one
        // modification order; acquire pairs with earlier arrivals.
        if w.state
            .compare_exchange(
                s,
                (s | BROKEN) & !WAITERS,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        // SeqCst: read by waiters only after they see `gen` move on, which the reset's CAS
        // orders after this.
        w.outcomes.fetch_or(bit(gen_of(s)), Ordering::SeqCst);
        if s & WAITERS != 0 {
            sys::futex_wake(w.state, u32::MAX);
        }
        true
    }

    /// Sleeps while the word is `s` (setting `WAITERS`), for one of `slices` and at most
    /// until `deadline`. Returns `None` if it did not sleep because the word changed first.
    fn sleep(
        w: BarrierWords<'_>,
        s: u32,
        deadline: Option<&Deadline>,
        slices: &mut Slices,
    ) -> Option<Slept> {
        if s & WAITERS == 0
            && w.state
                // Relaxed: the bit announces a sleeper and publishes nothing.
                .compare_exchange(s, s | WAITERS, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        Some(park::sleep(w.state, s | WAITERS, deadline, slices))
    }

    /// Ended slices a releasing word may go with no leader recorded before it counts as
    /// abandoned (about a second of slices). A leader records itself nanoseconds after its
    /// arrival and clears the record nanoseconds before it moves the generation on, so a
    /// leaderless release that lasts this long means the leader died in between (or the word
    /// was corrupted): without this, every waiter would wait for it forever.
    const LEADERLESS_SLICES: u32 = 24;

    /// What a waiter watching a releasing generation remembers between slices.
    pub(super) struct LeaderWatch {
        slices: Slices,
        leaderless: u32,
    }

    impl LeaderWatch {
        pub(super) const fn new() -> LeaderWatch {
            LeaderWatch {
                slices: Slices::new(),
                leaderless: 0,
            }
        }

        /// Whether the releasing generation's leader is gone: the recorded leader died, or no
        /// leader was recorded for [`LEADERLESS_SLICES`] slices in a row.
        fn abandoned(&mut self, w: BarrierWords<'_>) -> bool {
            // Acquire: pairs with the leader's store, made right after it became leader.
            match w.leader.load(Ordering::Acquire) {
                0 => {
                    self.leaderless = self.leaderless.saturating_add(1);
                    self.leaderless >= LEADERLESS_SLICES
                }
                tid => {
                    self.leaderless = 0;
                    !sys::thread_alive(tid)
                }
            }
        }
    }

    /// Waits on a releasing word `s` for one sleep slice, at most until `deadline`, then
    /// breaks the generation if its leader is gone. Returns `false` once `deadline` has
    /// passed (the caller gives up).
    fn wait_for_leader(
        w: BarrierWords<'_>,
        s: u32,
        deadline: Option<&Deadline>,
        watch: &mut LeaderWatch,
    ) -> bool {
        let slept = sleep(w, s, deadline, &mut watch.slices);
        if deadline.is_some_and(Deadline::has_passed) {
            return false;
        }
        if slept == Some(Slept::SliceEnded) && watch.abandoned(w) {
            // Re-read: the CAS must see exactly the releasing word.
            // Acquire: as for every read of `state`.
            let now = w.state.load(Ordering::Acquire);
            if now & !WAITERS == s & !WAITERS {
                let _ = try_break(w, now);
            }
        }
        true
    }

    /// Arrives and waits for the other parties. `action` runs in the last arriver before
    /// anybody is released; it returns `false` to break the barrier instead. `slow_action`
    /// says whether it may take long (user code): then sleepers are woken first so they watch
    /// the leader for death while it runs. Returns the arrival index, or `None` if the
    /// generation broke.
    pub(crate) fn wait(
        w: BarrierWords<'_>,
        parties: u32,
        deadline: Option<&Deadline>,
        slow_action: bool,
        action: impl FnOnce() -> bool,
    ) -> Option<u32> {
        let mut watch = LeaderWatch::new();
        let (g, index, prev) = loop {
            // Acquire: pairs with the release of the CAS that made this word.
            let s = w.state.load(Ordering::Acquire);
            if s & BROKEN != 0 {
                return None;
            }
            let c = s & COUNT_MASK;
            if c >= parties {
                // The previous generation's leader is still releasing; wait for it (this
                // party has not arrived yet, so a timeout here leaves the barrier as it is).
                if !wait_for_leader(w, s, deadline, &mut watch) {
                    return None;
                }
                continue;
            }
            // AcqRel: arrivals form one release sequence; the leader's acquire sees them all.
            if w.state
                .compare_exchange(s, s + 1, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                break (gen_of(s), c, s);
            }
        };
        if index + 1 == parties {
            if slow_action && prev & WAITERS != 0 {
                // Sleepers wait without a slice until the generation moves on; make them
                // re-check, so they see the releasing state and watch the leader.
                sys::futex_wake(w.state, u32::MAX);
            }
            lead(w, g, action);
            // Acquire: as above.
            let s = w.state.load(Ordering::Acquire);
            return if gen_of(s) == g || w.outcomes.load(Ordering::SeqCst) & bit(g) != 0 {
                None
            } else {
                Some(index)
            };
        }
        let _ = park::spin_at(Site::Barrier, || {
            // Acquire: as below.
            let s = w.state.load(Ordering::Acquire);
            (gen_of(s) != g || s & BROKEN != 0).then_some(())
        });
        loop {
            // Acquire: pairs with the leader's release, so the action's effects are visible.
            let s = w.state.load(Ordering::Acquire);
            if gen_of(s) != g {
                // SeqCst: written before `gen` moved on (see the module docs).
                return (w.outcomes.load(Ordering::SeqCst) & bit(g) == 0).then_some(index);
            }
            if s & BROKEN != 0 {
                return None;
            }
            let releasing = s & COUNT_MASK >= parties;
            if releasing {
                // The leader owns a releasing generation (it is running the action): a
                // timeout here gives up without breaking it.
                if !wait_for_leader(w, s, deadline, &mut watch) {
                    return None;
                }
                continue;
            }
            if deadline.is_some_and(Deadline::has_passed) {
                if try_break(w, s) {
                    return None;
                }
                continue;
            }
            // No liveness check applies here (a party that never arrives is only detected
            // by the deadline), so the sleep is not sliced.
            let _ = sleep(w, s, deadline, &mut Slices::unsliced());
        }
    }

    /// The leader's part: run the action, then release generation `g`.
    fn lead(w: BarrierWords<'_>, g: u32, action: impl FnOnce() -> bool) {
        // Release: pairs with `leader_dead`'s acquire.
        w.leader.store(sys::current_tid(), Ordering::Release);
        // Break the generation if the action panics (then let the panic continue).
        struct OnUnwind<'a>(BarrierWords<'a>, bool);
        impl Drop for OnUnwind<'_> {
            fn drop(&mut self) {
                if self.1 {
                    break_releasing(self.0);
                }
            }
        }
        let mut guard = OnUnwind(w, true);
        let ok = action();
        guard.1 = false;
        if !ok {
            break_releasing(w);
            return;
        }
        // SeqCst: cleared before `gen` moves on, which waiters read after seeing it move.
        w.outcomes.fetch_and(!bit(g), Ordering::SeqCst);
        // Release: clear the leader before the generation moves on.
        w.leader.store(0, Ordering::Release);
        loop {
            // Acquire: as for every read of `state`.
            let s = w.state.load(Ordering::Acquire);
            if s & BROKEN != 0 || gen_of(s) != g {
                // A waiter wrongly judged us dead; the generation is broken.
                return;
            }
            // Release: waiters (acquire) see the action's effects.
            if w.state
                .compare_exchange(s, next_gen(s), Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                if s & WAITERS != 0 {
                    sys::futex_wake(w.state, u32::MAX);
                }
                return;
            }
        }
    }

    /// The leader breaks its own (releasing) generation.
    fn break_releasing(w: BarrierWords<'_>) {
        // Release: as in `lead`.
        w.leader.store(0, Ordering::Release);
        loop {
            // Acquire: as for every read of `state`.
            let s = w.state.load(Ordering::Acquire);
            if s & BROKEN != 0 || try_break(w, s) {
                return;
            }
        }
    }

    /// Breaks the barrier (waiting out a generation being released first).
    pub(crate) fn abort(w: BarrierWords<'_>, parties: u32) {
        let mut watch = LeaderWatch::new();
        loop {
            // Acquire: as for every read of `state`.
            let s = w.state.load(Ordering::Acquire);
            if s & BROKEN != 0 {
                return;
            }
            if s & COUNT_MASK >= parties {
                wait_for_leader(w, s, None, &mut watch);
                continue;
            }
            if try_break(w, s) {
                return;
            }
        }
    }

    /// Returns the barrier to its fresh state; current waiters see it broken.
    pub(crate) fn reset(w: BarrierWords<'_>, parties: u32) {
        let mut watch = LeaderWatch::new();
        loop {
            // Acquire: as for every read of `state`.
            let s = w.state.load(Ordering::Acquire);
            let c = s & COUNT_MASK;
            if s & BROKEN == 0 {
                if c == 0 {
                    return;
                }
                if c >= parties {
                    wait_for_leader(w, s, None, &mut watch);
                    continue;
                }
                let _ = try_break(w, s);
                continue;
            }
            // SeqCst: set before `gen` moves on (idempotent with the breaker's).
            w.outcomes.fetch_or(bit(gen_of(s)), Ordering::SeqCst);
            // Release: waiters that see the new generation see the outcome bit.
            if w.state
                .compare_exchange(s, next_gen(s), Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                if s & WAITERS != 0 {
                    sys::futex_wake(w.state, u32::MAX);
                }
                return;
            }
        }
    }

    /// Returns whether the barrier is broken.
    pub(crate) fn is_broken(state: &AtomicU32) -> bool {
        // Relaxed: a snapshot.
        state.load(Ordering::Relaxed) & BROKEN != 0
    }

    /// Returns how many parties are waiting in the current generation.
    pub(crate) fn n_waiting(state: &AtomicU32, parties: u32) -> u32 {
        // Relaxed: a snapshot.
        let s = state.load(Ordering::Relaxed);
        let c = s & COUNT_MASK;
        if s & BROKEN != 0 || c >= parties {
            0
        } else {
            c
        }
    }
}

pub(crate) struct BarrierKind;

impl BlockKind for BarrierKind {
    const WORDS: usize = 4;
    const FINGERPRINT: u64 = crate::fingerprint::start("shmproc::Barrier", 16, 4);
    const NAME: &'static str = "shmproc::Barrier";
}

type Action = Arc<dyn Fn() + Send + Sync>;

/// A rendezvous for a fixed number of parties across processes, like
/// `multiprocessing.Barrier`.
///
/// Each party calls [`wait`](Barrier::wait); all are released together when the last one
/// arrives, and each gets a distinct index `0..parties` (its arrival order). A timeout, an
/// [`abort`](Barrier::abort) or a [`reset`](Barrier::reset) breaks the barrier for every
/// waiter ([`Error::BrokenBarrier`]) until `reset`.
///
/// # The action
///
/// Python runs an optional action in one thread per pass. A closure cannot cross processes,
/// so here the action belongs to the *handle*: [`with_action`](Barrier::with_action) stores it
/// in the handle (and its clones, including in a `Fork` child), and a handle received in
/// another process (as a process argument, over a connection) gets it back with
/// [`set_action`](Barrier::set_action). Each pass, the party that arrives last runs its
/// handle's action before anybody is released (so every other party sees its effects); if
/// the action panics, the pass breaks.
///
/// Every party of a barrier created with an action must therefore hold it. A handle without
/// it cannot wait at all: [`wait`](Barrier::wait) fails at once with
/// [`Error::BarrierActionMissing`], on every call, whether that party would have arrived
/// first or last, and without arriving (the others are not disturbed). A missing
/// `set_action` is found on the first pass, not only when the timing makes that process the
/// last arriver.
///
/// # Process death
///
/// A party that dies before arriving makes the others time out (breaking the barrier for all
/// of them); with parties that may crash, use [`wait_timeout`](Barrier::wait_timeout). A
/// leader that dies running the action is detected within about 50 ms and breaks the pass.
/// [`reset`](Barrier::reset) makes a broken barrier usable again.
///
/// # Examples
/// ```
/// # fn main() -> shmproc::Result<()> {
/// use std::time::Duration;
/// let barrier = shmproc::Barrier::new(1)?;
/// assert_eq!(barrier.wait()?, 0); // a one-party barrier passes at once
/// let two = shmproc::Barrier::new(2)?;
/// assert!(two.wait_timeout(Duration::from_millis(1)).is_err()); // nobody came: broken
/// assert!(two.is_broken());
/// two.reset();
/// assert!(!two.is_broken());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Barrier {
    block: Block<BarrierKind>,
    parties: u32,
    action: Option<Action>,
}

crate::handle::single_token_handle!(
    [] Barrier, "Barrier", object: |s| s.block.object(),
    from_token_errors:
    /// A stored party count out of range is also `CorruptObject`. The handle has no action;
    /// see [`set_action`](Barrier::set_action).
);

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::handle::debug(self, f)
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

impl Barrier {
    /// Creates a barrier for `parties` parties in the default heap.
    ///
    /// # Errors
    /// As for [`Barrier::new_in`], and as for creating the default heap.
    pub fn new(parties: u32) -> Result<Barrier> {
        Barrier::new_in(&crate::runtime::default_segment()?, parties)
    }

    /// Creates a barrier for `parties` parties in `segment`.
    ///
    /// # Errors
    /// [`Error::InvalidSize`] if `parties` is 0 or above 32767; [`Error::OutOfMemory`].
    pub fn new_in(segment: &Segment, parties: u32) -> Result<Barrier> {
        Barrier::create(segment, parties, None)
    }

    /// Creates a barrier whose last arriver runs `action` each pass (see
    /// [the action](Barrier#the-action)).
    ///
    /// # Errors
    /// As for [`Barrier::new`].
    pub fn with_action(parties: u32, action: impl Fn() + Send + Sync + 'static) -> Result<Barrier> {
        Barrier::create(
            &crate::runtime::default_segment()?,
            parties,
            Some(Arc::new(action)),
        )
    }

    fn create(segment: &Segment, parties: u32, action: Option<Action>) -> Result<Barrier> {
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::InvalidSize {
                reason: "a barrier needs between 1 and 32767 parties",
            });
        }
        let config = parties | if action.is_some() { HAS_ACTION } else { 0 };
        Ok(Barrier {
            block: Block::alloc(segment, &[0, 0, 0, config])?,
            parties,
            action,
        })
    }

    /// Sets this handle's action (for a handle received from another process; see
    /// [the action](Barrier#the-action)).
    pub fn set_action(&mut self, action: impl Fn() + Send + Sync + 'static) {
        self.action = Some(Arc::new(action));
    }

    fn words(&self) -> BarrierWords<'_> {
        BarrierWords {
            state: self.block.word(0),
            leader: self.block.word(1),
            outcomes: self.block.word(2),
        }
    }

    fn has_action(&self) -> bool {
        // Relaxed: written once by the creator before the handle could be shared.
        self.block.word(3).load(Ordering::Relaxed) & HAS_ACTION != 0
    }

    fn wait_deadline(&self, deadline: Option<&Deadline>) -> Result<u32> {
        if self.action.is_none() && self.has_action() {
            return Err(Error::BarrierActionMissing);
        }
        let action = || {
            if let Some(a) = &self.action {
                a();
            }
            true
        };
        let slow = self.action.is_some() || self.has_action();
        algo::wait(self.words(), self.parties, deadline, slow, action).ok_or(Error::BrokenBarrier)
    }

    /// Waits until all parties have arrived; returns this party's arrival index
    /// (`0..parties`, distinct per pass).
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken while waiting;
    /// [`Error::BarrierActionMissing`] if the barrier has an action and this handle does not
    /// (see [the action](Barrier#the-action)).
    pub fn wait(&self) -> Result<u32> {
        self.wait_deadline(None)
    }

    /// As [`wait`](Barrier::wait), for at most `timeout` (monotonic, unaffected by signals);
    /// if the timeout passes first, the barrier breaks for every waiter. A timeout that passes
    /// while a leader is releasing a pass (running the action) gives up without breaking that
    /// pass, which belongs to the leader.
    ///
    /// # Errors
    /// [`Error::BrokenBarrier`] if the barrier is or becomes broken, including by this
    /// timeout; [`Error::BarrierActionMissing`] as for [`wait`](Barrier::wait).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        let deadline = Deadline::after(timeout);
        self.wait_deadline(Some(&deadline))
    }

    /// Breaks the barrier: current and future waiters get [`Error::BrokenBarrier`] until
    /// [`reset`](Barrier::reset).
    pub fn abort(&self) {
        algo::abort(self.words(), self.parties);
    }

    /// Returns the barrier to its initial state; threads waiting now get
    /// [`Error::BrokenBarrier`].
    pub fn reset(&self) {
        algo::reset(self.words(), self.parties);
    }

    /// Returns whether the barrier is broken.
    pub fn is_broken(&self) -> bool {
        algo::is_broken(self.words().state)
    }

    /// Returns how many parties are waiting now (a snapshot).
    pub fn n_waiting(&self) -> u32 {
        algo::n_waiting(self.words().state, self.parties)
    }

    /// Returns the number of parties.
    pub fn parties(&self) -> u32 {
        self.parties
    }

    /// Re-attaches a barrier from its token (without an action), checking its party count.
    fn attach(token: &ObjectToken) -> Result<Barrier> {
        let block = Block::<BarrierKind>::attach(token)?;
        // Relaxed: written once by the creator before the handle could be shared.
        let parties = block.word(3).load(Ordering::Relaxed) & !HAS_ACTION;
        if parties == 0 || parties > MAX_PARTIES {
            return Err(Error::CorruptObject {
                reason: "barrier party count out of range",
            });
        }
        Ok(Barrier {
            block,
            parties,
            action: None,
        })
    }
}

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn threads_pass_and_break() {
        let b = Barrier::new(3).unwrap_or_else(|e| panic!("{e}"));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || b.wait_timeout(Duration::from_secs(10)))
            })
            .collect();
        while b.n_waiting() != 2 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let me = b.wait_timeout(Duration::from_secs(10));
        let mut idx: Vec<u32> = ts
            .into_iter()
            .map(|t| t.join().ok().and_then(|r| r.ok()).unwrap_or(99))
            .collect();
        idx.push(me.unwrap_or(99));
        idx.sort_unstable();
        assert_eq!(idx, [0, 1, 2]);
        let t = {
            let b = b.clone();
            std::thread::spawn(move || b.wait())
        };
        while b.n_waiting() != 1 {
            std::thread::sleep(Duration::from_millis(1));
        }
        b.abort();
        assert!(matches!(t.join().ok(), Some(Err(Error::BrokenBarrier))));
        b.reset();
        assert!(!b.is_broken());
    }
}

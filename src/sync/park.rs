//! The one way to wait in shmproc: spin briefly, then sleep on a futex word in slices, with
//! a liveness check after each slice, and never lose a wake-up.
//!
//! Every blocking primitive (the lock word, `Barrier`, `Condition`, `Semaphore`, `Event`, the
//! queue ring and the pipe ring) waits through this module. It has three parts:
//!
//! - [`Spin`], the spin policy: how long a waiter polls before it goes to sleep;
//! - [`Slices`] and [`sleep`], the sleep policy: a futex wait cut into slices (1 ms, doubling
//!   to 50 ms) so that the caller can check, after each slice, whether the party it waits for
//!   is still alive;
//! - [`EventCount`], the two-word handshake (sequence + sleepers) for conditions that do not
//!   live in the futex word itself (the rings), with the `SeqCst` fences on both sides.
//!
//! # The spin policy
//!
//! A waiter first polls its condition up to `budget` rounds; a round is one call of the
//! caller's check plus one [`core::hint::spin_loop`] (`pause` on x86-64, `yield` on AArch64).
//! At a site with yields, `yields` further rounds each give the core away
//! (`sched_yield`) before checking. Then the waiter sleeps. The budget adapts to how the waits
//! went:
//!
//! | event                                    | new budget                              |
//! |------------------------------------------|-----------------------------------------|
//! | a fresh budget                           | `start`                                 |
//! | the condition held within the pauses     | `budget · 5/4 + 1`, at most `max`       |
//! | the pauses ran out                       | `budget / 2`, at least `SPIN_MIN` = 8   |
//!
//! Sites differ only in these three numbers ([`Site::limits`]), each measured on its
//! benchmark (2 loaded cores):
//!
//! | site                                   | `start` | `max` | `yields` | why |
//! |----------------------------------------|---------|-------|----------|-----|
//! | lock word, barrier, semaphore, event, pipe ring | 100 | 4000 | 0 | the pipe ring's measured policy (`pipe/ping_pong`); the pipe ring's budget also grows back after short sleeps (below), and a side of a one-way pipe stream takes the queue ring's 4 yields (below) |
//! | queue ring                             | 100     | 4000  | 4        | producer and consumer often share a core, and a yield lets the other run: without the yields `queue/1to1` took 1.0–1.4 µs a message instead of 0.3–0.5 µs |
//! | condition                              | 20      | 400   | 0        | a long spin takes the core from the notifier (a fixed 20 beat 100, 400 and 4000), and yields made the ping-pong 4x slower |
//!
//! The pipe ring also tells its budget how each sleep went ([`Spin::slept`]): a wait that
//! spun in vain and then slept, but whose condition held within [`SHORT_SLEEP`] (50 µs) of
//! the spin's end, sets the budget to the rounds that would have covered the whole wait, plus
//! a quarter (at the rate the failed spin measured, at most `max`), instead of its half.
//! Without this, a busy spell (both ends of a ping-pong descheduled for a while) drove both
//! budgets to `SPIN_MIN`, after which every answer needed a futex wake-up and so took longer
//! than the 8-round spin: the halving rule alone never grew the budget back, and a ping-pong
//! stayed at the futex rate (a window fell from 2 M to 29 k round trips/s). Now both ends
//! are back to spinning one wait after the peer answers quickly again, while a peer slower
//! than 50 µs keeps halving the budget as before. A peer that needs this very core answers
//! quickly only once the waiter sleeps, so its spins fail at any length: after a regrowth,
//! the budget only halves for [`REGROW_PAUSE`] (16) failed spins unless a spin pays off,
//! which bounds that waste to one spin of at most `slept + spin` (≤ ~60 µs) per 16 waits.
//! The pipe site has no yields: on a loaded machine a `sched_yield` may hand the core to an
//! unrelated task for a whole time slice, and a pipe ping-pong with 4 yields fell to
//! 1.4–89 k round trips/s where the futex path gave 42–63 k (load average 15–17). A side of
//! a one-way stream (a receiver whose end sent nothing since its last wait, a sender whose
//! end received nothing) whose peer last ran on the same CPU yields 4 times all the same
//! ([`Spin::until_yielding`]), as a queue's ends do: futex wake-ups tend to gather the two
//! ends on one core, where a sleeping side was woken (and preempted its peer) every few
//! messages: a 256-byte stream made a futex sleep per 8–17 messages and ran at 0.5–0.8 M
//! messages/s where the queue, whose ends yield, ran at 2.5–3 M; with the yields it runs at
//! the queue's rate (2.9 M, same core). Only then: a side whose peer runs elsewhere gains
//! nothing by yielding, and on a loaded machine loses the core for a time slice.
//!
//! So a waiter whose peer answers quickly (a ping-pong between two processes on two free
//! cores) keeps spinning long enough to skip the futex system calls on both sides, and a
//! waiter that spins in vain (the peer is slow, or needs this very core) drops to 8 rounds
//! within 9 waits. The budget is process-local: the pipe ring keeps one per direction, every
//! other site one per thread and [`Site`]. Callers try their operation once before they
//! spin, so an uncontended operation neither spins nor moves the budget. Under loom a spin is
//! one round (each round is a modelled step), without yields, and never adapts, so models
//! stay deterministic.
//!
//! **CPU cost.** A round costs the check (one to a few atomic loads) plus the pause, which
//! dominates: `pause` takes ~10 cycles on older x86-64 cores and ~140 on Skylake and later.
//! Measured on a 2-core virtualized Xeon (Skylake-class): 80–150 ns per round, so a spin of
//! `SPIN_MIN` rounds costs ~0.1–0.2 µs, 100 rounds ~10–15 µs and 4000 rounds ~320–370 µs of
//! one core; a yield is one system call (~1 µs when nobody else wants the core). The `max`
//! budget is the most a single wait burns before it sleeps, reached only while spinning keeps
//! paying off (the peer answers within the spin, so the spin replaces two futex system calls
//! and a context switch on each side); a thread whose waits end up sleeping spins at most
//! ~1 ms in total over the waits it takes to fall to `SPIN_MIN`, then ~0.2 µs per wait. A
//! sleeping waiter costs nothing but one wake-up per slice (at most 20 per second once the
//! slices reach 50 ms), each a futex return plus the caller's liveness check.
//!
//! **The pipe site's cost per wait**, from the rates above: a wait whose peer answers within
//! the spin costs the rounds it took (a 256-byte one-way stream or a ping-pong on two free
//! cores: well under 1 µs); a wait that spins in vain costs the whole budget, from ~1 µs at 8
//! rounds up to ~0.3–0.6 ms at 4000, then the sleep. A regrowth sizes the budget to the wait
//! it just saw (at most ~60 µs of spinning, as the wait must have ended within 50 µs), so it
//! spends this only while a spin of that length would have replaced the sleep and the
//! peer's wake-up call; a peer slower than that halves the budget at every wait, down to
//! ~1 µs of spinning per wait. `Connection::set_spinning(false)`
//! turns the spin off for an end (no CPU spent before each sleep).
//!
//! # Sleeping in slices
//!
//! A sleeper whose peer may die without waking it (a lock holder, a barrier leader, a pipe
//! peer) sleeps at most one slice at a time: [`Slices`] gives 1 ms, 2 ms, 4 ms, … up to
//! 50 ms, and [`sleep`] tells the caller whether the slice ended ([`Slept::SliceEnded`]: run
//! the liveness check), the caller's own deadline passed ([`Slept::TimedOut`]), or the word
//! changed or a wake-up came ([`Slept::Woken`]). So a dead peer is noticed within about 50 ms
//! and a short wait costs few system calls. The pipe ring sleeps in 50 ms slices from the
//! first ([`Slices::long`]): its sleeps are usually microseconds long, and a short slice
//! arms a timer that the kernel must program and cancel on every sleep. Even a 50 ms slice
//! costs each sleep a timer armed and cancelled, a clock read and the copy of the timeout
//! in the kernel: ~0.1 µs per sleep on a virtual machine, ~7% of a blocking pipe round trip
//! (measured against untimed sleeps: see the pipe ring's docs, `connection::ring`). A slice with no
//! deadline of the caller's is a relative timeout ([`sys::futex_wait_for`]), so a sleep reads
//! no clock. A site without a liveness check (`Semaphore`,
//! `Event`) sleeps [`Slices::unsliced`]: until its deadline, in one futex wait. Under loom
//! there are no slices at all: a sleeper with no deadline sleeps until woken, so a missing
//! wake-up leaves it asleep forever, which loom reports as a deadlock.
//!
//! # The in-word handshake
//!
//! Where the state fits in the futex word together with a "sleepers" mark (the lock word's
//! `WAITERS` bit, the semaphore's and condition's sleeper counts, the event's and barrier's
//! `WAITERS` bit), a waiter sets the mark by a CAS on the word and sleeps while the word is
//! exactly what its CAS wrote; a notifier changes the word by a CAS (or swap) and wakes if
//! the value it replaced had the mark. All of this is one modification order of one word, so
//! either the notifier's change comes first (the waiter's CAS fails, or its `futex_wait` finds
//! another value and returns) or the mark comes first (the notifier sees it and wakes): no
//! fence is needed. These sites use [`Spin`], [`Slices`] and [`sleep`] only.
//!
//! # The event count (two words)
//!
//! Where the condition lives elsewhere (ring positions, a slot, a count of unfinished tasks),
//! an [`EventCount`] pairs two words in shared memory:
//!
//! | word       | meaning                                             | written by                        |
//! |------------|-----------------------------------------------------|-----------------------------------|
//! | `seq`      | the futex word; bumped by a notify that saw a sleeper | notifiers (`fetch_add`, Release) |
//! | `sleepers` | waiters between [`prepare_wait`](EventCount::prepare_wait) and the end of their sleep | waiters (+1 `SeqCst`, −1 Relaxed) |
//!
//! The handshake (Dekker's, with a fence on each side):
//!
//! | waiter                                   | notifier                                  |
//! |------------------------------------------|-------------------------------------------|
//! | W1 `key = seq` (Acquire)                 | N1 change the state (any store)           |
//! | W2 `sleepers += 1`                       | N2 `fence(SeqCst)`                        |
//! | W3 `fence(SeqCst)`                       | N3 `if sleepers > 0`:                     |
//! | W4 re-check the state; if ready, `sleepers −= 1` and return | N4 `seq += 1` (Release) |
//! | W5 `futex_wait(seq, key)`, then `sleepers −= 1` | N5 `futex_wake(seq)`               |
//!
//! The two fences are ordered one way or the other in the single total order of `SeqCst`
//! operations. If W3 comes first, N3 (after N2) reads W2's increment (sequenced before W3),
//! so the notifier bumps and wakes: W5 either finds `seq ≠ key` (the kernel compares under its
//! bucket lock) or is already queued and woken. If N2 comes first, W4 (after W3) sees N1's
//! change and the waiter does not sleep. Either way no wake-up is lost, and a notifier that
//! finds no sleeper makes no system call and writes nothing shared. Without W3 the increment
//! may still sit in the waiter's store buffer while W4 reads the old state, and N3 reads 0:
//! both miss each other (allowed by the memory model and observable on AArch64, where a
//! `SeqCst` read-modify-write does not order a later plain load of another word); without N2
//! the same holds the other way round. The loom models `event_count_never_loses_a_wake_up`,
//! `event_count_notify_all_wakes_every_sleeper` and the queue ring's blocking get/put models
//! all report the lost wake-up (a deadlock) with either fence removed. A `seq` bumped between W1 and W5 by an earlier notify
//! only makes the sleep return at once: a spurious wake-up, which every caller re-checks.
//!
//! A process that dies between W2 and the end of its sleep leaves `sleepers` one too high:
//! later notifies then make one futex-wake system call each that wakes nobody; nothing
//! blocks.
//!
//! # The one-word event count
//!
//! The pipe ring uses [`EventWord`], the same handshake on one word: `epoch << 1 | MARK`.
//! The waiter's W1–W2 are one `fetch_or(MARK)` (its result, marked, is the key), then the
//! W3 fence, the re-check and `futex_wait(word, key)`. The notifier's N3–N4 are a load of
//! the word and, if marked, a compare-exchange to `key + 1` (the next epoch, unmarked)
//! followed by the wake. The proof above holds word for word, with "`sleepers > 0`" read as
//! "the word is marked": if W3 precedes N2 in the `SeqCst` order, N3 reads the mark or a
//! later value, and any later value either is still marked or was written by a notifier that
//! moved the epoch on and wakes (so the sleep compares unequal or is woken). What the single
//! word saves, measured on a one-way pipe stream where the reader sleeps often:
//!
//! - once a notify has cleared the mark, later notifies skip the wake-up system call until
//!   a waiter marks the word again; with a sleepers count, every message sent while the
//!   woken reader was still leaving the kernel paid a `futex_wake` that woke nobody (a third
//!   of the wake-up calls in an `strace` of that stream);
//! - a woken waiter writes nothing (no `sleepers −= 1` on a cache line the notifier just
//!   wrote, the dearest instruction of the pipe's receive path in a `perf` profile);
//! - a waiter that dies asleep leaves only a mark, which the next notify clears.
//!
//! A waiter whose re-check succeeds leaves its mark (another waiter may share it, so it
//! cannot be withdrawn): the next notify makes one wake-up call that wakes nobody. The loom
//! models `event_word_never_loses_a_wake_up`, `event_word_skipped_notifies_never_strand_a_stream`
//! and `event_word_notify_wakes_every_sleeper` check the handshake; the first reports the lost
//! wake-up (a deadlock) with either fence removed.

use crate::loom::{AtomicU32, Ordering, fence};
use crate::sys::{self, Deadline, WaitOutcome};
use std::time::Duration;

/// Rounds of the first spin at most sites (see [`Site::limits`]).
pub(crate) const SPIN_START: u32 = 100;
/// The least a budget shrinks to.
pub(crate) const SPIN_MIN: u32 = 8;
/// The most a budget grows to at most sites (see [`Site::limits`]).
pub(crate) const SPIN_MAX: u32 = 4000;
/// A sleep after a failed spin that ended within this long counts as short: the pipe
/// ring's budget then grows back ([`Spin::slept`]). About what 400–600 pause rounds take.
pub(crate) const SHORT_SLEEP: Duration = Duration::from_micros(50);
/// The first sleep slice.
pub(crate) const FIRST_SLICE: Duration = Duration::from_millis(1);
/// The longest sleep slice: a dead peer is noticed within about this long.
pub(crate) const MAX_SLICE: Duration = Duration::from_millis(50);

/// The kinds of wait; each has its limits in [`Site::limits`] and a thread learns its
/// budget for each separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Site {
    /// The lock word (`Lock`, `RLock`, `Value`, `Array`, a condition's re-lock).
    Lock,
    /// `Barrier`.
    Barrier,
    /// `Condition`.
    Condition,
    /// `Semaphore` and `BoundedSemaphore`.
    Semaphore,
    /// `Event`.
    Event,
    /// The queue ring (`Queue`, `SimpleQueue`, `JoinableQueue`).
    Queue,
    /// The pipe ring (one budget per direction, kept by the ring).
    Pipe,
}

/// A site's spin limits: the first budget, the largest, and the yields after the pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Rounds of a fresh budget.
    pub(crate) start: u32,
    /// The most the budget grows to.
    pub(crate) max: u32,
    /// `yield_now` rounds after the pause rounds ran out, before sleeping.
    pub(crate) yields: u32,
}

impl Site {
    /// Returns the site's limits (the table in [the spin policy](self#the-spin-policy)).
    pub(crate) const fn limits(self) -> Limits {
        match self {
            Site::Condition => Limits {
                start: 20,
                max: 400,
                yields: 0,
            },
            Site::Queue => Limits {
                start: SPIN_START,
                max: SPIN_MAX,
                yields: 4,
            },
            Site::Lock | Site::Barrier | Site::Semaphore | Site::Event | Site::Pipe => Limits {
                start: SPIN_START,
                max: SPIN_MAX,
                yields: 0,
            },
        }
    }
}

/// Failed spins after a regrowth ([`Spin::slept`]) before the budget may grow back again.
pub(crate) const REGROW_PAUSE: u8 = 16;

/// An adaptive spin budget (see [the spin policy](self#the-spin-policy)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spin {
    budget: u32,
    limits: Limits,
    /// Rounds of the last spin that ran out.
    failed: u32,
    /// Failed spins still to go before [`Spin::slept`] may grow the budget again.
    pause: u8,
}

impl Spin {
    /// Returns a fresh budget for `site`.
    pub(crate) const fn new(site: Site) -> Spin {
        let limits = site.limits();
        Spin {
            budget: limits.start,
            limits,
            failed: 0,
            pause: 0,
        }
    }

    /// Returns the current budget in rounds.
    #[cfg_attr(any(not(test), shmproc_loom), allow(dead_code))]
    pub(crate) fn budget(self) -> u32 {
        self.budget
    }

    /// Returns the yields after the pauses of this budget's site.
    pub(crate) fn yields(self) -> u32 {
        self.limits.yields
    }

    /// Polls `poll` up to the budget's rounds, pausing between them, then up to the site's
    /// yields; returns its first `Some`, or `None` when all ran out (then the caller sleeps).
    /// Adapts the budget to the outcome.
    pub(crate) fn until<T>(&mut self, poll: impl FnMut() -> Option<T>) -> Option<T> {
        self.until_yielding(self.limits.yields, poll)
    }

    /// As [`until`](Spin::until), with `yields` yields after the pauses instead of the site's.
    pub(crate) fn until_yielding<T>(
        &mut self,
        yields: u32,
        mut poll: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        if cfg!(shmproc_loom) {
            // One round, no yields, no learning: each round is a modelled step, and the
            // models must be deterministic.
            return poll();
        }
        let rounds = self.budget;
        for _ in 0..rounds {
            if let Some(v) = poll() {
                self.budget = (rounds + rounds / 4 + 1).min(self.limits.max);
                self.pause = 0;
                return Some(v);
            }
            core::hint::spin_loop();
        }
        self.budget = (rounds / 2).max(SPIN_MIN);
        self.failed = rounds;
        for _ in 0..yields {
            crate::loom::yield_now();
            if let Some(v) = poll() {
                return Some(v);
            }
        }
        None
    }

    /// Tells the budget how the wait went after its spin ran out: the spin took `spin`, and
    /// the condition held `slept` after the spin's end. If that was within [`SHORT_SLEEP`],
    /// a spin a quarter longer than `spin + slept` would have caught it: the budget becomes
    /// that many rounds (at the failed spin's measured rate, at most `max`), instead of the
    /// half it fell to. After such a regrowth, the next [`REGROW_PAUSE`] failed spins only
    /// halve the budget, unless a spin pays off first: so a peer that needs this very core
    /// (it runs only once the waiter sleeps, and answers quickly then) costs one long spin
    /// per `REGROW_PAUSE` waits, not one per wait. Used by the pipe ring (see
    /// [the spin policy](self#the-spin-policy)).
    pub(crate) fn slept(&mut self, spin: Duration, slept: Duration) {
        if cfg!(shmproc_loom) {
            return;
        }
        if self.pause > 0 {
            self.pause -= 1;
            return;
        }
        let spin_ns = spin.as_nanos().max(1);
        if slept >= SHORT_SLEEP {
            return;
        }
        let want = u128::from(self.failed) * (spin_ns + slept.as_nanos()) * 5 / (4 * spin_ns);
        let want = u32::try_from(want).unwrap_or(u32::MAX).min(self.limits.max);
        if want > self.budget {
            self.budget = want;
            self.pause = REGROW_PAUSE;
        }
    }
}

#[cfg(not(shmproc_loom))]
const SITES: usize = 7;

#[cfg(not(shmproc_loom))]
std::thread_local! {
    static LEARNED: [std::cell::Cell<Spin>; SITES] = const {
        [
            std::cell::Cell::new(Spin::new(Site::Lock)),
            std::cell::Cell::new(Spin::new(Site::Barrier)),
            std::cell::Cell::new(Spin::new(Site::Condition)),
            std::cell::Cell::new(Spin::new(Site::Semaphore)),
            std::cell::Cell::new(Spin::new(Site::Event)),
            std::cell::Cell::new(Spin::new(Site::Queue)),
            std::cell::Cell::new(Spin::new(Site::Pipe)),
        ]
    };
}

/// Spins with this thread's budget for `site` (see [`Spin::until`]).
pub(crate) fn spin_at<T>(site: Site, poll: impl FnMut() -> Option<T>) -> Option<T> {
    #[cfg(not(shmproc_loom))]
    {
        let i = site as usize;
        let mut spin = LEARNED
            .try_with(|b| b.get(i).map(std::cell::Cell::get))
            .ok()
            .flatten()
            .unwrap_or(Spin::new(site));
        let r = spin.until(poll);
        let _ = LEARNED.try_with(|b| b.get(i).map(|c| c.set(spin)));
        r
    }
    #[cfg(shmproc_loom)]
    {
        Spin::new(site).until(poll)
    }
}

/// The sleep slices of one wait (see [sleeping in slices](self#sleeping-in-slices)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slices {
    next: Option<Duration>,
}

impl Slices {
    /// Returns the slices 1 ms, 2 ms, 4 ms, … 50 ms, 50 ms, …
    pub(crate) const fn new() -> Slices {
        Slices {
            next: Some(FIRST_SLICE),
        }
    }

    /// Returns the slices 50 ms, 50 ms, …: for a waiter that usually sleeps only
    /// microseconds (the pipe ring's blocking round trip), where every short slice costs a
    /// timer armed and cancelled in the kernel, which on a virtual machine (the timer
    /// reprogrammed through the hypervisor) made each wait several microseconds dearer.
    pub(crate) const fn long() -> Slices {
        Slices {
            next: Some(MAX_SLICE),
        }
    }

    /// Returns "no slices": each sleep lasts until the caller's deadline.
    pub(crate) const fn unsliced() -> Slices {
        Slices { next: None }
    }

    /// Returns when the next sleep ends: the earlier of `deadline` and the end of the next
    /// slice (no slice under loom), and moves on to the following slice.
    fn next_until(&mut self, deadline: Option<&Deadline>) -> Option<Deadline> {
        let slice = self.next.filter(|_| !cfg!(shmproc_loom));
        if let Some(s) = self.next {
            self.next = Some((s * 2).min(MAX_SLICE));
        }
        match (deadline, slice) {
            (Some(d), Some(s)) => Some(d.min(Deadline::after(s))),
            (Some(d), None) => Some(*d),
            (None, Some(s)) => Some(Deadline::after(s)),
            (None, None) => None,
        }
    }
}

/// How a sleep ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slept {
    /// Woken, or the word no longer held the expected value, or interrupted: re-check.
    Woken,
    /// One slice passed without a wake-up: re-check, and check the peer's liveness.
    SliceEnded,
    /// The caller's deadline passed.
    TimedOut,
}

/// Sleeps while `*word == expected`, for at most one slice of `slices` and never past
/// `deadline`.
pub(crate) fn sleep(
    word: &AtomicU32,
    expected: u32,
    deadline: Option<&Deadline>,
    slices: &mut Slices,
) -> Slept {
    // With no deadline of the caller's, the slice alone bounds the sleep: a relative timeout,
    // so no clock is read before the sleep.
    if deadline.is_none()
        && !cfg!(shmproc_loom)
        && let Some(s) = slices.next
    {
        slices.next = Some((s * 2).min(MAX_SLICE));
        return match sys::futex_wait_for(word, expected, s) {
            WaitOutcome::Retry => Slept::Woken,
            WaitOutcome::TimedOut => Slept::SliceEnded,
        };
    }
    let until = slices.next_until(deadline);
    match sys::futex_wait(word, expected, until.as_ref()) {
        WaitOutcome::Retry => Slept::Woken,
        WaitOutcome::TimedOut if deadline.is_some_and(Deadline::has_passed) => Slept::TimedOut,
        WaitOutcome::TimedOut => Slept::SliceEnded,
    }
}

/// What a waiter holds between announcing itself and sleeping: the sequence it saw.
#[must_use = "a prepared wait must end in `EventCount::wait` or `EventCount::cancel_wait`"]
#[derive(Debug)]
pub(crate) struct Key(u32);

/// An event count over two words in shared memory (see
/// [the event count](self#the-event-count-two-words)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventCount<'a> {
    seq: &'a AtomicU32,
    sleepers: &'a AtomicU32,
}

impl<'a> EventCount<'a> {
    /// Views the event count made of `seq` (the futex word) and `sleepers`.
    pub(crate) fn new(seq: &'a AtomicU32, sleepers: &'a AtomicU32) -> Self {
        EventCount { seq, sleepers }
    }

    /// W1–W3: reads the sequence, announces a sleeper, and fences. The caller re-checks its
    /// condition next, then calls [`wait`](EventCount::wait) or
    /// [`cancel_wait`](EventCount::cancel_wait).
    pub(crate) fn prepare_wait(self) -> Key {
        // Acquire: a bump seen here follows the state change that caused it.
        let key = self.seq.load(Ordering::Acquire);
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        // SeqCst: W3 of the handshake, against the notifier's N2 (module docs).
        fence(Ordering::SeqCst);
        Key(key)
    }

    /// Withdraws a prepared wait whose re-check found the condition true.
    pub(crate) fn cancel_wait(self, key: Key) {
        let _ = key;
        // Relaxed: the count is only the notifier's hint whether to bump and wake.
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    /// W5: sleeps while the sequence is still `key`, for at most one slice, then withdraws
    /// the announcement.
    pub(crate) fn wait(self, key: Key, deadline: Option<&Deadline>, slices: &mut Slices) -> Slept {
        let slept = sleep(self.seq, key.0, deadline, slices);
        // Relaxed: as in `cancel_wait`.
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
        slept
    }

    /// N2–N5: after the caller changed the state, wakes up to `n` sleepers if any announced
    /// itself. Makes no system call and writes nothing when nobody sleeps.
    pub(crate) fn notify(self, n: u32) {
        // SeqCst: N2 of the handshake, against the waiter's W3 (module docs).
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fences (module docs).
        if self.sleepers.load(Ordering::Relaxed) != 0 {
            // Release: a waiter that sees the bump (W1, Acquire) sees the state change.
            self.seq.fetch_add(1, Ordering::Release);
            sys::futex_wake(self.seq, n);
        }
    }

    /// Waits until `poll` gives a value, sleeping in slices (the caller spins first if it
    /// wants to). After every sleep that did not make `poll` ready and did not reach the
    /// deadline, `after_sleep` runs (the liveness check) and may end the wait with a value.
    /// Returns `None` once `deadline` has passed and `poll` still gives nothing.
    pub(crate) fn wait_until<T>(
        self,
        deadline: Option<&Deadline>,
        poll: impl FnMut() -> Option<T>,
        after_sleep: impl FnMut(Slept) -> Option<T>,
    ) -> Option<T> {
        self.wait_until_in(Slices::new(), deadline, poll, after_sleep)
    }

    /// As [`wait_until`](EventCount::wait_until), sleeping in `slices`.
    pub(crate) fn wait_until_in<T>(
        self,
        slices: Slices,
        deadline: Option<&Deadline>,
        poll: impl FnMut() -> Option<T>,
        after_sleep: impl FnMut(Slept) -> Option<T>,
    ) -> Option<T> {
        wait_loop(self, slices, deadline, poll, after_sleep)
    }
}

/// What [`wait_loop`] needs of an event count: the waiter's side of the handshake.
trait Handshake: Copy {
    /// W1–W3.
    fn announce(self) -> Key;
    /// Withdraws an announcement whose re-check found the condition ready.
    fn withdraw(self, key: Key);
    /// W5.
    fn sleep_on(self, key: Key, deadline: Option<&Deadline>, slices: &mut Slices) -> Slept;
}

impl Handshake for EventCount<'_> {
    fn announce(self) -> Key {
        self.prepare_wait()
    }
    fn withdraw(self, key: Key) {
        self.cancel_wait(key);
    }
    fn sleep_on(self, key: Key, deadline: Option<&Deadline>, slices: &mut Slices) -> Slept {
        self.wait(key, deadline, slices)
    }
}

impl Handshake for EventWord<'_> {
    fn announce(self) -> Key {
        self.prepare_wait()
    }
    /// Nothing to withdraw: the mark stays, and costs the next notify one wake-up call.
    fn withdraw(self, _key: Key) {}
    fn sleep_on(self, key: Key, deadline: Option<&Deadline>, slices: &mut Slices) -> Slept {
        self.wait(key, deadline, slices)
    }
}

/// The wait loop of both event counts: announce, re-check, sleep one slice, re-check, and
/// after a sleep that did not end the wait, run `after_sleep` (the liveness check).
fn wait_loop<W: Handshake, T>(
    w: W,
    mut slices: Slices,
    deadline: Option<&Deadline>,
    mut poll: impl FnMut() -> Option<T>,
    mut after_sleep: impl FnMut(Slept) -> Option<T>,
) -> Option<T> {
    loop {
        let key = w.announce();
        if let Some(v) = poll() {
            w.withdraw(key);
            return Some(v);
        }
        let slept = w.sleep_on(key, deadline, &mut slices);
        if let Some(v) = poll() {
            return Some(v);
        }
        if slept == Slept::TimedOut || deadline.is_some_and(Deadline::has_passed) {
            return None;
        }
        if let Some(v) = after_sleep(slept) {
            return Some(v);
        }
    }
}

/// The mark of [`EventWord`]: a waiter announced itself since the last bump.
const MARK: u32 = 1;

/// A one-word event count (see [the one-word event count](self#the-one-word-event-count)):
/// `epoch << 1 | MARK`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventWord<'a> {
    word: &'a AtomicU32,
}

impl<'a> EventWord<'a> {
    /// Views the event word `word`.
    pub(crate) fn new(word: &'a AtomicU32) -> Self {
        EventWord { word }
    }

    /// W1–W3: marks the word and fences. The caller re-checks its condition next, then calls
    /// [`wait`](EventWord::wait) (or simply returns if the condition holds: the mark stays, and
    /// costs the next notify one wake-up call).
    pub(crate) fn prepare_wait(self) -> Key {
        // SeqCst: the mark is W2 of the handshake; the value read is the epoch the sleep
        // compares against.
        let key = self.word.fetch_or(MARK, Ordering::SeqCst) | MARK;
        // SeqCst: W3 of the handshake, against the notifier's N2 (module docs).
        fence(Ordering::SeqCst);
        Key(key)
    }

    /// W5: sleeps while the word is still `key` (marked, same epoch), for at most one slice.
    /// Nothing to withdraw: the notifier that wakes clears the mark.
    pub(crate) fn wait(self, key: Key, deadline: Option<&Deadline>, slices: &mut Slices) -> Slept {
        sleep(self.word, key.0, deadline, slices)
    }

    /// N2–N5: after the caller changed the state, wakes every sleeper if the word is marked,
    /// moving it to the next epoch with the mark cleared. Makes no system call and writes
    /// nothing when the word is not marked: in particular not again while a woken sleeper is
    /// still on its way out of the kernel.
    pub(crate) fn notify(self) {
        // SeqCst: N2 of the handshake, against the waiter's W3 (module docs).
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fences (module docs).
        let v = self.word.load(Ordering::Relaxed);
        if v & MARK != 0 {
            // Release: a sleeper that wakes sees the state change. A failed exchange means
            // another notifier moved the epoch on (and wakes): nothing left to do.
            if self
                .word
                .compare_exchange(v, v.wrapping_add(1), Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                sys::futex_wake(self.word, u32::MAX);
            }
        }
    }

    /// As [`EventCount::wait_until_in`], on this word.
    pub(crate) fn wait_until_in<T>(
        self,
        slices: Slices,
        deadline: Option<&Deadline>,
        poll: impl FnMut() -> Option<T>,
        after_sleep: impl FnMut(Slept) -> Option<T>,
    ) -> Option<T> {
        wait_loop(self, slices, deadline, poll, after_sleep)
    }
}

#[cfg(all(test, not(shmproc_loom)))]
mod tests {
    use super::*;

    #[test]
    fn spin_budget_grows_when_spinning_pays_and_halves_when_not() {
        let mut s = Spin::new(Site::Lock);
        assert_eq!(s.until(|| Some(())), Some(()));
        assert_eq!(s.budget(), SPIN_START + SPIN_START / 4 + 1);
        for _ in 0..100 {
            let _ = s.until(|| Some(()));
        }
        assert_eq!(s.budget(), SPIN_MAX);
        let mut rounds = 0;
        assert_eq!(
            s.until(|| {
                rounds += 1;
                None::<()>
            }),
            None
        );
        assert_eq!(rounds, SPIN_MAX);
        assert_eq!(s.budget(), SPIN_MAX / 2);
        for _ in 0..20 {
            let _ = s.until(|| None::<()>);
        }
        assert_eq!(s.budget(), SPIN_MIN);
    }

    /// Regression (issue 16, a ping-pong window stuck at the futex rate): a budget that
    /// fell to `SPIN_MIN` grows back after a short sleep to cover the wait it saw, and keeps
    /// halving after long sleeps; after a regrowth that does not pay off, it waits
    /// `REGROW_PAUSE` failed spins before growing again.
    #[test]
    fn pipe_budget_grows_back_after_short_sleeps() {
        let us = Duration::from_micros;
        let mut s = Spin::new(Site::Pipe);
        for _ in 0..20 {
            let _ = s.until(|| None::<()>);
            s.slept(us(10), us(5000));
        }
        assert_eq!(
            s.budget(),
            SPIN_MIN,
            "long sleeps: the budget stays at its floor"
        );
        // 8 rounds took 1 µs and the answer came 19 µs later: 8 · 20 · 5/4 = 200 rounds.
        let _ = s.until(|| None::<()>);
        s.slept(us(1), us(19));
        assert_eq!(s.budget(), 200);
        // The regrown spin fails again (the peer needs this core): no regrowth for a while.
        for _ in 0..usize::from(REGROW_PAUSE) {
            let _ = s.until(|| None::<()>);
            s.slept(us(1), us(19));
        }
        assert_eq!(s.budget(), SPIN_MIN);
        let _ = s.until(|| None::<()>);
        s.slept(us(1), us(19));
        assert_eq!(s.budget(), 200, "the pause is over");
        // A spin that pays off ends the pause at once, and keeps growing within `max`.
        assert_eq!(s.until(|| Some(())), Some(()));
        assert_eq!(s.budget(), 251);
        let _ = s.until(|| None::<()>);
        s.slept(us(1), us(40));
        assert_eq!(s.budget(), SPIN_MAX, "at most the maximum");
    }

    #[test]
    fn condition_budget_stays_short_and_queue_yields_before_sleeping() {
        let mut c = Spin::new(Site::Condition);
        assert_eq!(c.budget(), 20);
        for _ in 0..100 {
            let _ = c.until(|| Some(()));
        }
        assert_eq!(c.budget(), 400);
        let mut q = Spin::new(Site::Queue);
        let mut polls = 0;
        assert_eq!(
            q.until(|| {
                polls += 1;
                None::<()>
            }),
            None
        );
        assert_eq!(polls, SPIN_START + 4, "the pauses, then four yields");
        // A poll that succeeds only after a yield ends the spin there.
        let mut q = Spin::new(Site::Queue);
        let mut polls = 0;
        let got = q.until(|| {
            polls += 1;
            (polls > SPIN_START + 1).then_some(polls)
        });
        assert_eq!(got, Some(SPIN_START + 2));
    }

    #[test]
    fn slices_double_up_to_the_maximum_and_respect_the_deadline() {
        let mut sl = Slices::new();
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(sl.next);
            let _ = sl.next_until(None);
        }
        let ms: Vec<u64> = seen
            .iter()
            .map(|d| d.map_or(0, |d| d.as_millis() as u64))
            .collect();
        assert_eq!(ms, [1, 2, 4, 8, 16, 32, 50, 50]);
        assert!(Slices::unsliced().next_until(None).is_none());
        let near = Deadline::after(Duration::ZERO);
        let until = Slices::new().next_until(Some(&near));
        assert!(until.is_some_and(|u| u.has_passed()));
    }

    #[test]
    fn sleep_reports_slice_end_then_deadline() {
        let word = AtomicU32::new(7);
        let mut sl = Slices::new();
        assert_eq!(sleep(&word, 7, None, &mut sl), Slept::SliceEnded);
        let d = Deadline::after(Duration::from_millis(3));
        let mut sl = Slices::new();
        let mut ends = Vec::new();
        loop {
            let s = sleep(&word, 7, Some(&d), &mut sl);
            ends.push(s);
            if s == Slept::TimedOut {
                break;
            }
        }
        assert!(d.has_passed());
        assert_eq!(ends.last(), Some(&Slept::TimedOut));
        assert_eq!(sleep(&word, 8, None, &mut Slices::new()), Slept::Woken);
    }

    #[test]
    fn event_count_wakes_a_sleeper_across_threads() {
        let words = std::sync::Arc::new((AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)));
        let w = std::sync::Arc::clone(&words);
        let t = std::thread::spawn(move || {
            let ec = EventCount::new(&w.0, &w.1);
            let got = ec.wait_until(
                None,
                || (w.2.load(Ordering::Relaxed) == 1).then_some(()),
                |_| None,
            );
            assert_eq!(got, Some(()));
        });
        let ec = EventCount::new(&words.0, &words.1);
        words.2.store(1, Ordering::Relaxed);
        ec.notify(1);
        t.join().expect("waiter");
        assert_eq!(words.1.load(Ordering::Relaxed), 0);
        // With no sleeper a notify writes nothing.
        let seq = words.0.load(Ordering::Relaxed);
        ec.notify(1);
        assert_eq!(words.0.load(Ordering::Relaxed), seq);
    }

    /// The one-word event count wakes a sleeper across threads; a notify that finds the word
    /// unmarked (nobody waiting, or the mark already cleared by the notify that woke the
    /// sleeper) writes nothing and makes no system call.
    #[test]
    fn event_word_wakes_a_sleeper_and_skips_unmarked_notifies() {
        let words = std::sync::Arc::new((AtomicU32::new(0), AtomicU32::new(0)));
        let w = std::sync::Arc::clone(&words);
        let t = std::thread::spawn(move || {
            let got = EventWord::new(&w.0).wait_until_in(
                Slices::long(),
                None,
                || (w.1.load(Ordering::Relaxed) == 1).then_some(()),
                |_| None,
            );
            assert_eq!(got, Some(()));
        });
        // Let the waiter mark the word (or not: either way it must wake).
        while words.0.load(Ordering::Relaxed) & MARK == 0 && !t.is_finished() {
            std::thread::yield_now();
        }
        words.1.store(1, Ordering::Relaxed);
        EventWord::new(&words.0).notify();
        t.join().expect("waiter");
        let v = words.0.load(Ordering::Relaxed);
        assert_eq!(v & MARK, 0, "the notify that woke cleared the mark");
        EventWord::new(&words.0).notify();
        assert_eq!(
            words.0.load(Ordering::Relaxed),
            v,
            "an unmarked notify writes nothing"
        );
        // A marked word moves to the next epoch, unmarked.
        let key = EventWord::new(&words.0).prepare_wait();
        assert_eq!(key.0, v | MARK);
        EventWord::new(&words.0).notify();
        assert_eq!(words.0.load(Ordering::Relaxed), v + 2);
    }

    #[test]
    fn event_count_wait_times_out_with_nothing_to_wait_for() {
        let (seq, sleepers) = (AtomicU32::new(0), AtomicU32::new(0));
        let ec = EventCount::new(&seq, &sleepers);
        // Long enough for several slices (1, 2, 4, … ms) even when the spin phase before them
        // is stretched by a loaded machine.
        let d = Deadline::after(Duration::from_millis(200));
        let mut checks = 0;
        let got = ec.wait_until(
            Some(&d),
            || None::<()>,
            |_| {
                checks += 1;
                None
            },
        );
        assert_eq!(got, None);
        assert!(d.has_passed());
        assert!(checks >= 1, "the liveness check runs after a slice");
        assert_eq!(sleepers.load(Ordering::Relaxed), 0);
    }
}
